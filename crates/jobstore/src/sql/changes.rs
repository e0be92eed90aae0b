//! The audit log's table, `schedule_changes`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_kit::on_db;
use service_kit::sql::{Conn, Row};
use sqlx::types::Json;

use super::{At, SqlStore, get, instant, json, push_given, store_name};
use crate::changes::{Change, ChangeFilter};
use crate::store::{ChangeLog, StoreError};

const COLUMNS: &str = "seq, at, jobstore, schedule_id, owner, actor, route, action, changes";

impl SqlStore {
    /// Appends `change` on `conn` (inside the caller's transaction, when it has one).
    pub(super) async fn record_in(
        &self,
        conn: Conn<'_>,
        change: &Change,
    ) -> Result<(), StoreError> {
        on_db!(
            conn,
            execute,
            "INSERT INTO schedule_changes \
             (at, jobstore, schedule_id, owner, actor, route, action, changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            At(change.at),
            change.jobstore.as_str(),
            &change.schedule_id,
            &change.owner,
            &change.actor,
            &change.route,
            &change.action,
            Json(&change.changes),
        );
        Ok(())
    }
}

#[async_trait]
impl ChangeLog for SqlStore {
    async fn record_change(&self, change: &Change) -> Result<(), StoreError> {
        let mut conn = self.writer().await?;
        self.record_in(conn.conn(), change).await
    }

    async fn changes(&self, filter: &ChangeFilter) -> Result<Vec<Change>, StoreError> {
        // Only the filters given are in the query, so that it reads the index that fits them.
        let mut sql = format!("SELECT {COLUMNS} FROM schedule_changes WHERE true");
        push_given(
            &mut sql,
            [
                (filter.schedule_id.is_some(), " AND schedule_id = $1"),
                (filter.owner.is_some(), " AND owner = $2"),
                (filter.since.is_some(), " AND at >= $3"),
                (filter.before_seq.is_some(), " AND seq < $4"),
            ],
        );
        let scope = filter.owners.as_ref();
        let (names, prefixes) =
            self.dialect()
                .within_owners(&mut sql, "owner", scope, ("$6", "$7"));
        sql.push_str(" ORDER BY seq DESC LIMIT $5");
        let mut conn = self.reader().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            &filter.schedule_id,
            &filter.owner,
            filter.since.map(At),
            filter.before_seq,
            filter.limit as i64,
            names,
            prefixes,
        );
        rows.iter().map(change_from_row).collect()
    }

    async fn prune_changes(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM schedule_changes WHERE seq IN (SELECT seq FROM schedule_changes \
             WHERE at < $1 ORDER BY seq LIMIT $2{})",
            self.dialect().skip_locked()
        );
        let mut conn = self.writer().await?;
        Ok(on_db!(conn.conn(), execute, &sql, At(before), limit as i64))
    }
}

fn change_from_row(row: &Row) -> Result<Change, StoreError> {
    Ok(Change {
        seq: get(row, "seq")?,
        at: instant(row, "at")?,
        jobstore: store_name(row)?,
        schedule_id: get(row, "schedule_id")?,
        owner: get(row, "owner")?,
        actor: get(row, "actor")?,
        route: get(row, "route")?,
        action: get(row, "action")?,
        changes: json(row, "changes")?,
    })
}
