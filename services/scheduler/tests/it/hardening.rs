//! Regression tests for inputs that once stopped the engine or got a server error: each is
//! named after what it guards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{DatabaseUrl, GraphExecutionTarget, JobStore, Policy, Schedule, StoreName, Target};
use scheduler_api::RunStatus;
use scheduler_client::{Error, FireTimesQuery, SchedulePolicy, SchedulerError};
use serde_json::{Value, json};
use triggers::{TriggerKind, TriggerSpec};

use crate::helpers::{
    Answer, Backend, Daemon, StubExecutor, StubService, TestDb, graph_schedule, post_text,
};

test_support::backend_matrix!([sqlite, postgres] [
    misfire_graces_beyond_any_span_are_refused_and_stored_ones_never_stop_the_engine,
    a_schedule_the_engine_cannot_plan_is_parked_with_its_reason_and_the_others_fire,
]);

const SOON: Duration = Duration::from_secs(20);

/// The misfire graces that once panicked or wrapped in the plan.
const HUGE_GRACES: [u64; 4] = [9_223_372_036_854_776, i64::MAX as u64, 1 << 63, u64::MAX];

fn every_second(id: &str, policy: Policy, trigger: Option<TriggerSpec>) -> Schedule {
    let now = Utc::now();
    Schedule {
        id: id.into(),
        name: id.into(),
        owner: "u1".into(),
        trigger: trigger.unwrap_or(TriggerSpec::from(TriggerKind::Cron {
            expression: "* * * * * *".into(),
            timezone: "UTC".into(),
        })),
        target: Target::GraphExecution(GraphExecutionTarget {
            graph_id: format!("graph-{id}"),
            graph_version: 1,
            input_data: json!({}),
            input_credentials: json!({}),
            ..Default::default()
        }),
        policy,
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at: Some(now - TimeDelta::seconds(5)),
        created_at: now,
    }
}

/// Writes schedules straight into the store, as rows from an older version (or a bug) would be.
async fn store_directly(db: &TestDb, schedules: &[Schedule]) {
    let url = DatabaseUrl::parse(&db.url).unwrap();
    let database = jobstore::connect(&url, 1).await.unwrap();
    let store: Arc<dyn JobStore> = jobstore::persisted(&database, StoreName::Execution);
    for schedule in schedules {
        store.insert(schedule).await.unwrap();
    }
    database.close().await;
}

/// Waits until every graph in `graphs` reached the stub.
async fn wait_for_graphs(stub: &StubExecutor, graphs: &[String], daemon: &Daemon) {
    let started = Instant::now();
    loop {
        let calls = stub.calls();
        let missing: Vec<_> = graphs
            .iter()
            .filter(|g| !calls.iter().any(|c| c.params["graph_id"] == g.as_str()))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < SOON,
            "never fired: {missing:?}\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn misfire_graces_beyond_any_span_are_refused_and_stored_ones_never_stop_the_engine(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stored: Vec<Schedule> = HUGE_GRACES
        .iter()
        .enumerate()
        .map(|(i, grace)| {
            let policy = Policy {
                coalesce: true,
                misfire_grace_secs: Some(*grace),
                ..Policy::default()
            };
            every_second(&format!("huge-{i}"), policy, None)
        })
        .collect();
    store_directly(&db, &stored).await;
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    for grace in HUGE_GRACES {
        let mut request = graph_schedule("u1", "refused", "* * * * *");
        request.policy = Some(SchedulePolicy {
            coalesce: None,
            misfire_grace_secs: Some(grace),
            ..SchedulePolicy::default()
        });
        let error = client
            .add_graph_execution_schedule(request)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Scheduler(SchedulerError::Value(m)) if m.contains("misfire_grace_secs")),
            "{grace}: {error}"
        );
    }
    let plain = client
        .add_graph_execution_schedule(graph_schedule("u2", "plain", "* * * * * *"))
        .await
        .unwrap();
    let mut graphs: Vec<String> = stored
        .iter()
        .map(|s| s.target.graph_id().unwrap().to_string())
        .collect();
    graphs.push("plain".into());
    // Every stored schedule fires (none is skipped as "beyond its grace"), and so do the
    // schedules added after them.
    wait_for_graphs(&stub, &graphs, &daemon).await;
    assert!(
        client
            .get_graph_execution_schedules(&crate::helpers::listing(
                Some("refused".into()),
                None,
                Some(true)
            ))
            .await
            .unwrap()
            .is_empty()
    );
    for schedule in &stored {
        let runs = client
            .get_schedule_runs(&schedule.id, "u1", None)
            .await
            .unwrap();
        assert!(
            runs.iter().all(|r| r.status != RunStatus::Skipped),
            "{runs:?}"
        );
    }
    let _ = plain;
    assert!(
        !daemon.log_text().contains("panicked"),
        "{}",
        daemon.log_text()
    );
}

