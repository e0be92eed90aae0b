//! `scheduler import-apscheduler`: moves AutoGPT's APScheduler jobs into the store this
//! scheduler is configured with (see [`apscheduler_import`]). The source is only read; with
//! `--dry-run` nothing is written anywhere and the report is the same.

use std::path::PathBuf;
use std::process::ExitCode;

use jobstore::DatabaseUrl;
use service_kit::config::Overrides;

/// Where the configuration says schedules are stored (its `database.url`), loaded the way
/// the scheduler loads it.
pub type StoreUrl = Box<dyn Fn(&Overrides) -> anyhow::Result<String>>;

/// `scheduler import-apscheduler`: what to import, and the configuration naming where to.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example:\n  scheduler import-apscheduler --from \
    'postgres://autogpt@db:5432/autogpt?schema=platform' --dry-run --report report.json")]
pub struct ImportCommand {
    #[command(flatten)]
    pub import: apscheduler_import::cli::ImportArgs,
    /// The scheduler's TOML configuration (default: ./scheduler.toml when it exists); its
    /// database.url is where the schedules go.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the schedules go, instead of the configuration's database.url.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Runs the import and prints the report: exit 0 when it ran (whatever it set aside), 2 for
/// a bad configuration, 1 when the source or the store failed. `store_url` reads the
/// scheduler's configuration, which the binary knows.
pub fn main(args: &ImportCommand, store_url: StoreUrl) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config.clone(),
        host: None,
        port: None,
        database_url: args.database_url.clone(),
        keys: Vec::new(),
    };
    let url = match store_url(&overrides) {
        Ok(url) => url,
        Err(error) => {
            eprintln!("scheduler import-apscheduler: {error:#}");
            return ExitCode::from(service_kit::cli::EXIT_CONFIG);
        }
    };
    let target = match DatabaseUrl::parse(&url) {
        Ok(url) => url,
        Err(error) => {
            eprintln!("scheduler import-apscheduler: {error}");
            return ExitCode::from(service_kit::cli::EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scheduler import-apscheduler: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(apscheduler_import::cli::import_into(&args.import, &target)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("scheduler import-apscheduler: {error}");
            ExitCode::FAILURE
        }
    }
}
