//! Tokens: every route but the probes needs the bearer token when one is set, admin methods need
//! the admin token, refusals are clear (401 on the AutoGPT routes), and a scheduler listening
//! beyond loopback without a token does not start.

use std::process::Command;

use reqwest::StatusCode;
use scheduler_api::SchedulerError;
use scheduler_client::Error;
use serde_json::{Value, json};

use crate::helpers::{Backend, Daemon, TestDb, free_port};

const USER: &str = "user-token-5f2a";
const ADMIN: &str = "admin-token-9c1e";

async fn post(url: String, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn list_call() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "get_graph_execution_schedules", "params": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_token_are_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start_with(
        &db,
        "http://127.0.0.1:9/",
        &[
            ("SCHEDULER__AUTH__TOKEN", USER),
            ("SCHEDULER__AUTH__ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    let url = daemon.url();

    // JSON-RPC without a token, or with a wrong one: 401 with a JSON-RPC error object.
    for token in [None, Some("guess")] {
        let (status, body) = post(format!("{url}/"), token, list_call()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], 4001);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bearer token"),
            "{body}"
        );
    }
    // The AutoGPT routes answer 401 as FastAPI would.
    let (status, body) = post(
        format!("{url}/get_graph_execution_schedules"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("bearer token"));
    // Metrics and the farm's REST API need the token too; the probes do not.
    let client = reqwest::Client::new();
    let farm = client
        .get(format!("{url}/api/schedules"))
        .send()
        .await
        .unwrap();
    assert_eq!(farm.status(), StatusCode::UNAUTHORIZED);
    let farm = client
        .get(format!("{url}/api/schedules"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(farm.status(), StatusCode::OK);
    assert_eq!(farm.json::<Value>().await.unwrap(), json!([]));
    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED);
    for probe in ["health_check", "ready"] {
        let answer = client.get(format!("{url}/{probe}")).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "/{probe} is open");
    }

    // The user token calls the API but not the admin methods.
    let (status, body) = post(format!("{url}/"), Some(USER), list_call()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], json!([]));
    match daemon.client_with_token(USER).get_registry().await {
        Err(Error::Scheduler(SchedulerError::Unauthorized(message))) => {
            assert!(message.contains("admin token"), "{message}")
        }
        other => panic!("get_registry with the user token: {other:?}"),
    }
    let (status, body) = post(
        format!("{url}/execute_report_late_executions"),
        Some(USER),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["type"], "UnauthorizedError");

    // The admin token calls everything.
    let registry = daemon
        .client_with_token(ADMIN)
        .get_registry()
        .await
        .unwrap();
    assert_eq!(registry.system_tasks.len(), 5);
    let schedules = daemon
        .client_with_token(ADMIN)
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, None))
        .await
        .unwrap();
    assert!(schedules.is_empty());
    let metrics = client
        .get(format!("{url}/metrics"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

#[test]
fn listening_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_scheduler"))
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("DIRECT_URL")
            .args(["--host", "0.0.0.0", "--port", &free_port().to_string()])
            .args(["--check-config"])
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("server.host is 0.0.0.0, beyond loopback, and auth.token is not set"),
        "{message}"
    );
    let opted_out = run(&[("SCHEDULER__AUTH__DISABLED", "true")]);
    assert!(opted_out.status.success());
    let with_token = run(&[("SCHEDULER__AUTH__TOKEN", USER)]);
    assert!(with_token.status.success());
    let shown = String::from_utf8_lossy(&with_token.stdout);
    assert!(
        shown.contains("token = \"<redacted>\"") && !shown.contains(USER),
        "--check-config never prints a token: {shown}"
    );
}
