//! Traces over OTLP/HTTP (`[telemetry] otlp_endpoint`), and W3C trace context (`traceparent`)
//! in and out. Off unless an endpoint is configured, and then free: no tracing layer is added,
//! [`enabled`] is false, and the spans a service makes through [`span`]'s callers are
//! [`tracing::Span::none`].

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TelemetryConfig;

/// The header, the environment variable (upper case) and the message field trace context
/// travels in.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported: the services make their spans only then.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporting layer for `service`, when `config` names an endpoint; it sends spans in
/// batches from a thread of its own. [`shutdown`] flushes what is left.
pub(crate) fn layer<S>(
    config: &TelemetryConfig,
    service: &str,
) -> anyhow::Result<Option<impl tracing_subscriber::Layer<S>>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(url) = config.traces_url() else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .context("telemetry.otlp_endpoint")?;
    let resource = Resource::builder()
        .with_service_name(service.to_string())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(service.to_string());
    let _ = PROVIDER.set(provider);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
}

/// Sends the spans not yet exported, before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "the last spans could not be exported");
    }
}

/// The W3C `traceparent` of `span`, to hand on to what it calls; `None` when traces are off or
/// the span is not exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span (see [`traceparent_of`]).
pub fn traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Checks a W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`),
/// naming what is wrong.
pub fn check_traceparent(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace_id, parent_id, flags] = parts.as_slice() else {
        return Err(format!("'{value}' is not version-traceid-parentid-flags"));
    };
    if !hex(version, 2) || *version == "ff" {
        return Err(format!("'{value}' has no valid version"));
    }
    if !hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return Err(format!(
            "'{value}' has no valid trace id (32 lower-case hex digits)"
        ));
    }
    if !hex(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
        return Err(format!(
            "'{value}' has no valid parent id (16 lower-case hex digits)"
        ));
    }
    if !hex(flags, 2) {
        return Err(format!("'{value}' has no valid flags"));
    }
    Ok(())
}

/// Makes `span` a child of the caller's span that `traceparent` names (a W3C `traceparent`);
/// a value that does not parse leaves it a root.
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}

/// The axum middleware that puts each request in a span (`request`, with its method and
/// path), continuing the caller's trace from its `traceparent` header. Nothing when off.
pub async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    if !enabled() {
        return next.run(request).await;
    }
    let span = tracing::info_span!(
        "request",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        rpc.method = tracing::field::Empty,
    );
    if let Some(parent) = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
    {
        continue_from(&span, parent);
    }
    next.run(request).instrument(span).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_go_to_the_endpoints_traces_path() {
        let at = |endpoint: &str| TelemetryConfig {
            otlp_endpoint: Some(endpoint.into()),
        };
        assert_eq!(
            at("http://collector:4318").traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            at("http://collector:4318/v1/traces/")
                .traces_url()
                .as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(TelemetryConfig::default().traces_url(), None);
        assert!(at("collector:4318").validate().is_err());
    }

    #[test]
    fn a_traceparent_is_checked_part_by_part() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(check_traceparent(good), Ok(()));
        for (bad, says) in [
            ("", "not version"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "not version",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "flags",
            ),
        ] {
            let error = check_traceparent(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn off_hands_on_nothing() {
        assert_eq!(traceparent(), None);
    }
}
