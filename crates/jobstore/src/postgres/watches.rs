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
use crate::watches::{
    Sent, WatchFilter, WatchStore, apply_attempts, cancelled, delivery_due, sent,
};

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
    write_all(conn, std::slice::from_ref(watch)).await
}

/// Writes changed watches in one statement; those that ended lose their schedules (with any
/// run claimed ahead).
async fn write_all(conn: &mut PgConnection, watches: &[Watch]) -> Result<(), StoreError> {
    if watches.is_empty() {
        return Ok(());
    }
    let mut bodies = Vec::with_capacity(watches.len());
    for watch in watches {
        bodies.push(to_json(watch)?);
    }
    sqlx::query(
        "UPDATE watches AS w SET status = u.status, body = u.body, delivery_due = u.due, \
         delivery_lease_until = NULL \
         FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[]) \
         AS u(id, status, body, due) WHERE w.id = u.id",
    )
    .bind(watches.iter().map(|w| w.id.clone()).collect::<Vec<_>>())
    .bind(
        watches
            .iter()
            .map(|w| w.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(bodies)
    .bind(watches.iter().map(delivery_due).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    let ended: Vec<&str> = watches
        .iter()
        .filter(|w| w.status != WatchStatus::Active)
        .map(|w| w.id.as_str())
        .collect();
    if !ended.is_empty() {
        let sql = format!(
            "DELETE FROM {} WHERE id = ANY($1)",
            StoreName::Execution.table()
        );
        sqlx::query(&sql).bind(&ended).execute(&mut *conn).await?;
        sqlx::query(
            "DELETE FROM schedule_runs WHERE schedule_id = ANY($1) AND status = 'pending' \
             AND scheduled_time > $2",
        )
        .bind(&ended)
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
        // Held, in id order, until the transaction ends.
        let sql = format!("{SELECT} WHERE w.id = ANY($1) ORDER BY w.id FOR UPDATE OF w");
        let rows = sqlx::query(&sql).bind(&ids).fetch_all(&mut *tx).await?;
        let finished: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE schedule_runs AS r SET status = u.status, detail = u.detail, \
             attempts = u.attempts, finished_at = u.finished_at, lease_until = NULL \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::int4[], \
             $6::timestamptz[]) AS u(schedule_id, scheduled_time, status, detail, attempts, \
             finished_at) WHERE r.schedule_id = u.schedule_id \
             AND r.scheduled_time = u.scheduled_time AND r.status = 'pending' \
             RETURNING r.schedule_id, r.scheduled_time",
        )
        .bind(
            ordered
                .iter()
                .map(|(o, _)| o.schedule_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            ordered
                .iter()
                .map(|(o, _)| o.scheduled_time)
                .collect::<Vec<_>>(),
        )
        .bind(
            ordered
                .iter()
                .map(|(o, _)| o.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            ordered
                .iter()
                .map(|(o, _)| o.detail.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            ordered
                .iter()
                .map(|(o, _)| o.attempts as i32)
                .collect::<Vec<_>>(),
        )
        .bind(
            ordered
                .iter()
                .map(|(o, _)| o.finished_at)
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?;
        let finished: std::collections::HashSet<(String, DateTime<Utc>)> =
            finished.into_iter().collect();
        let mut watches = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let watch = watch_from_row(row)?;
            watches.insert(watch.id.clone(), watch);
        }
        let was_pending =
            |o: &RunOutcome| finished.contains(&(o.schedule_id.clone(), o.scheduled_time));
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
        let sql = format!("{SELECT} WHERE w.id = ANY($1)");
        let rows = sqlx::query(&sql).bind(&ids).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(watch_from_row).collect()
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
