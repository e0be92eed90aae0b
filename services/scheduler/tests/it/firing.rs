//! End-to-end firing against a stub execution service on loopback.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler_api::RunStatus;
use scheduler_client::SchedulerClient;

use crate::helpers::{Answer, Backend, Daemon, StubExecutor, TestDb, graph_schedule};

/// Waits until the ledger holds at least `count` runs with `status`.
pub(crate) async fn wait_for_runs(
    client: &SchedulerClient,
    id: &str,
    user: &str,
    status: RunStatus,
    count: usize,
) -> Vec<scheduler_client::ScheduleRun> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let runs = client
            .get_schedule_runs(id, user, Some(1000))
            .await
            .unwrap();
        if runs.iter().filter(|r| r.status == status).count() >= count
            || std::time::Instant::now() > deadline
        {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

test_support::backend_matrix!([sqlite, postgres] [
    due_schedules_reach_the_execution_service_on_time,
]);

async fn due_schedules_reach_the_execution_service_on_time(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    let schedule = client
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "*/2 * * * * *"))
        .await
        .unwrap();

    let calls = stub.wait_for(3, Duration::from_secs(15)).await;
    assert!(
        calls.len() >= 3,
        "{backend:?}: only {} calls:\n{}",
        calls.len(),
        daemon.log_text()
    );
    for (i, call) in calls.iter().take(3).enumerate() {
        let scheduled = call.scheduled_time();
        let p = &call.params;
        assert_eq!(
            (
                p["user_id"].as_str(),
                p["graph_id"].as_str(),
                p["graph_version"].as_i64()
            ),
            (Some("u1"), Some("g1"), Some(1))
        );
        assert_eq!(
            p["inputs"],
            serde_json::json!({"query": "weather", "count": 3})
        );
        assert_eq!(p["graph_credentials_inputs"]["api"]["id"], "cred-1");
        assert_eq!(p["schedule_id"].as_str(), Some(schedule.id.as_str()));
        assert_eq!(
            p["idempotency_key"].as_str().unwrap(),
            format!("{}@{}", schedule.id, p["scheduled_time"].as_str().unwrap())
        );
        assert_eq!(scheduled.timestamp() % 2, 0, "fires on even seconds");
        let lag = call.received_at - scheduled;
        assert!(
            lag >= TimeDelta::zero() && lag < TimeDelta::milliseconds(1500),
            "{backend:?}: call {i} lag {lag}"
        );
        if i > 0 {
            assert_eq!(
                scheduled - calls[i - 1].scheduled_time(),
                TimeDelta::seconds(2),
                "consecutive occurrences, none twice"
            );
        }
    }

    let runs = wait_for_runs(&client, &schedule.id, "u1", RunStatus::Dispatched, 3).await;
    let dispatched: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Dispatched)
        .collect();
    assert!(dispatched.len() >= 3, "{runs:?}");
    assert!(
        runs.windows(2)
            .all(|w| w[0].scheduled_time > w[1].scheduled_time),
        "newest first"
    );
    assert!(
        dispatched
            .iter()
            .all(|r| r.attempts == 1 && r.finished_at.is_some())
    );

    client
        .delete_graph_execution_schedule(&schedule.id, "u1")
        .await
        .unwrap();
    let deleted_at = Utc::now();
    // An occurrence claimed before the delete may still be delivered, however late; none
    // scheduled after it may.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after_delete: Vec<_> = stub
        .calls()
        .into_iter()
        .filter(|c| c.scheduled_time() > deleted_at)
        .collect();
    assert!(
        after_delete.is_empty(),
        "a deleted schedule stops firing: {after_delete:?}"
    );
}

#[tokio::test]
async fn unreachable_executor_is_retried_then_the_run_is_dispatched() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Unavailable(2)).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    let schedule = client
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "* * * * * *"))
        .await
        .unwrap();
    let runs = wait_for_runs(&client, &schedule.id, "u1", RunStatus::Dispatched, 1).await;
    let first = runs
        .iter()
        .rev()
        .find(|r| r.status == RunStatus::Dispatched)
        .expect("a dispatched run");
    assert_eq!(first.attempts, 3, "two 503s, then success: {runs:?}");
    assert!(stub.attempts() >= 3, "the stub saw every attempt");
    let calls = stub.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.scheduled_time() == first.scheduled_time)
            .count(),
        1
    );
}

