//! The leases of the runs in flight: renewed every third of a lease while this process still
//! has them, and released at shutdown so that another replica takes over at once what was not
//! finished.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use jobstore::StoreName;

use super::{InFlight, RunKey, lock};
use crate::stores::Stores;
use crate::telemetry;

/// The longest the release of unfinished runs may take at shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends the leases of runs whose outcome was not recorded before shutdown.
pub(super) async fn release_unfinished(stores: &Stores, in_flight: &InFlight) {
    let left: Vec<(StoreName, RunKey)> = lock(in_flight)
        .drain()
        .map(|(key, jobstore)| (jobstore, key))
        .collect();
    let now = Utc::now();
    for (store, keys) in stores.per_store(left) {
        let jobstore = store.jobstore();
        match tokio::time::timeout(RELEASE_TIMEOUT, store.set_leases(&keys, now)).await {
            Ok(Ok(())) => tracing::warn!(
                jobstore = jobstore.as_str(),
                runs = keys.len(),
                "released unfinished runs for takeover; they will be dispatched again with the same idempotency keys"
            ),
            Ok(Err(error)) => {
                tracing::error!(%error, runs = keys.len(), "releasing unfinished runs failed; they are taken over when their leases expire")
            }
            Err(_) => tracing::error!(
                runs = keys.len(),
                "releasing unfinished runs timed out; they are taken over when their leases expire"
            ),
        }
    }
}

/// Renews, every `every`, the leases of the runs this process has claimed and not yet
/// recorded (waiting for a dispatch slot, or dispatching), so that no other replica takes over
/// a run whose claimer is alive and busy. Only the runs of a process that died, or that lost
/// the database, are taken over.
pub(super) async fn renew_leases(
    stores: Stores,
    in_flight: InFlight,
    lease: TimeDelta,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<(StoreName, RunKey)> = lock(&in_flight)
            .iter()
            .map(|(key, jobstore)| (*jobstore, key.clone()))
            .collect();
        let until = Utc::now() + lease;
        for (store, keys) in stores.per_store(held) {
            let started = Instant::now();
            let renewed = store.set_leases(&keys, until).await;
            telemetry::store_operation("set_leases", started.elapsed());
            if let Err(error) = renewed {
                tracing::warn!(%error, runs = keys.len(), "renewing the leases of runs in flight failed; another replica may take them over");
            }
        }
    }
}