async fn a_schedule_the_engine_cannot_plan_is_parked_with_its_reason_and_the_others_fire(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let broken_trigger = TriggerSpec::from(TriggerKind::Cron {
        expression: "* * * * * *".into(),
        timezone: "Atlantis/Capital".into(),
    });
    store_directly(
        &db,
        &[
            every_second("broken", Policy::default(), Some(broken_trigger)),
            every_second("fine", Policy::default(), None),
        ],
    )
    .await;
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();
    stub.wait_for(3, SOON).await;
    assert!(
        stub.calls()
            .iter()
            .all(|c| c.params["graph_id"] == "graph-fine")
    );

    let runs = client
        .get_schedule_runs("broken", "u1", None)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    let detail = runs[0].detail.clone().unwrap();
    assert!(detail.contains("Atlantis/Capital"), "{detail}");

    let listed = client
        .get_graph_execution_schedules(&crate::helpers::listing(
            None,
            Some("u1".into()),
            Some(true),
        ))
        .await
        .unwrap();
    let parked = listed.iter().find(|s| s.id == "broken").unwrap();
    assert_eq!(parked.next_run_time, None);
    assert_eq!(parked.paused_reason.as_deref(), Some(detail.as_str()));
    let active = client
        .get_graph_execution_schedules(&crate::helpers::listing(None, Some("u1".into()), None))
        .await
        .unwrap();
    assert!(active.iter().all(|s| s.id != "broken"), "{active:?}");
    let registry = client.get_registry().await.unwrap();
    let entry = registry
        .schedules
        .iter()
        .find(|s| s.id == "broken")
        .unwrap();
    assert!(entry.paused);
    assert_eq!(entry.paused_reason.as_deref(), Some(detail.as_str()));
    // Resuming it tries afresh and says why it cannot.
    let error = client
        .resume_execution_schedule("broken", "u1")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Atlantis/Capital"), "{error}");
    assert_eq!(http_status(&daemon, "/ready").await, 200);
}

