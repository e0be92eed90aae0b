//! Who does the singleton work (the in-memory jobstores, system task registration).
//!
//! On PostgreSQL, replicas elect a leader with a session advisory lock held on a connection of
//! its own, outside the pool. A replica that does not lead tries to take the lock every
//! `leader_poll`; the leader checks its connection as often and steps down the moment the check
//! fails. A leader that dies (even by SIGKILL) closes its socket, the server ends its session
//! and frees the lock, and another replica leads within one poll.
//!
//! On the same connection each replica holds a lock of its own ([`jobstore::replica`]): while
//! it holds it, it is *present*, and the others know it alive; when it dies its session ends
//! and the others take over its runs at once instead of waiting for their leases.
//!
//! On SQLite there is one process: a lock file beside the database keeps a second one from
//! starting, and that one process always leads.

use std::time::{Duration, Instant};

use jobstore::DatabaseUrl;
pub(crate) use jobstore::SoleProcess;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

/// The advisory lock's key: one election per schema, so schedulers on different schemas of one
/// database do not share a leader.
const LOCK_KEY: &str = "hashtext('scheduler-leader:' || current_schema())";

/// What the election tells the rest of the process.
pub(crate) struct Election {
    /// Whether this process leads now; on SQLite always true.
    pub leading: watch::Receiver<bool>,
    /// Since when this replica holds its presence lock without a break; `None` while it does
    /// not (and always on SQLite, where no other process could take its runs).
    pub present: watch::Receiver<Option<Instant>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the election for `url`.
pub(crate) fn elect(
    url: &DatabaseUrl,
    poll: Duration,
    shutdown: service_kit::Shutdown,
) -> anyhow::Result<Election> {
    match url.pg_options()? {
        None => Ok(Election {
            leading: watch::channel(true).1,
            present: watch::channel(None).1,
            task: None,
        }),
        Some(options) => {
            let (leading, leading_rx) = watch::channel(false);
            let (present, present_rx) = watch::channel(None);
            let task = tokio::spawn(campaign(options, poll, leading, present, shutdown));
            Ok(Election {
                leading: leading_rx,
                present: present_rx,
                task: Some(task),
            })
        }
    }
}

/// Takes this replica's presence lock on a new connection; whether it holds it. A lock held by
/// another replica (two ids whose hashes collide) is not waited for: this one then counts as
/// alive through the other's lock, and its runs are taken over when their leases expire.
async fn announce(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let lock = format!(
        "SELECT pg_try_advisory_lock({}, hashtext($1))",
        jobstore::replica::LOCK_KEY
    );
    let held = sqlx::query_scalar::<_, bool>(&lock)
        .bind(jobstore::replica::id())
        .fetch_one(conn)
        .await?;
    if held {
        tracing::info!(replica = jobstore::replica::id(), "replica present");
    } else {
        tracing::warn!(
            replica = jobstore::replica::id(),
            "another replica holds this replica's presence lock; its runs will be taken over \
             only when their leases expire"
        );
    }
    Ok(held)
}

/// A new connection for the election, on which this replica has announced itself
/// ([`announce`]); `None`, said in the log, when the database cannot be had.
async fn open(
    options: &PgConnectOptions,
    present: &watch::Sender<Option<Instant>>,
) -> Option<PgConnection> {
    let mut conn = match PgConnection::connect_with(options).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "leader election: cannot connect; retrying");
            return None;
        }
    };
    match announce(&mut conn).await {
        Ok(true) => {
            present.send_replace(Some(Instant::now()));
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(%error, "leader election: cannot take the presence lock; retrying");
            return None;
        }
    }
    Some(conn)
}

async fn campaign(
    options: PgConnectOptions,
    poll: Duration,
    leading: watch::Sender<bool>,
    present: watch::Sender<Option<Instant>>,
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
            None => match open(&options, &present).await {
                Some(conn) => connection.insert(conn),
                None => {
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
                present.send_replace(None);
                connection = None;
            }
        }
        wait(poll, &mut shutdown).await;
    }
    present.send_replace(None);
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
