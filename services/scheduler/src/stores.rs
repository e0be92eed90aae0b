//! The jobstores this process serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobstore::{AlertLog, ChangeLog, JobStore, StoreName, WatchStore};

/// The jobstores this process serves, by name.
#[derive(Clone)]
pub struct Stores {
    by_name: HashMap<StoreName, Arc<dyn JobStore>>,
    watches: Option<Arc<dyn WatchStore>>,
    changes: Option<Arc<dyn ChangeLog>>,
    alerts: Option<Arc<dyn AlertLog>>,
}

impl Stores {
    pub fn new(stores: impl IntoIterator<Item = Arc<dyn JobStore>>) -> Self {
        Stores {
            by_name: stores.into_iter().map(|s| (s.jobstore(), s)).collect(),
            watches: None,
            changes: None,
            alerts: None,
        }
    }

    /// These stores with the watches, kept beside the `execution` jobstore's schedules (in its
    /// database, or the same in-memory store).
    pub fn with_watches(mut self, watches: Arc<dyn WatchStore>) -> Self {
        self.watches = Some(watches);
        self
    }

    /// These stores with the audit log (in the `execution` jobstore's database).
    pub fn with_changes(mut self, changes: Arc<dyn ChangeLog>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// These stores with the alerts (in the `execution` jobstore's database).
    pub fn with_alerts(mut self, alerts: Arc<dyn AlertLog>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// The alerts, when this process keeps them.
    pub fn alerts(&self) -> Option<Arc<dyn AlertLog>> {
        self.alerts.clone()
    }

    /// The audit log, when this process keeps one.
    pub fn changes(&self) -> Option<Arc<dyn ChangeLog>> {
        self.changes.clone()
    }

    pub fn get(&self, jobstore: StoreName) -> Option<&Arc<dyn JobStore>> {
        self.by_name.get(&jobstore)
    }

    /// The watches, kept beside the `execution` jobstore's schedules.
    pub fn watches(&self) -> Option<Arc<dyn WatchStore>> {
        self.watches.clone()
    }

    /// Every store, in the fixed order of [`StoreName::ALL`].
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn JobStore>> {
        StoreName::ALL.iter().filter_map(|j| self.by_name.get(j))
    }

    /// Items grouped by the store they belong to, in the order of [`StoreName::ALL`]; stores
    /// with nothing, or not served here, are left out.
    pub(crate) fn per_store<T>(
        &self,
        items: Vec<(StoreName, T)>,
    ) -> Vec<(&Arc<dyn JobStore>, Vec<T>)> {
        let mut groups: Vec<_> = self.all().map(|store| (store, Vec::new())).collect();
        for (jobstore, item) in items {
            if let Some((_, group)) = groups.iter_mut().find(|(s, _)| s.jobstore() == jobstore) {
                group.push(item);
            }
        }
        groups.retain(|(_, group)| !group.is_empty());
        groups
    }

    /// The stores a replica fires: the persisted ones always, the in-memory ones only while it
    /// leads.
    pub fn active(&self, leading: bool) -> impl Iterator<Item = &Arc<dyn JobStore>> {
        self.all()
            .filter(move |store| leading || store.backend() != "memory")
    }
}

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
    pub(crate) async fn of(self: &Arc<Self>, store: &Arc<dyn JobStore>) -> Option<u64> {
        // Looked at and marked under one lock, so that two calls that find the count stale
        // start one recount, not two.
        let shown = {
            let mut counts = self.0.lock().unwrap();
            counts.get_mut(&store.jobstore()).map(|last| {
                let stale = last.at.elapsed() >= COUNT_FOR && !last.counting;
                last.counting |= stale;
                (last.schedules, stale)
            })
        };
        match shown {
            None => self.count(store).await,
            Some((schedules, stale)) => {
                if stale {
                    let (counts, store) = (self.clone(), store.clone());
                    tokio::spawn(async move { counts.count(&store).await });
                }
                Some(schedules)
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
