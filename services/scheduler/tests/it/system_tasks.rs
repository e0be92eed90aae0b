//! System tasks against stub services on loopback: scheduled runs, runs by hand, alerts, the
//! ledger, idempotent registration across restarts, and tasks whose service is not configured.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use scheduler_api::RunStatus;
use serde_json::{Value, json};

use crate::helpers::{Answer, Backend, Daemon, StubExecutor, StubService, TestDb};

fn late_executions() -> Value {
    json!([
        {"id": "exec-1", "user_id": "u1", "graph_id": "g1", "graph_version": 3,
         "status": "QUEUED", "created_at": "2026-11-22T09:00:00Z"},
        {"id": "exec-2", "user_id": "u2", "graph_id": "g2", "graph_version": 1,
         "status": "QUEUED", "created_at": "2026-11-22T09:01:00Z"},
    ])
}

fn block_stats() -> Value {
    json!([
        {"block_id": "b-text", "block_name": "AITextGeneratorBlock", "total_executions": 20, "failed_executions": 15},
        {"block_id": "b-rare", "block_name": "RareBlock", "total_executions": 5, "failed_executions": 5},
        {"block_id": "b-fine", "block_name": "FineBlock", "total_executions": 100, "failed_executions": 10},
    ])
}

async fn services() -> StubService {
    StubService::start(&[
        ("get_graph_executions", late_executions()),
        ("get_block_error_stats", block_stats()),
        ("queue_weekly_summary", json!(null)),
        ("process_existing_batches", json!(null)),
        ("cleanup_expired_files", json!(3)),
    ])
    .await
}

