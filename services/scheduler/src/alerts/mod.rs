//! Alerts: knowing when work did not happen. Every `alerts.every`, the leader reads the
//! schedules whose checks are on (their own `policy.alerts`, or every schedule when `[alerts]`
//! sets defaults) with what the ledger says of their runs, and judges each check
//! ([`judge`]): an occurrence not dispatched `late_after_secs` after its time, `failed_in_a_row`
//! runs in a row failed, no success for `missing_after_secs` (a dead man's switch, which also
//! sees a schedule the engine parked or whose replica died, since another replica evaluates
//! it).
//!
//! An incident is stored before it is announced: opening one writes it with a message due to
//! each channel in one transaction, and at most one incident of a kind is open per schedule
//! (a unique index), so a leader that changes hands mid-pass opens nothing twice. The
//! messages are sent by the leader, each held while it is sent, recorded when delivered, and
//! retried with a doubling delay until delivered; a resolution goes after its opening.
//!
//! Every replica counts the open incidents for `scheduler_alerts_open{kind}`.

mod channels;
pub(crate) mod judge;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{
    Alert, AlertFilter, AlertKind, AlertLog, AlertPolicy, AlertState, StoreError, Watched,
};
use serde::{Deserialize, Serialize};
use service_kit::config::duration;
use tokio::sync::watch;

use channels::Channels;
pub use channels::{ChannelConfig, ChannelKind};
use judge::{Verdict, judge};

use crate::audit;
use crate::outbound::Outbound;
use crate::stores::Stores;
use crate::telemetry;

/// The `[alerts]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The late check of a schedule that sets none (off when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_after_secs: Option<u64>,
    /// The failing check of a schedule that sets none (off when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_in_a_row: Option<u32>,
    /// The missing check of a schedule that sets none (off when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_after_secs: Option<u64>,
    /// How often the leader evaluates the checks and sends what is due.
    #[serde(with = "duration")]
    pub every: Duration,
    /// The delay before a failed message is sent again, doubling after each failure.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// The longest delay between two attempts of a message.
    #[serde(with = "duration")]
    pub max_retry_delay: Duration,
    /// Where incidents are sent, by name.
    pub channels: BTreeMap<String, ChannelConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            late_after_secs: None,
            failed_in_a_row: None,
            missing_after_secs: None,
            every: Duration::from_secs(15),
            retry_delay: Duration::from_secs(5),
            max_retry_delay: Duration::from_secs(600),
            channels: BTreeMap::new(),
        }
    }
}

impl AlertsConfig {
    /// The checks of a schedule that sets none.
    pub fn defaults(&self) -> AlertPolicy {
        AlertPolicy {
            late_after_secs: self.late_after_secs,
            failed_in_a_row: self.failed_in_a_row,
            missing_after_secs: self.missing_after_secs,
        }
    }

    /// Checks `[alerts]`; `redis` is whether `[redis] url` is set.
    pub(crate) fn validate(&self, redis: bool) -> anyhow::Result<()> {
        self.defaults()
            .validate("alerts")
            .map_err(anyhow::Error::msg)?;
        if self.every < Duration::from_millis(10) {
            anyhow::bail!("alerts.every must be at least 10ms");
        }
        if self.retry_delay.is_zero() || self.max_retry_delay < self.retry_delay {
            anyhow::bail!(
                "alerts.retry_delay must be more than 0s and at most alerts.max_retry_delay"
            );
        }
        for (name, channel) in &self.channels {
            channel.validate(name, redis)?;
        }
        Ok(())
    }

    pub(crate) fn redact(&mut self) {
        self.channels.values_mut().for_each(ChannelConfig::redact);
    }
}

/// Schedules read per page of an evaluation.
const PAGE: usize = 500;
/// Messages taken per round of sending.
const SEND_BATCH: usize = 100;
/// How long a message taken for sending is held from other senders.
const HOLD: TimeDelta = TimeDelta::seconds(120);
/// The most open incidents one evaluation reads.
const MOST_OPEN: usize = 100_000;

/// The alerts' work, started once per process.
pub(crate) struct Alerting {
    pub stores: Stores,
    pub log: Arc<dyn AlertLog>,
    pub outbound: Arc<Outbound>,
    pub config: AlertsConfig,
    pub leading: watch::Receiver<bool>,
}

