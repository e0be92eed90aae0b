use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use scheduler::config::{Config, LogConfig, LogFormat, Overrides};
use tracing_subscriber::EnvFilter;

/// Holds schedules (cron with time zones) and fires them. Speaks JSON-RPC 2.0 and AutoGPT's
/// scheduler wire protocol on one port.
#[derive(Parser, Debug)]
#[command(name = "scheduler", version)]
struct Cli {
    /// TOML configuration file (default: ./scheduler.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    host: Option<IpAddr>,
    /// Port to listen on (default 8003).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// sqlite://PATH or postgres://USER@HOST/DB[?schema=NAME].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The execution service that receives add_graph_execution.
    #[arg(long, value_name = "URL")]
    executor_url: Option<String>,
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
        executor_url: cli.executor_url,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("scheduler: {error:#}");
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
                eprintln!("scheduler: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    init_tracing(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scheduler: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scheduler::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("scheduler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}
