//! The one writer task and its group commit, on either backend.

use service_kit::Database;
use service_kit::sql::Conn;
use sqlx::Acquire;
use tokio::sync::{mpsc, oneshot};

use super::writes::{Write, Written};
use super::{Result, StoreError};

pub(super) type Reply = oneshot::Sender<Result<Written>>;

/// The single writer: one task owns the writing connection and commits every write that is
/// waiting in one transaction, so concurrent writers share one commit (group commit: one
/// fsync for the 150 writes of 50 jobs starting together) and never contend for SQLite's
/// write lock. Each write runs in a savepoint of its own: a write that fails (a constraint)
/// fails alone, with nothing of it kept, and the others commit; a commit that fails fails
/// every write of its batch.
pub(super) struct Writer;

impl Writer {
    const MAX_BATCH: usize = 512;

    pub(super) fn spawn(database: Database) -> mpsc::UnboundedSender<(Write, Reply)> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(Write, Reply)>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while receiver.recv_many(&mut batch, Self::MAX_BATCH).await > 0 {
                let writes: Vec<&Write> = batch.iter().map(|(write, _)| write).collect();
                match Self::commit(&database, &writes).await {
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

    async fn commit(database: &Database, writes: &[&Write]) -> Result<Vec<Result<Written>>> {
        match database {
            Database::Postgres(pool) => Self::commit_on(pool, writes, |c| Conn::Postgres(c)).await,
            Database::Sqlite(pool) => Self::commit_on(pool, writes, |c| Conn::Sqlite(c)).await,
        }
    }

    /// One transaction of `writes` on `pool`, each in a savepoint kept when it succeeded and
    /// rolled back when it failed; `conn` names the backend's connection for the writes.
    async fn commit_on<DB: sqlx::Database>(
        pool: &sqlx::Pool<DB>,
        writes: &[&Write],
        conn: for<'c> fn(&'c mut DB::Connection) -> Conn<'c>,
    ) -> Result<Vec<Result<Written>>> {
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut tx = pool.begin().await?;
        for write in writes {
            let mut savepoint = tx.begin().await?;
            let outcome = write.apply(conn(&mut savepoint)).await;
            match &outcome {
                Ok(_) => savepoint.commit().await?,
                Err(_) => savepoint.rollback().await?,
            }
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}