impl Alerting {
    /// Every `alerts.every` until shutdown: counts the open incidents and, while this replica
    /// leads, evaluates the checks and sends the messages due.
    pub(crate) async fn run(self, mut shutdown: service_kit::Shutdown) {
        let channels = match Channels::new(&self.config.channels) {
            Ok(channels) => channels,
            Err(error) => {
                tracing::error!(%error, "alerts: the channels cannot be set up; no alert is sent");
                return;
            }
        };
        let mut tick = tokio::time::interval(self.config.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.requested() => return,
            }
            if *self.leading.borrow() {
                let started = Instant::now();
                match self.evaluate(&channels.names(), Utc::now()).await {
                    Ok(checked) => telemetry::alerts_pass(started.elapsed(), checked),
                    Err(error) => {
                        tracing::warn!(%error, "alerts: evaluating the checks failed; trying again at the next pass")
                    }
                }
                if let Err(error) = self.send_due(&channels).await {
                    tracing::warn!(%error, "alerts: sending failed; trying again at the next pass");
                }
            }
            match self.log.alerts(&AlertFilter::open(MOST_OPEN)).await {
                Ok(open) => telemetry::alerts_open(&open),
                Err(error) => tracing::warn!(%error, "alerts: cannot count the open incidents"),
            }
        }
    }

    /// One pass over every checked schedule: opens an incident for each check in trouble
    /// without one, resolves each open one whose check is fine again or whose schedule is
    /// gone. Returns how many schedules it checked.
    pub(crate) async fn evaluate(
        &self,
        channels: &[String],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut open: HashMap<(String, String, AlertKind), Alert> = self
            .log
            .alerts(&AlertFilter::open(MOST_OPEN))
            .await?
            .into_iter()
            .map(|a| ((a.jobstore.clone(), a.schedule_id.clone(), a.kind), a))
            .collect();
        let defaults = self.config.defaults();
        let mut served = HashSet::new();
        let mut checked = 0;
        for store in self.stores.all() {
            let jobstore = store.jobstore().as_str().to_string();
            served.insert(jobstore.clone());
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .alerting(after.as_deref(), PAGE, !defaults.is_empty())
                    .await?;
                checked += page.len();
                for watched in &page {
                    let policy = watched.schedule.policy.alerts.over(defaults);
                    // Only the missing check asks who paused a schedule.
                    let asks = policy.missing_after_secs.is_some() && watched.schedule.paused;
                    let by_caller =
                        asks && !audit::parked_by_engine(&self.stores, &watched.schedule).await?;
                    for (kind, verdict) in judge(watched, policy, now, by_caller) {
                        let key = (jobstore.clone(), watched.schedule.id.clone(), kind);
                        let was_open = open.remove(&key);
                        self.settle(&jobstore, watched, kind, verdict, was_open, channels, now)
                            .await?;
                    }
                }
                if page.len() < PAGE {
                    break;
                }
                after = page.last().map(|w| w.schedule.id.clone());
            }
        }
        // What is still open was not seen: its schedule is gone, or no longer checked.
        for ((jobstore, schedule_id, _), alert) in open {
            if !served.contains(&jobstore) {
                continue;
            }
            let exists = match self
                .stores
                .all()
                .find(|s| s.jobstore().as_str() == jobstore)
            {
                Some(store) => store.get(&schedule_id).await?.is_some(),
                None => false,
            };
            let why = if exists {
                "the schedule's alerts were turned off"
            } else {
                "the schedule was deleted"
            };
            self.resolve(&alert, why, channels, now).await?;
        }
        Ok(checked)
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        jobstore: &str,
        watched: &Watched,
        kind: AlertKind,
        verdict: Verdict,
        was_open: Option<Alert>,
        channels: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match (verdict, was_open) {
            (
                Verdict::Trouble {
                    summary,
                    last_error,
                },
                None,
            ) => {
                let schedule = &watched.schedule;
                let alert = Alert {
                    id: uuid::Uuid::now_v7().to_string(),
                    kind,
                    state: AlertState::Open,
                    jobstore: jobstore.to_string(),
                    schedule_id: schedule.id.clone(),
                    schedule_name: schedule.name.clone(),
                    owner: schedule.owner.clone(),
                    opened_at: now,
                    resolved_at: None,
                    summary,
                    last_error,
                    resolution: None,
                };
                if self.log.open_alert(&alert, channels).await? {
                    tracing::warn!(alert = %alert.id, kind = kind.as_str(), schedule_id = %schedule.id, owner = %schedule.owner, summary = %alert.summary, "alert opened");
                }
                Ok(())
            }
            (Verdict::Fine(why), Some(alert)) => self.resolve(&alert, why, channels, now).await,
            _ => Ok(()),
        }
    }

    async fn resolve(
        &self,
        alert: &Alert,
        why: &str,
        channels: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self
            .log
            .resolve_alert(&alert.id, now, why, channels)
            .await?
        {
            tracing::info!(alert = %alert.id, kind = alert.kind.as_str(), schedule_id = %alert.schedule_id, resolution = why, "alert resolved");
        }
        Ok(())
    }

    /// Sends the messages due, in rounds, until none is left for now.
    async fn send_due(&self, channels: &Channels) -> Result<(), StoreError> {
        loop {
            let now = Utc::now();
            let due = self.log.due_deliveries(now, now + HOLD, SEND_BATCH).await?;
            if due.is_empty() {
                return Ok(());
            }
            let sent = futures::future::join_all(
                due.iter()
                    .map(|delivery| channels.send(&self.outbound, delivery)),
            )
            .await;
            for (delivery, sent) in due.iter().zip(sent) {
                let alert = &delivery.alert;
                match sent {
                    Ok(()) => {
                        self.log.delivered(delivery, Utc::now()).await?;
                        tracing::info!(alert = %alert.id, phase = delivery.phase.as_str(), channel = %delivery.channel, "alert delivered");
                    }
                    Err(error) => {
                        let retry_at = Utc::now() + self.backoff(delivery.attempts);
                        self.log.delivery_failed(delivery, &error, retry_at).await?;
                        tracing::warn!(alert = %alert.id, phase = delivery.phase.as_str(), channel = %delivery.channel, %error, %retry_at, "alert not delivered; it is sent again later");
                    }
                }
            }
            if due.len() < SEND_BATCH {
                return Ok(());
            }
        }
    }

    /// The delay after the `attempts`-th failure (0 for the first): `retry_delay`, doubling,
    /// at most `max_retry_delay`.
    fn backoff(&self, attempts: u32) -> TimeDelta {
        let delay = self
            .config
            .retry_delay
            .saturating_mul(1_u32 << attempts.min(20))
            .min(self.config.max_retry_delay);
        TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX)
    }
}
