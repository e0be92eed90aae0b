//! The alerts' tables, `alerts` and `alert_deliveries`, and what the ledger says of the
//! schedules whose alerts are checked.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_kit::on_db;
use service_kit::sql::{Conn, Row};

use super::{At, List, SCHEDULE_COLUMNS, SqlStore, get, optional_instant, push_given};
use super::{One, instant, schedule_from_row};
use crate::alerts::{
    Alert, AlertFilter, AlertKind, AlertState, Delivery, Phase, RunFacts, Watched,
};
use crate::store::{AlertLog, StoreError};

const COLUMNS: &str = "id, kind, state, jobstore, schedule_id, schedule_name, owner, opened_at, \
     resolved_at, summary, last_error, resolution";

/// The most failures in a row counted: one more than any check asks for.
const FAILURES_COUNTED: u32 = scheduler_api::AlertPolicy::MAX_FAILED_IN_A_ROW + 1;

impl SqlStore {
    /// A page of this jobstore's schedules whose alerts are checked, with their run facts:
    /// each read from the ledger's primary key (`schedule_id`, `scheduled_time`), walked from
    /// the newest run, so a page costs a few index probes per schedule.
    pub(super) async fn alerting_page(
        &self,
        after: Option<&str>,
        limit: usize,
        every: bool,
    ) -> Result<Vec<Watched>, StoreError> {
        let d = self.dialect();
        let runs = |status: &str| {
            format!(
                "FROM schedule_runs r WHERE r.schedule_id = s.id AND r.jobstore = $3 \
                 AND r.status = '{status}'"
            )
        };
        let mut inner = format!(
            "SELECT {SCHEDULE_COLUMNS}, \
             (SELECT r.scheduled_time {} ORDER BY r.scheduled_time DESC LIMIT 1) AS last_success, \
             (SELECT r.detail {} ORDER BY r.scheduled_time DESC LIMIT 1) AS last_error, \
             (SELECT min(r.scheduled_time) {}) AS oldest_waiting \
             FROM {} s WHERE true",
            runs("dispatched"),
            runs("failed"),
            runs("buffered"),
            self.table(),
        );
        push_given(&mut inner, [(after.is_some(), " AND s.id > $1")]);
        if !every {
            inner.push_str(&format!(
                " AND {} IS NOT NULL",
                d.json_text("s.policy", "alerts")
            ));
        }
        inner.push_str(" ORDER BY s.id LIMIT $2");
        let sql = format!(
            "SELECT a.*, (SELECT count(*) FROM (SELECT 1 AS one FROM schedule_runs r \
             WHERE r.schedule_id = a.id AND r.jobstore = $3 AND r.status = 'failed' \
             AND (a.last_success IS NULL OR r.scheduled_time > a.last_success) \
             LIMIT {FAILURES_COUNTED}) f) AS failed_since FROM ({inner}) a ORDER BY a.id"
        );
        let jobstore = self.jobstore.as_str();
        // A short query whose estimates, on tables just loaded and not yet analysed, can pass
        // PostgreSQL's JIT threshold: compiling it then costs ten times running it.
        let rows = match d.without_jit() {
            Some(setting) => {
                let mut tx = self.write().await?;
                on_db!(tx.conn(), execute, setting);
                let rows = on_db!(tx.conn(), rows, &sql, after, limit as i64, jobstore);
                tx.commit().await?;
                rows
            }
            None => {
                let mut conn = self.reader().await?;
                on_db!(conn.conn(), rows, &sql, after, limit as i64, jobstore)
            }
        };
        let mut watched = Vec::with_capacity(rows.len());
        for row in &rows {
            match watched_from_row(row) {
                Ok(one) => watched.push(one),
                Err(error) => {
                    let id = get::<String>(row, "id").unwrap_or_default();
                    tracing::warn!(schedule_id = %id, %error, "alerts: a schedule row does not read; its alerts are not checked");
                }
            }
        }
        Ok(watched)
    }

