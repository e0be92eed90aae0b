//! Watches: the `watches` table beside `schedules_execution`. A change holds the watch's row
//! (on PostgreSQL `FOR UPDATE`, on SQLite the file's write lock) in the transaction that also
//! writes its schedule and ledger rows; senders claim completions with `FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, so replicas never share one.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use scheduler_api::{CheckResult, Watch, WatchStatus};
use service_kit::on_db;
use service_kit::sql::{Conn, Row};
use sqlx::types::Json;

use super::{At, Batch, Kind, List, One, SqlStore, json, optional_instant, push_given, to_json};
use crate::model::{RunOutcome, Schedule, StoreName};
use crate::store::StoreError;
use crate::watches::{
    Sent, WatchFilter, WatchStore, apply_attempts, cancelled, delivery_due, sent,
};

/// The watch document and its schedule's next run, for a `FROM watches w` joined to it.
const SELECT: &str = "SELECT w.body, s.next_run_at FROM watches w \
     LEFT JOIN schedules_execution s ON s.id = w.id";

/// The columns of a batch of changed watches.
const CHANGED: &[(&str, Kind)] = &[
    ("key_id", Kind::Text),
    ("status", Kind::Text),
    ("body", Kind::Json),
    ("due", Kind::Instant),
];

fn watch_from_row(row: &Row) -> Result<Watch, StoreError> {
    let mut watch: Watch = json(row, "body")?;
    watch.next_run_at = optional_instant(row, "next_run_at")?;
    Ok(watch)
}

impl SqlStore {
    /// The watch, its row held until the transaction ends.
    async fn hold(&self, conn: Conn<'_>, id: &str) -> Result<Option<Watch>, StoreError> {
        let sql = format!("{SELECT} WHERE w.id = $1{}", self.dialect().hold_of("w"));
        let row = on_db!(conn, optional_row, &sql, id);
        row.as_ref().map(watch_from_row).transpose()
    }

    async fn read(&self, conn: Conn<'_>, id: &str) -> Result<Option<Watch>, StoreError> {
        let sql = format!("{SELECT} WHERE w.id = $1");
        let row = on_db!(conn, optional_row, &sql, id);
        row.as_ref().map(watch_from_row).transpose()
    }

    /// The watches with these ids.
    async fn read_all(&self, conn: Conn<'_>, ids: List) -> Result<Vec<Watch>, StoreError> {
        let sql = format!("{SELECT} WHERE {}", self.dialect().in_list("w.id", "$1"));
        let rows = on_db!(conn, rows, &sql, ids);
        rows.iter().map(watch_from_row).collect()
    }

    /// Writes changed watches in one statement; those that ended lose their schedules (with
    /// any run claimed ahead).
    async fn write_all(&self, mut conn: Conn<'_>, watches: &[Watch]) -> Result<(), StoreError> {
        if watches.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let mut batch = Batch::new(CHANGED);
        for watch in watches {
            batch.push([
                watch.id.as_str().into(),
                watch.status.as_str().into(),
                to_json(watch)?.into(),
                delivery_due(watch).into(),
            ]);
        }
        let sql = format!(
            "UPDATE watches AS w SET status = u.status, body = u.body, delivery_due = u.due, \
             delivery_lease_until = NULL FROM {} WHERE w.id = u.key_id",
            d.rows(1, CHANGED)
        );
        on_db!(conn.reborrow(), execute, &sql; batch);
        let ended: Vec<&str> = watches
            .iter()
            .filter(|w| w.status != WatchStatus::Active)
            .map(|w| w.id.as_str())
            .collect();
        if !ended.is_empty() {
            let sql = format!(
                "DELETE FROM {} WHERE {}",
                StoreName::Execution.table(),
                d.in_list("id", "$1")
            );
            on_db!(
                conn.reborrow(),
                execute,
                &sql,
                List::of(ended.iter().copied())
            );
            let sql = format!(
                "DELETE FROM schedule_runs WHERE {} AND status = 'pending' \
                 AND scheduled_time > $2",
                d.in_list("schedule_id", "$1")
            );
            on_db!(
                conn.reborrow(),
                execute,
                &sql,
                List::of(ended.iter().copied()),
                At(Utc::now())
            );
        }
        Ok(())
    }
}

