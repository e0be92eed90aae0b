//! Storing, reading, listing, replacing and deleting schedules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_kit::on_db;
use service_kit::sql::{Conn, Row};
use sqlx::types::Json;

use super::{At, Batch, Kind, List, One, SCHEDULE_COLUMNS, SqlStore, schedule_from_row, to_json};
use crate::changes::Change;
use crate::model::{ListFilter, Schedule, StoreName};
use crate::plan::{needs_active, replanned};
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
    /// not run; the earliest of their times.
    pub(super) async fn unclaim_ahead(
        &self,
        conn: Conn<'_>,
        schedule_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let given_back: Vec<(At,)> = on_db!(
            conn,
            fetch_all One<At>,
            "DELETE FROM schedule_runs WHERE schedule_id = $1 AND jobstore = $2 \
             AND status = 'pending' AND scheduled_time > $3 RETURNING scheduled_time",
            schedule_id,
            self.jobstore.as_str(),
            At(Utc::now())
        );
        Ok(given_back.into_iter().map(|(at,)| at.0).min())
    }
}

impl SqlStore {
    /// The query of a listing, with the page's start and size. Only the filters given are
    /// conditions (a condition that holds when its filter is absent, `$1 IS NULL OR …`, keeps
    /// the planner from the index of the filter that is there), so a page walks an index in id
    /// order: the tag's in `schedule_tags`, the owner's, the target kind's (migration 0007), or
    /// the paused ones' (migration 0008). The parameters are always bound in the same order:
    /// owner, graph id, target kind, paused (unused: the flag is written out), tag, page
    /// start, page size, jobstore, the names and the prefixes of a client's owners, the
    /// organisation and its teams (AutoGPT's visibility).
    /// The rows of the listing with `filter`, its query run behind `prefix` (empty, or an
    /// `EXPLAIN`).
    pub(super) async fn listing_rows(
        &self,
        conn: Conn<'_>,
        prefix: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Row>, StoreError> {
        let (sql, after, limit) = self.listing(filter);
        let (names, prefixes) = List::owners(filter.owners.as_ref());
        let (organization, teams) = match &filter.tenancy {
            Some(t) => (
                Some(t.organization_id.as_str()),
                List::of(t.team_ids.iter().map(String::as_str)),
            ),
            None => (None, List(Vec::new())),
        };
        Ok(on_db!(
            conn,
            rows,
            &format!("{prefix}{sql}"),
            &filter.owner,
            &filter.graph_id,
            &filter.target_type,
            filter.paused,
            &filter.tag,
            &after,
            limit,
            self.jobstore.as_str(),
            names,
            prefixes,
            organization,
            teams,
        ))
    }

    fn listing(&self, filter: &ListFilter) -> (String, Option<String>, i64) {
        let d = self.dialect();
        let (after, limit) = match &filter.page {
            Some(page) => (page.after_id.clone(), page.limit as i64),
            None => (None, i64::MAX),
        };
        let (from, id) = match filter.tag {
            Some(_) => (
                format!(
                    "schedule_tags t JOIN {} s ON s.id = t.schedule_id \
                     WHERE t.jobstore = $8 AND t.tag = $5",
                    self.table()
                ),
                "t.schedule_id",
            ),
            None => (format!("{} WHERE true", self.table()), "id"),
        };
        let mut conditions = String::new();
        let mut and = |condition: String| {
            conditions.push_str(" AND ");
            conditions.push_str(&condition);
        };
        match &filter.tenancy {
            // AutoGPT's organisation visibility (`jobstore::Tenancy::admits`).
            Some(_) => and(format!(
                "(owner = $1 OR ({expert} IS NULL AND {organization} = $11 \
                 AND ({team} IS NULL OR {in_teams})))",
                expert = d.json_text("target", "expert_id"),
                organization = d.json_text("target", "organization_id"),
                team = d.json_text("target", "team_id"),
                in_teams = d.in_list(&d.json_text("target", "team_id"), "$12"),
            )),
            None if filter.owner.is_some() => and("owner = $1".into()),
            None => {}
        }
        if filter.owners.is_some() {
            and(d.in_owners("owner", "$9", "$10"));
        }
        if filter.graph_id.is_some() {
            and(format!("{} = $2", d.json_text("target", "graph_id")));
        }
        if filter.target_type.is_some() {
            and(format!("{} = $3", d.json_text("target", "type")));
        }
        // The flag is written into the query, not bound: the paused schedules have an index
        // of their own (partial, migration 0008), which a bound value would not reach.
        match filter.paused {
            Some(true) => and(d.is_true("paused")),
            Some(false) => and(d.is_false("paused")),
            None => {}
        }
        if !filter.include_inactive {
            and(format!(
                "{} AND next_run_at IS NOT NULL",
                d.is_false("paused")
            ));
        }
        if after.is_some() {
            and(format!("{id} > $6"));
        }
        let order = if filter.page.is_some() { id } else { "seq" };
        let sql =
            format!("SELECT {SCHEDULE_COLUMNS} FROM {from}{conditions} ORDER BY {order} LIMIT $7");
        (sql, after, limit)
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

    async fn insert_recorded(
        &self,
        schedule: &Schedule,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.insert_in(tx.conn(), std::slice::from_ref(schedule))
            .await?;
        self.record_in(tx.conn(), change).await?;
        tx.commit().await
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

    async fn replace(
        &self,
        schedule: &Schedule,
        keeps_next: bool,
    ) -> Result<Option<Schedule>, StoreError> {
        let sql = format!(
            "UPDATE {} SET name = $2, owner = $3, trigger = $4, target = $5, policy = $6, \
             tags = $7, paused = $8, paused_reason = $9, next_run_at = $10, updated_at = $11, \
             checks_overlap = $12 WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            self.table()
        );
        let mut tx = self.write().await?;
        let given_back = self.unclaim_ahead(tx.conn(), &schedule.id).await?;
        let next_run_at = replanned(schedule, keeps_next, given_back);
        let row = on_db!(
            tx.conn(),
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
            next_run_at.map(At),
            At(Utc::now()),
            needs_active(schedule),
        );
        tx.commit().await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Schedule>, StoreError> {
        let mut conn = self.reader().await?;
        let rows = self.listing_rows(conn.conn(), "", filter).await?;
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
