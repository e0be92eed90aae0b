//! The PostgreSQL backend. Due rows are claimed with `FOR UPDATE SKIP LOCKED` and the ledger
//! rows and new next run times are written in bulk (`UNNEST`) in the same transaction, so any
//! number of replicas can share one database and each occurrence is claimed once.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

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

/// One jobstore's table in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    jobstore: StoreName,
}

impl PostgresStore {
    /// A store over an already migrated pool (see [`crate::connect`]).
    pub fn new(pool: PgPool, jobstore: StoreName) -> Self {
        PostgresStore { pool, jobstore }
    }

    fn table(&self) -> &'static str {
        self.jobstore.table()
    }

    /// Deletes a schedule's runs claimed ahead of their time and not yet due, so that they do
    /// not run.
    async fn unclaim_ahead(
        &self,
        tx: &mut sqlx::PgConnection,
        schedule_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM schedule_runs WHERE schedule_id = $1 AND jobstore = $2 \
             AND status = 'pending' AND scheduled_time > $3",
        )
        .bind(schedule_id)
        .bind(self.jobstore.as_str())
        .bind(Utc::now())
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Stores a new schedule on `conn`; fails with [`StoreError::Conflict`] when the id exists.
    async fn insert_in(
        &self,
        conn: &mut sqlx::PgConnection,
        schedule: &Schedule,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (id, name, owner, trigger, target, policy, paused, paused_reason, \
             next_run_at, created_at, updated_at, tags, checks_overlap) VALUES ($1, $2, $3, $4, \
             $5, $6, $7, $8, $9, $10, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
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
            .bind(schedule.next_run_at)
            .bind(schedule.created_at)
            .bind(to_json(&schedule.tags)?)
            .bind(needs_active(schedule))
            .execute(conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(schedule.id.clone()));
        }
        Ok(())
    }
}

/// A JSON column as `T`, decoded straight from the column's bytes; SQL NULL reads as JSON
/// `null` (so `T = Option<_>` reads a nullable column). A value that is not a `T` is
/// [`StoreError::Corrupt`], naming the column.
fn json<T: serde::de::DeserializeOwned>(row: &PgRow, column: &str) -> Result<T, StoreError> {
    match row.try_get::<Option<sqlx::types::Json<T>>, _>(column) {
        Ok(Some(sqlx::types::Json(value))) => Ok(value),
        Ok(None) => serde_json::from_value(Value::Null).map_err(|e| StoreError::corrupt(column, e)),
        Err(sqlx::Error::ColumnDecode { source, .. }) => Err(StoreError::corrupt(column, source)),
        Err(error) => Err(error.into()),
    }
}

