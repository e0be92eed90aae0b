//! Claiming what is due: the claim transaction, leases and their renewal, and taking over the
//! runs of a holder that is gone.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashSet;

use service_kit::on_db;
use service_kit::sql::Conn;

use super::{
    At, Batch, Kind, RUN_COLUMNS, SCHEDULE_COLUMNS, SqlStore, get, keys, run_from_row,
    schedule_from_row,
};
use crate::model::{RunRecord, Schedule};
use crate::plan::{earliest, needs_active, plan_fire, unreadable};
use crate::replica;
use crate::store::{ClaimAt, Claims, StoreError};

/// The key of a ledger row in a batch.
pub(super) const RUN_KEYS: &[(&str, Kind)] = &[("key_id", Kind::Text), ("key_time", Kind::Instant)];

/// The columns of a batch of planned runs: the rest of each ledger row (its owner, target
/// and policy) is copied from the schedule row it was planned from, so none of them goes over
/// the wire again.
const PLANNED: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("key_time", Kind::Instant),
    ("status", Kind::Text),
    ("detail", Kind::Text),
    ("attempts", Kind::Int),
    ("claimed_at", Kind::Instant),
    ("lease_until", Kind::Instant),
    ("finished_at", Kind::Instant),
];

/// The columns of a batch of schedules moving on: the next run time, and the reason when a
/// schedule is parked.
const ADVANCES: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("addr", Kind::Text),
    ("next_at", Kind::Instant),
    ("parked", Kind::Text),
];

/// A schedule a claim holds: its id, the address of its row, and the schedule as it reads.
struct Due {
    id: String,
    addr: String,
    schedule: Result<Schedule, StoreError>,
}

/// What a claim planned for the schedules it holds: their ledger rows, and how each moves on.
struct Planned {
    runs: Vec<RunRecord>,
    /// A batch of [`ADVANCES`].
    advances: Batch,
}

impl SqlStore {
    /// A batch of the keys of ledger rows, for [`RUN_KEYS`].
    pub(super) fn run_keys(runs: &[(String, DateTime<Utc>)]) -> Batch {
        let mut batch = Batch::new(RUN_KEYS);
        for (id, at) in runs {
            batch.push([id.as_str().into(), (*at).into()]);
        }
        batch
    }

    /// The query of [`SqlStore::due`]: `$1` now, `$2` the limit, `$3` now and the lookahead.
    /// It reads the due index (the partial index of active schedules by next run).
    pub(super) fn due_sql(&self) -> String {
        let d = self.dialect();
        format!(
            "SELECT {} AS addr, {SCHEDULE_COLUMNS} FROM {} AS s WHERE {} AND next_run_at <= $3 \
             AND (next_run_at <= $1 OR NOT checks_overlap) ORDER BY next_run_at LIMIT $2{}",
            d.address_text("s"),
            self.table(),
            d.is_false("paused"),
            d.skip_locked(),
        )
    }

    /// The query of [`Claims::wakeup`]: `$1` the jobstore, `$2` now and the lookahead. Each
    /// read off the due index: the first over the few rows due within the horizon, the second
    /// from the start of the index, past those rows.
    pub(super) fn wakeup_sql(&self) -> String {
        format!(
            "SELECT (SELECT next_run_at FROM {0} WHERE {1} AND checks_overlap \
             AND next_run_at <= $2 ORDER BY next_run_at LIMIT 1), \
             (SELECT next_run_at FROM {0} WHERE {1} AND next_run_at IS NOT NULL \
             AND (NOT checks_overlap OR next_run_at > $2) ORDER BY next_run_at LIMIT 1), \
             (SELECT min(lease_until) FROM schedule_runs WHERE jobstore = $1 AND status = 'pending')",
            self.table(),
            self.dialect().is_false("paused"),
        )
    }

