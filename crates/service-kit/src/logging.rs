//! Logging to stderr, pretty or as JSON lines. `RUST_LOG`, when set to a valid filter, wins
//! over `log.level`, so an operator can turn up one module without editing the file.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init(log: &LogConfig) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), &log.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
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