fn schedule_from_row(row: &PgRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        trigger: json(row, "trigger")?,
        target: json(row, "target")?,
        policy: json(row, "policy")?,
        tags: json(row, "tags")?,
        paused: row.try_get("paused")?,
        paused_reason: row.try_get("paused_reason")?,
        next_run_at: row.try_get("next_run_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn run_from_row(row: &PgRow) -> Result<RunRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let jobstore: String = row.try_get("jobstore")?;
    let attempts: i32 = row.try_get("attempts")?;
    Ok(RunRecord {
        schedule_id: row.try_get("schedule_id")?,
        scheduled_time: row.try_get("scheduled_time")?,
        jobstore: serde_json::from_value(Value::String(jobstore))
            .map_err(|e| StoreError::corrupt("jobstore", e))?,
        owner: row.try_get("owner")?,
        target: json(row, "target")?,
        policy: json::<Option<_>>(row, "policy")?.unwrap_or_default(),
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("status", format!("unknown status '{status}'")))?,
        detail: row.try_get("detail")?,
        attempts: attempts.max(0) as u32,
        claimed_at: row.try_get("claimed_at")?,
        lease_until: row.try_get("lease_until")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::corrupt("serialize", e))
}

#[async_trait]
impl Schedules for PostgresStore {
    fn jobstore(&self) -> StoreName {
        self.jobstore
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.insert_in(&mut conn, schedule).await
    }

    async fn insert_many(&self, schedules: &[Schedule]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Bounded chunks keep each statement's arrays a reasonable size.
        for chunk in schedules.chunks(5000) {
            let done = sqlx::query(&format!(
                "INSERT INTO {} (id, name, owner, trigger, target, policy, paused, paused_reason, \
                 next_run_at, created_at, tags, checks_overlap, updated_at) SELECT u.*, \
                 u.created_at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::jsonb[], \
                 $5::jsonb[], $6::jsonb[], $7::bool[], $8::text[], $9::timestamptz[], \
                 $10::timestamptz[], $11::jsonb[], $12::bool[]) AS u(id, name, owner, trigger, \
                 target, policy, paused, paused_reason, next_run_at, created_at, tags, \
                 checks_overlap) ON CONFLICT (id) DO NOTHING",
                self.table()
            ))
            .bind(chunk.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.owner.clone()).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|s| to_json(&s.trigger))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(
                chunk
                    .iter()
                    .map(|s| to_json(&s.target))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(
                chunk
                    .iter()
                    .map(|s| to_json(&s.policy))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(chunk.iter().map(|s| s.paused).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|s| s.paused_reason.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|s| s.next_run_at).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.created_at).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|s| to_json(&s.tags))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(chunk.iter().map(needs_active).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != chunk.len() as u64 {
                // Rolled back when `tx` drops: all or nothing.
                let conflict = chunk.first().map(|s| s.id.clone()).unwrap_or_default();
                return Err(StoreError::Conflict(format!(
                    "{conflict} (or another id in the batch)"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE id = $1",
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
            "UPDATE {} SET name = $2, owner = $3, trigger = $4, target = $5, policy = $6, \
             tags = $7, paused = $8, paused_reason = $9, next_run_at = $10, updated_at = now(), \
             checks_overlap = $11 WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
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
            .bind(schedule.next_run_at)
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
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE ($1::text IS NULL OR owner = $1) \
             AND ($2::text IS NULL OR target->>'graph_id' = $2) \
             AND ($3 OR (NOT paused AND next_run_at IS NOT NULL)) \
             AND ($4::text IS NULL OR target->>'type' = $4) \
             AND ($5::bool IS NULL OR paused = $5) \
             AND ($6::text IS NULL OR tags ? $6) \
             AND ($7::text IS NULL OR id > $7) ORDER BY {order} LIMIT $8",
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
            "DELETE FROM {} WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let mut tx = self.pool.begin().await?;
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
            "UPDATE {} SET paused = $2, paused_reason = $4, next_run_at = $3, updated_at = now() \
             WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(paused)
            .bind(next_run_at)
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
impl Claims for PostgresStore {
    async fn wakeup(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Both minimums are read off the due index: the first over the few rows due within the
        // horizon, the second from the start of the index, past those rows.
        let sql = format!(
            "SELECT (SELECT min(next_run_at) FROM {0} WHERE NOT paused AND checks_overlap \
             AND next_run_at <= $2), \
             (SELECT min(next_run_at) FROM {0} WHERE NOT paused \
             AND (NOT checks_overlap OR next_run_at > $2)), \
             (SELECT min(lease_until) FROM schedule_runs WHERE jobstore = $1 AND status = 'pending')",
            self.table()
        );
        type Mins = (
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        let (due, claimable, lease): Mins = sqlx::query_as(&sql)
            .bind(self.jobstore.as_str())
            .bind(now + ahead)
            .fetch_one(&self.pool)
            .await?;
        Ok(earliest(due, claimable, ahead, lease))
    }

    async fn claim_rows(
        &self,
        at: ClaimAt,
        ahead: TimeDelta,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = at.resolve();
        // Each row's physical address (`ctid`) comes along: the rows stay locked, so it still
        // finds them when they are updated below, without a lookup by id.
        let select = format!(
            "SELECT ctid::text AS tid, {SCHEDULE_COLUMNS} FROM {} WHERE NOT paused AND next_run_at <= $3 \
             AND (next_run_at <= $1 OR NOT checks_overlap) \
             ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            self.table()
        );
        let rows = sqlx::query(&select)
            .bind(now)
            .bind(limit as i64)
            .bind(now + ahead)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }

        let schedules: Vec<Result<Schedule, StoreError>> =
            rows.iter().map(schedule_from_row).collect();
        let watched: Vec<String> = schedules
            .iter()
            .flatten()
            .filter(|schedule| needs_active(schedule))
            .map(|schedule| schedule.id.clone())
            .collect();
        let active = active_runs(&mut tx, &watched).await?;

        let mut ids = Vec::with_capacity(rows.len());
        let mut tids = Vec::with_capacity(rows.len());
        let mut next_times = Vec::with_capacity(rows.len());
        let mut parked = Vec::with_capacity(rows.len());
        let mut runs = Vec::with_capacity(rows.len());
        for (row, schedule) in rows.iter().zip(schedules) {
            let id: String = row.try_get("id")?;
            match schedule {
                Ok(schedule) => {
                    let active = active.get(&id).copied().unwrap_or_default();
                    let plan = plan_fire(self.jobstore, &schedule, now, lease, active);
                    next_times.push(plan.next_run_at);
                    parked.push(plan.parked);
                    runs.extend(plan.runs);
                }
                Err(error) => {
                    next_times.push(None);
                    parked.push(Some(unreadable(&id, &error)));
                }
            }
            ids.push(id);
            tids.push(row.try_get::<String, _>("tid")?);
        }

        // One statement: the schedules move on to their next runs (a parked one, `u.parked`
        // set, is paused with the reason), and each run's ledger row copies its owner, target
        // and policy from the schedule row it was planned from, so none of them goes over the
        // wire again nor is parsed twice.
        let inserted: Vec<(String, DateTime<Utc>)> = sqlx::query_as(&format!(
            "WITH planned AS (UPDATE {} AS s SET next_run_at = u.next_run_at, updated_at = $3, \
             paused = (s.paused OR u.parked IS NOT NULL), \
             paused_reason = coalesce(u.parked, s.paused_reason) \
             FROM UNNEST($1::text[], $14::text[]::tid[], $2::timestamptz[], $4::text[]) \
             AS u(id, tid, next_run_at, parked) \
             WHERE s.ctid = ANY($14::text[]::tid[]) AND s.ctid = u.tid AND s.id = u.id \
             RETURNING s.id, s.owner, s.target, s.policy) \
             INSERT INTO schedule_runs ({RUN_COLUMNS}, claimed_by) \
             SELECT r.schedule_id, r.scheduled_time, $5, p.owner, p.target, r.status, r.detail, \
             r.attempts, r.claimed_at, r.lease_until, r.finished_at, p.policy, $15 \
             FROM UNNEST($6::text[], $7::timestamptz[], $8::text[], $9::text[], \
             $10::int4[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[]) \
             AS r(schedule_id, scheduled_time, status, detail, attempts, claimed_at, \
             lease_until, finished_at) \
             JOIN planned AS p ON p.id = r.schedule_id \
             ON CONFLICT (schedule_id, scheduled_time) DO NOTHING \
             RETURNING schedule_id, scheduled_time",
            self.table()
        ))
        .bind(&ids)
        .bind(&next_times)
        .bind(now)
        .bind(&parked)
        .bind(self.jobstore.as_str())
        .bind(
            runs.iter()
                .map(|r| r.schedule_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|r| r.scheduled_time).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.detail.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.attempts as i32).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.claimed_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.lease_until).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.finished_at).collect::<Vec<_>>())
        .bind(&tids)
        .bind(replica::id())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let inserted: std::collections::HashSet<_> = inserted.into_iter().collect();
        Ok(runs
            .into_iter()
            .filter(|r| inserted.contains(&(r.schedule_id.clone(), r.scheduled_time)))
            .collect())
    }

    async fn still_pending(
        &self,
        runs: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, times): (Vec<String>, Vec<DateTime<Utc>>) = runs.iter().cloned().unzip();
        Ok(sqlx::query_as(
            "SELECT r.schedule_id, r.scheduled_time FROM schedule_runs AS r \
             JOIN UNNEST($1::text[], $2::timestamptz[]) AS u(schedule_id, scheduled_time) \
             ON r.schedule_id = u.schedule_id AND r.scheduled_time = u.scheduled_time \
             WHERE r.status = 'pending'",
        )
        .bind(ids)
        .bind(times)
        .fetch_all(&self.pool)
        .await?)
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
            "UPDATE schedule_runs SET lease_until = $2, recovered = (claimed_by IS NOT NULL), \
             claimed_by = $5 WHERE (schedule_id, scheduled_time) IN \
             (SELECT schedule_id, scheduled_time FROM schedule_runs WHERE jobstore = $1 \
             AND status = 'pending' AND lease_until <= $3 ORDER BY lease_until LIMIT $4 \
             FOR UPDATE SKIP LOCKED) RETURNING {RUN_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(self.jobstore.as_str())
            .bind(now + lease)
            .bind(now)
            .bind(limit as i64)
            .bind(replica::id())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn take_over(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        // Pending runs whose holder no longer holds its advisory lock: its session ended (the
        // process died, or lost its database connection), so nothing renews their leases.
        // The live replicas are read once from `pg_locks`; the pending rows come from their
        // partial index.
        let sql = format!(
            "WITH live AS (SELECT l.objid FROM pg_locks AS l WHERE l.locktype = 'advisory' \
             AND l.granted AND l.objsubid = 2 AND l.classid = ({LOCK_KEY})::oid \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) \
             UPDATE schedule_runs SET lease_until = $2, recovered = TRUE, claimed_by = $4 \
             WHERE (schedule_id, scheduled_time) IN \
             (SELECT r.schedule_id, r.scheduled_time FROM schedule_runs AS r \
             WHERE r.jobstore = $1 AND r.status = 'pending' AND r.claimed_by IS NOT NULL \
             AND r.claimed_by <> $4 AND hashtext(r.claimed_by)::oid NOT IN (SELECT objid FROM live) \
             ORDER BY r.lease_until LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {RUN_COLUMNS}",
            LOCK_KEY = replica::LOCK_KEY
        );
        let rows = sqlx::query(&sql)
            .bind(self.jobstore.as_str())
            .bind(now + lease)
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
        // Rows another transaction holds are being finished: skipped, so that a renewal
        // never waits on (or deadlocks with) the recording of outcomes.
        sqlx::query(
            "UPDATE schedule_runs AS r SET lease_until = $3 \
             WHERE (r.schedule_id, r.scheduled_time) IN (SELECT s.schedule_id, s.scheduled_time \
             FROM schedule_runs AS s JOIN UNNEST($1::text[], $2::timestamptz[]) \
             AS u(schedule_id, scheduled_time) \
             ON s.schedule_id = u.schedule_id AND s.scheduled_time = u.scheduled_time \
             WHERE s.status = 'pending' FOR UPDATE OF s SKIP LOCKED)",
        )
        .bind(runs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|(_, at)| *at).collect::<Vec<_>>())
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Ledger for PostgresStore {
    async fn finish_runs(&self, outcomes: &[RunOutcome]) -> Result<usize, StoreError> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let releasing: Vec<String> = outcomes
            .iter()
            .filter(|o| o.may_release)
            .map(|o| o.schedule_id.clone())
            .collect();
        // One statement, and one transaction with the release of waiting runs only when some
        // of these may have runs waiting on them.
        let update = sqlx::query(
            "UPDATE schedule_runs AS r SET status = u.status, detail = u.detail, \
             attempts = u.attempts, finished_at = u.finished_at, lease_until = NULL \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::int4[], \
             $6::timestamptz[]) AS u(schedule_id, scheduled_time, status, detail, attempts, finished_at) \
             WHERE r.schedule_id = u.schedule_id AND r.scheduled_time = u.scheduled_time \
             AND r.status = 'pending'",
        )
        .bind(outcomes.iter().map(|o| o.schedule_id.clone()).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.scheduled_time).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.detail.clone()).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.attempts as i32).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.finished_at).collect::<Vec<_>>());
        if releasing.is_empty() {
            update.execute(&self.pool).await?;
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        update.execute(&mut *tx).await?;
        let promoted = promote(&mut tx, &releasing, Utc::now()).await?;
        tx.commit().await?;
        Ok(promoted)
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_run_in(&mut conn, run).await
    }

    async fn start_run(
        &self,
        run: &RunRecord,
        overlap: Overlap,
    ) -> Result<Option<RunRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Holding the schedule's row orders this with the claims of its occurrences.
        let lock = format!("SELECT 1 FROM {} WHERE id = $1 FOR UPDATE", self.table());
        sqlx::query(&lock)
            .bind(&run.schedule_id)
            .execute(&mut *tx)
            .await?;
        let ids = [run.schedule_id.clone()];
        let active = active_runs(&mut tx, &ids).await?;
        let active = active.get(&run.schedule_id).copied().unwrap_or_default();
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
        let mut tx = self.pool.begin().await?;
        let mut written = 0;
        for run in runs {
            if insert_run_in(&mut tx, run).await? {
                written += 1;
            }
        }
        let mut ids: Vec<String> = runs.iter().map(|r| r.schedule_id.clone()).collect();
        ids.dedup();
        promote(&mut tx, &ids, now).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn annotate(
        &self,
        schedule_id: &str,
        scheduled_time: DateTime<Utc>,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE schedule_runs SET detail = $3 \
             WHERE schedule_id = $1 AND scheduled_time = $2 AND status = 'pending'",
        )
        .bind(schedule_id)
        .bind(scheduled_time)
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
            "SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = $1 \
             AND ($3::text IS NULL OR status = $3) \
             AND ($4::timestamptz IS NULL OR scheduled_time >= $4) \
             AND ($5::timestamptz IS NULL OR scheduled_time < $5) \
             ORDER BY scheduled_time DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(schedule_id)
            .bind(filter.limit as i64)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.since)
            .bind(filter.before)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }
}

