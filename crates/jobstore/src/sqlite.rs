//! The SQLite backend, the embedded default. Claims run in `BEGIN IMMEDIATE` transactions, which
//! take the write lock up front; instants are stored as integer milliseconds since the epoch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Weak};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::model::{
    ListFilter, Overlap, RunFilter, RunOutcome, RunRecord, RunStatus, Schedule, StoreName,
};
use crate::plan::{Active, admitted, earliest, needs_active, plan_fire, unreadable};
use crate::replica;
use crate::store::{ClaimAt, Claims, Ledger, Retention, Schedules, StoreError};

mod watches;

const SCHEDULE_COLUMNS: &str = "id, name, owner, trigger, target, policy, tags, paused, \
     paused_reason, next_run_at, created_at";
const RUN_COLUMNS: &str = "schedule_id, scheduled_time, jobstore, owner, target, status, detail, \
     attempts, claimed_at, lease_until, finished_at, policy";

/// One jobstore's table in a SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    jobstore: StoreName,
    /// This process's writers of the file take their turns here.
    writer: Arc<Mutex<()>>,
}

/// The write turn of a database file, shared by every store of it in this process. SQLite lets
/// one writer in at a time, and its busy handler is not fair: a writer waiting on another's
/// lock can miss its turn for as long as others keep writing (the engine's claims and records
/// under load), until its busy timeout fails it. Queued here, writers go in the order they came.
fn writer_of(pool: &SqlitePool) -> Arc<Mutex<()>> {
    type Writers = std::sync::Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>;
    static WRITERS: LazyLock<Writers> = LazyLock::new(Writers::default);
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut writers = WRITERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    writers.retain(|_, writer| writer.strong_count() > 0);
    if let Some(writer) = writers.get(&file).and_then(Weak::upgrade) {
        return writer;
    }
    let writer = Arc::new(Mutex::new(()));
    writers.insert(file, Arc::downgrade(&writer));
    writer
}

/// A write transaction and the turn it holds until it ends.
type Write = (
    OwnedMutexGuard<()>,
    sqlx::Transaction<'static, sqlx::Sqlite>,
);

impl SqliteStore {
    /// A store over an already migrated pool (see [`crate::connect`]).
    pub fn new(pool: SqlitePool, jobstore: StoreName) -> Self {
        let writer = writer_of(&pool);
        SqliteStore {
            pool,
            jobstore,
            writer,
        }
    }

    /// Waits for this process's turn to write, then begins a write transaction
    /// (`BEGIN IMMEDIATE`, which takes the file's write lock at once).
    async fn begin_write(&self) -> Result<Write, StoreError> {
        let turn = self.turn().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((turn, tx))
    }

    /// This process's turn to write, for a statement of its own.
    async fn turn(&self) -> OwnedMutexGuard<()> {
        self.writer.clone().lock_owned().await
    }

    fn table(&self) -> &'static str {
        self.jobstore.table()
    }

    /// Deletes a schedule's runs claimed ahead of their time and not yet due, so that they do
    /// not run.
    async fn unclaim_ahead(
        &self,
        conn: &mut sqlx::SqliteConnection,
        schedule_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM schedule_runs WHERE schedule_id = ?1 AND jobstore = ?2 \
             AND status = 'pending' AND scheduled_time > ?3",
        )
        .bind(schedule_id)
        .bind(self.jobstore.as_str())
        .bind(millis(Utc::now()))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn insert_in(
        &self,
        tx: &mut sqlx::SqliteConnection,
        schedule: &Schedule,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {0} (id, name, owner, trigger, target, policy, paused, paused_reason, \
             next_run_at, created_at, updated_at, seq, tags, checks_overlap) VALUES (?1, ?2, ?3, \
             ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, (SELECT coalesce(max(seq), 0) + 1 FROM {0}), ?11, \
             ?12) ON CONFLICT (id) DO NOTHING",
            self.table()
        );
        let done = sqlx::query(&sql)
            .bind(&schedule.id)
            .bind(&schedule.name)
            .bind(&schedule.owner)
            .bind(to_json(&schedule.trigger)?)
            .bind(to_json(&schedule.target)?)
            .bind(to_json(&schedule.policy)?)
            .bind(schedule.paused)
            .bind(&schedule.paused_reason)
            .bind(schedule.next_run_at.map(millis))
            .bind(millis(schedule.created_at))
            .bind(to_json(&schedule.tags)?)
            .bind(needs_active(schedule))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(schedule.id.clone()));
        }
        Ok(())
    }
}