async fn http_status(daemon: &Daemon, path: &str) -> u16 {
    reqwest::get(format!("{}{path}", daemon.url()))
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn rpc(daemon: &Daemon, body: &str) -> (u16, String) {
    post_text(daemon, "/", body).await
}

#[tokio::test]
async fn a_policy_that_is_not_an_object_is_refused_and_nothing_is_stored() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    for policy in ["[false, 5]", "[]", "\"skip\"", "7"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"add_graph_execution_schedule","params":{{"user_id":"u1","graph_id":"g1","graph_version":1,"cron":"* * * * *","input_data":{{}},"policy":{policy}}}}}"#
        );
        let (status, text) = rpc(&daemon, &body).await;
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(status, 200);
        assert_eq!(answer["error"]["code"], -32602, "{policy}: {text}");
        assert!(text.contains("policy must be an object"), "{text}");
        let routed = reqwest::Client::new()
            .post(format!("{}/add_graph_execution_schedule", daemon.url()))
            .body(format!(
                r#"{{"user_id":"u1","graph_id":"g1","graph_version":1,"cron":"* * * * *","input_data":{{}},"policy":{policy}}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(routed.status(), 422, "{policy}");
    }
    let stored = daemon
        .client()
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, Some(true)))
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn general_policy_fields_are_refused_by_autogpts_add_and_nothing_is_stored() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    for (field, value) in [
        ("jitter_secs", "9223372036854775807"),
        ("jitter_secs", "5"),
        ("overlap", "\"allow_all\""),
        ("attempts", "3"),
        ("backoff_ms", "100"),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"add_graph_execution_schedule","params":{{"user_id":"u1","graph_id":"g1","graph_version":1,"cron":"* * * * *","input_data":{{}},"policy":{{"coalesce":false,"{field}":{value}}}}}}}"#
        );
        let (_, text) = rpc(&daemon, &body).await;
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["error"]["code"], 4000, "{field}: {text}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("policy.{field}")), "{message}");
    }
    let stored = daemon
        .client()
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, Some(true)))
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    // The two fields APScheduler has are still taken.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"add_graph_execution_schedule","params":{"user_id":"u1","graph_id":"g1","graph_version":1,"cron":"* * * * *","input_data":{},"policy":{"coalesce":false,"misfire_grace_secs":30}}}"#;
    let (_, text) = rpc(&daemon, body).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(answer["result"]["id"].is_string(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_execution_target_without_input_credentials_sends_an_empty_object() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"create_schedule","params":{"owner":"u1","id":"no-creds","trigger":{"type":"cron","expression":"* * * * * *","timezone":"UTC"},"target":{"type":"graph_execution","graph_id":"g-no-creds","graph_version":1,"input_data":{}}}}"#;
    let (_, text) = rpc(&daemon, body).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["result"]["target"]["input_credentials"],
        json!({}),
        "{text}"
    );
    let calls = stub.wait_for(1, SOON).await;
    assert!(!calls.is_empty(), "no fire:\n{}", daemon.log_text());
    assert_eq!(calls[0].params["graph_id"], "g-no-creds");
    assert_eq!(calls[0].params["graph_credentials_inputs"], json!({}));
}

#[tokio::test]
async fn next_fire_times_stop_at_the_end_of_year_9999() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let client = daemon.client();
    let leap_days = client
        .next_fire_times(
            "0 0 29 2 */7",
            FireTimesQuery {
                timezone: Some("America/Havana".into()),
                count: Some(1000),
                ..FireTimesQuery::default()
            },
        )
        .await
        .unwrap();
    let near_the_end = client
        .next_fire_times(
            "0 0 * * *",
            FireTimesQuery {
                after: Some("9999-12-25T00:00:00Z".into()),
                count: Some(100),
                ..FireTimesQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(near_the_end.len(), 6, "{near_the_end:?}");
    assert!(leap_days.len() < 1000, "the list ends with year 9999");
    for fire in leap_days.iter().chain(&near_the_end) {
        let at = DateTime::parse_from_rfc3339(fire).unwrap_or_else(|e| panic!("{fire}: {e}"));
        assert!(at.to_utc() <= triggers::LATEST, "{fire}");
    }
    assert_eq!(near_the_end.last().unwrap(), "9999-12-31T00:00:00Z");
}

#[tokio::test]
async fn request_ids_jsonrpsee_cannot_hold_are_answered_with_them() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    for id in ["-1", "1.5", "1e3", "18446744073709551616", "-0.25E+2"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"health_check"}}"#);
        let (status, text) = rpc(&daemon, &body).await;
        assert_eq!(status, 200);
        assert!(text.contains(&format!(r#""id":{id}"#)), "{id}: {text}");
        assert!(
            text.contains(r#""result":"OK""#),
            "{id}: the method ran: {text}"
        );
    }
    for (id, kind) in [
        ("{}", "an object"),
        ("[]", "an array"),
        ("true", "a boolean"),
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"health_check"}}"#);
        let (status, text) = rpc(&daemon, &body).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["id"], Value::Null, "{text}");
        assert_eq!(answer["error"]["code"], -32600, "{text}");
        assert!(text.contains(kind), "{text}");
    }
    let (_, text) = rpc(
        &daemon,
        r#"[{"jsonrpc":"2.0","id":-7,"method":"health_check"},{"jsonrpc":"2.0","id":[1],"method":"health_check"},{"jsonrpc":"2.0","id":3,"method":"health_check"}]"#,
    )
    .await;
    assert!(text.contains(r#""id":-7,"result":"OK""#), "{text}");
    let answers: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(answers.iter().any(|a| a["id"] == 3 && a["result"] == "OK"));
    assert!(
        answers
            .iter()
            .any(|a| a["id"].is_null() && a["error"]["code"] == -32600)
    );
}

#[tokio::test]
async fn bad_kwargs_for_process_existing_batches_are_the_callers_error() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let services =
        StubService::start(&[("process_existing_batches", json!({"processed": 0}))]).await;
    let daemon = Daemon::start_with(
        &db,
        "http://127.0.0.1:9/",
        &[(
            "SCHEDULER__SYSTEM_TASKS__NOTIFICATION_MANAGER_URL",
            services.url.as_str(),
        )],
    )
    .await;
    for kwargs in [
        json!("x"),
        json!([]),
        Value::Null,
        json!(1),
        json!({"notification_types": "AGENT_RUN"}),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "execute_process_existing_batches", "params": {"kwargs": kwargs}});
        let (_, text) = rpc(&daemon, &body.to_string()).await;
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["error"]["code"], 4000, "{kwargs}: {text}");
        assert_eq!(answer["error"]["data"]["type"], "ValueError", "{text}");
        let routed = reqwest::Client::new()
            .post(format!("{}/execute_process_existing_batches", daemon.url()))
            .json(&json!({"kwargs": kwargs}))
            .send()
            .await
            .unwrap();
        assert_eq!(routed.status(), 400, "{kwargs}");
    }
    assert!(services.calls("process_existing_batches").is_empty());
    let runs = daemon
        .client()
        .get_schedule_runs("process_existing_batches", "system", None)
        .await;
    assert!(
        matches!(runs, Err(Error::Scheduler(SchedulerError::NotFound(_)))),
        "nothing was recorded: {runs:?}"
    );
}

