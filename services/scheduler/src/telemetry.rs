//! Metrics, served as Prometheus text at `GET /metrics`. Names and labels:
//!
//! - `scheduler_occurrences_total{jobstore, status}`: runs that ended, by ledger status;
//! - `scheduler_dispatch_failures_total{jobstore, reason}`: failed runs, `unreachable` or
//!   `rejected`;
//! - `scheduler_dispatch_duration_seconds{jobstore}`: from the start of a dispatch to its end,
//!   retries included;
//! - `scheduler_dispatch_lag_seconds{jobstore}`: how late a dispatch started after its
//!   scheduled time;
//! - `scheduler_claims_total{jobstore, kind}`: runs claimed, `due` or `reclaimed` (an expired
//!   lease taken over);
//! - `scheduler_store_operation_seconds{operation}`: the engine's store calls;
//! - `scheduler_leader`: 1 while this replica leads;
//! - `scheduler_database_up`: 1 while the engine's last store call succeeded;
//! - `scheduler_dispatches_in_flight`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds, from a millisecond to ten minutes.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 600.0,
];

/// Installs the process-wide recorder once and returns the handle that renders it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
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
        "Runs claimed: due ones, or expired leases taken over."
    );
    metrics::describe_histogram!(
        "scheduler_store_operation_seconds",
        metrics::Unit::Seconds,
        "Latency of the engine's store calls."
    );
    metrics::describe_gauge!("scheduler_leader", "1 while this replica leads.");
    metrics::describe_gauge!(
        "scheduler_database_up",
        "1 while the engine's last store call succeeded."
    );
    metrics::describe_gauge!(
        "scheduler_dispatches_in_flight",
        "Dispatches started and not yet recorded."
    );
}

pub fn claimed(jobstore: &'static str, kind: &'static str, runs: usize) {
    if runs > 0 {
        counter!("scheduler_claims_total", "jobstore" => jobstore, "kind" => kind)
            .increment(runs as u64);
    }
}

pub fn dispatch_started(jobstore: &'static str, lag: Duration) {
    histogram!("scheduler_dispatch_lag_seconds", "jobstore" => jobstore).record(lag.as_secs_f64());
    gauge!("scheduler_dispatches_in_flight").increment(1.0);
}

pub fn dispatch_ended(
    jobstore: &'static str,
    status: &'static str,
    failure: Option<&'static str>,
    took: Duration,
) {
    gauge!("scheduler_dispatches_in_flight").decrement(1.0);
    histogram!("scheduler_dispatch_duration_seconds", "jobstore" => jobstore)
        .record(took.as_secs_f64());
    counter!("scheduler_occurrences_total", "jobstore" => jobstore, "status" => status)
        .increment(1);
    if let Some(reason) = failure {
        counter!("scheduler_dispatch_failures_total", "jobstore" => jobstore, "reason" => reason)
            .increment(1);
    }
}

pub fn store_operation(operation: &'static str, took: Duration) {
    histogram!("scheduler_store_operation_seconds", "operation" => operation)
        .record(took.as_secs_f64());
}

pub fn leader(leading: bool) {
    gauge!("scheduler_leader").set(if leading { 1.0 } else { 0.0 });
}

pub fn database_up(up: bool) {
    gauge!("scheduler_database_up").set(if up { 1.0 } else { 0.0 });
}
