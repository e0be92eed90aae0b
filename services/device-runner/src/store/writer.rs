//! SQLite's one writer task and its group commit.

use service_kit::sql::Conn;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::writes::{Write, Written};
use super::{Result, StoreError};

pub(super) type Reply = oneshot::Sender<Result<Written>>;

/// SQLite's single writer: one task owns the writing connection and commits every write that
/// is waiting in one transaction, so concurrent writers share one fsync (group commit) and
/// never contend for SQLite's write lock. A write that fails alone (a constraint) fails alone;
/// a commit that fails fails every write of its batch.
pub(super) struct Writer;

impl Writer {
    const MAX_BATCH: usize = 512;

    pub(super) fn spawn(pool: SqlitePool) -> mpsc::UnboundedSender<(Write, Reply)> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(Write, Reply)>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while receiver.recv_many(&mut batch, Self::MAX_BATCH).await > 0 {
                match Self::commit(&pool, &batch).await {
                    Ok(outcomes) => {
                        for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(StoreError::Commit(message.clone())));
                        }
                    }
                }
            }
        });
        sender
    }

    async fn commit(pool: &SqlitePool, batch: &[(Write, Reply)]) -> Result<Vec<Result<Written>>> {
        let mut tx = pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (write, _) in batch {
            outcomes.push(write.apply(Conn::Sqlite(&mut tx)).await);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}
