//! The run ledger: recording outcomes, runs written outside a claim, and the runs of a
//! schedule waiting for the one in progress.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_kit::on_db;
use service_kit::sql::Conn;

use super::{
    At, Batch, Kind, List, RUN_COLUMNS, SqlStore, keys, push_given, run_from_row, to_json,
};
use crate::alerts::Watched;
use crate::model::{Overlap, RunFilter, RunNote, RunOutcome, RunPlacement, RunRecord, RunStatus};
use crate::plan::{Active, admitted};
use crate::store::{Ledger, StoreError};

/// The columns of a batch of whole ledger rows.
const RUNS: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("key_time", Kind::Instant),
    ("jobstore", Kind::Text),
    ("owner", Kind::Text),
    ("target", Kind::Json),
    ("status", Kind::Text),
    ("detail", Kind::Text),
    ("attempts", Kind::Int),
    ("claimed_at", Kind::Instant),
    ("lease_until", Kind::Instant),
    ("finished_at", Kind::Instant),
    ("policy", Kind::Json),
];

/// The columns of a batch of outcomes.
const OUTCOMES: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("key_time", Kind::Instant),
    ("status", Kind::Text),
    ("detail", Kind::Text),
    ("attempts", Kind::Int),
    ("finished_at", Kind::Instant),
];

/// The columns of a batch of notes on pending runs.
const NOTES: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("key_time", Kind::Instant),
    ("detail", Kind::Text),
];

/// The columns of a batch of placements: the row's key, the placement it must have, and the
/// placed target with its placement and detail.
const PLACEMENTS: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("key_time", Kind::Instant),
    ("expected", Kind::Text),
    ("target", Kind::Json),
    ("placement", Kind::Text),
    ("detail", Kind::Text),
];

/// The keys of ledger rows.
type Keys = HashSet<(String, DateTime<Utc>)>;

impl SqlStore {
    /// Writes the runs that are not in the ledger yet, as no engine's (an engine takes them
    /// over by their leases); returns the keys of those written.
    async fn insert_runs_in(
        &self,
        mut conn: Conn<'_>,
        runs: &[RunRecord],
    ) -> Result<Keys, StoreError> {
        let d = self.dialect();
        let sql = format!(
            "INSERT INTO schedule_runs ({RUN_COLUMNS}) SELECT u.key_id, u.key_time, u.jobstore, \
             u.owner, u.target, u.status, u.detail, u.attempts, u.claimed_at, u.lease_until, \
             u.finished_at, u.policy FROM {} WHERE true \
             ON CONFLICT (schedule_id, scheduled_time) DO NOTHING \
             RETURNING schedule_id, scheduled_time",
            d.rows(1, RUNS)
        );
        let mut inserted = Keys::with_capacity(runs.len());
        for chunk in runs.chunks(1000) {
            let mut batch = Batch::new(RUNS);
            for run in chunk {
                batch.push([
                    run.schedule_id.as_str().into(),
                    run.scheduled_time.into(),
                    run.jobstore.as_str().into(),
                    run.owner.as_str().into(),
                    to_json(&run.target)?.into(),
                    run.status.as_str().into(),
                    run.detail.clone().into(),
                    i64::from(run.attempts).into(),
                    run.claimed_at.into(),
                    run.lease_until.into(),
                    run.finished_at.into(),
                    to_json(&run.policy)?.into(),
                ]);
            }
            let written: Vec<(String, At)> =
                on_db!(conn.reborrow(), fetch_all(String, At), &sql; batch);
            inserted.extend(keys(written));
        }
        Ok(inserted)
    }

