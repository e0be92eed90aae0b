//! `get_scheduler_status`: what an operator asks a replica first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobstore::{JobStore, StoreName};
use scheduler_api::{JobstoreStatus, SchedulerStatus};

use crate::app::App;

/// How old a jobstore's count of schedules may be when it is shown. Counting a million rows
/// takes about 100 ms on PostgreSQL, so a status call does not count: it shows the last count,
/// and a count older than this is made again in the background.
const COUNT_FOR: Duration = Duration::from_secs(10);

/// The last count of each jobstore's schedules.
#[derive(Default)]
pub struct Counts(Mutex<HashMap<StoreName, Counted>>);

#[derive(Clone, Copy)]
struct Counted {
    schedules: u64,
    at: Instant,
    /// Whether a count is being made now.
    counting: bool,
}

impl Counts {
    /// The jobstore's count of schedules, counted now the first time and at most
    /// [`COUNT_FOR`] before otherwise; `None` when it cannot be counted.
    async fn of(self: &Arc<Self>, store: &Arc<dyn JobStore>) -> Option<u64> {
        let name = store.jobstore();
        let last = self.0.lock().unwrap().get(&name).copied();
        match last {
            None => self.count(store).await,
            Some(last) if last.at.elapsed() < COUNT_FOR || last.counting => Some(last.schedules),
            Some(last) => {
                if let Some(entry) = self.0.lock().unwrap().get_mut(&name) {
                    entry.counting = true;
                }
                let (counts, store) = (self.clone(), store.clone());
                tokio::spawn(async move { counts.count(&store).await });
                Some(last.schedules)
            }
        }
    }

    async fn count(&self, store: &Arc<dyn JobStore>) -> Option<u64> {
        let counted = store.count().await;
        let mut counts = self.0.lock().unwrap();
        match counted {
            Ok(schedules) => {
                let at = Instant::now();
                let counting = false;
                counts.insert(
                    store.jobstore(),
                    Counted {
                        schedules,
                        at,
                        counting,
                    },
                );
                Some(schedules)
            }
            Err(error) => {
                tracing::warn!(%error, jobstore = store.jobstore().as_str(), "status: cannot count schedules");
                counts.remove(&store.jobstore());
                None
            }
        }
    }
}

pub(super) async fn status(app: &App) -> SchedulerStatus {
    let leader = app.is_leader();
    let mut jobstores = Vec::new();
    let mut database_ok = true;
    for store in app.stores.all() {
        let persisted = store.backend() != "memory";
        let schedules = app.counts.of(store).await;
        let next_run_time = match store.next_wakeup().await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, jobstore = store.jobstore().as_str(), "status: cannot read the next run");
                database_ok &= !persisted;
                None
            }
        };
        database_ok &= schedules.is_some() || !persisted;
        jobstores.push(JobstoreStatus {
            name: store.jobstore().as_str().to_string(),
            backend: store.backend().to_string(),
            schedules,
            next_run_time,
            active: leader || persisted,
        });
    }
    let next_run_time = jobstores
        .iter()
        .filter(|j| j.active)
        .filter_map(|j| j.next_run_time)
        .min();
    SchedulerStatus {
        started_at: app.started_at_utc,
        uptime_secs: app.started_at.elapsed().as_secs_f64(),
        leader,
        database: app.database.to_string(),
        database_ok,
        jobstores,
        next_run_time,
    }
}
