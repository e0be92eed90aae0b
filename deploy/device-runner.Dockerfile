# The device runner. Build from the repository root:
#   docker build -f deploy/device-runner.Dockerfile -t device-runner .
# It drives phones over adb, so in production it runs on the host the phones are plugged into
# (with the USB bus passed through, or on the host itself); the image carries adb.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p device-runner

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl adb python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10002 --home-dir /var/lib/device-runner runner \
    && mkdir -p /var/lib/device-runner/data \
    && chown -R runner /var/lib/device-runner
COPY --from=build /src/target/release/device-runner /usr/local/bin/device-runner
USER runner
# The SQLite store and the job logs live under ./data when no PostgreSQL URL is set.
WORKDIR /var/lib/device-runner
ENV DEVICE_RUNNER__SERVER__HOST=0.0.0.0
EXPOSE 8004
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8004/health_check || exit 1
ENTRYPOINT ["/usr/local/bin/device-runner"]
