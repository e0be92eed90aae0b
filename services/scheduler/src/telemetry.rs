//! Metrics, served as Prometheus text at `GET /metrics`. Names and labels:
//!
//! - `scheduler_occurrences_total{jobstore, status}`: runs that ended, by ledger status
//!   (`dispatched`, `failed`, `skipped`, `coalesced`);
//! - `scheduler_dispatch_failures_total{jobstore, reason}`: failed runs, `unreachable` or
//!   `rejected`;
//! - `scheduler_dispatch_duration_seconds{jobstore}`: from the start of a dispatch to its end,
//!   retries included;
//! - `scheduler_dispatch_lag_seconds{jobstore}`: how late a dispatch started after its
//!   scheduled time;
//! - `scheduler_claims_total{jobstore, kind}`: runs claimed, `due`, `reclaimed` (an expired
//!   lease taken over) or `taken_over` (the run of a replica whose session ended);
//! - `scheduler_store_operation_seconds{operation}`: the engine's store calls;
//! - `scheduler_ledger_rows_deleted_total{rule}`: ledger rows the retention deleted, by `age`
//!   or `count`;
//! - `scheduler_leader`: 1 while this replica leads;
//! - `scheduler_database_up`: 1 while the engine's last store call succeeded;
//! - `scheduler_dispatches_in_flight`;
//! - `scheduler_placement_seconds`: per occurrence of a device job placed by tags, the time to
//!   choose its phone and write the choice to the ledger;
//! - `scheduler_alerts_open{kind}`: incidents open now (`late`, `failing`, `missing`), as
//!   of this replica's last count;
//! - `scheduler_alerts_pass_seconds` and `scheduler_alerts_checked`: how long the leader's last
//!   pass over the alert checks took, and how many schedules it checked;
//! - `scheduler_oldest_overdue_seconds`: how long the oldest due occurrence has waited (0 when
//!   none waits), as of the last `/ready` or `/metrics` request.
//!
//! Every series whose labels are known in advance (each jobstore, status, reason, kind, store
//! operation and retention rule) is registered at start, so it reads 0 from the first scrape
//! instead of being absent until something happens.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use jobstore::{RunStatus, StoreName};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;

/// The per-dispatch handles of one jobstore, registered once: a dispatch then costs a few
/// atomic operations instead of a registry lookup per metric.
struct StoreMetrics {
    lag: Histogram,
    duration: Histogram,
    /// `scheduler_occurrences_total` by ended status, in the order of [`ENDED`].
    ended: [Counter; ENDED.len()],
    unreachable: Counter,
    rejected: Counter,
    due: Counter,
    reclaimed: Counter,
    taken_over: Counter,
}

/// The statuses a ledger row ends with.
const ENDED: [RunStatus; 4] = [
    RunStatus::Dispatched,
    RunStatus::Failed,
    RunStatus::Skipped,
    RunStatus::Coalesced,
];

/// The engine's store calls timed by `scheduler_store_operation_seconds`.
const STORE_OPERATIONS: [&str; 15] = [
    "claim_due",
    "reclaim_expired",
    "take_over",
    "next_wakeup",
    "still_pending",
    "set_leases",
    "finish_runs",
    "record_attempts",
    "prune_finished",
    "prune_changes",
    "prune_alerts",
    "over_keep",
    "trim_runs",
    "annotate",
    "place",
];

/// The retention's rules, by which `scheduler_ledger_rows_deleted_total` counts.
const PRUNE_RULES: [&str; 2] = ["age", "count"];

static STORES: OnceLock<HashMap<&'static str, StoreMetrics>> = OnceLock::new();
static IN_FLIGHT: OnceLock<Gauge> = OnceLock::new();

