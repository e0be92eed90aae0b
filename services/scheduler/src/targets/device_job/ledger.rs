//! Writing placements to the ledger: the occurrences placed at once (a burst due together)
//! are written together, in one statement per jobstore, each placement awaited by the
//! occurrence it places (its job is queued only once its placement is in the ledger).

use std::sync::OnceLock;
use std::time::Instant;

use jobstore::{RunPlacement, StoreName};
use tokio::sync::{mpsc, oneshot};

use crate::stores::Stores;
use crate::telemetry;

/// The most placements written in one go.
const MAX_BATCH: usize = 1000;

type Request = (RunPlacement, oneshot::Sender<Result<bool, String>>);

/// The writer of placements, started with the first one.
pub(super) struct Placements {
    stores: Stores,
    sender: OnceLock<mpsc::UnboundedSender<(StoreName, Request)>>,
}

impl Placements {
    pub(super) fn new(stores: Stores) -> Self {
        Placements {
            stores,
            sender: OnceLock::new(),
        }
    }

    /// Writes `placement` with the others made meanwhile: whether the row took it (it was
    /// still pending and placed as expected), or why it could not be written.
    pub(super) async fn write(
        &self,
        jobstore: StoreName,
        placement: RunPlacement,
    ) -> Result<bool, String> {
        let sender = self.sender.get_or_init(|| {
            let (sender, incoming) = mpsc::unbounded_channel();
            tokio::spawn(write_placements(self.stores.clone(), incoming));
            sender
        });
        let (reply, answer) = oneshot::channel();
        sender
            .send((jobstore, (placement, reply)))
            .map_err(|_| "the placement writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the placement writer has stopped".to_string())?
    }
}

async fn write_placements(
    stores: Stores,
    mut incoming: mpsc::UnboundedReceiver<(StoreName, Request)>,
) {
    let mut batch = Vec::new();
    while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for (store, requests) in stores.per_store(std::mem::take(&mut batch)) {
            let (placements, replies): (Vec<RunPlacement>, Vec<_>) = requests.into_iter().unzip();
            let started = Instant::now();
            let written = store.place(&placements).await;
            telemetry::store_operation("place", started.elapsed());
            match written {
                Ok(taken) => {
                    for (reply, taken) in replies.into_iter().zip(taken) {
                        let _ = reply.send(Ok(taken));
                    }
                }
                Err(error) => {
                    let error = error.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}
