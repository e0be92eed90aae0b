//! The import: read an APScheduler jobs table (read-only), map each row, store the schedules
//! that are new, and report on every row.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use jobstore::{Change, ChangeLog, JobStore, Schedule, StoreError, StoreName};
use serde::Serialize;
use service_kit::DatabaseUrl;
use sqlx::{ConnectOptions, Connection, Row as _};

use crate::convert::{Facts, Mapped, Mapper, Row};
use crate::pickle::Limits;

/// What to import, from where.
#[derive(Debug, Clone)]
pub struct Options {
    /// `postgres://…?schema=NAME`, AutoGPT's `DIRECT_URL`.
    pub from: String,
    pub table: String,
    /// The jobstore the schedules go to.
    pub jobstore: StoreName,
    /// Read and report, write nothing.
    pub dry_run: bool,
    pub limits: Limits,
}

/// Why the import could not run at all (a row that cannot be read is set aside instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("--from: {0}")]
    Source(String),
    #[error("reading {table}: {error}")]
    Read { table: String, error: sqlx::Error },
    #[error("writing the schedules: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Target(String),
}

/// What became of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    AlreadyPresent,
    System,
    SetAside,
}

/// One row in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowReport {
    pub id: String,
    pub outcome: Outcome,
    pub user: Option<String>,
    pub func: Option<String>,
    /// The trigger as this scheduler holds it (a cron expression, `every Ns`, `once at …`).
    pub trigger: Option<String>,
    pub zone: Option<String>,
    /// The row's `next_run_time`; `None` when paused.
    pub next_run_before: Option<DateTime<Utc>>,
    /// The imported schedule's next run; `None` when paused or not imported.
    pub next_run_after: Option<DateTime<Utc>>,
    pub paused: bool,
    /// Why the row was set aside.
    pub reason: Option<String>,
    /// What the operator should know about an imported row.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows: usize,
    pub imported: usize,
    pub already_present: usize,
    pub system: usize,
    pub set_aside: usize,
}

/// The whole report: the same whether or not `--dry-run` was given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub source: String,
    pub table: String,
    pub jobstore: StoreName,
    pub dry_run: bool,
    pub counts: Counts,
    pub rows: Vec<RowReport>,
}

/// How many schedules are written per transaction.
const BATCH: usize = 500;