/// Installs the process-wide recorder once ([`service_kit::metrics::install`]), registers the
/// scheduler's metrics, and returns the handle that renders them.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = service_kit::metrics::install()?;
    describe();
    STORES.get_or_init(|| {
        StoreName::ALL
            .iter()
            .map(|j| (j.as_str(), store_metrics(j.as_str())))
            .collect()
    });
    IN_FLIGHT.get_or_init(|| gauge!("scheduler_dispatches_in_flight"));
    for operation in STORE_OPERATIONS {
        // Registered, a histogram is rendered with no observations.
        let _registered = histogram!("scheduler_store_operation_seconds", "operation" => operation);
    }
    for rule in PRUNE_RULES {
        counter!("scheduler_ledger_rows_deleted_total", "rule" => rule).increment(0);
    }
    let _registered = histogram!("scheduler_placement_seconds");
    alerts_open(&[]);
    alerts_pass(Duration::ZERO, 0);
    Ok(handle)
}

fn store_metrics(jobstore: &'static str) -> StoreMetrics {
    let status = |s: &'static str| counter!("scheduler_occurrences_total", "jobstore" => jobstore, "status" => s);
    let failure = |r: &'static str| counter!("scheduler_dispatch_failures_total", "jobstore" => jobstore, "reason" => r);
    let claims =
        |k: &'static str| counter!("scheduler_claims_total", "jobstore" => jobstore, "kind" => k);
    StoreMetrics {
        lag: histogram!("scheduler_dispatch_lag_seconds", "jobstore" => jobstore),
        duration: histogram!("scheduler_dispatch_duration_seconds", "jobstore" => jobstore),
        ended: ENDED.map(|ended| status(ended.as_str())),
        unreachable: failure("unreachable"),
        rejected: failure("rejected"),
        due: claims("due"),
        reclaimed: claims("reclaimed"),
        taken_over: claims("taken_over"),
    }
}

fn store(jobstore: &str) -> Option<&'static StoreMetrics> {
    STORES.get()?.get(jobstore)
}

fn describe() {
    metrics::describe_counter!(
        "scheduler_occurrences_total",
        "Runs that ended, by ledger status."
    );
    metrics::describe_counter!(
        "scheduler_dispatch_failures_total",
        "Runs recorded as failed, by reason."
    );
    metrics::describe_histogram!(
        "scheduler_dispatch_duration_seconds",
        metrics::Unit::Seconds,
        "Time from the start of a dispatch to its end, retries included."
    );
    metrics::describe_histogram!(
        "scheduler_dispatch_lag_seconds",
        metrics::Unit::Seconds,
        "How late a dispatch started after its scheduled time."
    );
    metrics::describe_counter!(
        "scheduler_claims_total",
        "Runs claimed: due ones, expired leases taken over, or the runs of replicas whose \
         session ended."
    );
    metrics::describe_histogram!(
        "scheduler_store_operation_seconds",
        metrics::Unit::Seconds,
        "Latency of the engine's store calls."
    );
    metrics::describe_gauge!("scheduler_leader", "1 while this replica leads.");
    metrics::describe_histogram!(
        "scheduler_placement_seconds",
        metrics::Unit::Seconds,
        "Per occurrence of a device job placed by tags: choosing its phone and writing the \
         choice to the ledger."
    );
    metrics::describe_counter!(
        "scheduler_ledger_rows_deleted_total",
        "Run ledger rows deleted by the retention: by age (ledger.retention) or by count \
         (ledger.keep_per_schedule)."
    );
    metrics::describe_gauge!(
        "scheduler_database_up",
        "1 while the engine's last store call succeeded."
    );
    metrics::describe_gauge!(
        "scheduler_dispatches_in_flight",
        "Dispatches started and not yet recorded."
    );
    metrics::describe_gauge!(
        "scheduler_alerts_open",
        "Incidents open now, by kind: late, failing, missing."
    );
    metrics::describe_gauge!(
        "scheduler_alerts_pass_seconds",
        metrics::Unit::Seconds,
        "How long the leader's last pass over the alert checks took."
    );
    metrics::describe_gauge!(
        "scheduler_alerts_checked",
        "How many schedules the leader's last pass over the alert checks read."
    );
    metrics::describe_gauge!(
        "scheduler_oldest_overdue_seconds",
        metrics::Unit::Seconds,
        "How long the oldest due occurrence has waited to be claimed (0 when none waits)."
    );
}

