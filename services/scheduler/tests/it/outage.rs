//! The database going away mid-firing: the scheduler stays up, reports not ready, resumes by
//! itself when PostgreSQL is back, and neither loses nor repeats an occurrence.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use scheduler_api::RunStatus;
use serde_json::Value;

use crate::helpers::{Answer, Backend, Daemon, DbProxy, StubExecutor, TestDb, graph_schedule};

async fn readiness(daemon: &Daemon) -> (u16, Value) {
    let answer = reqwest::get(format!("{}/ready", daemon.url()))
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn wait_ready(daemon: &Daemon, want: u16, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = readiness(daemon).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed {status} ({body}):\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_firing_loses_and_repeats_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let proxy = DbProxy::start(&db.url).await;
    let stub = StubExecutor::start(Answer::Accept).await;
    let mut daemon = Daemon::start_at(
        &db,
        &proxy.url(&db.url),
        &stub.url,
        &[
            ("SCHEDULER__ENGINE__LEADER_POLL", "200ms"),
            ("SCHEDULER__DATABASE__MAX_CONNECTIONS", "4"),
        ],
    )
    .await;
    let client = daemon.client();
    let mut ids = Vec::new();
    for graph in ["g1", "g2", "g3"] {
        let schedule = client
            .add_graph_execution_schedule(graph_schedule("u1", graph, "* * * * * *"))
            .await
            .unwrap();
        ids.push(schedule.id);
    }
    assert!(stub.wait_for(6, Duration::from_secs(15)).await.len() >= 6);
    wait_ready(&daemon, 200, Duration::from_secs(5)).await;

    // PostgreSQL goes away: every connection is closed and new ones are refused.
    let cut_at = chrono::Utc::now();
    proxy.cut();
    let body = wait_ready(&daemon, 503, Duration::from_secs(15)).await;
    assert_eq!(body["status"], "not ready");
    let status = client.get_scheduler_status().await.unwrap();
    assert!(!status.database_ok);
    let calls_during = stub.calls().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        daemon.is_running(),
        "the scheduler stays up through the outage"
    );

    // It comes back: readiness and firing resume without a restart.
    proxy.restore();
    let restored_at = chrono::Utc::now();
    wait_ready(&daemon, 200, Duration::from_secs(30)).await;
    let resumed = stub
        .wait_for(calls_during + 6, Duration::from_secs(20))
        .await;
    assert!(resumed.len() >= calls_during + 6, "{}", daemon.log_text());
    let calls = stub.calls();

    // No occurrence reached the executor twice.
    let keys: Vec<&str> = calls
        .iter()
        .map(|c| c.params["idempotency_key"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate dispatches: {keys:?}");

    // Each schedule's ledger: every call it received is recorded as dispatched, the seconds
    // missed during the outage are folded into one coalesced row (the default misfire policy),
    // and nothing is left pending but the occurrences not yet due (claimed ahead) and possibly
    // the newest due one.
    for id in &ids {
        let delivered: Vec<&str> = calls
            .iter()
            .filter(|c| c.params["schedule_id"] == id.as_str())
            .map(|c| c.params["idempotency_key"].as_str().unwrap())
            .collect();
        // An outcome is recorded just after its call was answered: wait for the last ones.
        let deadline = Instant::now() + Duration::from_secs(15);
        let runs = loop {
            let runs = client
                .get_schedule_runs(id, "u1", Some(1000))
                .await
                .unwrap();
            let recorded: HashSet<&str> = runs
                .iter()
                .filter(|r| r.status == RunStatus::Dispatched)
                .map(|r| r.idempotency_key.as_str())
                .collect();
            let missing: Vec<&&str> = delivered
                .iter()
                .filter(|key| !recorded.contains(**key))
                .collect();
            if missing.is_empty() {
                break runs;
            }
            assert!(
                Instant::now() < deadline,
                "dispatched but not recorded: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Exactly one coalesced run for the outage, planned once the database was back: a
        // claim that waited through the outage for a connection plans with the time it runs.
        let outage = |at: chrono::DateTime<chrono::Utc>| at > cut_at && at < restored_at;
        let folded = runs
            .iter()
            .filter(|r| r.status == RunStatus::Coalesced && outage(r.scheduled_time))
            .count();
        assert_eq!(
            folded, 1,
            "the missed seconds are coalesced once: {runs:#?}"
        );
        let claimed_in_outage: Vec<_> = runs.iter().filter(|r| outage(r.claimed_at)).collect();
        assert!(
            claimed_in_outage.is_empty(),
            "nothing is planned with an instant from inside the outage: {claimed_in_outage:#?}"
        );
        // Nothing stays pending past its time: on a busy machine the newest due run may still be
        // in flight when the ledger is read, so the check waits, with a deadline, for a reading
        // in which none is more than 2 s overdue.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let runs = client
                .get_schedule_runs(id, "u1", Some(1000))
                .await
                .unwrap();
            let overdue = chrono::Utc::now() - chrono::TimeDelta::seconds(2);
            let left: Vec<_> = runs
                .iter()
                .filter(|r| r.status == RunStatus::Pending && r.scheduled_time < overdue)
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "left pending: {left:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            runs.iter().all(|r| r.status != RunStatus::Failed),
            "{runs:?}"
        );
    }
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_waited_through_an_outage_plans_with_the_time_it_runs() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let proxy = DbProxy::start(&db.url).await;
    let stub = StubExecutor::start(Answer::Accept).await;
    // The election looks at its connection rarely here, so that only the engine's own next
    // pass meets the outage.
    let env = [("SCHEDULER__ENGINE__LEADER_POLL", "60s")];
    let daemon = Daemon::start_at(&db, &proxy.url(&db.url), &stub.url, &env).await;
    let client = daemon.client();
    let mut ids = Vec::new();
    for graph in ["h1", "h2", "h3", "h4"] {
        let schedule = client
            .add_graph_execution_schedule(graph_schedule("u1", graph, "*/2 * * * * *"))
            .await
            .unwrap();
        ids.push(schedule.id);
    }
    assert!(stub.wait_for(8, Duration::from_secs(15)).await.len() >= 8);

    // Between two fires, with the engine asleep until the next one, the database stops
    // answering: open connections close, new ones hang unanswered, so the pass that starts
    // at the next occurrence waits for its connection until the database is back.
    let fired = stub.calls().len();
    stub.wait_for(fired + 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held_at = chrono::Utc::now();
    proxy.hold();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let calls_before = stub.calls().len();
    // Ledger instants are whole milliseconds: whatever is planned after the restore reads at
    // least this.
    let restored_at = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3);
    proxy.restore();
    let resumed = stub
        .wait_for(calls_before + 8, Duration::from_secs(30))
        .await;
    assert!(resumed.len() >= calls_before + 8, "{}", daemon.log_text());

    let outage = |at: chrono::DateTime<chrono::Utc>| at > held_at && at < restored_at;
    for id in &ids {
        let runs = client
            .get_schedule_runs(id, "u1", Some(1000))
            .await
            .unwrap();
        let claimed_in_outage: Vec<_> = runs.iter().filter(|r| outage(r.claimed_at)).collect();
        assert!(
            claimed_in_outage.is_empty(),
            "planned with an instant from inside the outage: {claimed_in_outage:#?}"
        );
        // What fell due during the outage, and was not claimed ahead before it, ran at most
        // once (one coalesced run).
        let ran = runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Dispatched | RunStatus::Pending))
            .filter(|r| outage(r.scheduled_time) && r.claimed_at > held_at)
            .count();
        assert!(ran <= 1, "{ran} runs for the outage: {runs:#?}");
    }
}