/// Writes one ledger row; false when the occurrence is already there.
async fn insert_run_in(
    conn: &mut sqlx::SqliteConnection,
    run: &RunRecord,
) -> Result<bool, StoreError> {
    let inserted = insert_runs_in(conn, std::slice::from_ref(run), None).await?;
    Ok(!inserted.is_empty())
}

/// Writes ledger rows in one statement, leaving out occurrences already in the ledger; returns
/// the keys of the rows it wrote.
/// Inserts the runs that are not in the ledger yet, held by `claimed_by` (the claiming
/// replica; `None` for runs no engine has taken yet); returns the keys of those inserted.
async fn insert_runs_in(
    conn: &mut sqlx::SqliteConnection,
    runs: &[RunRecord],
    claimed_by: Option<&str>,
) -> Result<std::collections::HashSet<(String, i64)>, StoreError> {
    let mut inserted = std::collections::HashSet::with_capacity(runs.len());
    // Bounded chunks keep each statement's parameter a reasonable size.
    for chunk in runs.chunks(1000) {
        let mut rows = Vec::with_capacity(chunk.len());
        for run in chunk {
            rows.push(serde_json::json!([
                run.schedule_id,
                millis(run.scheduled_time),
                run.jobstore.as_str(),
                run.owner,
                to_json(&run.target)?,
                run.status.as_str(),
                run.detail,
                run.attempts,
                millis(run.claimed_at),
                run.lease_until.map(millis),
                run.finished_at.map(millis),
                to_json(&run.policy)?,
                claimed_by,
            ]));
        }
        let columns: Vec<String> = (0..13)
            .map(|i| format!("json_extract(value, '$[{i}]')"))
            .collect();
        // `WHERE true` tells SQLite's parser the upsert clause is not part of a join.
        let sql = format!(
            "INSERT INTO schedule_runs ({RUN_COLUMNS}, claimed_by) SELECT {} FROM json_each(?1) \
             WHERE true \
             ON CONFLICT (schedule_id, scheduled_time) DO NOTHING \
             RETURNING schedule_id, scheduled_time",
            columns.join(", ")
        );
        let keys: Vec<(String, i64)> = sqlx::query_as(&sql)
            .bind(to_json(&rows)?)
            .fetch_all(&mut *conn)
            .await?;
        inserted.extend(keys);
    }
    Ok(inserted)
}

/// The runs in progress and waiting of each of these schedules, in one statement.
async fn active_of(
    conn: &mut sqlx::SqliteConnection,
    schedule_ids: &[&str],
) -> Result<HashMap<String, Active>, StoreError> {
    if schedule_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT schedule_id, count(*) FILTER (WHERE status = 'pending'), \
         count(*) FILTER (WHERE status = 'pending' AND recovered), \
         count(*) FILTER (WHERE status = 'buffered') FROM schedule_runs \
         WHERE status IN ('pending', 'buffered') \
         AND schedule_id IN (SELECT value FROM json_each(?1)) GROUP BY schedule_id",
    )
    .bind(to_json(&schedule_ids)?)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, running, recovering, buffered)| {
            let active = Active {
                running: running as u32,
                recovering: recovering as u32,
                buffered: buffered as u32,
            };
            (id, active)
        })
        .collect())
}

/// The runs in progress and waiting of one schedule.
async fn active_in(
    conn: &mut sqlx::SqliteConnection,
    schedule_id: &str,
) -> Result<Active, StoreError> {
    let active = active_of(conn, &[schedule_id]).await?;
    Ok(active.get(schedule_id).copied().unwrap_or_default())
}

