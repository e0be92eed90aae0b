//! The command line every service shares, and the `main` around a service's `run`.
//!
//! Exit codes: 0 after a requested shutdown, [`EXIT_CONFIG`] when the configuration is
//! invalid, 1 when the service fails (or stops by itself).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Overrides, ServiceConfig};

/// The exit code of a configuration error.
pub const EXIT_CONFIG: u8 = 2;

/// The flags every service takes; a service flattens them into its own parser.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct CommonArgs {
    /// TOML configuration file (default: ./<service>.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (server.host).
    #[arg(long, value_name = "ADDR")]
    pub host: Option<IpAddr>,
    /// Port to listen on (server.port).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// sqlite://PATH or postgres://USER@HOST/DB[?schema=NAME] (database.url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print the effective configuration as TOML, secrets redacted, and exit.
    #[arg(long)]
    pub check_config: bool,
}

impl CommonArgs {
    /// The command-line layer, with a service's own `(key, value)` flags added.
    pub fn overrides(&self, keys: Vec<(&'static str, String)>) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            host: self.host,
            port: self.port,
            database_url: self.database_url.clone(),
            keys,
        }
    }
}

/// Loads the configuration, answers `--check-config`, sets up logging, and runs the service on
/// a multi-threaded runtime until it returns.
pub fn main<C, F, Fut>(args: &CommonArgs, keys: Vec<(&'static str, String)>, run: F) -> ExitCode
where
    C: ServiceConfig + Clone,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = C::NAME;
    let config: C = match config::load(&args.overrides(keys)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        return match config::to_toml(&config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{name}: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    crate::logging::init(config.log(), config.telemetry(), name);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ran = runtime.block_on(run(config));
    crate::traces::shutdown();
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