/// Sets `scheduler_alerts_open` from the open incidents.
pub(crate) fn alerts_open(open: &[jobstore::Alert]) {
    for kind in jobstore::AlertKind::ALL {
        let count = open.iter().filter(|alert| alert.kind == kind).count();
        gauge!("scheduler_alerts_open", "kind" => kind.as_str()).set(count as f64);
    }
}

/// Records a pass over the alert checks: how long it took and how many schedules it read.
pub(crate) fn alerts_pass(took: Duration, checked: usize) {
    gauge!("scheduler_alerts_pass_seconds").set(took.as_secs_f64());
    gauge!("scheduler_alerts_checked").set(checked as f64);
}

pub(crate) fn claimed(jobstore: &str, kind: &str, runs: usize) {
    if let Some(metrics) = store(jobstore).filter(|_| runs > 0) {
        let counter = match kind {
            "due" => &metrics.due,
            "taken_over" => &metrics.taken_over,
            _ => &metrics.reclaimed,
        };
        counter.increment(runs as u64);
    }
}

pub(crate) fn dispatch_started(jobstore: &str, lag: Duration) {
    if let Some(metrics) = store(jobstore) {
        metrics.lag.record(lag.as_secs_f64());
    }
    if let Some(gauge) = IN_FLIGHT.get() {
        gauge.increment(1.0);
    }
}

/// A dispatch ended: `failure` is the reason when it failed.
pub(crate) fn dispatch_ended(jobstore: &str, failure: Option<&str>, took: Duration) {
    if let Some(gauge) = IN_FLIGHT.get() {
        gauge.decrement(1.0);
    }
    let Some(metrics) = store(jobstore) else {
        return;
    };
    metrics.duration.record(took.as_secs_f64());
    match failure {
        None => ended(jobstore, RunStatus::Dispatched),
        Some(reason) => {
            ended(jobstore, RunStatus::Failed);
            if reason == "unreachable" {
                metrics.unreachable.increment(1);
            } else {
                metrics.rejected.increment(1);
            }
        }
    }
}

/// A run of `jobstore` ended with `status` (one of [`ENDED`]; an open status counts nothing).
pub(crate) fn ended(jobstore: &str, status: RunStatus) {
    let position = ENDED.iter().position(|ended| *ended == status);
    if let (Some(metrics), Some(position)) = (store(jobstore), position) {
        metrics.ended[position].increment(1);
    }
}

/// Ledger rows deleted by the retention, by rule (`age`, `count`).
pub(crate) fn pruned(rule: &'static str, rows: u64) {
    debug_assert!(PRUNE_RULES.contains(&rule), "retention rule '{rule}'");
    if rows > 0 {
        counter!("scheduler_ledger_rows_deleted_total", "rule" => rule).increment(rows);
    }
}

/// An occurrence was placed on a phone, in `took`.
pub(crate) fn placed(took: Duration) {
    histogram!("scheduler_placement_seconds").record(took.as_secs_f64());
}

pub(crate) fn store_operation(operation: &'static str, took: Duration) {
    debug_assert!(
        STORE_OPERATIONS.contains(&operation),
        "store operation '{operation}' is not registered in STORE_OPERATIONS"
    );
    histogram!("scheduler_store_operation_seconds", "operation" => operation)
        .record(took.as_secs_f64());
}

pub(crate) fn leader(leading: bool) {
    gauge!("scheduler_leader").set(if leading { 1.0 } else { 0.0 });
}

pub(crate) fn database_up(up: bool) {
    gauge!("scheduler_database_up").set(if up { 1.0 } else { 0.0 });
}

pub(crate) fn oldest_overdue(seconds: f64) {
    gauge!("scheduler_oldest_overdue_seconds").set(seconds);
}