#[async_trait]
impl Retention for PostgresStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        // Rows another transaction holds are skipped, never waited for.
        let done = sqlx::query(
            "DELETE FROM schedule_runs WHERE ctid IN (SELECT ctid FROM schedule_runs \
             WHERE finished_at < $2 AND jobstore = $1 AND status NOT IN ('pending', 'buffered') \
             LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(self.jobstore.as_str())
        .bind(before)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn over_keep(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT r.schedule_id FROM schedule_runs AS r JOIN {} AS s ON s.id = r.schedule_id \
             WHERE r.jobstore = $1 AND r.status NOT IN ('pending', 'buffered') \
             GROUP BY r.schedule_id HAVING count(*) > $2 LIMIT $3",
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
        let done = sqlx::query(
            "DELETE FROM schedule_runs WHERE ctid IN (SELECT ctid FROM schedule_runs \
             WHERE schedule_id = $1 AND status NOT IN ('pending', 'buffered') \
             AND scheduled_time < (SELECT scheduled_time FROM schedule_runs WHERE schedule_id = $1 \
             AND status NOT IN ('pending', 'buffered') ORDER BY scheduled_time DESC \
             OFFSET $2 LIMIT 1) \
             ORDER BY scheduled_time LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(schedule_id)
        .bind(keep.saturating_sub(1) as i64)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Writes one ledger row; false when the occurrence is already there.
async fn insert_run_in(conn: &mut sqlx::PgConnection, run: &RunRecord) -> Result<bool, StoreError> {
    let done = sqlx::query(&format!(
        "INSERT INTO schedule_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12) ON CONFLICT (schedule_id, scheduled_time) DO NOTHING"
    ))
    .bind(&run.schedule_id)
    .bind(run.scheduled_time)
    .bind(run.jobstore.as_str())
    .bind(&run.owner)
    .bind(to_json(&run.target)?)
    .bind(run.status.as_str())
    .bind(&run.detail)
    .bind(run.attempts as i32)
    .bind(run.claimed_at)
    .bind(run.lease_until)
    .bind(run.finished_at)
    .bind(to_json(&run.policy)?)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The runs in progress and waiting of each schedule, by id.
async fn active_runs(
    conn: &mut sqlx::PgConnection,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Active>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT schedule_id, count(*) FILTER (WHERE status = 'pending'), \
         count(*) FILTER (WHERE status = 'pending' AND recovered), \
         count(*) FILTER (WHERE status = 'buffered') FROM schedule_runs \
         WHERE schedule_id = ANY($1) AND status IN ('pending', 'buffered') GROUP BY schedule_id",
    )
    .bind(ids)
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

/// Makes the oldest buffered run of each schedule with none in progress pending, with an
/// expired lease so that an engine dispatches it at once.
async fn promote(
    conn: &mut sqlx::PgConnection,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let done = sqlx::query(
        "WITH next AS (SELECT b.schedule_id, min(b.scheduled_time) AS scheduled_time \
         FROM schedule_runs AS b WHERE b.status = 'buffered' AND b.schedule_id = ANY($1) \
         AND NOT EXISTS (SELECT 1 FROM schedule_runs AS p WHERE p.schedule_id = b.schedule_id \
         AND p.status = 'pending') GROUP BY b.schedule_id) \
         UPDATE schedule_runs AS r SET status = 'pending', lease_until = $2, claimed_by = NULL, \
         recovered = FALSE FROM next \
         WHERE r.schedule_id = next.schedule_id AND r.scheduled_time = next.scheduled_time \
         AND r.status = 'buffered'",
    )
    .bind(ids)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() as usize)
}