    /// The schedules due by `now` (and those due by `now + ahead` that may be claimed ahead),
    /// earliest first, each with its id (read apart, so that a row that does not read as a
    /// schedule is still known), held by this transaction.
    async fn due(
        &self,
        conn: Conn<'_>,
        now: DateTime<Utc>,
        ahead: TimeDelta,
        limit: usize,
    ) -> Result<Vec<Due>, StoreError> {
        let select = self.due_sql();
        let rows = on_db!(conn, rows, &select, At(now), limit as i64, At(now + ahead));
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            due.push(Due {
                id: get(row, "id")?,
                addr: get(row, "addr")?,
                schedule: schedule_from_row(row),
            });
        }
        Ok(due)
    }

    /// Plans the fire of each due schedule ([`plan_fire`]) with its runs in progress read in
    /// one statement; a schedule that does not read is parked with the reason.
    async fn plan(
        &self,
        conn: Conn<'_>,
        due: Vec<Due>,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<Planned, StoreError> {
        let checked: Vec<&str> = due
            .iter()
            .filter(|due| due.schedule.as_ref().is_ok_and(needs_active))
            .map(|due| due.id.as_str())
            .collect();
        let active = self.active_of(conn, &checked).await?;
        let mut planned = Planned {
            runs: Vec::new(),
            advances: Batch::new(ADVANCES),
        };
        for Due { id, addr, schedule } in due {
            let (next_at, parked) = match schedule {
                Ok(schedule) => {
                    let active = active.get(&id).copied().unwrap_or_default();
                    let plan = plan_fire(self.jobstore, &schedule, now, lease, active);
                    planned.runs.extend(plan.runs);
                    (plan.next_run_at, plan.parked)
                }
                Err(error) => (None, Some(unreadable(&id, &error))),
            };
            planned.advances.push([
                id.as_str().into(),
                addr.as_str().into(),
                next_at.into(),
                parked.into(),
            ]);
        }
        Ok(planned)
    }

    /// Writes what was planned: the ledger rows, each copying its owner, target and policy from
    /// the schedule row it was planned from, and the schedules' next runs (a parked one, a
    /// reason given, paused with the reason). Returns the keys of the rows written: an
    /// occurrence already in the ledger is not written twice.
    async fn write_planned(
        &self,
        mut conn: Conn<'_>,
        runs: &[RunRecord],
        advances: Batch,
        now: DateTime<Utc>,
    ) -> Result<HashSet<(String, DateTime<Utc>)>, StoreError> {
        let d = self.dialect();
        let mut batch = Batch::new(PLANNED);
        for r in runs {
            batch.push([
                r.schedule_id.as_str().into(),
                r.scheduled_time.into(),
                r.status.as_str().into(),
                r.detail.clone().into(),
                i64::from(r.attempts).into(),
                r.claimed_at.into(),
                r.lease_until.into(),
                r.finished_at.into(),
            ]);
        }
        if d.chains_writes() {
            return self.write_chained(conn, batch, advances, now).await;
        }
        let insert = format!(
            "INSERT INTO schedule_runs ({RUN_COLUMNS}, claimed_by) \
             SELECT u.key_id, u.key_time, $1, s.owner, s.target, u.status, u.detail, \
             u.attempts, u.claimed_at, u.lease_until, u.finished_at, s.policy, $2 \
             FROM {} JOIN {} AS s ON s.id = u.key_id WHERE true \
             ON CONFLICT (schedule_id, scheduled_time) DO NOTHING \
             RETURNING schedule_id, scheduled_time",
            d.rows(3, PLANNED),
            self.table(),
        );
        let inserted: Vec<(String, At)> = on_db!(
            conn.reborrow(),
            fetch_all(String, At),
            &insert,
            self.jobstore.as_str(),
            replica::id();
            batch
        );
        let advance = format!(
            "UPDATE {0} SET next_run_at = u.next_at, updated_at = $1, \
             paused = (paused OR u.parked IS NOT NULL), \
             paused_reason = coalesce(u.parked, paused_reason) \
             FROM {1} WHERE {0}.id = u.key_id",
            self.table(),
            d.rows(2, ADVANCES),
        );
        on_db!(
            conn.reborrow(),
            execute,
            &advance,
            At(now);
            advances
        );
        Ok(keys(inserted))
    }

    /// [`SqlStore::write_planned`] in one statement, where a write can feed another: the
    /// schedules move on, found by the address of their rows (held since the claim read them),
    /// and the rows they return are what the ledger rows copy.
    async fn write_chained(
        &self,
        conn: Conn<'_>,
        planned: Batch,
        advances: Batch,
        now: DateTime<Utc>,
    ) -> Result<HashSet<(String, DateTime<Utc>)>, StoreError> {
        let d = self.dialect();
        // $1 to $3 the values; then the columns of the advances, then those of the runs.
        let first_advance = 4;
        let first_run = first_advance + ADVANCES.len();
        let sql = format!(
            "WITH moved AS (UPDATE {} AS s SET next_run_at = a.next_at, updated_at = $1, \
             paused = (s.paused OR a.parked IS NOT NULL), \
             paused_reason = coalesce(a.parked, s.paused_reason) \
             FROM {} WHERE {} AND s.id = a.key_id RETURNING s.id, s.owner, s.target, s.policy) \
             INSERT INTO schedule_runs ({RUN_COLUMNS}, claimed_by) \
             SELECT u.key_id, u.key_time, $2, m.owner, m.target, u.status, u.detail, \
             u.attempts, u.claimed_at, u.lease_until, u.finished_at, m.policy, $3 \
             FROM {} JOIN moved AS m ON m.id = u.key_id WHERE true \
             ON CONFLICT (schedule_id, scheduled_time) DO NOTHING \
             RETURNING schedule_id, scheduled_time",
            self.table(),
            d.rows_as(first_advance, ADVANCES, "a"),
            d.at_address("s", "a.addr", &format!("${}", first_advance + 1)),
            d.rows(first_run, PLANNED),
        );
        let inserted: Vec<(String, At)> = on_db!(
            conn,
            fetch_all(String, At),
            &sql,
            At(now),
            self.jobstore.as_str(),
            replica::id();
            (advances, planned)
        );
        Ok(keys(inserted))
    }
}

