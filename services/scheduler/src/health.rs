//! Whether this replica is fit to serve: its engine still runs, its database answers, and no
//! due work waits longer than `engine.max_overdue` (which means the engine is stuck, or far
//! behind). `/ready` answers from [`readiness`]; `/metrics` shows the overdue span it finds.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::StoreError;

use crate::app::App;
use crate::stores::Stores;
use crate::telemetry;

/// How long the stores may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the replica is not ready.
pub type NotReady = String;

/// Ready, or why not. Also updates `scheduler_oldest_overdue_seconds`.
pub async fn readiness(app: &App) -> Result<(), NotReady> {
    if let Some(reason) = app.engine_stopped.borrow().clone() {
        return Err(format!("the engine has stopped: {reason}"));
    }
    let now = Utc::now();
    let overdue = match tokio::time::timeout(
        PROBE_TIMEOUT,
        oldest_overdue(&app.stores, app.is_leader(), now),
    )
    .await
    {
        Ok(Ok(overdue)) => overdue,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => {
            return Err(format!(
                "the database did not answer within {PROBE_TIMEOUT:?}"
            ));
        }
    };
    telemetry::oldest_overdue(overdue.map_or(0.0, seconds));
    match overdue {
        Some(late) if late > app.max_overdue => Err(format!(
            "due work is overdue by {:.0}s, beyond engine.max_overdue ({}s): the engine is \
             stuck or far behind",
            seconds(late),
            app.max_overdue.num_seconds()
        )),
        _ => Ok(()),
    }
}

/// How long the oldest piece of due work of the stores this replica fires has waited: a
/// schedule's next run, or the lease of a run that nobody finished. `None` when nothing is due.
/// Each persisted store answers from an index, so this also probes the database.
pub async fn oldest_overdue(
    stores: &Stores,
    leading: bool,
    now: DateTime<Utc>,
) -> Result<Option<TimeDelta>, StoreError> {
    let mut oldest: Option<DateTime<Utc>> = None;
    for store in stores.active(leading) {
        if let Some(at) = store.next_wakeup().await? {
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    Ok(oldest
        .map(|at| now.signed_duration_since(at))
        .filter(|late| *late > TimeDelta::zero()))
}

fn seconds(span: TimeDelta) -> f64 {
    span.num_milliseconds() as f64 / 1000.0
}
