//! The ledger's retention: the leader deletes finished runs older than `ledger.retention`, and
//! those beyond the newest `ledger.keep_per_schedule` of a schedule, in small batches with a
//! pause between them, so the deletes never hold locks that delay firing. Runs in progress or
//! waiting are never deleted; a deleted schedule's runs stay until they age out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{JobStore, StoreError};
use serde::{Deserialize, Serialize};
use service_kit::config::duration;
use tokio::sync::watch;

use crate::stores::Stores;
use crate::telemetry;

/// The `[ledger]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Finished runs older than this are deleted.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// A schedule keeps at most this many finished runs.
    pub keep_per_schedule: u32,
    /// How often the leader looks for rows to delete.
    #[serde(with = "duration")]
    pub prune_every: Duration,
    /// The most rows one delete statement removes.
    pub prune_batch: u32,
    /// The pause between two batches, which leaves the database to the engine.
    #[serde(with = "duration")]
    pub prune_pause: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            retention: Duration::from_secs(30 * 86_400),
            keep_per_schedule: 1000,
            prune_every: Duration::from_secs(60),
            prune_batch: 1000,
            prune_pause: Duration::from_millis(20),
        }
    }
}

impl LedgerConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.keep_per_schedule == 0 || self.prune_batch == 0 {
            anyhow::bail!("ledger.keep_per_schedule and ledger.prune_batch must be at least 1");
        }
        if self.retention < Duration::from_secs(1) || self.prune_every < Duration::from_millis(10) {
            anyhow::bail!("ledger.retention must be at least 1s and ledger.prune_every 10ms");
        }
        if TimeDelta::from_std(self.retention).is_err() {
            anyhow::bail!("ledger.retention is too long");
        }
        Ok(())
    }
}

/// How many schedules over their keep are trimmed per pass.
const TRIM_PER_PASS: usize = 100;

/// Prunes every `prune_every` while this replica leads, until shutdown.
pub(crate) async fn run(
    stores: Stores,
    config: LedgerConfig,
    leader: watch::Receiver<bool>,
    mut shutdown: service_kit::Shutdown,
) {
    let mut tick = tokio::time::interval(config.prune_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.requested() => return,
        }
        if !*leader.borrow() {
            continue;
        }
        for store in stores.all() {
            let pass = prune(store, &config, &leader, &shutdown).await;
            if let Err(error) = pass {
                tracing::warn!(%error, jobstore = store.jobstore().as_str(), "pruning the ledger failed; trying again at the next pass");
            }
        }
        if let Some(log) = stores.changes() {
            let prune = |before, limit| log.prune_changes(before, limit);
            let pass = prune_aged("prune_changes", &config, &leader, &shutdown, prune).await;
            if let Err(error) = pass {
                tracing::warn!(%error, "pruning the audit log failed; trying again at the next pass");
            }
        }
        if let Some(log) = stores.alerts() {
            let prune = |before, limit| log.prune_alerts(before, limit);
            let pass = prune_aged("prune_alerts", &config, &leader, &shutdown, prune).await;
            if let Err(error) = pass {
                tracing::warn!(%error, "pruning the resolved alerts failed; trying again at the next pass");
            }
        }
    }
}

/// One pass over a log kept as long as the ledger's finished runs (the audit log, the
/// resolved incidents): what is older than the retention, in batches, by `prune`.
async fn prune_aged<F, Fut>(
    operation: &'static str,
    config: &LedgerConfig,
    leader: &watch::Receiver<bool>,
    shutdown: &service_kit::Shutdown,
    prune: F,
) -> Result<(), StoreError>
where
    F: Fn(DateTime<Utc>, usize) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let batch = config.prune_batch as usize;
    let retention = TimeDelta::from_std(config.retention).unwrap_or(TimeDelta::MAX);
    let before = Utc::now().checked_sub_signed(retention).unwrap_or_default();
    while *leader.borrow() && !shutdown.is_requested() {
        let started = Instant::now();
        let deleted = prune(before, batch).await?;
        telemetry::store_operation(operation, started.elapsed());
        if (deleted as usize) < batch {
            break;
        }
        tokio::time::sleep(config.prune_pause).await;
    }
    Ok(())
}

/// One pass over one store: by age, then by count.
async fn prune(
    store: &Arc<dyn JobStore>,
    config: &LedgerConfig,
    leader: &watch::Receiver<bool>,
    shutdown: &service_kit::Shutdown,
) -> Result<(), StoreError> {
    let batch = config.prune_batch as usize;
    let keep = config.keep_per_schedule as usize;
    let go_on = || *leader.borrow() && !shutdown.is_requested();
    let retention = TimeDelta::from_std(config.retention).unwrap_or(TimeDelta::MAX);
    let before = Utc::now().checked_sub_signed(retention).unwrap_or_default();
    while go_on() {
        let started = Instant::now();
        let deleted = store.prune_finished(before, batch).await?;
        telemetry::store_operation("prune_finished", started.elapsed());
        telemetry::pruned("age", deleted);
        if (deleted as usize) < batch {
            break;
        }
        tokio::time::sleep(config.prune_pause).await;
    }
    if !go_on() {
        return Ok(());
    }
    let started = Instant::now();
    let over = store.over_keep(keep, TRIM_PER_PASS).await?;
    telemetry::store_operation("over_keep", started.elapsed());
    for schedule_id in over {
        while go_on() {
            let started = Instant::now();
            let deleted = store.trim_runs(&schedule_id, keep, batch).await?;
            telemetry::store_operation("trim_runs", started.elapsed());
            telemetry::pruned("count", deleted);
            if (deleted as usize) < batch {
                break;
            }
            tokio::time::sleep(config.prune_pause).await;
        }
    }
    Ok(())
}
