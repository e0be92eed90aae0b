//! Restart safety: a SIGKILL at any moment loses nothing.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{DatabaseUrl, GraphExecutionTarget, Policy, Schedule, StoreName, Target};
use scheduler_api::RunStatus;
use triggers::{TriggerKind, TriggerSpec};

use crate::firing::wait_for_runs;
use crate::helpers::{Answer, Backend, Daemon, StubExecutor, TestDb, graph_schedule};

test_support::backend_matrix!([sqlite, postgres] [
    schedules_survive_kill_9_and_keep_firing,
]);

async fn schedules_survive_kill_9_and_keep_firing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stub = StubExecutor::start(Answer::Accept).await;
    let mut daemon = Daemon::start(&db, &stub.url).await;
    let added = daemon
        .client()
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "*/2 * * * * *"))
        .await
        .unwrap();
    daemon.kill9();

    let daemon = Daemon::start(&db, &stub.url).await;
    let listed = daemon
        .client()
        .get_graph_execution_schedules(&crate::helpers::listing(None, Some("u1".into()), None))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{backend:?}");
    assert_eq!(
        (listed[0].id.as_str(), listed[0].cron.as_str()),
        (added.id.as_str(), "*/2 * * * * *")
    );
    let calls = stub.wait_for(1, Duration::from_secs(15)).await;
    assert!(
        calls
            .iter()
            .any(|c| c.params["schedule_id"] == added.id.as_str()),
        "{backend:?}: still fires:\n{}",
        daemon.log_text()
    );
}

#[tokio::test]
async fn downtime_is_coalesced_into_one_late_run() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Accept).await;
    let mut daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    let added = client
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "* * * * * *"))
        .await
        .unwrap();
    stub.wait_for(1, Duration::from_secs(10)).await;
    daemon.kill9();
    // Longer than the runs claimed ahead at the kill (`engine.lookahead`, 2 s) reach.
    tokio::time::sleep(Duration::from_millis(5500)).await;

    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    let runs = wait_for_runs(&client, &added.id, "u1", RunStatus::Coalesced, 1).await;
    let coalesced = runs
        .iter()
        .find(|r| r.status == RunStatus::Coalesced)
        .expect("a coalesced row for the outage");
    let detail = coalesced.detail.clone().unwrap();
    let missed: u64 = detail.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        missed >= 2,
        "at least two occurrences fell in the outage: {detail}"
    );
    let into: DateTime<Utc> = detail.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        into - coalesced.scheduled_time,
        TimeDelta::seconds(missed as i64)
    );
    // The one late run is dispatched. (The runs claimed ahead before the kill are dispatched
    // again at the restart too, so a count of dispatched runs could be reached without it.)
    let runs = test_support::wait_until("the one late run", Duration::from_secs(20), || {
        let client = client.clone();
        let id = added.id.clone();
        async move {
            let runs = client.get_schedule_runs(&id, "u1", Some(1000)).await;
            let runs = runs.map_err(|e| e.to_string())?;
            if runs
                .iter()
                .any(|r| r.scheduled_time == into && r.status == RunStatus::Dispatched)
            {
                Ok(runs)
            } else {
                Err(format!("{runs:?}"))
            }
        }
    })
    .await;
    let inside: Vec<_> = runs
        .iter()
        .filter(|r| r.scheduled_time > coalesced.scheduled_time && r.scheduled_time < into)
        .collect();
    assert!(
        inside.is_empty(),
        "no run for the folded occurrences: {inside:?}"
    );
}

#[tokio::test]
async fn runs_claimed_but_not_dispatched_before_a_crash_are_dispatched_after_restart() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // Leave the ledger as a crash between claim and dispatch would: a pending run.
    let scheduled: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().unwrap();
    {
        let url = DatabaseUrl::parse(&db.url).unwrap();
        let database = jobstore::connect(&url, 1).await.unwrap();
        let store = jobstore::persisted(&database, StoreName::Execution);
        store
            .insert(&Schedule {
                id: "crashed".into(),
                name: "execute_graph".into(),
                owner: "u1".into(),
                trigger: TriggerSpec::from(TriggerKind::Once { at: scheduled }),
                target: Target::GraphExecution(GraphExecutionTarget {
                    graph_id: "g1".into(),
                    graph_version: 5,
                    input_data: serde_json::json!({}),
                    input_credentials: serde_json::json!({}),
                    ..Default::default()
                }),
                policy: Policy::default(),
                paused: false,
                tags: Vec::new(),
                paused_reason: None,
                next_run_at: Some(scheduled),
                created_at: scheduled,
            })
            .await
            .unwrap();
        let claimed = store
            .claim_due(scheduled, 10, TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        database.close().await;
    }
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let calls = stub.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(calls.len(), 1, "{}", daemon.log_text());
    assert_eq!(
        calls[0].params["idempotency_key"], "crashed@2026-01-01T10:00:00Z",
        "the original key"
    );
    let runs = wait_for_runs(&daemon.client(), "crashed", "u1", RunStatus::Dispatched, 1).await;
    assert_eq!(runs[0].status, RunStatus::Dispatched);
    assert!(
        daemon.log_text().contains("recovered runs left pending"),
        "the recovery is logged with its reason"
    );
}
