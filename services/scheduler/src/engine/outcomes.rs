//! The outcome recorder: writes the outcomes of dispatched runs in batches, and a watch's
//! attempts with their count, retrying until they are stored; a run leaves the in-flight set
//! only once its outcome is stored.

use std::sync::Arc;
use std::time::Instant;

use jobstore::{JobStore, RunOutcome, StoreName};
use scheduler_api::CheckResult;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::backoff::until_done;
use super::{InFlight, lock};
use crate::stores::Stores;
use crate::targets::Ended;
use crate::telemetry;
use crate::watches::Watches;

/// Starts the recorder: what is sent to it is recorded until every sender is gone.
pub(super) fn start_recorder(
    stores: Stores,
    in_flight: InFlight,
    wake: Arc<Notify>,
    watches: Arc<Watches>,
) -> (mpsc::UnboundedSender<(StoreName, Ended)>, JoinHandle<()>) {
    let (outcomes, incoming) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_outcomes(stores, incoming, in_flight, wake, watches));
    (outcomes, recorder)
}

/// Writes outcomes in batches (a watch's attempts with their count, in one transaction per
/// batch); a run leaves the in-flight set only once its outcome is stored.
async fn record_outcomes(
    stores: Stores,
    mut incoming: mpsc::UnboundedReceiver<(StoreName, Ended)>,
    in_flight: InFlight,
    wake: Arc<Notify>,
    watch_ended: Arc<Watches>,
) {
    const MAX_BATCH: usize = 1000;
    let mut batch = Vec::new();
    while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for (store, ended) in stores.per_store(std::mem::take(&mut batch)) {
            let mut outcomes = Vec::with_capacity(ended.len());
            let mut attempts = Vec::new();
            for Ended { outcome, check } in ended {
                match check {
                    Some(check) => attempts.push((outcome, check)),
                    None => outcomes.push(outcome),
                }
            }
            if !attempts.is_empty() {
                record_attempts(&stores, store, &attempts, &watch_ended).await;
                let mut flying = lock(&in_flight);
                for (outcome, _) in &attempts {
                    flying.remove(&(outcome.schedule_id.clone(), outcome.scheduled_time));
                }
            }
            if outcomes.is_empty() {
                continue;
            }
            // The runs stay pending in the store until this succeeds; keep trying, so nothing
            // is lost.
            let what = format!("recording {} run outcomes", outcomes.len());
            let recorded = until_done(&what, || async {
                let started = Instant::now();
                let recorded = store.finish_runs(&outcomes).await;
                telemetry::store_operation("finish_runs", started.elapsed());
                recorded
            })
            .await;
            if recorded > 0 {
                // Runs that waited for these to end are due now.
                wake.notify_one();
            }
            let mut flying = lock(&in_flight);
            for outcome in &outcomes {
                flying.remove(&(outcome.schedule_id.clone(), outcome.scheduled_time));
            }
        }
    }
}

/// Records watches' attempts with their ledger rows, retrying until it is stored; wakes the
/// completions' sender when a watch has ended.
async fn record_attempts(
    stores: &Stores,
    store: &Arc<dyn JobStore>,
    attempts: &[(RunOutcome, CheckResult)],
    watches: &Watches,
) {
    let watch_store = stores
        .watches()
        .filter(|_| store.jobstore() == StoreName::Execution);
    let Some(watch_store) = watch_store else {
        tracing::error!(
            jobstore = store.jobstore().as_str(),
            "watch attempts in a jobstore without watches; they are left pending"
        );
        return;
    };
    let what = format!("recording {} watch attempts", attempts.len());
    let recorded = until_done(&what, || async {
        let started = Instant::now();
        let recorded = watch_store.record_attempts(attempts).await;
        telemetry::store_operation("record_attempts", started.elapsed());
        recorded
    })
    .await;
    for watch in &recorded {
        tracing::debug!(watch_id = %watch.id, attempts = watch.attempts, status = watch.status.as_str(), "watch attempt recorded");
    }
    if recorded.iter().any(|watch| watch.delivery.is_some()) {
        watches.ended.notify_one();
    }
}
