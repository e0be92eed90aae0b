//! Watches on SQLite: the `watches` table beside `schedules_execution`, changed in
//! `BEGIN IMMEDIATE` transactions with the schedule and ledger rows they go with.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use scheduler_api::{CheckResult, Watch, WatchStatus};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row};

use super::{SqliteStore, instant, millis, to_json};
use crate::model::{RunOutcome, Schedule, StoreName};
use crate::store::StoreError;
use crate::watches::{
    Sent, WatchFilter, WatchStore, apply_attempts, cancelled, delivery_due, sent,
};

/// The watch columns and its schedule's next run, for a `FROM watches w` joined to it.
const SELECT: &str = "SELECT w.body, s.next_run_at FROM watches w \
     LEFT JOIN schedules_execution s ON s.id = w.id";

fn watch_from_row(row: &SqliteRow) -> Result<Watch, StoreError> {
    let body: String = row.try_get("body")?;
    let mut watch: Watch =
        serde_json::from_str(&body).map_err(|error| StoreError::corrupt("watch", error))?;
    let next: Option<i64> = row.try_get("next_run_at")?;
    watch.next_run_at = next.map(|m| instant(m, "next_run_at")).transpose()?;
    Ok(watch)
}

async fn read(conn: &mut SqliteConnection, id: &str) -> Result<Option<Watch>, StoreError> {
    let sql = format!("{SELECT} WHERE w.id = ?1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(watch_from_row).transpose()
}

/// Writes a changed watch; once it has ended, its schedule goes (with any run claimed ahead).
async fn write(conn: &mut SqliteConnection, watch: &Watch) -> Result<(), StoreError> {
    write_all(conn, std::slice::from_ref(watch)).await
}

/// Writes changed watches in one statement; those that ended lose their schedules (with any
/// run claimed ahead).
async fn write_all(conn: &mut SqliteConnection, watches: &[Watch]) -> Result<(), StoreError> {
    if watches.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(watches.len());
    for watch in watches {
        rows.push(serde_json::json!([
            watch.id,
            watch.status.as_str(),
            to_json(watch)?,
            delivery_due(watch).map(millis),
        ]));
    }
    sqlx::query(
        "UPDATE watches SET status = json_extract(j.value, '$[1]'), \
         body = json_extract(j.value, '$[2]'), delivery_due = json_extract(j.value, '$[3]'), \
         delivery_lease_until = NULL FROM json_each(?1) AS j \
         WHERE watches.id = json_extract(j.value, '$[0]')",
    )
    .bind(to_json(&rows)?)
    .execute(&mut *conn)
    .await?;
    let ended: Vec<&str> = watches
        .iter()
        .filter(|w| w.status != WatchStatus::Active)
        .map(|w| w.id.as_str())
        .collect();
    if !ended.is_empty() {
        let sql = format!(
            "DELETE FROM {} WHERE id IN (SELECT value FROM json_each(?1))",
            StoreName::Execution.table()
        );
        sqlx::query(&sql)
            .bind(to_json(&ended)?)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "DELETE FROM schedule_runs WHERE status = 'pending' AND scheduled_time > ?2 \
             AND schedule_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(to_json(&ended)?)
        .bind(millis(Utc::now()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl WatchStore for SqliteStore {
    async fn add_watch(&self, watch: &Watch, schedule: &Schedule) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO watches (id, user_id, workflow_id, status, body) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&watch.id)
        .bind(&watch.user_id)
        .bind(&watch.workflow_id)
        .bind(watch.status.as_str())
        .bind(to_json(watch)?)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(watch.id.clone()));
        }
        self.insert_in(&mut tx, schedule).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn watch(&self, id: &str) -> Result<Option<Watch>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn, id).await
    }

    async fn watches(&self, filter: &WatchFilter) -> Result<Vec<Watch>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(SELECT);
        query.push(" WHERE 1 = 1");
        if let Some(status) = filter.status {
            query.push(" AND w.status = ").push_bind(status.as_str());
        }
        if let Some(user) = &filter.user_id {
            query.push(" AND w.user_id = ").push_bind(user.clone());
        }
        if let Some(workflow) = &filter.workflow_id {
            query
                .push(" AND w.workflow_id = ")
                .push_bind(workflow.clone());
        }
        if let Some(before) = &filter.before_id {
            query.push(" AND w.id < ").push_bind(before.clone());
        }
        query
            .push(" ORDER BY w.id DESC LIMIT ")
            .push_bind(filter.limit as i64);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(watch_from_row).collect()
    }

    async fn record_attempts(
        &self,
        attempts: &[(RunOutcome, CheckResult)],
    ) -> Result<Vec<Watch>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        // A few statements for the whole batch: each is a round trip to the connection's
        // thread while this transaction holds the file's write lock.
        let (_turn, mut tx) = self.begin_write().await?;
        let outcomes: Vec<&RunOutcome> = attempts.iter().map(|(o, _)| o).collect();
        let finished = super::finish_all_in(&mut tx, &outcomes).await?;
        let ids: Vec<&str> = attempts
            .iter()
            .map(|(o, _)| o.schedule_id.as_str())
            .collect();
        let sql = format!("{SELECT} WHERE w.id IN (SELECT value FROM json_each(?1))");
        let rows = sqlx::query(&sql)
            .bind(to_json(&ids)?)
            .fetch_all(&mut *tx)
            .await?;
        let mut watches = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let watch = watch_from_row(row)?;
            watches.insert(watch.id.clone(), watch);
        }
        let was_pending =
            |o: &RunOutcome| finished.contains(&(o.schedule_id.clone(), millis(o.scheduled_time)));
        let recorded = apply_attempts(attempts, was_pending, watches, Utc::now());
        write_all(&mut tx, &recorded).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn cancel_watch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Watch>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(watch) = read(&mut tx, id).await? else {
            return Ok(None);
        };
        let watch = match cancelled(watch.clone(), now) {
            Some(cancelled) => {
                write(&mut tx, &cancelled).await?;
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
        let (_turn, mut tx) = self.begin_write().await?;
        let sql = format!("{SELECT} WHERE w.workflow_id = ?1 AND w.status = 'active'");
        let rows = sqlx::query(&sql)
            .bind(workflow_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            ended.extend(cancelled(watch_from_row(row)?, now));
        }
        write_all(&mut tx, &ended).await?;
        tx.commit().await?;
        Ok(ended.len() as u64)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<Watch>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE watches SET delivery_lease_until = ?3 WHERE id IN (SELECT id FROM watches \
             WHERE delivery_due <= ?1 \
             AND (delivery_lease_until IS NULL OR delivery_lease_until <= ?1) \
             ORDER BY delivery_due LIMIT ?2) RETURNING id",
        )
        .bind(millis(now))
        .bind(limit as i64)
        .bind(millis(now + lease))
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!("{SELECT} WHERE w.id IN (SELECT value FROM json_each(?1))");
        let rows = sqlx::query(&sql)
            .bind(to_json(&ids)?)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(watch_from_row).collect()
    }

    async fn record_delivery(&self, id: &str, outcome: &Sent) -> Result<Option<Watch>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(watch) = read(&mut tx, id).await? else {
            return Ok(None);
        };
        if let Some(watch) = sent(watch, outcome) {
            write(&mut tx, &watch).await?;
        }
        let stored = read(&mut tx, id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(max(delivery_due, coalesce(delivery_lease_until, delivery_due))) \
             FROM watches WHERE delivery_due IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        next.map(|m| instant(m, "delivery_due")).transpose()
    }
}