    /// Ends pending ledger rows as the outcomes say, in bounded batches; returns the keys of
    /// the rows that were pending (the others are left as they are).
    pub(super) async fn finish_in(
        &self,
        mut conn: Conn<'_>,
        outcomes: &[&RunOutcome],
    ) -> Result<Keys, StoreError> {
        let d = self.dialect();
        let sql = format!(
            "UPDATE schedule_runs AS r SET status = u.status, detail = u.detail, \
             attempts = u.attempts, finished_at = u.finished_at, lease_until = NULL \
             FROM {} WHERE r.schedule_id = u.key_id AND r.scheduled_time = u.key_time \
             AND r.status = 'pending' RETURNING schedule_id, scheduled_time",
            d.rows(1, OUTCOMES)
        );
        let mut finished = Keys::with_capacity(outcomes.len());
        for chunk in outcomes.chunks(1000) {
            let mut batch = Batch::new(OUTCOMES);
            for o in chunk {
                batch.push([
                    o.schedule_id.as_str().into(),
                    o.scheduled_time.into(),
                    o.status.as_str().into(),
                    o.detail.clone().into(),
                    i64::from(o.attempts).into(),
                    o.finished_at.into(),
                ]);
            }
            let ended: Vec<(String, At)> =
                on_db!(conn.reborrow(), fetch_all(String, At), &sql; batch);
            finished.extend(keys(ended));
        }
        Ok(finished)
    }

    /// Whether the outcome's row was among those [`SqlStore::finish_in`] ended.
    pub(super) fn was_finished(&self, finished: &Keys, outcome: &RunOutcome) -> bool {
        let at = self.dialect().stored(outcome.scheduled_time);
        finished.contains(&(outcome.schedule_id.clone(), at))
    }

    /// The runs in progress and waiting of each of these schedules, in one statement.
    pub(super) async fn active_of(
        &self,
        conn: Conn<'_>,
        schedule_ids: &[&str],
    ) -> Result<HashMap<String, Active>, StoreError> {
        if schedule_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT schedule_id, count(*) FILTER (WHERE status = 'pending'), \
             count(*) FILTER (WHERE status = 'pending' AND recovered), \
             count(*) FILTER (WHERE status = 'buffered') FROM schedule_runs \
             WHERE status IN ('pending', 'buffered') AND {} GROUP BY schedule_id",
            self.dialect().in_list("schedule_id", "$1")
        );
        let rows: Vec<(String, i64, i64, i64)> = on_db!(
            conn,
            fetch_all(String, i64, i64, i64),
            &sql,
            List::of(schedule_ids.iter().copied())
        );
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

    /// Makes the oldest buffered run of each of these schedules that has none in progress
    /// pending, with an expired lease so that an engine dispatches it at once; returns how
    /// many.
    async fn promote(
        &self,
        conn: Conn<'_>,
        schedule_ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        if schedule_ids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE schedule_runs SET status = 'pending', lease_until = $2, claimed_by = NULL, \
             recovered = FALSE WHERE status = 'buffered' AND {} \
             AND scheduled_time = (SELECT min(b.scheduled_time) FROM schedule_runs AS b \
             WHERE b.schedule_id = schedule_runs.schedule_id AND b.status = 'buffered') \
             AND NOT EXISTS (SELECT 1 FROM schedule_runs AS p \
             WHERE p.schedule_id = schedule_runs.schedule_id AND p.status = 'pending')",
            self.dialect().in_list("schedule_id", "$1")
        );
        let promoted = on_db!(
            conn,
            execute,
            &sql,
            List::of(schedule_ids.iter().copied()),
            At(now)
        );
        Ok(promoted as usize)
    }
}