    async fn deliveries_due_in(
        &self,
        mut conn: Conn<'_>,
        alert: &Alert,
        phase: Phase,
        channels: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for channel in channels {
            on_db!(
                conn.reborrow(),
                execute,
                "INSERT INTO alert_deliveries (alert_id, phase, channel, due_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &alert.id,
                phase.as_str(),
                channel,
                At(at),
            );
        }
        Ok(())
    }

    async fn alerts_in(&self, conn: Conn<'_>, ids: List) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE {}",
            self.dialect().in_list("id", "$1")
        );
        let rows = on_db!(conn, rows, &sql, ids);
        rows.iter().map(alert_from_row).collect()
    }
}

#[async_trait]
impl AlertLog for SqlStore {
    async fn open_alert(&self, alert: &Alert, channels: &[String]) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let opened = on_db!(
            tx.conn(),
            execute,
            "INSERT INTO alerts (id, kind, state, jobstore, schedule_id, schedule_name, owner, \
             opened_at, summary, last_error) VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
            &alert.id,
            alert.kind.as_str(),
            &alert.jobstore,
            &alert.schedule_id,
            &alert.schedule_name,
            &alert.owner,
            At(alert.opened_at),
            &alert.summary,
            &alert.last_error,
        ) == 1;
        if opened {
            self.deliveries_due_in(tx.conn(), alert, Phase::Opened, channels, alert.opened_at)
                .await?;
        }
        tx.commit().await?;
        Ok(opened)
    }

    async fn resolve_alert(
        &self,
        id: &str,
        at: DateTime<Utc>,
        resolution: &str,
        channels: &[String],
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let resolved = on_db!(
            tx.conn(),
            execute,
            "UPDATE alerts SET state = 'resolved', resolved_at = $2, resolution = $3 \
             WHERE id = $1 AND state = 'open'",
            id,
            At(at),
            resolution,
        ) == 1;
        if resolved {
            let alert = self.alerts_in(tx.conn(), List::of([id])).await?;
            if let Some(alert) = alert.first() {
                self.deliveries_due_in(tx.conn(), alert, Phase::Resolved, channels, at)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(resolved)
    }

    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM alerts WHERE true");
        push_given(
            &mut sql,
            [
                (filter.state.is_some(), " AND state = $1"),
                (filter.owner.is_some(), " AND owner = $2"),
                (filter.schedule_id.is_some(), " AND schedule_id = $3"),
            ],
        );
        let scope = filter.owners.as_ref();
        let (names, prefixes) =
            self.dialect()
                .within_owners(&mut sql, "owner", scope, ("$5", "$6"));
        sql.push_str(" ORDER BY opened_at DESC, id DESC LIMIT $4");
        let mut conn = self.reader().await?;
        let rows = on_db!(
            conn.conn(),
            rows,
            &sql,
            filter.state.map(AlertState::as_str),
            &filter.owner,
            &filter.schedule_id,
            filter.limit as i64,
            names,
            prefixes,
        );
        rows.iter().map(alert_from_row).collect()
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Looked for first with a read: most passes find nothing due, and then take no write
        // lock (on SQLite, the whole file's).
        let mut conn = self.reader().await?;
        let any: Option<(i32,)> = on_db!(
            conn.conn(),
            fetch_optional One<i32>,
            "SELECT 1 FROM alert_deliveries WHERE delivered_at IS NULL AND due_at <= $1 LIMIT 1",
            At(now),
        );
        drop(conn);
        if any.is_none() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE alert_deliveries SET due_at = $2 WHERE (alert_id, phase, channel) IN \
             (SELECT d.alert_id, d.phase, d.channel FROM alert_deliveries d \
             WHERE d.delivered_at IS NULL AND d.due_at <= $1 AND (d.phase = 'opened' OR NOT \
             EXISTS (SELECT 1 FROM alert_deliveries o WHERE o.alert_id = d.alert_id \
             AND o.channel = d.channel AND o.phase = 'opened' AND o.delivered_at IS NULL)) \
             ORDER BY d.due_at LIMIT $3{}) RETURNING alert_id, phase, channel, attempts",
            self.dialect().skip_locked_of("d")
        );
        let mut tx = self.write().await?;
        let held = on_db!(tx.conn(), rows, &sql, At(now), At(hold_until), limit as i64);
        let ids = List::of(
            held.iter()
                .filter_map(|row| get::<String>(row, "alert_id").ok())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        );
        let alerts = self.alerts_in(tx.conn(), ids).await?;
        tx.commit().await?;
        let mut deliveries = Vec::with_capacity(held.len());
        for row in &held {
            let id: String = get(row, "alert_id")?;
            let phase: String = get(row, "phase")?;
            let Some(alert) = alerts.iter().find(|a| a.id == id) else {
                continue;
            };
            deliveries.push(Delivery {
                alert: alert.clone(),
                phase: Phase::parse(&phase)
                    .ok_or_else(|| StoreError::corrupt("phase", format!("'{phase}'")))?,
                channel: get(row, "channel")?,
                attempts: u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0),
            });
        }
        Ok(deliveries)
    }

    async fn delivered(&self, delivery: &Delivery, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.writer().await?;
        on_db!(
            conn.conn(),
            execute,
            "UPDATE alert_deliveries SET delivered_at = $4, attempts = attempts + 1, \
             last_error = NULL WHERE alert_id = $1 AND phase = $2 AND channel = $3",
            &delivery.alert.id,
            delivery.phase.as_str(),
            &delivery.channel,
            At(at),
        );
        Ok(())
    }

    async fn delivery_failed(
        &self,
        delivery: &Delivery,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer().await?;
        on_db!(
            conn.conn(),
            execute,
            "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $4, due_at = $5 \
             WHERE alert_id = $1 AND phase = $2 AND channel = $3",
            &delivery.alert.id,
            delivery.phase.as_str(),
            &delivery.channel,
            error,
            At(retry_at),
        );
        Ok(())
    }

    async fn prune_alerts(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let old = "SELECT id FROM alerts WHERE state = 'resolved' AND resolved_at < $1 \
                   ORDER BY resolved_at LIMIT $2";
        let mut tx = self.write().await?;
        let sql = format!("DELETE FROM alert_deliveries WHERE alert_id IN ({old})");
        on_db!(tx.conn(), execute, &sql, At(before), limit as i64);
        let sql = format!("DELETE FROM alerts WHERE id IN ({old})");
        let pruned = on_db!(tx.conn(), execute, &sql, At(before), limit as i64);
        tx.commit().await?;
        Ok(pruned)
    }
}

fn watched_from_row(row: &Row) -> Result<Watched, StoreError> {
    Ok(Watched {
        schedule: schedule_from_row(row)?,
        runs: RunFacts {
            last_success: optional_instant(row, "last_success")?,
            failed_since: u32::try_from(get::<i64>(row, "failed_since")?).unwrap_or(u32::MAX),
            last_error: get(row, "last_error")?,
            oldest_waiting: optional_instant(row, "oldest_waiting")?,
        },
    })
}

fn alert_from_row(row: &Row) -> Result<Alert, StoreError> {
    let kind: String = get(row, "kind")?;
    let state: String = get(row, "state")?;
    Ok(Alert {
        id: get(row, "id")?,
        kind: AlertKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt("kind", format!("'{kind}'")))?,
        state: AlertState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("state", format!("'{state}'")))?,
        jobstore: get(row, "jobstore")?,
        schedule_id: get(row, "schedule_id")?,
        schedule_name: get(row, "schedule_name")?,
        owner: get(row, "owner")?,
        opened_at: instant(row, "opened_at")?,
        resolved_at: optional_instant(row, "resolved_at")?,
        summary: get(row, "summary")?,
        last_error: get(row, "last_error")?,
        resolution: get(row, "resolution")?,
    })
}
