//! The scheduler under a barrage of hostile requests derived from its OpenRPC document, over
//! JSON-RPC and the AutoGPT routes: every answer comes in time and is a success or a client
//! error, the service stays healthy, nothing panics, and a plain schedule still fires after it.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::hostile;

use crate::helpers::{Answer, Backend, Daemon, StubExecutor, StubService, TestDb, graph_schedule};

fn document() -> Value {
    serde_json::from_str(scheduler::openrpc::DOCUMENT).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_params_get_client_errors_and_the_scheduler_keeps_firing() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Accept).await;
    let services = StubService::start(&[
        ("queue_weekly_summary", json!({"queued": 0})),
        ("process_existing_batches", json!({"processed": 0})),
        ("cleanup_expired_files", json!(0)),
        ("get_graph_executions", json!([])),
        ("get_block_error_stats", json!([])),
        ("flush_matured_alerts", json!(null)),
        ("send_due_briefings", json!(null)),
        ("cleanup_expired_oauth_tokens", json!(0)),
        ("report_execution_accuracy_alerts", json!(null)),
        ("ensure_embeddings_coverage", json!({})),
        ("reconcile_schedule_index", json!(null)),
        ("optimize_block_descriptions", json!({})),
    ])
    .await;
    // AutoGPT's maintenance tasks as the example declares them, so that each `execute_<task>`
    // has its schedule.
    let example = include_str!("../../../../deploy/examples/autogpt.toml");
    let declared = &example[example.find("[endpoints.").unwrap()..];
    let file = db.dir.path().join("maintenance.toml");
    std::fs::write(&file, declared).unwrap();
    let env = [
        (
            "SCHEDULER__SYSTEM_TASKS__NOTIFICATION_MANAGER_URL",
            services.url.as_str(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__DATABASE_MANAGER_URL",
            services.url.as_str(),
        ),
        (
            "SCHEDULER__SYSTEM_TASKS__STORAGE_URL",
            services.url.as_str(),
        ),
        (
            "SCHEDULER__ENDPOINTS__NOTIFICATION_MANAGER__URL",
            services.url.as_str(),
        ),
        (
            "SCHEDULER__ENDPOINTS__DATABASE_MANAGER__URL",
            services.url.as_str(),
        ),
        (
            "SCHEDULER__ENDPOINTS__MAINTENANCE__URL",
            services.url.as_str(),
        ),
        ("SCHEDULER__LOG__LEVEL", "info"),
    ];
    let daemon = Daemon::start_configured(&db, &stub.url, &file, &env).await;
    let client = daemon.client();
    let existing = client
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "0 0 1 1 *"))
        .await
        .unwrap();

    let valid = |_method: &str, param: &str| -> Option<Value> {
        Some(match param {
            "user_id" => json!("u1"),
            "graph_id" => json!("g1"),
            "graph_version" => json!(1),
            "cron" => json!("0 0 1 1 *"),
            "input_data" | "input_credentials" => json!({}),
            "name" => json!("hostile"),
            "user_timezone" => json!("Europe/Paris"),
            "timezone" => json!("UTC"),
            "policy" => json!({"coalesce": true, "misfire_grace_secs": 60}),
            "schedule_id" => json!(existing.id),
            "include_paused" => json!(true),
            "limit" => json!(10),
            "after" => json!("2026-01-01T00:00:00Z"),
            "count" => json!(5),
            "kwargs" => json!({"notification_types": ["AGENT_RUN"]}),
            _ => return None,
        })
    };
    let probes = hostile::probes(&document(), valid);
    assert!(probes.len() > 500, "{} probes", probes.len());
    hostile::assert_all_answered(&daemon.url(), &probes, true).await;

    assert_eq!(client.health_check().await.unwrap(), "OK");
    let ready = reqwest::get(format!("{}/ready", daemon.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let plain = client
        .add_graph_execution_schedule(graph_schedule("after", "plain", "* * * * * *"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !stub.calls().iter().any(|c| c.params["graph_id"] == "plain") {
        assert!(
            std::time::Instant::now() < deadline,
            "a plain schedule no longer fires:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = plain;
    let log = daemon.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
