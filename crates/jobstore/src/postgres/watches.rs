//! Watches on PostgreSQL: the `watches` table beside `schedules_execution`. A change holds the
//! watch's row (`FOR UPDATE`) in the transaction that also writes its schedule and ledger rows;
//! senders claim completions with `FOR UPDATE SKIP LOCKED`, so replicas never share one.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use scheduler_api::{CheckResult, Watch, WatchStatus};
use sqlx::postgres::{PgConnection, PgRow, Postgres};
use sqlx::{QueryBuilder, Row};

use super::{PostgresStore, json, to_json};
use crate::model::{RunOutcome, Schedule, StoreName};
use crate::store::StoreError;
use crate::watches::{Sent, WatchFilter, WatchStore, attempted, cancelled, delivery_due, sent};

/// The watch document and its schedule's next run, for a `FROM watches w` joined to it.
const SELECT: &str = "SELECT w.body, s.next_run_at FROM watches w \
     LEFT JOIN schedules_execution s ON s.id = w.id";

fn watch_from_row(row: &PgRow) -> Result<Watch, StoreError> {
    let mut watch: Watch = json(row, "body")?;
    watch.next_run_at = row.try_get("next_run_at")?;
    Ok(watch)
}

/// The watch, its row held until the transaction ends.
async fn hold(conn: &mut PgConnection, id: &str) -> Result<Option<Watch>, StoreError> {
    let sql = format!("{SELECT} WHERE w.id = $1 FOR UPDATE OF w");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(watch_from_row).transpose()
}

async fn read(conn: &mut PgConnection, id: &str) -> Result<Option<Watch>, StoreError> {
    let sql = format!("{SELECT} WHERE w.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(watch_from_row).transpose()
}

/// Writes a changed watch; once it has ended, its schedule goes (with any run claimed ahead).
async fn write(conn: &mut PgConnection, watch: &Watch) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE watches SET status = $2, body = $3, delivery_due = $4, \
         delivery_lease_until = NULL WHERE id = $1",
    )
    .bind(&watch.id)
    .bind(watch.status.as_str())
    .bind(to_json(watch)?)
    .bind(delivery_due(watch))
    .execute(&mut *conn)
    .await?;
    if watch.status != WatchStatus::Active {
        let sql = format!("DELETE FROM {} WHERE id = $1", StoreName::Execution.table());
        sqlx::query(&sql)
            .bind(&watch.id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "DELETE FROM schedule_runs WHERE schedule_id = $1 AND status = 'pending' \
             AND scheduled_time > $2",
        )
        .bind(&watch.id)
        .bind(Utc::now())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl WatchStore for PostgresStore {
    async fn add_watch(&self, watch: &Watch, schedule: &Schedule) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO watches (id, user_id, workflow_id, status, body) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
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
        let mut query = QueryBuilder::<Postgres>::new(SELECT);
        query.push(" WHERE TRUE");
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
        // The watches' rows in id order first, then their ledger rows: the order every change
        // of a watch takes, so that concurrent batches cannot deadlock.
        let mut ordered: Vec<&(RunOutcome, CheckResult)> = attempts.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.0.schedule_id, a.0.scheduled_time).cmp(&(&b.0.schedule_id, b.0.scheduled_time))
        });
        let mut tx = self.pool.begin().await?;
        let ids: Vec<&str> = ordered
            .iter()
            .map(|(o, _)| o.schedule_id.as_str())
            .collect();
        sqlx::query("SELECT 1 FROM watches WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let now = Utc::now();
        let mut recorded = Vec::with_capacity(ordered.len());
        for (outcome, result) in ordered {
            let finished = sqlx::query(
                "UPDATE schedule_runs SET status = $3, detail = $4, attempts = $5, \
                 finished_at = $6, lease_until = NULL \
                 WHERE schedule_id = $1 AND scheduled_time = $2 AND status = 'pending'",
            )
            .bind(&outcome.schedule_id)
            .bind(outcome.scheduled_time)
            .bind(outcome.status.as_str())
            .bind(&outcome.detail)
            .bind(outcome.attempts as i32)
            .bind(outcome.finished_at)
            .execute(&mut *tx)
            .await?;
            if finished.rows_affected() == 0 {
                continue;
            }
            let Some(watch) = read(&mut tx, &outcome.schedule_id).await? else {
                continue;
            };
            let watch = attempted(watch, result, now);
            write(&mut tx, &watch).await?;
            recorded.push(watch);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn cancel_watch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Watch>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(watch) = hold(&mut tx, id).await? else {
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
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "{SELECT} WHERE w.workflow_id = $1 AND w.status = 'active' ORDER BY w.id FOR UPDATE OF w"
        );
        let rows = sqlx::query(&sql)
            .bind(workflow_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut count = 0;
        for row in &rows {
            if let Some(watch) = cancelled(watch_from_row(row)?, now) {
                write(&mut tx, &watch).await?;
                count += 1;
            }
        }
        tx.commit().await?;
        Ok(count)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<Watch>, StoreError> {
        let sql = "WITH due AS (SELECT id FROM watches WHERE delivery_due <= $1 \
             AND (delivery_lease_until IS NULL OR delivery_lease_until <= $1) \
             ORDER BY delivery_due LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE watches w SET delivery_lease_until = $3 FROM due WHERE w.id = due.id \
             RETURNING w.id";
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(sql)
            .bind(now)
            .bind(limit as i64)
            .bind(now + lease)
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            claimed.extend(read(&mut tx, &id).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn record_delivery(&self, id: &str, outcome: &Sent) -> Result<Option<Watch>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(watch) = hold(&mut tx, id).await? else {
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
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(greatest(delivery_due, coalesce(delivery_lease_until, delivery_due))) \
             FROM watches WHERE delivery_due IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }
}