/// Makes the oldest buffered run of a schedule with none in progress pending, with an expired
/// lease so that an engine dispatches it at once.
async fn promote(
    conn: &mut sqlx::SqliteConnection,
    schedule_id: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let done = sqlx::query(
        "UPDATE schedule_runs SET status = 'pending', lease_until = ?2, claimed_by = NULL, \
         recovered = 0 WHERE schedule_id = ?1 AND status = 'buffered' AND scheduled_time = \
         (SELECT min(scheduled_time) FROM schedule_runs WHERE schedule_id = ?1 \
         AND status = 'buffered') AND NOT EXISTS (SELECT 1 FROM schedule_runs \
         WHERE schedule_id = ?1 AND status = 'pending')",
    )
    .bind(schedule_id)
    .bind(millis(now))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() as usize)
}

/// Ends pending ledger rows as the outcomes say, in one statement; returns the keys of the rows
/// that were pending (the others are left as they are).
async fn finish_all_in(
    conn: &mut sqlx::SqliteConnection,
    outcomes: &[&RunOutcome],
) -> Result<std::collections::HashSet<(String, i64)>, StoreError> {
    let mut finished = std::collections::HashSet::with_capacity(outcomes.len());
    // Bounded chunks keep each statement's parameter a reasonable size.
    for chunk in outcomes.chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|o| {
                serde_json::json!([
                    o.schedule_id,
                    millis(o.scheduled_time),
                    o.status.as_str(),
                    o.detail,
                    o.attempts,
                    millis(o.finished_at),
                ])
            })
            .collect();
        let keys: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE schedule_runs SET status = json_extract(j.value, '$[2]'), \
             detail = json_extract(j.value, '$[3]'), attempts = json_extract(j.value, '$[4]'), \
             finished_at = json_extract(j.value, '$[5]'), lease_until = NULL \
             FROM json_each(?1) AS j \
             WHERE schedule_runs.schedule_id = json_extract(j.value, '$[0]') \
             AND schedule_runs.scheduled_time = json_extract(j.value, '$[1]') \
             AND schedule_runs.status = 'pending' \
             RETURNING schedule_runs.schedule_id, schedule_runs.scheduled_time",
        )
        .bind(to_json(&rows)?)
        .fetch_all(&mut *conn)
        .await?;
        finished.extend(keys);
    }
    Ok(finished)
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn instant(millis: i64, column: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::corrupt(column, format!("instant {millis} out of range")))
}

fn optional_instant(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let value: Option<i64> = row.try_get(column)?;
    value.map(|m| instant(m, column)).transpose()
}

/// A JSON column as `T`; SQL NULL reads as JSON `null` (so `T = Option<_>` reads a nullable
/// column).
fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    serde_json::from_str(text.as_deref().unwrap_or("null"))
        .map_err(|e| StoreError::corrupt(column, e))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt("serialize", e))
}

fn schedule_from_row(row: &SqliteRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        trigger: json(row, "trigger")?,
        target: json(row, "target")?,
        policy: json(row, "policy")?,
        tags: json(row, "tags")?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        next_run_at: optional_instant(row, "next_run_at")?,
        created_at: instant(row.try_get("created_at")?, "created_at")?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let jobstore: String = row.try_get("jobstore")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(RunRecord {
        schedule_id: row.try_get("schedule_id")?,
        scheduled_time: instant(row.try_get("scheduled_time")?, "scheduled_time")?,
        jobstore: serde_json::from_value(serde_json::Value::String(jobstore))
            .map_err(|e| StoreError::corrupt("jobstore", e))?,
        owner: row.try_get("owner")?,
        target: json(row, "target")?,
        policy: json::<Option<_>>(row, "policy")?.unwrap_or_default(),
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("status", format!("unknown status '{status}'")))?,
        detail: row.try_get("detail")?,
        attempts: attempts.max(0) as u32,
        claimed_at: instant(row.try_get("claimed_at")?, "claimed_at")?,
        lease_until: optional_instant(row, "lease_until")?,
        finished_at: optional_instant(row, "finished_at")?,
    })
}

