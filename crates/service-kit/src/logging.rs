//! Logging to stderr, pretty or as JSON lines, and, with `[telemetry] otlp_endpoint`, spans
//! exported over OTLP ([`crate::traces`]). `RUST_LOG`, when set to a valid filter, wins over
//! `log.level`, so an operator can turn up one module without editing the file.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};
use crate::traces;

/// Installs the process's subscriber (once; later calls do nothing): the log on stderr, and the
/// spans of `service` to the collector when `telemetry` names one. A collector that cannot be
/// set up is logged, and the service runs without traces.
///
/// Without traces the subscriber is the log alone, its filter global: a callsite the filter
/// refuses is never looked at again, so traces that are off cost nothing.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig, service: &str) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), &log.level);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (spans, failed) = match traces::layer(telemetry, service) {
        Ok(layer) => (layer, None),
        Err(error) => (None, Some(error)),
    };
    let Some(spans) = spans else {
        let builder = fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        let _ = match log.format {
            LogFormat::Json => builder.json().try_init(),
            LogFormat::Pretty => builder.try_init(),
        };
        if let Some(error) = failed {
            tracing::error!("traces are off: {error:#}");
        }
        return;
    };
    // With traces, the log and the export each have their filter.
    let text = match log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(text)
        .with(spans.with_filter(exported()))
        .try_init();
}

/// What goes to the collector: the services' own spans and events at info and above, not
/// the libraries' chatter.
fn exported() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("sqlx", LevelFilter::WARN)
        .with_target("hyper", LevelFilter::WARN)
        .with_target("hyper_util", LevelFilter::WARN)
        .with_target("h2", LevelFilter::WARN)
        .with_target("reqwest", LevelFilter::WARN)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
}

/// `RUST_LOG` when it is set and parses, `log.level` otherwise (checked when loaded).
fn filter(rust_log: Option<&str>, level: &str) -> EnvFilter {
    rust_log
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_when_it_parses() {
        assert_eq!(filter(Some("debug"), "warn").to_string(), "debug");
        assert_eq!(filter(None, "warn").to_string(), "warn");
        assert_eq!(filter(Some(""), "warn").to_string(), "warn");
        assert_eq!(filter(Some("info,[["), "warn").to_string(), "warn");
    }
}
