//! The ledger's notes on runs in progress (what a run waits for, such as the job a device
//! runner queued for it), written in batches: the notes that came together are one statement
//! per jobstore, so 50 device jobs queued in the same instant cost one write instead of 50
//! writes racing for the pool. A note is for show: one that cannot be written is logged and
//! dropped, since a run's outcome is what counts.

use std::time::Instant;

use jobstore::{RunNote, StoreName};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::stores::Stores;
use crate::targets::Notes;
use crate::telemetry;

/// The most notes one write takes.
const MAX_BATCH: usize = 1000;

/// Starts the writer: what is sent to it is written until every sender is gone.
pub(super) fn start_notes(stores: Stores) -> (Notes, JoinHandle<()>) {
    let (notes, incoming) = mpsc::unbounded_channel();
    (notes, tokio::spawn(write_notes(stores, incoming)))
}

async fn write_notes(stores: Stores, mut incoming: mpsc::UnboundedReceiver<(StoreName, RunNote)>) {
    let mut batch = Vec::new();
    while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for (store, notes) in stores.per_store(std::mem::take(&mut batch)) {
            let started = Instant::now();
            let written = store.annotate(&notes).await;
            telemetry::store_operation("annotate", started.elapsed());
            if let Err(error) = written {
                tracing::warn!(%error, notes = notes.len(), "cannot note what runs wait for in the ledger");
            }
        }
    }
}