#[async_trait]
impl WatchStore for SqlStore {
    async fn add_watch(&self, watch: &Watch, schedule: &Schedule) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let added = on_db!(
            tx.conn(),
            execute,
            "INSERT INTO watches (id, user_id, workflow_id, status, body) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            &watch.id,
            &watch.user_id,
            &watch.workflow_id,
            watch.status.as_str(),
            Json(watch),
        );
        if added == 0 {
            return Err(StoreError::Conflict(watch.id.clone()));
        }
        self.insert_in(tx.conn(), std::slice::from_ref(schedule))
            .await?;
        tx.commit().await
    }

    async fn watch(&self, id: &str) -> Result<Option<Watch>, StoreError> {
        let mut conn = self.reader().await?;
        self.read(conn.conn(), id).await
    }

    async fn watches(&self, filter: &WatchFilter) -> Result<Vec<Watch>, StoreError> {
        // Only the filters given are in the query, so that it reads the index that fits them.
        let mut sql = format!("{SELECT} WHERE TRUE");
        push_given(
            &mut sql,
            [
                (filter.status.is_some(), " AND w.status = $1"),
                (filter.user_id.is_some(), " AND w.user_id = $2"),
                (filter.workflow_id.is_some(), " AND w.workflow_id = $3"),
                (filter.before_id.is_some(), " AND w.id < $4"),
            ],
        );
        let scope = filter.users.as_ref();
        let (names, prefixes) =
            self.dialect()
                .within_owners(&mut sql, "w.user_id", scope, ("$6", "$7"));
        sql.push_str(" ORDER BY w.id DESC LIMIT $5");
        let mut conn = self.reader().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            filter.status.map(WatchStatus::as_str),
            &filter.user_id,
            &filter.workflow_id,
            &filter.before_id,
            filter.limit as i64,
            names,
            prefixes,
        );
        rows.iter().map(watch_from_row).collect()
    }

    async fn record_attempts(
        &self,
        attempts: &[(RunOutcome, CheckResult)],
    ) -> Result<Vec<Watch>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        // The watches' rows in id order first, then their ledger rows: the order every change
        // of a watch takes, so that concurrent batches cannot deadlock.
        let mut ordered: Vec<&RunOutcome> = attempts.iter().map(|(o, _)| o).collect();
        ordered.sort_by(|a, b| {
            (&a.schedule_id, a.scheduled_time).cmp(&(&b.schedule_id, b.scheduled_time))
        });
        let mut tx = self.write().await?;
        let sql = format!(
            "{SELECT} WHERE {} ORDER BY w.id{}",
            self.dialect().in_list("w.id", "$1"),
            self.dialect().hold_of("w")
        );
        let ids = List::of(ordered.iter().map(|o| o.schedule_id.as_str()));
        let rows = on_db!(tx.conn(), rows, &sql, ids);
        let finished = self.finish_in(tx.conn(), &ordered).await?;
        let mut watches = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let watch = watch_from_row(row)?;
            watches.insert(watch.id.clone(), watch);
        }
        let was_pending = |o: &RunOutcome| self.was_finished(&finished, o);
        let recorded = apply_attempts(attempts, was_pending, watches, Utc::now());
        self.write_all(tx.conn(), &recorded).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn cancel_watch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Watch>, StoreError> {
        let mut tx = self.write().await?;
        let Some(watch) = self.hold(tx.conn(), id).await? else {
            return Ok(None);
        };
        let watch = match cancelled(watch.clone(), now) {
            Some(cancelled) => {
                self.write_all(tx.conn(), std::slice::from_ref(&cancelled))
                    .await?;
                cancelled
            }
            None => watch,
        };
        tx.commit().await?;
        Ok(Some(watch))
    }

    async fn cancel_workflow(
        &self,
        workflow_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let sql = format!(
            "{SELECT} WHERE w.workflow_id = $1 AND w.status = 'active' ORDER BY w.id{}",
            self.dialect().hold_of("w")
        );
        let rows = on_db!(tx.conn(), rows, &sql, workflow_id);
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            ended.extend(cancelled(watch_from_row(row)?, now));
        }
        self.write_all(tx.conn(), &ended).await?;
        tx.commit().await?;
        Ok(ended.len() as u64)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<Watch>, StoreError> {
        let sql = format!(
            "UPDATE watches SET delivery_lease_until = $3 WHERE id IN (SELECT id FROM watches \
             WHERE delivery_due <= $1 \
             AND (delivery_lease_until IS NULL OR delivery_lease_until <= $1) \
             ORDER BY delivery_due LIMIT $2{}) RETURNING id",
            self.dialect().skip_locked()
        );
        let mut tx = self.write().await?;
        let ids: Vec<(String,)> = on_db!(
            tx.conn(),
            fetch_all One<String>,
            &sql,
            At(now),
            limit as i64,
            At(now + lease),
        );
        let ids = List(ids.into_iter().map(|(id,)| id).collect());
        let claimed = self.read_all(tx.conn(), ids).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn record_delivery(&self, id: &str, outcome: &Sent) -> Result<Option<Watch>, StoreError> {
        let mut tx = self.write().await?;
        let Some(watch) = self.hold(tx.conn(), id).await? else {
            return Ok(None);
        };
        if let Some(watch) = sent(watch, outcome) {
            self.write_all(tx.conn(), std::slice::from_ref(&watch))
                .await?;
        }
        let stored = self.read(tx.conn(), id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.reader().await?;
        let (next,): (Option<At>,) = on_db!(
            conn.conn(),
            fetch_one One<Option<At>>,
            "SELECT min(CASE WHEN delivery_lease_until > delivery_due \
             THEN delivery_lease_until ELSE delivery_due END) \
             FROM watches WHERE delivery_due IS NOT NULL",
        );
        Ok(next.map(|at| at.0))
    }
}