#[async_trait]
impl Schedules for SqliteStore {
    fn jobstore(&self) -> StoreName {
        self.jobstore
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        self.insert_in(&mut tx, schedule).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_many(&self, schedules: &[Schedule]) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        for schedule in schedules {
            // An error returns early and rolls the whole batch back.
            self.insert_in(&mut tx, schedule).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE id = ?1",
            self.table()
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn replace(&self, schedule: &Schedule) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "UPDATE {} SET name = ?2, owner = ?3, trigger = ?4, target = ?5, policy = ?6, \
             tags = ?7, paused = ?8, paused_reason = ?9, next_run_at = ?10, updated_at = ?11, \
             checks_overlap = ?12 WHERE id = ?1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let row = sqlx::query(&sql)
            .bind(&schedule.id)
            .bind(&schedule.name)
            .bind(&schedule.owner)
            .bind(to_json(&schedule.trigger)?)
            .bind(to_json(&schedule.target)?)
            .bind(to_json(&schedule.policy)?)
            .bind(to_json(&schedule.tags)?)
            .bind(schedule.paused)
            .bind(&schedule.paused_reason)
            .bind(schedule.next_run_at.map(millis))
            .bind(millis(Utc::now()))
            .bind(needs_active(schedule))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Schedule>, StoreError> {
        let (order, after, limit) = match &filter.page {
            Some(page) => ("id", page.after_id.clone(), page.limit as i64),
            None => ("seq", None, i64::MAX),
        };
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE (?1 IS NULL OR owner = ?1) \
             AND (?2 IS NULL OR json_extract(target, '$.graph_id') = ?2) \
             AND (?3 OR (paused = 0 AND next_run_at IS NOT NULL)) \
             AND (?4 IS NULL OR json_extract(target, '$.type') = ?4) \
             AND (?5 IS NULL OR paused = ?5) \
             AND (?6 IS NULL OR EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?6)) \
             AND (?7 IS NULL OR id > ?7) ORDER BY {order} LIMIT ?8",
            self.table()
        );
        let rows = sqlx::query(&sql)
            .bind(&filter.owner)
            .bind(&filter.graph_id)
            .bind(filter.include_inactive)
            .bind(&filter.target_type)
            .bind(filter.paused)
            .bind(&filter.tag)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn delete(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE id = ?1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let (_turn, mut tx) = self.begin_write().await?;
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await?;
        if row.is_some() {
            self.unclaim_ahead(&mut tx, id).await?;
        }
        tx.commit().await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        reason: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "UPDATE {} SET paused = ?2, paused_reason = ?5, next_run_at = ?3, updated_at = ?4 \
             WHERE id = ?1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let (_turn, mut tx) = self.begin_write().await?;
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(paused)
            .bind(next_run_at.map(millis))
            .bind(millis(Utc::now()))
            .bind(reason.filter(|_| paused))
            .fetch_optional(&mut *tx)
            .await?;
        if paused && row.is_some() {
            self.unclaim_ahead(&mut tx, id).await?;
        }
        tx.commit().await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", self.table());
        let count: i64 = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        Ok(count as u64)
    }
}

#[async_trait]
impl Claims for SqliteStore {
    async fn wakeup(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT (SELECT next_run_at FROM {0} WHERE paused = 0 AND checks_overlap \
             AND next_run_at <= ?2 ORDER BY next_run_at LIMIT 1), \
             (SELECT next_run_at FROM {0} WHERE paused = 0 AND next_run_at IS NOT NULL \
             AND (NOT checks_overlap OR next_run_at > ?2) ORDER BY next_run_at LIMIT 1), \
             (SELECT min(lease_until) FROM schedule_runs WHERE jobstore = ?1 AND status = 'pending')",
            self.table()
        );
        let (due, claimable, lease): (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(&sql)
            .bind(self.jobstore.as_str())
            .bind(millis(now + ahead))
            .fetch_one(&self.pool)
            .await?;
        let read = |at: Option<i64>| at.map(|m| instant(m, "next_run_at")).transpose();
        Ok(earliest(read(due)?, read(claimable)?, ahead, read(lease)?))
    }

