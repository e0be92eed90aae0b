# The scheduler service. Build from the repository root:
#   docker build -f deploy/scheduler.Dockerfile -t scheduler .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p scheduler

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/scheduler scheduler \
    && mkdir -p /var/lib/scheduler/data \
    && chown -R scheduler /var/lib/scheduler
COPY --from=build /src/target/release/scheduler /usr/local/bin/scheduler
USER scheduler
# The embedded SQLite store (./data/scheduler.db) lives here when no PostgreSQL URL is set.
WORKDIR /var/lib/scheduler
# Listening beyond loopback, the scheduler refuses to start without SCHEDULER__AUTH__TOKEN (or an
# explicit SCHEDULER__AUTH__DISABLED=true): pass it with `docker run -e`.
ENV SCHEDULER__SERVER__HOST=0.0.0.0
EXPOSE 8003
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8003/health_check || exit 1
ENTRYPOINT ["/usr/local/bin/scheduler"]