#[tokio::test]
async fn refused_dispatch_is_recorded_as_failed_and_the_schedule_goes_on() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Refuse).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    let schedule = client
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "* * * * * *"))
        .await
        .unwrap();
    let runs = wait_for_runs(&client, &schedule.id, "u1", RunStatus::Failed, 2).await;
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .collect();
    assert!(failed.len() >= 2, "{runs:?}");
    for run in failed {
        assert_eq!(run.attempts, 1, "a refusal is not retried");
        assert!(
            run.detail
                .as_deref()
                .unwrap()
                .contains("graph g-missing not found"),
            "{:?}",
            run.detail
        );
    }
}

#[tokio::test]
async fn paused_schedules_do_not_fire_until_resumed() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    let mut request = graph_schedule("u1", "g1", "* * * * * *");
    request.name = None;
    let schedule = client.add_graph_execution_schedule(request).await.unwrap();
    client
        .pause_execution_schedule(&schedule.id, "u1")
        .await
        .unwrap();
    let paused_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during_pause = stub
        .calls()
        .into_iter()
        .filter(|c| c.scheduled_time() > paused_at)
        .count();
    assert_eq!(during_pause, 0, "no fire while paused");
    client
        .resume_execution_schedule(&schedule.id, "u1")
        .await
        .unwrap();
    let resumed_at = Utc::now();
    // A fire from before the pause may be among the calls: wait for one after the resume.
    test_support::wait_until("fires again after resume", Duration::from_secs(10), || {
        let calls = stub.calls();
        let since = calls
            .iter()
            .any(|c| c.scheduled_time() > resumed_at - TimeDelta::seconds(1));
        async move {
            if since {
                Ok(())
            } else {
                Err(format!("{} calls, none since the resume", calls.len()))
            }
        }
    })
    .await;
}

/// Registers `count` graph schedules that fire every two seconds, on the same instants, and
/// waits until the stub accepted `calls` calls with distinct keys.
async fn many_due_together(stub: &StubExecutor, daemon: &Daemon, count: usize, calls: usize) {
    let client = daemon.client();
    for i in 0..count {
        let graph = format!("g{i}");
        client
            .add_graph_execution_schedule(graph_schedule("u1", &graph, "*/2 * * * * *"))
            .await
            .unwrap();
    }
    test_support::wait_until("the calls", Duration::from_secs(30), || async {
        let mut keys: Vec<String> = stub
            .calls()
            .iter()
            .map(|c| c.params["idempotency_key"].to_string())
            .collect();
        keys.sort();
        keys.dedup();
        (keys.len() >= calls)
            .then_some(())
            .ok_or(format!("{} of {calls} calls", keys.len()))
    })
    .await;
}

#[tokio::test]
async fn graph_executions_due_together_go_as_one_batch_request_by_default() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    many_due_together(&stub, &daemon, 12, 36).await;
    let batches = stub.batches();
    assert!(
        batches.iter().any(|&size| size >= 2),
        "occurrences due together went as JSON-RPC batches: {batches:?}"
    );
    assert!(batches.iter().all(|&size| size <= 100), "{batches:?}");
    let (requests, calls) = stub.requests_and_calls();
    assert!(
        requests < calls,
        "fewer requests ({requests}) than calls ({calls})"
    );
}

#[tokio::test]
async fn an_execution_service_without_batches_is_sent_one_call_per_request_after_its_first_refusal()
{
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::NoBatches).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    many_due_together(&stub, &daemon, 12, 36).await;
    assert_eq!(stub.batches(), Vec::<usize>::new());
    // Every call arrived alone; one batch request was tried, answered `Invalid Request`, and
    // its calls were sent again one by one. After that, no batch was tried again.
    let (requests, calls) = stub.requests_and_calls();
    assert_eq!(
        requests,
        calls + 1,
        "one batch request in all:\n{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    assert_eq!(
        log.matches("calls to this service go one per request from now on")
            .count(),
        1,
        "{log}"
    );
}