    async fn claim_rows(
        &self,
        at: ClaimAt,
        ahead: TimeDelta,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let now = at.resolve();
        let select = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE paused = 0 AND next_run_at <= ?3 \
             AND (next_run_at <= ?1 OR NOT checks_overlap) ORDER BY next_run_at LIMIT ?2",
            self.table()
        );
        let rows = sqlx::query(&select)
            .bind(millis(now))
            .bind(limit as i64)
            .bind(millis(now + ahead))
            .fetch_all(&mut *tx)
            .await?;
        // A handful of statements per batch, not per schedule: each statement is a round trip
        // to the connection's thread, and this transaction holds the file's write lock.
        let mut parsed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            parsed.push((id, schedule_from_row(row)));
        }
        let checked: Vec<&str> = parsed
            .iter()
            .filter(|(_, schedule)| schedule.as_ref().is_ok_and(needs_active))
            .map(|(id, _)| id.as_str())
            .collect();
        let active = active_of(&mut tx, &checked).await?;
        let mut runs = Vec::new();
        let mut advances = Vec::with_capacity(parsed.len());
        for (id, schedule) in parsed {
            match schedule {
                Ok(schedule) => {
                    let active = active.get(&id).copied().unwrap_or_default();
                    let plan = plan_fire(self.jobstore, &schedule, now, lease, active);
                    runs.extend(plan.runs);
                    advances.push((id, plan.next_run_at.map(millis), plan.parked));
                }
                Err(error) => {
                    let reason = unreadable(&id, &error);
                    advances.push((id, None, Some(reason)));
                }
            }
        }
        let inserted = insert_runs_in(&mut tx, &runs, Some(replica::id())).await?;
        // A parked schedule (a reason given) is paused with the reason.
        let advance = format!(
            "UPDATE {0} SET next_run_at = json_extract(j.value, '$[1]'), updated_at = ?2, \
             paused = (paused OR json_extract(j.value, '$[2]') IS NOT NULL), \
             paused_reason = coalesce(json_extract(j.value, '$[2]'), paused_reason) \
             FROM json_each(?1) AS j WHERE {0}.id = json_extract(j.value, '$[0]')",
            self.table()
        );
        if !advances.is_empty() {
            sqlx::query(&advance)
                .bind(to_json(&advances)?)
                .bind(millis(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let claimed = runs
            .into_iter()
            .filter(|run| inserted.contains(&(run.schedule_id.clone(), millis(run.scheduled_time))))
            .collect();
        Ok(claimed)
    }

    async fn still_pending(
        &self,
        runs: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(&str, i64)> = runs
            .iter()
            .map(|(id, at)| (id.as_str(), millis(*at)))
            .collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.schedule_id, r.scheduled_time FROM json_each(?1) AS k \
             JOIN schedule_runs AS r ON r.schedule_id = json_extract(k.value, '$[0]') \
             AND r.scheduled_time = json_extract(k.value, '$[1]') WHERE r.status = 'pending'",
        )
        .bind(to_json(&keys)?)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, at)| Ok((id, instant(at, "scheduled_time")?)))
            .collect()
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        // A run some engine held before is being delivered again (`recovered`); one no engine
        // has taken yet (by hand, backfilled, promoted) goes for the first time.
        let sql = format!(
            "UPDATE schedule_runs SET lease_until = ?2, recovered = (claimed_by IS NOT NULL), \
             claimed_by = ?5 WHERE rowid IN \
             (SELECT rowid FROM schedule_runs WHERE jobstore = ?1 AND status = 'pending' \
             AND lease_until <= ?3 ORDER BY lease_until LIMIT ?4) RETURNING {RUN_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(self.jobstore.as_str())
            .bind(millis(now + lease))
            .bind(millis(now))
            .bind(limit as i64)
            .bind(replica::id())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn set_leases(
        &self,
        runs: &[(String, DateTime<Utc>)],
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        for (schedule_id, scheduled_time) in runs {
            sqlx::query(
                "UPDATE schedule_runs SET lease_until = ?3 \
                 WHERE schedule_id = ?1 AND scheduled_time = ?2 AND status = 'pending'",
            )
            .bind(schedule_id)
            .bind(millis(*scheduled_time))
            .bind(millis(until))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn finish_runs(&self, outcomes: &[RunOutcome]) -> Result<usize, StoreError> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let (_turn, mut tx) = self.begin_write().await?;
        finish_all_in(&mut tx, &outcomes.iter().collect::<Vec<_>>()).await?;
        let now = Utc::now();
        let mut promoted = 0;
        for outcome in outcomes.iter().filter(|o| o.may_release) {
            promoted += promote(&mut tx, &outcome.schedule_id, now).await?;
        }
        tx.commit().await?;
        Ok(promoted)
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<bool, StoreError> {
        let _turn = self.turn().await;
        let mut conn = self.pool.acquire().await?;
        insert_run_in(&mut conn, run).await
    }

    async fn start_run(
        &self,
        run: &RunRecord,
        overlap: Overlap,
    ) -> Result<Option<RunRecord>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let active = active_in(&mut tx, &run.schedule_id).await?;
        let row = admitted(run.clone(), overlap, active, run.claimed_at);
        let inserted = insert_run_in(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(inserted.then_some(row))
    }

    async fn queue_runs(
        &self,
        runs: &[RunRecord],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let mut written = 0;
        for run in runs {
            if insert_run_in(&mut tx, run).await? {
                written += 1;
            }
        }
        let mut ids: Vec<&str> = runs.iter().map(|r| r.schedule_id.as_str()).collect();
        ids.dedup();
        for id in ids {
            promote(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn annotate(
        &self,
        schedule_id: &str,
        scheduled_time: DateTime<Utc>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        sqlx::query(
            "UPDATE schedule_runs SET detail = ?3 \
             WHERE schedule_id = ?1 AND scheduled_time = ?2 AND status = 'pending'",
        )
        .bind(schedule_id)
        .bind(millis(scheduled_time))
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn runs(
        &self,
        schedule_id: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = ?1 \
             AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR scheduled_time >= ?4) \
             AND (?5 IS NULL OR scheduled_time < ?5) ORDER BY scheduled_time DESC LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(schedule_id)
            .bind(filter.limit as i64)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.since.map(millis))
            .bind(filter.before.map(millis))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let _turn = self.turn().await;
        let done = sqlx::query(
            "DELETE FROM schedule_runs WHERE rowid IN (SELECT rowid FROM schedule_runs \
             WHERE finished_at < ?2 AND jobstore = ?1 AND status NOT IN ('pending', 'buffered') \
             LIMIT ?3)",
        )
        .bind(self.jobstore.as_str())
        .bind(millis(before))
        .bind(limit as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn over_keep(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT r.schedule_id FROM schedule_runs AS r JOIN {} AS s ON s.id = r.schedule_id \
             WHERE r.jobstore = ?1 AND r.status NOT IN ('pending', 'buffered') \
             GROUP BY r.schedule_id HAVING count(*) > ?2 LIMIT ?3",
            self.table()
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(self.jobstore.as_str())
            .bind(keep as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn trim_runs(
        &self,
        schedule_id: &str,
        keep: usize,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let _turn = self.turn().await;
        let done = sqlx::query(
            "DELETE FROM schedule_runs WHERE rowid IN (SELECT rowid FROM schedule_runs \
             WHERE schedule_id = ?1 AND status NOT IN ('pending', 'buffered') \
             AND scheduled_time < (SELECT scheduled_time FROM schedule_runs WHERE schedule_id = ?1 \
             AND status NOT IN ('pending', 'buffered') ORDER BY scheduled_time DESC \
             LIMIT 1 OFFSET ?2) \
             ORDER BY scheduled_time LIMIT ?3)",
        )
        .bind(schedule_id)
        .bind(keep.saturating_sub(1) as i64)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
