use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use device_runner::config::{Config, LogConfig, LogFormat, Overrides};
use tracing_subscriber::EnvFilter;

/// Runs the subprocesses that drive the Android phones attached to this host: a queue per
/// phone, priorities and preemption, timeouts, logs, history. JSON-RPC 2.0 on one port.
#[derive(Parser, Debug)]
#[command(name = "device-runner", version)]
struct Cli {
    /// TOML configuration file (default: ./device-runner.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    host: Option<IpAddr>,
    /// Port to listen on (default 8004).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// sqlite://PATH or postgres://USER@HOST/DB[?schema=NAME].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config_file: cli.config,
        host: cli.host,
        port: cli.port,
        database_url: cli.database_url,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("device-runner: {error:#}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        return match config.to_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("device-runner: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("device-runner: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(device_runner::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("device-runner: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}
