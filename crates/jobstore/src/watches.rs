//! Watches: an agent's monitoring jobs, stored next to the schedules of the `execution`
//! jobstore. A watch's attempts are the occurrences of a schedule with the watch's id and a
//! `watch` target, so they are claimed, leased and recorded like any other; the watch row keeps
//! the count, the last check and the completion until it is delivered.
//!
//! What an attempt, a cancellation or a delivery does to a watch is decided here, once; the
//! backends only store the result, in the transaction that also finishes the attempt's ledger
//! row.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use scheduler_api::{CheckResult, Delivery, DeliveryState, Watch, WatchStatus};
use serde_json::Value;
use service_kit::auth::Owners;

use crate::model::RunOutcome;
use crate::store::StoreError;

/// Which watches a listing returns: newest first (ids are time-ordered), at most `limit`,
/// those with an id before `before_id` when it is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    pub status: Option<WatchStatus>,
    pub user_id: Option<String>,
    /// Only watches whose user is within these (a scoped client's listing).
    pub users: Option<Owners>,
    pub workflow_id: Option<String>,
    pub before_id: Option<String>,
    pub limit: usize,
}

impl WatchFilter {
    pub(crate) fn accepts(&self, watch: &Watch) -> bool {
        self.status.is_none_or(|status| watch.status == status)
            && self
                .user_id
                .as_ref()
                .is_none_or(|user| &watch.user_id == user)
            && self
                .users
                .as_ref()
                .is_none_or(|users| users.allows(&watch.user_id))
            && self
                .workflow_id
                .as_ref()
                .is_none_or(|workflow| watch.workflow_id.as_ref() == Some(workflow))
            && self
                .before_id
                .as_ref()
                .is_none_or(|before| watch.id.as_str() < before.as_str())
    }
}

/// How a send of a completion ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// It reached its user, this way; `detail` says what happened on the way (a fallback).
    Delivered {
        via: scheduler_api::OnComplete,
        detail: Option<String>,
        at: DateTime<Utc>,
    },
    /// It did not; it is tried again at `retry_at`.
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

/// The store of watches. Every method that changes state commits it before returning.
#[async_trait]
pub trait WatchStore: Send + Sync + 'static {
    /// Stores a new watch and the schedule of its attempts (same id, a `watch` target) in one
    /// transaction.
    async fn add_watch(
        &self,
        watch: &Watch,
        schedule: &crate::model::Schedule,
    ) -> Result<(), StoreError>;

    /// A watch, its next check from its schedule.
    async fn watch(&self, id: &str) -> Result<Option<Watch>, StoreError>;

    /// Watches matching `filter`, newest first.
    async fn watches(&self, filter: &WatchFilter) -> Result<Vec<Watch>, StoreError>;

    /// Records attempts in one transaction. For each, its ledger row ends as its outcome says,
    /// and, if the watch is still active, the attempt is counted and kept as the last check; a
    /// success or the last attempt ends the watch ([`attempted`]), deletes its schedule and
    /// leaves its completion pending delivery. An attempt whose ledger row is no longer pending
    /// (recorded already) changes nothing. Returns the watches as stored after the attempts
    /// that were recorded.
    async fn record_attempts(
        &self,
        attempts: &[(RunOutcome, CheckResult)],
    ) -> Result<Vec<Watch>, StoreError>;

    /// [`WatchStore::record_attempts`] of one attempt: the watch as stored, or `None` when the
    /// attempt was recorded already.
    async fn record_attempt(
        &self,
        outcome: &RunOutcome,
        result: &CheckResult,
    ) -> Result<Option<Watch>, StoreError> {
        let recorded = self
            .record_attempts(&[(outcome.clone(), result.clone())])
            .await?;
        Ok(recorded.into_iter().next())
    }

    /// Cancels an active watch and deletes its schedule; a watch that has ended is returned as
    /// it is. `None` when there is no such watch.
    async fn cancel_watch(&self, id: &str, now: DateTime<Utc>)
    -> Result<Option<Watch>, StoreError>;

    /// Cancels every active watch of a workflow; returns how many.
    async fn cancel_workflow(
        &self,
        workflow_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Takes up to `limit` completions due for a send by `now` whose previous sender's lease
    /// has run out, leasing them until `now + lease`, so that one sender has each at a time.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<Watch>, StoreError>;

    /// Records how a send of a watch's completion ended ([`sent`]); a completion delivered
    /// already is left as it is. Returns the watch as stored.
    async fn record_delivery(&self, id: &str, sent: &Sent) -> Result<Option<Watch>, StoreError>;

    /// When the next completion is due for a send (its retry time, or its sender's lease
    /// expiry), if one is pending.
    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// The watch after an attempt: counted, kept as the last check, and ended when it succeeded
/// or was the last one (`completed` or `failed`, with its message and a pending delivery).
pub fn attempted(mut watch: Watch, result: &CheckResult, now: DateTime<Utc>) -> Watch {
    if watch.status != WatchStatus::Active {
        return watch;
    }
    watch.attempts = watch.attempts.saturating_add(1);
    let mut result = result.clone();
    result.attempt = watch.attempts;
    let ended = if result.success {
        Some((WatchStatus::Completed, success_message(&watch, &result)))
    } else if watch.attempts >= watch.max_attempts {
        Some((WatchStatus::Failed, failure_message(&watch, &result)))
    } else {
        None
    };
    watch.last_result = Some(result);
    if let Some((status, message)) = ended {
        let now = now.trunc_subsecs(3);
        watch.status = status;
        watch.completed_at = Some(now);
        watch.message = Some(message);
        watch.next_run_at = None;
        watch.delivery = Some(Delivery {
            state: DeliveryState::Pending,
            attempts: 0,
            next_at: Some(now),
            via: None,
            detail: None,
            delivered_at: None,
        });
    }
    watch
}

/// The watches after a batch of attempts, in the order they first changed: each attempt whose
/// ledger row was `finished` (still pending until now) is applied ([`attempted`]) to its watch
/// among `watches`, one after another for a watch with several, once for an attempt given twice.
pub fn apply_attempts(
    attempts: &[(RunOutcome, CheckResult)],
    finished: impl Fn(&RunOutcome) -> bool,
    mut watches: std::collections::HashMap<String, Watch>,
    now: DateTime<Utc>,
) -> Vec<Watch> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut applied = std::collections::HashSet::new();
    for (outcome, result) in attempts {
        let key = (outcome.schedule_id.as_str(), outcome.scheduled_time);
        if !finished(outcome) || !applied.insert(key) {
            continue;
        }
        let Some(watch) = watches.remove(&outcome.schedule_id) else {
            continue;
        };
        let watch = attempted(watch, result, now);
        if seen.insert(watch.id.clone()) {
            order.push(watch.id.clone());
        }
        watches.insert(watch.id.clone(), watch);
    }
    order.iter().filter_map(|id| watches.remove(id)).collect()
}

