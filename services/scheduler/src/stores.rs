//! The jobstores this process serves.

use std::collections::HashMap;
use std::sync::Arc;

use jobstore::{JobStore, StoreName, WatchStore};

/// The jobstores this process serves, by name.
#[derive(Clone)]
pub struct Stores {
    by_name: HashMap<StoreName, Arc<dyn JobStore>>,
    watches: Option<Arc<dyn WatchStore>>,
}

impl Stores {
    pub fn new(stores: impl IntoIterator<Item = Arc<dyn JobStore>>) -> Self {
        Stores {
            by_name: stores.into_iter().map(|s| (s.jobstore(), s)).collect(),
            watches: None,
        }
    }

    /// These stores with the watches, kept beside the `execution` jobstore's schedules (in its
    /// database, or the same in-memory store).
    pub fn with_watches(mut self, watches: Arc<dyn WatchStore>) -> Self {
        self.watches = Some(watches);
        self
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

    /// The stores a replica fires: the persisted ones always, the in-memory ones only while it
    /// leads.
    pub fn active(&self, leading: bool) -> impl Iterator<Item = &Arc<dyn JobStore>> {
        self.all()
            .filter(move |store| leading || store.backend() != "memory")
    }
}
