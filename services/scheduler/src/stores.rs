//! The jobstores this process serves.

use std::collections::HashMap;
use std::sync::Arc;

use jobstore::{JobStore, StoreName, WatchStore};

/// The jobstores this process serves, by name.
#[derive(Clone)]
pub struct Stores {
    by_name: HashMap<StoreName, Arc<dyn JobStore>>,
}

impl Stores {
    pub fn new(stores: impl IntoIterator<Item = Arc<dyn JobStore>>) -> Self {
        Stores {
            by_name: stores.into_iter().map(|s| (s.jobstore(), s)).collect(),
        }
    }

    pub fn get(&self, jobstore: StoreName) -> Option<&Arc<dyn JobStore>> {
        self.by_name.get(&jobstore)
    }

    /// The watches, kept beside the `execution` jobstore's schedules.
    pub fn watches(&self) -> Option<Arc<dyn WatchStore>> {
        self.get(StoreName::Execution)?.clone().watch_store()
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