fn task_env(services: &StubService, every_secs: &str) -> Vec<(String, String)> {
    vec![
        (
            "SCHEDULER__SYSTEM_TASKS__NOTIFICATION_MANAGER_URL".into(),
            services.url.clone(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__DATABASE_MANAGER_URL".into(),
            services.url.clone(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__STORAGE_URL".into(),
            services.url.clone(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__ALERT_WEBHOOK_URL".into(),
            services.webhook_url(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__EXECUTION_LATE_NOTIFICATION_THRESHOLD_SECS".into(),
            every_secs.into(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__BLOCK_ERROR_RATE_CHECK_INTERVAL_SECS".into(),
            every_secs.into(),
        ),
    ]
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tasks_fire_alert_and_are_registered_once_across_restarts() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let executor = StubExecutor::start(Answer::Accept).await;
    let services = services().await;
    let env = task_env(&services, "1");
    let mut daemon = Daemon::start_with(&db, &executor.url, &refs(&env)).await;

    // Both reports run every second; each finds something and alerts.
    let late = services
        .wait_for("get_graph_executions", 2, Duration::from_secs(20))
        .await;
    assert!(late.len() >= 2, "report_late_executions runs every second");
    let params = &late[0].params;
    assert_eq!(params["statuses"], json!(["QUEUED"]));
    let window = instant(&params["created_time_lte"]) - instant(&params["created_time_gte"]);
    assert_eq!(
        window.num_seconds(),
        3600 - 1,
        "created between one hour and the threshold ago"
    );
    let stats = services
        .wait_for("get_block_error_stats", 1, Duration::from_secs(20))
        .await;
    let span = instant(&stats[0].params["end_time"]) - instant(&stats[0].params["start_time"]);
    assert_eq!(span.num_hours(), 24);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (late_alert, block_alert) = loop {
        let alerts = services.alerts();
        let find = |prefix: &str| {
            alerts
                .iter()
                .filter_map(|a| a["content"].as_str())
                .find(|c| c.starts_with(prefix))
                .map(str::to_string)
        };
        if let (Some(late), Some(block)) = (
            find("Late executions detected"),
            find("Block Error Rate Alert"),
        ) {
            break (late, block);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alerts sent: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        late_alert.contains("2 late executions from 2 users"),
        "{late_alert}"
    );
    assert!(late_alert.contains("Execution ID: exec-1, Graph ID: g1v3, User ID: u1"));
    assert!(
        block_alert.contains("AITextGeneratorBlock`: 15 of 20 runs failed (75.0%)"),
        "{block_alert}"
    );
    assert!(
        !block_alert.contains("RareBlock") && !block_alert.contains("FineBlock"),
        "too few runs, or a low error rate, is not alerted: {block_alert}"
    );

    // Every run is in the ledger under the task's id, with what it found.
    let runs = daemon
        .client()
        .get_schedule_runs("report_late_executions", "system", Some(10))
        .await
        .unwrap();
    assert!(!runs.is_empty());
    assert!(
        runs.iter().any(|r| r
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("Late executions detected"))),
        "{runs:?}"
    );

    // The registry lists the AutoGPT set; the weekly summary is on Monday 09:00 UTC.
    let admin = daemon.client();
    let registry = admin.get_registry().await.unwrap();
    let tasks: Vec<&str> = registry
        .system_tasks
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        tasks,
        [
            "process_weekly_summary",
            "report_late_executions",
            "report_block_error_rates",
            "cleanup_expired_files",
            "process_existing_batches"
        ]
    );
    assert!(
        registry.system_tasks.iter().all(|t| t.enabled),
        "{registry:?}"
    );
    let weekly = &registry.system_tasks[0];
    assert_eq!(weekly.jobstore, "weekly_notifications");
    let next = weekly
        .next_run_time
        .expect("the weekly summary is scheduled");
    assert_eq!(
        (next.weekday(), next.hour(), next.minute()),
        (chrono::Weekday::Mon, 9, 0)
    );
    let cleanup = &registry.system_tasks[3];
    let every = cleanup.trigger.as_ref().unwrap()["every_secs"].as_u64();
    assert_eq!(every, Some(6 * 3600), "cleanup every 6 hours by default");
    assert_eq!(
        registry.system_tasks[4].trigger, None,
        "process_existing_batches runs only by hand"
    );
    let cleanup_next = cleanup.next_run_time;

    // A restart registers nothing twice and keeps the interval's next run.
    assert!(daemon.terminate().success());
    let daemon = Daemon::start_with(&db, &executor.url, &refs(&env)).await;
    let registry = daemon.client().get_registry().await.unwrap();
    let mut system: Vec<(String, String)> = registry
        .schedules
        .iter()
        .filter(|s| s.owner == "system")
        .map(|s| (s.jobstore.clone(), s.id.clone()))
        .collect();
    system.sort();
    assert_eq!(
        system,
        [
            ("execution", "cleanup_expired_files"),
            ("execution", "report_block_error_rates"),
            ("execution", "report_late_executions"),
            ("weekly_notifications", "process_weekly_summary"),
        ]
        .map(|(j, i)| (j.to_string(), i.to_string()))
    );
    assert_eq!(registry.system_tasks[3].next_run_time, cleanup_next);
    // System tasks are not graph schedules: AutoGPT's listing does not show them.
    let listed = daemon
        .client()
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, Some(true)))
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_runs_a_task_now_and_records_it() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let executor = StubExecutor::start(Answer::Accept).await;
    let services = services().await;
    // Reports every half hour: only the calls below reach the stubs.
    let env = task_env(&services, "1800");
    let daemon = Daemon::start_with(&db, &executor.url, &refs(&env)).await;
    let client = daemon.client();

    let cleaned = client
        .execute_system_task("cleanup_expired_files", None)
        .await
        .unwrap();
    assert_eq!(
        cleaned,
        json!(3),
        "the storage service's answer is returned"
    );
    assert_eq!(services.calls("cleanup_expired_files").len(), 1);

    let summary = client
        .execute_system_task("process_weekly_summary", None)
        .await;
    assert_eq!(summary.unwrap(), Value::Null);
    assert_eq!(services.calls("queue_weekly_summary").len(), 1);

    let batches = reqwest::Client::new()
        .post(format!("{}/execute_process_existing_batches", daemon.url()))
        .json(&json!({"kwargs": {"notification_types": ["AGENT_RUN", "ZERO_BALANCE"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(batches.status(), 200, "AutoGPT route");
    let calls = services.calls("process_existing_batches");
    assert_eq!(
        calls[0].params,
        json!({"notification_types": ["AGENT_RUN", "ZERO_BALANCE"]})
    );

    let report = client
        .execute_system_task("report_late_executions", None)
        .await
        .unwrap();
    assert!(
        report
            .as_str()
            .unwrap()
            .starts_with("Late executions detected: 2"),
        "{report}"
    );
    assert_eq!(services.alerts().len(), 1, "one alert for one report");

    // Bad kwargs: the caller's error (400 ValueError), refused before anything is recorded.
    let refused = reqwest::Client::new()
        .post(format!("{}/execute_process_existing_batches", daemon.url()))
        .json(&json!({"kwargs": {"types": "AGENT_RUN"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "ValueError", "{body}");
    assert!(
        body["args"][0]
            .as_str()
            .unwrap()
            .contains("needs kwargs {\"notification_types\": [...]}"),
        "{body}"
    );

    let runs = client
        .get_schedule_runs("process_existing_batches", "system", None)
        .await
        .unwrap();
    let statuses: Vec<_> = runs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [RunStatus::Dispatched], "{runs:?}");
    let cleanup_runs = client
        .get_schedule_runs("cleanup_expired_files", "system", None)
        .await
        .unwrap();
    assert_eq!(cleanup_runs.len(), 1);
    assert_eq!(cleanup_runs[0].detail.as_deref(), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_without_a_configured_service_are_not_registered_and_say_why() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let executor = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &executor.url).await;
    let registry = daemon.client().get_registry().await.unwrap();
    assert!(registry.schedules.is_empty(), "{registry:?}");
    let late = registry
        .system_tasks
        .iter()
        .find(|t| t.id == "report_late_executions")
        .unwrap();
    assert!(!late.enabled);
    assert_eq!(
        late.disabled_reason.as_deref(),
        Some("system_tasks.database_manager_url is not set")
    );
    let error = daemon
        .client()
        .execute_system_task("report_late_executions", None)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("system_tasks.database_manager_url is not set"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_task_schedule_is_renewed_at_the_next_start() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let executor = StubExecutor::start(Answer::Accept).await;
    let services = services().await;
    let env = task_env(&services, "1800");
    let mut daemon = Daemon::start_with(&db, &executor.url, &refs(&env)).await;
    assert!(daemon.terminate().success());

    // An engine that cannot read a row parks it: no next run, so it would never fire again.
    let url = jobstore::DatabaseUrl::parse(&db.url).unwrap();
    let database = service_kit::database::open(&url, 1).await.unwrap();
    let store = jobstore::persisted(&database, jobstore::StoreName::Execution);
    store
        .set_paused("report_late_executions", false, None, None)
        .await
        .unwrap();
    database.close().await;

    let daemon = Daemon::start_with(&db, &executor.url, &refs(&env)).await;
    let registry = daemon.client().get_registry().await.unwrap();
    let late = registry
        .system_tasks
        .iter()
        .find(|t| t.id == "report_late_executions")
        .unwrap();
    assert!(
        late.next_run_time.is_some(),
        "renewed at registration: {late:?}"
    );
}
