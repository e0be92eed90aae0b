//! Storing, reading, listing, replacing and deleting schedules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_kit::on_db;
use service_kit::sql::Conn;
use sqlx::types::Json;

use super::{At, Batch, Kind, One, SCHEDULE_COLUMNS, SqlStore, schedule_from_row, to_json};
use crate::model::{ListFilter, Schedule, StoreName};
use crate::plan::needs_active;
use crate::store::{Schedules, StoreError};

/// The columns of a batch of new schedules; `n` numbers them from 1.
const NEW_SCHEDULES: &[(&str, Kind)] = &[
    ("n", Kind::Int),
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("owner", Kind::Text),
    ("trigger", Kind::Json),
    ("target", Kind::Json),
    ("policy", Kind::Json),
    ("paused", Kind::Bool),
    ("paused_reason", Kind::Text),
    ("next_run_at", Kind::Instant),
    ("created_at", Kind::Instant),
    ("tags", Kind::Json),
    ("checks_overlap", Kind::Bool),
];

impl SqlStore {
    /// Stores new schedules on `conn`, in bounded batches; fails with
    /// [`StoreError::Conflict`] when an id exists, having written the batches before it (the
    /// caller's transaction rolls them back).
    pub(super) async fn insert_in(
        &self,
        mut conn: Conn<'_>,
        schedules: &[Schedule],
    ) -> Result<(), StoreError> {
        let d = self.dialect();
        let (seq_column, seq_value) = d.seq(self.table());
        let sql = format!(
            "INSERT INTO {} (id, name, owner, trigger, target, policy, paused, paused_reason, \
             next_run_at, created_at, updated_at, tags, checks_overlap{seq_column}) \
             SELECT u.id, u.name, u.owner, u.trigger, u.target, u.policy, u.paused, \
             u.paused_reason, u.next_run_at, u.created_at, u.created_at, u.tags, \
             u.checks_overlap{seq_value} FROM {} WHERE true ON CONFLICT (id) DO NOTHING",
            self.table(),
            d.rows(1, NEW_SCHEDULES)
        );
        for chunk in schedules.chunks(5000) {
            let mut batch = Batch::new(NEW_SCHEDULES);
            for (n, s) in (1_i64..).zip(chunk) {
                batch.push([
                    n.into(),
                    s.id.as_str().into(),
                    s.name.as_str().into(),
                    s.owner.as_str().into(),
                    to_json(&s.trigger)?.into(),
                    to_json(&s.target)?.into(),
                    to_json(&s.policy)?.into(),
                    s.paused.into(),
                    s.paused_reason.clone().into(),
                    s.next_run_at.into(),
                    s.created_at.into(),
                    to_json(&s.tags)?.into(),
                    needs_active(s).into(),
                ]);
            }
            let inserted = on_db!(conn.reborrow(), execute, &sql; batch);
            if inserted != chunk.len() as u64 {
                let first = chunk.first().map(|s| s.id.clone()).unwrap_or_default();
                return Err(StoreError::Conflict(if schedules.len() == 1 {
                    first
                } else {
                    format!("{first} (or another id in the batch)")
                }));
            }
        }
        Ok(())
    }

    /// Deletes a schedule's runs claimed ahead of their time and not yet due, so that they do
    /// not run.
    pub(super) async fn unclaim_ahead(
        &self,
        conn: Conn<'_>,
        schedule_id: &str,
    ) -> Result<(), StoreError> {
        on_db!(
            conn,
            execute,
            "DELETE FROM schedule_runs WHERE schedule_id = $1 AND jobstore = $2 \
             AND status = 'pending' AND scheduled_time > $3",
            schedule_id,
            self.jobstore.as_str(),
            At(Utc::now())
        );
        Ok(())
    }
}

#[async_trait]
impl Schedules for SqlStore {
    fn jobstore(&self) -> StoreName {
        self.jobstore
    }

    fn backend(&self) -> &'static str {
        self.dialect().name()
    }

    async fn insert(&self, schedule: &Schedule) -> Result<(), StoreError> {
        self.insert_many(std::slice::from_ref(schedule)).await
    }

    async fn insert_many(&self, schedules: &[Schedule]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.insert_in(tx.conn(), schedules).await?;
        tx.commit().await
    }

    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE id = $1",
            self.table()
        );
        let mut conn = self.reader().await?;
        let row = on_db!(conn.conn(), optional_row, &sql, id);
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn replace(&self, schedule: &Schedule) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "UPDATE {} SET name = $2, owner = $3, trigger = $4, target = $5, policy = $6, \
             tags = $7, paused = $8, paused_reason = $9, next_run_at = $10, updated_at = $11, \
             checks_overlap = $12 WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let mut conn = self.writer().await?;
        let row = on_db!(
            conn.conn(),
            optional_row,
            &sql,
            &schedule.id,
            &schedule.name,
            &schedule.owner,
            Json(&schedule.trigger),
            Json(&schedule.target),
            Json(&schedule.policy),
            Json(&schedule.tags),
            schedule.paused,
            &schedule.paused_reason,
            schedule.next_run_at.map(At),
            At(Utc::now()),
            needs_active(schedule),
        );
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Schedule>, StoreError> {
        let d = self.dialect();
        let (order, after, limit) = match &filter.page {
            Some(page) => ("id", page.after_id.clone(), page.limit as i64),
            None => ("seq", None, i64::MAX),
        };
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {} WHERE ($1 IS NULL OR owner = $1) \
             AND ($2 IS NULL OR {} = $2) \
             AND ($3 OR ({} AND next_run_at IS NOT NULL)) \
             AND ($4 IS NULL OR {} = $4) \
             AND ($5 IS NULL OR paused = $5) \
             AND ($6 IS NULL OR {}) \
             AND ($7 IS NULL OR id > $7) ORDER BY {order} LIMIT $8",
            self.table(),
            d.json_text("target", "graph_id"),
            d.is_false("paused"),
            d.json_text("target", "type"),
            d.holds("tags", "$6"),
        );
        let mut conn = self.reader().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            &filter.owner,
            &filter.graph_id,
            filter.include_inactive,
            &filter.target_type,
            filter.paused,
            &filter.tag,
            &after,
            limit,
        );
        rows.iter().map(schedule_from_row).collect()
    }

    async fn delete(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let mut tx = self.write().await?;
        let row = on_db!(tx.conn(), optional_row, &sql, id);
        if row.is_some() {
            self.unclaim_ahead(tx.conn(), id).await?;
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
            "UPDATE {} SET paused = $2, paused_reason = $5, next_run_at = $3, updated_at = $4 \
             WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let mut tx = self.write().await?;
        let row = on_db!(
            tx.conn(),
            optional_row,
            &sql,
            id,
            paused,
            next_run_at.map(At),
            At(Utc::now()),
            reason.filter(|_| paused),
        );
        if paused && row.is_some() {
            self.unclaim_ahead(tx.conn(), id).await?;
        }
        tx.commit().await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", self.table());
        let mut conn = self.reader().await?;
        let (count,): (i64,) = on_db!(conn.conn(), fetch_one One<i64>, &sql);
        Ok(count as u64)
    }
}
