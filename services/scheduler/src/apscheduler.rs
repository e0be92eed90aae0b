//! `scheduler import-apscheduler`: moves AutoGPT's APScheduler jobs into the store this
//! scheduler is configured with (see [`apscheduler_import`]). The source is only read; with
//! `--dry-run` nothing is written anywhere and the report is the same.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use apscheduler_import::{Limits, Options};
use jobstore::{DatabaseUrl, JobStore, MemoryStore, StoreName};
use service_kit::config::Overrides;

use crate::config::Config;
use crate::leader::SoleProcess;

/// Arguments of `scheduler import-apscheduler`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example:\n  scheduler import-apscheduler --from \
    'postgres://autogpt@db:5432/autogpt?schema=platform' --dry-run --report report.json")]
pub struct ImportArgs {
    /// AutoGPT's database, as its DIRECT_URL names it: postgres://USER@HOST/DB?schema=NAME.
    /// Only read, in a read-only session.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The APScheduler table to read.
    #[arg(long, default_value = "apscheduler_jobs", value_name = "NAME")]
    pub table: String,
    /// The jobstore the schedules go to.
    #[arg(long, default_value = "execution", value_parser = ["execution", "batched_notifications"])]
    pub jobstore: String,
    /// Read and report; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The scheduler's TOML configuration (default: ./scheduler.toml when it exists); its
    /// database.url is where the schedules go.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the schedules go, instead of the configuration's database.url.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Runs the import and prints the report: exit 0 when it ran (whatever it set aside), 2 for
/// a bad configuration, 1 when the source or the store failed.
pub fn main(args: &ImportArgs) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config.clone(),
        host: None,
        port: None,
        database_url: args.database_url.clone(),
        keys: Vec::new(),
    };
    let config: Config = match service_kit::config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("scheduler import-apscheduler: {error:#}");
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
    match runtime.block_on(import(args, &config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scheduler import-apscheduler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn import(args: &ImportArgs, config: &Config) -> anyhow::Result<()> {
    let jobstore = match args.jobstore.as_str() {
        "batched_notifications" => StoreName::BatchedNotifications,
        _ => StoreName::Execution,
    };
    let url = DatabaseUrl::parse(&config.database.url)?;
    // A scheduler running on the same SQLite file would not know of the new schedules until
    // it next looks; the migration is done with it stopped.
    let _sole = match &url {
        DatabaseUrl::Sqlite { path } if !args.dry_run || path.exists() => Some(
            SoleProcess::acquire(path)
                .context("stop the scheduler using this SQLite store before importing")?,
        ),
        _ => None,
    };
    let store = target(&url, jobstore, args.dry_run)
        .await
        .with_context(|| format!("opening {}", url.redacted()))?;
    let options = Options {
        from: args.from.clone(),
        table: args.table.clone(),
        jobstore,
        dry_run: args.dry_run,
        limits: Limits::default(),
    };
    let report = apscheduler_import::run(&options, store.as_ref(), chrono::Utc::now()).await?;
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    print!("{}", apscheduler_import::report::text(&report));
    Ok(())
}

/// The store the schedules go to. A dry run migrates nothing and creates nothing: a store
/// that does not exist yet is read as an empty one.
async fn target(
    url: &DatabaseUrl,
    jobstore: StoreName,
    dry_run: bool,
) -> anyhow::Result<Arc<dyn JobStore>> {
    if !dry_run {
        let db = jobstore::connect(url, 2).await?;
        return Ok(jobstore::persisted(&db, jobstore));
    }
    let empty = || -> Arc<dyn JobStore> { Arc::new(MemoryStore::new(jobstore)) };
    if let DatabaseUrl::Sqlite { path } = url
        && !path.exists()
    {
        return Ok(empty());
    }
    let db = service_kit::database::open(url, 2).await?;
    let store = jobstore::persisted(&db, jobstore);
    // A database without the scheduler's tables holds no schedules.
    match store.get("").await {
        Ok(_) => Ok(store),
        Err(_) => Ok(empty()),
    }
}

fn write_report(path: &Path, report: &apscheduler_import::Report) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("writing the report to {}", path.display()))
}
