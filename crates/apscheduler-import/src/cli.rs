//! The import as a command: the arguments both `scheduler import-apscheduler` and `schedctl
//! import-apscheduler` take, and the run into a store named by its URL.

use std::path::PathBuf;
use std::sync::Arc;

use jobstore::{ChangeLog, DatabaseUrl, JobStore, MemoryStore, SoleProcess, StoreName};

use crate::import::{ImportError, Options, Report, run};
use crate::pickle::Limits;

/// What to import and how.
#[derive(clap::Args, Debug, Clone)]
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
}

/// Imports into the store at `target` and returns the report as text (after writing it as
/// JSON to `--report`). A SQLite store is locked against a running scheduler; a dry run
/// creates and migrates nothing, and reads a store that does not exist as an empty one.
pub async fn import_into(args: &ImportArgs, target: &DatabaseUrl) -> Result<String, ImportError> {
    let jobstore = match args.jobstore.as_str() {
        "batched_notifications" => StoreName::BatchedNotifications,
        _ => StoreName::Execution,
    };
    // A scheduler running on the same SQLite file would not know of the new schedules until
    // it next looks; the migration is done with it stopped.
    let _sole = match target {
        DatabaseUrl::Sqlite { path } if !args.dry_run || path.exists() => {
            Some(SoleProcess::acquire(path).map_err(|e| {
                ImportError::Target(format!(
                    "{e}; stop the scheduler using this SQLite store before importing"
                ))
            })?)
        }
        _ => None,
    };
    let (store, log) = open(target, jobstore, args.dry_run)
        .await
        .map_err(|e| ImportError::Target(format!("opening {}: {e}", target.redacted())))?;
    let options = Options {
        from: args.from.clone(),
        table: args.table.clone(),
        jobstore,
        dry_run: args.dry_run,
        limits: Limits::default(),
    };
    let report = run(&options, store.as_ref(), log.as_deref(), chrono::Utc::now()).await?;
    if let Some(path) = &args.report {
        write(path, &report)?;
    }
    Ok(crate::report::text(&report))
}

/// The store to import into, and its database's audit log (none for a dry run).
async fn open(
    url: &DatabaseUrl,
    jobstore: StoreName,
    dry_run: bool,
) -> Result<(Arc<dyn JobStore>, Option<Arc<dyn ChangeLog>>), jobstore::StoreError> {
    if !dry_run {
        let db = jobstore::connect(url, 2).await?;
        let log = jobstore::change_log(&db);
        return Ok((jobstore::persisted(&db, jobstore), Some(log)));
    }
    Ok((dry_store(url, jobstore).await?, None))
}

/// What a dry run compares with: the store as it is, or an empty one.
async fn dry_store(
    url: &DatabaseUrl,
    jobstore: StoreName,
) -> Result<Arc<dyn JobStore>, jobstore::StoreError> {
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

fn write(path: &std::path::Path, report: &Report) -> Result<(), ImportError> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| ImportError::Target(format!("the report as JSON: {e}")))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| ImportError::Target(format!("writing the report to {}: {e}", path.display())))
}