#[tokio::test]
async fn readiness_fails_once_the_engine_has_stopped() {
    let stores =
        scheduler::stores::Stores::new([
            Arc::new(jobstore::MemoryStore::new(StoreName::Execution)) as Arc<dyn JobStore>,
        ]);
    let (down, engine_stopped) = tokio::sync::watch::channel(None);
    let app = scheduler::app::App::new(
        stores,
        tokio::sync::watch::channel(true).1,
        "memory",
        &scheduler::config::Config::default(),
        Vec::new(),
        engine_stopped,
    )
    .unwrap();
    assert_eq!(scheduler::health::readiness(&app).await, Ok(()));
    down.send_replace(Some("it panicked: boom".into()));
    let reason = scheduler::health::readiness(&app).await.unwrap_err();
    assert!(
        reason.contains("the engine has stopped: it panicked: boom"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_engine_fails_readiness_and_shows_how_overdue_its_work_is() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon =
        Daemon::start_with(&db, &stub.url, &[("SCHEDULER__ENGINE__MAX_OVERDUE", "2s")]).await;
    daemon
        .client()
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "* * * * * *"))
        .await
        .unwrap();
    stub.wait_for(1, SOON).await;

    // A transaction that hangs while holding the schedule's row: the engine skips the locked
    // row, so its due work waits, as it would behind any stuck claim.
    let schema = db.url.split("schema=").nth(1).unwrap().to_string();
    let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(&test_support::base_url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query(&format!(
        "SELECT id FROM \"{schema}\".schedules_execution FOR UPDATE"
    ))
    .execute(&mut holder)
    .await
    .unwrap();

    let reason = wait_ready_status(&daemon, 503).await;
    assert!(reason.contains("overdue"), "{reason}");
    let metrics = reqwest::get(format!("{}/metrics", daemon.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let overdue: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("scheduler_oldest_overdue_seconds "))
        .unwrap_or_else(|| panic!("no overdue gauge in:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(overdue > 2.0, "{overdue}");

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    wait_ready_status(&daemon, 200).await;
    let before = stub.calls().len();
    stub.wait_for(before + 1, SOON).await;
}

/// Waits until `/ready` answers `status`; returns its body.
async fn wait_ready_status(daemon: &Daemon, status: u16) -> String {
    let started = Instant::now();
    loop {
        let answer = reqwest::get(format!("{}/ready", daemon.url()))
            .await
            .unwrap();
        let got = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < SOON,
            "/ready never answered {status} (last: {got} {body})\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
