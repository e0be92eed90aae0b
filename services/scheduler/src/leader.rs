//! Who does the singleton work (the in-memory jobstores, system task registration).
//!
//! On PostgreSQL, replicas elect a leader with a session advisory lock held on a connection of
//! its own, outside the pool. A replica that does not lead tries to take the lock every
//! `leader_poll`; the leader checks its connection as often and steps down the moment the check
//! fails. A leader that dies (even by SIGKILL) closes its socket, the server ends its session
//! and frees the lock, and another replica leads within one poll.
//!
//! On SQLite there is one process: a lock file beside the database keeps a second one from
//! starting, and that one process always leads.

use std::time::Duration;

use jobstore::DatabaseUrl;
pub use jobstore::SoleProcess;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

/// The advisory lock's key: one election per schema, so schedulers on different schemas of one
/// database do not share a leader.
const LOCK_KEY: &str = "hashtext('scheduler-leader:' || current_schema())";

/// Starts the election for `url`. The receiver says whether this process leads now; on SQLite it
/// is always true.
pub fn elect(
    url: &DatabaseUrl,
    poll: Duration,
    shutdown: service_kit::Shutdown,
) -> anyhow::Result<(watch::Receiver<bool>, Option<tokio::task::JoinHandle<()>>)> {
    match url.pg_options()? {
        None => Ok((watch::channel(true).1, None)),
        Some(options) => {
            let (leading, receiver) = watch::channel(false);
            let task = tokio::spawn(campaign(options, poll, leading, shutdown));
            Ok((receiver, Some(task)))
        }
    }
}

async fn campaign(
    options: PgConnectOptions,
    poll: Duration,
    leading: watch::Sender<bool>,
    mut shutdown: service_kit::Shutdown,
) {
    let options = options
        .application_name("scheduler-leader")
        .disable_statement_logging();
    let mut connection: Option<PgConnection> = None;
    loop {
        if shutdown.is_requested() {
            break;
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match PgConnection::connect_with(&options).await {
                Ok(conn) => connection.insert(conn),
                Err(error) => {
                    tracing::warn!(%error, "leader election: cannot connect; retrying");
                    wait(poll, &mut shutdown).await;
                    continue;
                }
            },
        };
        let was_leading = *leading.borrow();
        let check = if was_leading {
            // The lock lives as long as this session: a working connection means we still
            // hold it.
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut *conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query_scalar::<_, bool>(&format!("SELECT pg_try_advisory_lock({LOCK_KEY})"))
                .fetch_one(&mut *conn)
                .await
        };
        match check {
            Ok(true) if !was_leading => {
                tracing::info!("leader election: this replica now leads");
                leading.send_replace(true);
            }
            Ok(_) => {}
            Err(error) => {
                if was_leading {
                    tracing::warn!(%error, "leader election: lost the lock connection; stepping down");
                } else {
                    tracing::warn!(%error, "leader election: connection failed; reconnecting");
                }
                leading.send_replace(false);
                connection = None;
            }
        }
        wait(poll, &mut shutdown).await;
    }
    if let Some(mut conn) = connection {
        if *leading.borrow() {
            let unlock = format!("SELECT pg_advisory_unlock({LOCK_KEY})");
            let _ = sqlx::query(&unlock).execute(&mut conn).await;
            tracing::info!("leader election: stepped down for shutdown");
        }
        let _ = conn.close().await;
    }
    leading.send_replace(false);
}

async fn wait(poll: Duration, shutdown: &mut service_kit::Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(poll) => {}
        () = shutdown.requested() => {}
    }
}