#[async_trait]
impl Ledger for SqlStore {
    async fn finish_runs(&self, outcomes: &[RunOutcome]) -> Result<usize, StoreError> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let outcomes: Vec<&RunOutcome> = outcomes.iter().collect();
        let releasing: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.may_release)
            .map(|o| o.schedule_id.as_str())
            .collect();
        // One transaction with the release of waiting runs only when some of these may have
        // runs waiting on them.
        if releasing.is_empty() {
            let mut conn = self.writer().await?;
            self.finish_in(conn.conn(), &outcomes).await?;
            return Ok(0);
        }
        let mut tx = self.write().await?;
        self.finish_in(tx.conn(), &outcomes).await?;
        let promoted = self.promote(tx.conn(), &releasing, Utc::now()).await?;
        tx.commit().await?;
        Ok(promoted)
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<bool, StoreError> {
        let mut conn = self.writer().await?;
        let inserted = self
            .insert_runs_in(conn.conn(), std::slice::from_ref(run))
            .await?;
        Ok(!inserted.is_empty())
    }

    async fn start_run(
        &self,
        run: &RunRecord,
        overlap: Overlap,
    ) -> Result<Option<RunRecord>, StoreError> {
        let d = self.dialect();
        let mut tx = self.write().await?;
        // Holding the schedule's row orders this with the claims of its occurrences.
        let hold = format!(
            "SELECT id FROM {} AS s WHERE id = $1{}",
            self.table(),
            d.hold_of("s")
        );
        on_db!(tx.conn(), rows, &hold, &run.schedule_id);
        let active = self.active_of(tx.conn(), &[&run.schedule_id]).await?;
        let active = active.get(&run.schedule_id).copied().unwrap_or_default();
        let row = admitted(run.clone(), overlap, active, run.claimed_at);
        let inserted = self
            .insert_runs_in(tx.conn(), std::slice::from_ref(&row))
            .await?;
        tx.commit().await?;
        Ok((!inserted.is_empty()).then_some(row))
    }

    async fn queue_runs(
        &self,
        runs: &[RunRecord],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.write().await?;
        let written = self.insert_runs_in(tx.conn(), runs).await?;
        let mut ids: Vec<&str> = runs.iter().map(|r| r.schedule_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        self.promote(tx.conn(), &ids, now).await?;
        tx.commit().await?;
        Ok(written.len())
    }

    async fn annotate(&self, notes: &[RunNote]) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE schedule_runs AS r SET detail = u.detail FROM {} \
             WHERE r.schedule_id = u.key_id AND r.scheduled_time = u.key_time \
             AND r.status = 'pending'",
            self.dialect().rows(1, NOTES)
        );
        let mut conn = self.writer().await?;
        for chunk in notes.chunks(1000) {
            let mut batch = Batch::new(NOTES);
            for note in chunk {
                batch.push([
                    note.schedule_id.as_str().into(),
                    note.scheduled_time.into(),
                    note.detail.as_str().into(),
                ]);
            }
            on_db!(conn.conn(), execute, &sql; batch);
        }
        Ok(())
    }

    async fn place(&self, placements: &[RunPlacement]) -> Result<Vec<bool>, StoreError> {
        let sql = format!(
            "UPDATE schedule_runs AS r SET target = u.target, placement = u.placement, \
             detail = u.detail FROM {} \
             WHERE r.schedule_id = u.key_id AND r.scheduled_time = u.key_time \
             AND r.status = 'pending' AND coalesce(r.placement, '') = u.expected \
             RETURNING schedule_id, scheduled_time",
            self.dialect().rows(1, PLACEMENTS)
        );
        let mut placed = Keys::with_capacity(placements.len());
        let mut conn = self.writer().await?;
        for chunk in placements.chunks(1000) {
            let mut batch = Batch::new(PLACEMENTS);
            for p in chunk {
                batch.push([
                    p.schedule_id.as_str().into(),
                    p.scheduled_time.into(),
                    p.expected.clone().unwrap_or_default().as_str().into(),
                    to_json(&p.target)?.into(),
                    p.target.placement().into(),
                    p.detail.as_str().into(),
                ]);
            }
            let written: Vec<(String, At)> =
                on_db!(conn.conn(), fetch_all(String, At), &sql; batch);
            placed.extend(keys(written));
        }
        let d = self.dialect();
        Ok(placements
            .iter()
            .map(|p| placed.contains(&(p.schedule_id.clone(), d.stored(p.scheduled_time))))
            .collect())
    }

    async fn alerting(
        &self,
        after: Option<&str>,
        limit: usize,
        every: bool,
    ) -> Result<Vec<Watched>, StoreError> {
        self.alerting_page(after, limit, every).await
    }

    async fn runs(
        &self,
        schedule_id: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        // Only the filters given are conditions, so that the time bounds are the range the
        // primary key (schedule_id, scheduled_time) is walked over, newest first.
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = $1");
        push_given(
            &mut sql,
            [
                (filter.status.is_some(), " AND status = $3"),
                (filter.since.is_some(), " AND scheduled_time >= $4"),
                (filter.before.is_some(), " AND scheduled_time < $5"),
            ],
        );
        sql.push_str(" ORDER BY scheduled_time DESC LIMIT $2");
        let mut conn = self.reader().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            schedule_id,
            filter.limit as i64,
            filter.status.map(RunStatus::as_str),
            filter.since.map(At),
            filter.before.map(At),
        );
        rows.iter().map(run_from_row).collect()
    }
}