#[async_trait]
impl Claims for SqlStore {
    async fn wakeup(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = self.wakeup_sql();
        let mut conn = self.reader().await?;
        let (due, claimable, lease): (Option<At>, Option<At>, Option<At>) = on_db!(
            conn.conn(),
            fetch_one(Option<At>, Option<At>, Option<At>),
            &sql,
            self.jobstore.as_str(),
            At(now + ahead),
        );
        let read = |at: Option<At>| at.map(|at| at.0);
        Ok(earliest(read(due), read(claimable), ahead, read(lease)))
    }

    async fn claim_rows(
        &self,
        at: ClaimAt,
        ahead: TimeDelta,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut tx = self.write().await?;
        let now = at.resolve();
        let due = self.due(tx.conn(), now, ahead, limit).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        // A handful of statements per batch, not per schedule: each statement is a round trip,
        // and this transaction holds the due rows (the file's write lock on SQLite).
        let Planned { runs, advances } = self.plan(tx.conn(), due, now, lease).await?;
        let inserted = self.write_planned(tx.conn(), &runs, advances, now).await?;
        tx.commit().await?;
        let d = self.dialect();
        Ok(runs
            .into_iter()
            .filter(|r| inserted.contains(&(r.schedule_id.clone(), d.stored(r.scheduled_time))))
            .collect())
    }

    async fn still_pending(
        &self,
        runs: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT r.schedule_id, r.scheduled_time FROM {} JOIN schedule_runs AS r \
             ON r.schedule_id = u.key_id AND r.scheduled_time = u.key_time \
             WHERE r.status = 'pending'",
            self.dialect().rows(1, RUN_KEYS)
        );
        let batch = Self::run_keys(runs);
        let mut conn = self.reader().await?;
        let pending: Vec<(String, At)> = on_db!(conn.conn(), fetch_all(String, At), &sql; batch);
        Ok(pending.into_iter().map(|(id, at)| (id, at.0)).collect())
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
             AND status = 'pending' AND lease_until <= $3 ORDER BY lease_until LIMIT $4{}) \
             RETURNING {RUN_COLUMNS}",
            self.dialect().skip_locked()
        );
        let mut conn = self.writer().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            self.jobstore.as_str(),
            At(now + lease),
            At(now),
            limit as i64,
            replica::id(),
        );
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
        // Only PostgreSQL can tell: a SQLite file serves one process.
        let Some(live) = self.dialect().live_replicas() else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "WITH live AS ({live}) \
             UPDATE schedule_runs SET lease_until = $2, recovered = TRUE, claimed_by = $4 \
             WHERE (schedule_id, scheduled_time) IN \
             (SELECT r.schedule_id, r.scheduled_time FROM schedule_runs AS r \
             WHERE r.jobstore = $1 AND r.status = 'pending' AND r.claimed_by IS NOT NULL \
             AND r.claimed_by <> $4 AND hashtext(r.claimed_by)::oid NOT IN (SELECT objid FROM live) \
             ORDER BY r.lease_until LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {RUN_COLUMNS}"
        );
        let mut conn = self.writer().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            self.jobstore.as_str(),
            At(now + lease),
            limit as i64,
            replica::id(),
        );
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
        let d = self.dialect();
        let sql = format!(
            "UPDATE schedule_runs SET lease_until = $1 \
             WHERE (schedule_id, scheduled_time) IN (SELECT s.schedule_id, s.scheduled_time \
             FROM schedule_runs AS s JOIN {} \
             ON s.schedule_id = u.key_id AND s.scheduled_time = u.key_time \
             WHERE s.status = 'pending'{})",
            d.rows(2, RUN_KEYS),
            d.skip_locked_of("s"),
        );
        let batch = Self::run_keys(runs);
        let mut conn = self.writer().await?;
        on_db!(conn.conn(), execute, &sql, At(until); batch);
        Ok(())
    }
}
