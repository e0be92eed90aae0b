//! One conformance suite, run against every backend: memory, SQLite and PostgreSQL, one
//! module per concern of the store ([`jobstore::Schedules`], [`jobstore::Claims`],
//! [`jobstore::Ledger`], [`jobstore::Retention`], [`jobstore::WatchStore`]).
//! Each PostgreSQL test works in a schema of its own and drops it afterwards.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{
    DatabaseUrl, JobStore, ListFilter, MemoryStore, Overlap, Page, Policy, RunFilter, RunNote,
    RunOutcome, RunRecord, RunStatus, Schedule, StoreError, StoreName, Target,
};
use jobstore::{GraphExecutionTarget, HttpTarget, RunPlacement, WatchTarget};
use jobstore::{Sent, WatchFilter, WatchStore};
use scheduler_api::{Check, CheckResult, DeliveryState, OnComplete, Watch, WatchStatus};
use serde_json::json;
use service_kit::auth::Owners;
use test_support::{Backend, PgSchema};
use triggers::{TriggerKind, TriggerSpec};

mod alerts;
mod changes;
mod claims;
mod ledger;
mod persisted;
mod retention;
mod schedules;
mod watches;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const LEASE: TimeDelta = TimeDelta::seconds(30);

fn every_minute() -> TriggerSpec {
    TriggerSpec::from(TriggerKind::Cron {
        expression: "* * * * *".into(),
        timezone: "UTC".into(),
    })
}

fn schedule(id: &str, owner: &str, graph: &str, next: Option<&str>) -> Schedule {
    Schedule {
        id: id.into(),
        name: format!("schedule {id}"),
        owner: owner.into(),
        trigger: every_minute(),
        target: Target::GraphExecution(GraphExecutionTarget {
            graph_id: graph.into(),
            graph_version: 3,
            input_data: json!({"text": "héllo", "n": 1}),
            input_credentials: json!({}),
            ..Default::default()
        }),
        policy: Policy::default(),
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at: next.map(at),
        created_at: at("2026-01-01T00:00:00Z"),
    }
}

async fn memory_store() -> Arc<dyn JobStore> {
    Arc::new(MemoryStore::new(StoreName::Execution))
}

async fn sqlite_store() -> (Arc<dyn JobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url =
        DatabaseUrl::parse(&format!("sqlite://{}/nested/s.db", dir.path().display())).unwrap();
    let db = jobstore::connect(&url, 4).await.unwrap();
    (jobstore::persisted(&db, StoreName::Execution), dir)
}

async fn postgres_store() -> Option<(Arc<dyn JobStore>, PgSchema)> {
    let schema = PgSchema::create("jobstore").await?;
    let url = DatabaseUrl::parse(&schema.url()).unwrap();
    let db = jobstore::connect(&url, 8).await.unwrap();
    Some((jobstore::persisted(&db, StoreName::Execution), schema))
}

fn http_schedule(id: &str, overlap: Overlap, next: &str) -> Schedule {
    let mut s = schedule(id, "u1", "g1", Some(next));
    s.target = Target::Http(HttpTarget {
        endpoint: Some("backend".into()),
        url: None,
        method: "POST".into(),
        path: "/jobs".into(),
        headers: Default::default(),
        body: serde_json::Value::Null,
        expected_status: "2xx".into(),
    });
    s.policy.overlap = overlap;
    s
}

/// The statuses of a schedule's ledger rows, oldest first.
async fn statuses(store: &Arc<dyn JobStore>, id: &str) -> Vec<RunStatus> {
    let mut runs = store.runs(id, &RunFilter::latest(100)).await.unwrap();
    runs.reverse();
    runs.into_iter().map(|r| r.status).collect()
}

fn ended(run: &RunRecord) -> RunOutcome {
    RunOutcome {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        status: RunStatus::Dispatched,
        detail: None,
        attempts: 1,
        finished_at: run.scheduled_time,
        may_release: true,
    }
}

/// A fresh store on `backend`, with what must live as long as it (its directory or schema).
async fn store_on(backend: Backend) -> Option<(Arc<dyn JobStore>, Box<dyn std::any::Any + Send>)> {
    match backend {
        Backend::Memory => Some((memory_store().await, Box::new(()))),
        Backend::Sqlite => {
            let (store, dir) = sqlite_store().await;
            Some((store, Box::new(dir)))
        }
        Backend::Postgres => {
            let (store, schema) = postgres_store().await?;
            Some((store, Box::new(schema)))
        }
    }
}

/// A store of the `execution` jobstore and the watches beside it.
type WithWatches = (Arc<dyn JobStore>, Arc<dyn WatchStore>);

/// A fresh `execution` store and its watches on `backend`, with what must live as long as they.
async fn watches_on(backend: Backend) -> Option<(WithWatches, Box<dyn std::any::Any + Send>)> {
    let in_memory = |store: Arc<MemoryStore>| store as Arc<dyn WatchStore>;
    execution_and(backend, "watches", jobstore::watches, in_memory).await
}

/// A fresh `execution` store on `backend` and `beside`, another part of its database (in
/// memory, the same store seen as that part), with what must live as long as they.
pub(crate) async fn execution_and<T: ?Sized>(
    backend: Backend,
    name: &str,
    beside: fn(&jobstore::Database) -> Arc<T>,
    in_memory: fn(Arc<MemoryStore>) -> Arc<T>,
) -> Option<((Arc<dyn JobStore>, Arc<T>), Box<dyn std::any::Any + Send>)> {
    let url = match backend {
        Backend::Memory => {
            let store = Arc::new(MemoryStore::new(StoreName::Execution));
            return Some(((store.clone(), in_memory(store)), Box::new(())));
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/{name}.db", dir.path().display());
            (url, Box::new(dir) as Box<dyn std::any::Any + Send>)
        }
        Backend::Postgres => {
            let schema = PgSchema::create(name).await?;
            (
                schema.url(),
                Box::new(schema) as Box<dyn std::any::Any + Send>,
            )
        }
    };
    let (url, guard) = url;
    let db = jobstore::connect(&DatabaseUrl::parse(&url).unwrap(), 8)
        .await
        .unwrap();
    let both = (jobstore::persisted(&db, StoreName::Execution), beside(&db));
    Some((both, guard))
}