/// Runs the import into `store` at `now`.
pub async fn run(
    options: &Options,
    store: &dyn JobStore,
    log: Option<&dyn ChangeLog>,
    now: DateTime<Utc>,
) -> Result<Report, ImportError> {
    let (source, rows) = read(options).await?;
    let mut mapper = Mapper::new(now, options.limits);
    let mut report = Report {
        source,
        table: options.table.clone(),
        jobstore: options.jobstore,
        dry_run: options.dry_run,
        counts: Counts::default(),
        rows: Vec::with_capacity(rows.len()),
    };
    let mut pending: Vec<(usize, Schedule)> = Vec::new();
    for row in &rows {
        let (mapped, facts) = mapper.map(row);
        let mut line = line(&row.id, facts);
        match mapped {
            Mapped::System { .. } => line.outcome = Outcome::System,
            Mapped::SetAside { reason } => {
                line.outcome = Outcome::SetAside;
                line.reason = Some(reason);
            }
            Mapped::Schedule { schedule, notes } => {
                line.notes = notes;
                line.paused = schedule.paused;
                line.next_run_after = schedule.next_run_at;
                if store.get(&schedule.id).await?.is_some() {
                    line.outcome = Outcome::AlreadyPresent;
                } else {
                    line.outcome = Outcome::Imported;
                    pending.push((report.rows.len(), *schedule));
                }
            }
        }
        report.rows.push(line);
    }
    if !options.dry_run {
        for batch in pending.chunks(BATCH) {
            let schedules: Vec<Schedule> = batch.iter().map(|(_, s)| s.clone()).collect();
            match store.insert_many(&schedules).await {
                Ok(()) => {
                    for schedule in &schedules {
                        record(log, schedule, options.jobstore, now).await?;
                    }
                }
                // Someone stored one of them meanwhile: go one by one.
                Err(StoreError::Conflict(_)) => {
                    for (index, schedule) in batch {
                        match store.insert(schedule).await {
                            Ok(()) => record(log, schedule, options.jobstore, now).await?,
                            Err(StoreError::Conflict(_)) => {
                                report.rows[*index].outcome = Outcome::AlreadyPresent;
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    report.counts = count(&report.rows);
    Ok(report)
}

/// Writes an imported schedule into the audit log (actor and route `import`).
async fn record(
    log: Option<&dyn ChangeLog>,
    schedule: &Schedule,
    jobstore: StoreName,
    now: DateTime<Utc>,
) -> Result<(), ImportError> {
    let Some(log) = log else {
        return Ok(());
    };
    let change = Change {
        seq: 0,
        at: now,
        jobstore,
        schedule_id: schedule.id.clone(),
        owner: schedule.owner.clone(),
        actor: "import".into(),
        route: "import".into(),
        action: "import".into(),
        changes: Change::diff(None, Some(schedule)),
    };
    Ok(log.record_change(&change).await?)
}

fn line(id: &str, facts: Facts) -> RowReport {
    RowReport {
        id: id.to_string(),
        outcome: Outcome::SetAside,
        user: facts.user,
        func: facts.func,
        trigger: facts.trigger,
        zone: facts.zone,
        next_run_before: facts.next_before,
        next_run_after: None,
        paused: false,
        reason: None,
        notes: Vec::new(),
    }
}

fn count(rows: &[RowReport]) -> Counts {
    let mut counts = Counts {
        rows: rows.len(),
        ..Counts::default()
    };
    for row in rows {
        match row.outcome {
            Outcome::Imported => counts.imported += 1,
            Outcome::AlreadyPresent => counts.already_present += 1,
            Outcome::System => counts.system += 1,
            Outcome::SetAside => counts.set_aside += 1,
        }
    }
    counts
}

/// Reads every row of the table in a read-only session. A row's `job_state` over the size
/// limit is not fetched: the row comes back empty and is set aside as unreadable.
async fn read(options: &Options) -> Result<(String, Vec<Row>), ImportError> {
    let table = &options.table;
    if !service_kit::database::is_plain_identifier(table) {
        return Err(ImportError::Source(format!(
            "--table '{table}' must be 1-63 letters, digits or underscores"
        )));
    }
    let url = DatabaseUrl::parse(&options.from).map_err(|e| ImportError::Source(e.to_string()))?;
    let source = url.redacted();
    let schema = match &url {
        DatabaseUrl::Postgres { schema, .. } => schema.clone().unwrap_or_else(|| "public".into()),
        DatabaseUrl::Sqlite { .. } => {
            return Err(ImportError::Source(format!(
                "{source} is not a PostgreSQL URL; AutoGPT keeps its APScheduler jobs in \
                 PostgreSQL"
            )));
        }
    };
    let connect = url
        .pg_options()
        .map_err(|e| ImportError::Source(e.to_string()))?
        .ok_or_else(|| ImportError::Source(format!("{source} is not a PostgreSQL URL")))?;
    // Nothing this session runs can write: the source tables are never changed.
    let mut conn = connect
        .options([("default_transaction_read_only", "on")])
        .application_name("scheduler import-apscheduler")
        .connect()
        .await
        .map_err(|e| ImportError::Source(format!("cannot connect to {source}: {e}")))?;
    let read_error = |error| ImportError::Read {
        table: format!("{schema}.{table}"),
        error,
    };
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("\"{schema}\".\"{table}\""))
        .fetch_one(&mut conn)
        .await
        .map_err(read_error)?;
    if exists.is_none() {
        return Err(ImportError::Source(format!(
            "{source} has no table {schema}.{table}"
        )));
    }
    let limit = i32::try_from(options.limits.max_bytes).unwrap_or(i32::MAX);
    let sql = format!(
        "SELECT id::text, next_run_time::float8, octet_length(job_state), \
         CASE WHEN octet_length(job_state) <= $1 THEN job_state END \
         FROM \"{schema}\".\"{table}\" ORDER BY id"
    );
    let mut rows = Vec::new();
    {
        let mut stream = sqlx::query(&sql).bind(limit).fetch(&mut conn);
        while let Some(row) = stream.try_next().await.map_err(read_error)? {
            let length: Option<i32> = row.try_get(2).map_err(read_error)?;
            let job_state: Option<Vec<u8>> = row.try_get(3).map_err(read_error)?;
            // Over the limit the bytes are not fetched; `oversized` says why the row is empty.
            let job_state = job_state.unwrap_or_default();
            rows.push(Row {
                id: row.try_get(0).map_err(read_error)?,
                next_run_time: row.try_get(1).map_err(read_error)?,
                job_state,
                oversized: length
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l > options.limits.max_bytes),
            });
        }
    }
    conn.close().await.ok();
    Ok((format!("{source} table {schema}.{table}"), rows))
}