/// The watch cancelled at `now`, or `None` when it has ended already. Nothing is sent.
pub fn cancelled(mut watch: Watch, now: DateTime<Utc>) -> Option<Watch> {
    if watch.status != WatchStatus::Active {
        return None;
    }
    watch.status = WatchStatus::Cancelled;
    watch.completed_at = Some(now.trunc_subsecs(3));
    watch.next_run_at = None;
    Some(watch)
}

/// The watch after a send of its completion, or `None` when there is nothing to record (no
/// completion pending).
pub fn sent(mut watch: Watch, sent: &Sent) -> Option<Watch> {
    let delivery = watch.delivery.as_mut()?;
    if delivery.state != DeliveryState::Pending {
        return None;
    }
    delivery.attempts = delivery.attempts.saturating_add(1);
    match sent {
        Sent::Delivered { via, detail, at } => {
            delivery.state = DeliveryState::Delivered;
            delivery.next_at = None;
            delivery.via = Some(*via);
            delivery.detail = detail.clone();
            delivery.delivered_at = Some(at.trunc_subsecs(3));
        }
        Sent::Failed { error, retry_at } => {
            delivery.next_at = Some(retry_at.trunc_subsecs(3));
            delivery.detail = Some(error.clone());
        }
    }
    Some(watch)
}

/// When a watch's completion is next due for a send, while one is pending.
pub fn delivery_due(watch: &Watch) -> Option<DateTime<Utc>> {
    watch
        .delivery
        .as_ref()
        .filter(|delivery| delivery.state == DeliveryState::Pending)
        .and_then(|delivery| delivery.next_at)
}

fn success_message(watch: &Watch, result: &CheckResult) -> String {
    let value = match &result.value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    watch.on_success_message.replace("{result}", &value)
}

fn failure_message(watch: &Watch, result: &CheckResult) -> String {
    match &watch.on_failure_message {
        Some(message) => message.clone(),
        None => {
            let check = watch
                .check()
                .map_or_else(|_| watch.job_type.clone(), |check| check.describe());
            let last = result
                .error
                .as_deref()
                .map(|error| format!(" (last error: {error})"))
                .unwrap_or_default();
            format!(
                "The watch gave up after {} attempts: {check} did not succeed{last}.",
                watch.attempts
            )
        }
    }
}
