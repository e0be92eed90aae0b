//! AutoGPT wire compatibility: what AutoGPT's Python `AppServiceClient` sends and expects.

use serde_json::{Value, json};

use crate::helpers::{Backend, Daemon, TestDb, post_text};

async fn post(daemon: &Daemon, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = post_text(daemon, path, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn keyword_routes_answer_like_the_python_service() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;

    let add = json!({"user_id": "u1", "graph_id": "g1", "graph_version": 2, "cron": "15 10 * * *",
        "input_data": {"q": "x"}, "input_credentials": {}, "name": null, "user_timezone": "Asia/Kolkata"});
    let (status, info) = post(&daemon, "/add_graph_execution_schedule", &add.to_string()).await;
    assert_eq!(status, 200, "{info}");
    let id = info["id"].as_str().unwrap().to_string();
    assert_eq!(info["name"], "execute_graph", "AutoGPT's default job name");
    assert!(
        info["next_run_time"]
            .as_str()
            .unwrap()
            .ends_with("T10:15:00+05:30"),
        "{info}"
    );
    let keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "agent_name",
        "cron",
        "expert_id",
        "graph_id",
        "graph_version",
        "id",
        "input_credentials",
        "input_data",
        "kind",
        "name",
        "next_run_time",
        "organization_id",
        "schedule_id",
        "team_id",
        "timezone",
        "user_id",
    ];
    expected.sort();
    assert_eq!(keys, expected, "exactly GraphExecutionJobInfo's fields");

    let (status, list) = post(
        &daemon,
        "/get_graph_execution_schedules",
        r#"{"graph_id": "g1"}"#,
    )
    .await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 1));
    let (status, list) = post(&daemon, "/get_graph_execution_schedules", "").await;
    assert_eq!(
        (status, list.as_array().unwrap().len()),
        (200, 1),
        "an empty body means no keyword arguments"
    );
    let (status, paused) = post(
        &daemon,
        "/pause_execution_schedule",
        &json!({"schedule_id": id, "user_id": "u1"}).to_string(),
    )
    .await;
    assert_eq!((status, paused), (200, json!(true)));

    // Application errors: 400 with the exception name and its args.
    let (status, body) = post(
        &daemon,
        "/delete_graph_execution_schedule",
        r#"{"schedule_id": "nope", "user_id": "u1"}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"type": "NotFoundError", "args": ["Job #nope not found."]})
        )
    );
    let (status, body) = post(
        &daemon,
        "/delete_graph_execution_schedule",
        &json!({"schedule_id": id, "user_id": "u2"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"type": "NotAuthorizedError", "args": ["User ID does not match the job's user ID"]})
        )
    );
    let bad_cron = json!({"user_id": "u1", "graph_id": "g1", "graph_version": 2, "cron": "0 0 * * 8", "input_data": {}});
    let (status, body) = post(
        &daemon,
        "/add_graph_execution_schedule",
        &bad_cron.to_string(),
    )
    .await;
    assert_eq!((status, body["type"].as_str()), (400, Some("ValueError")));
    assert!(
        body["args"][0]
            .as_str()
            .unwrap()
            .contains("day-of-week: value 8 is out of range 0-7"),
        "{body}"
    );
    // Failures of the service itself: 500 in the same shape.
    let (status, body) = post(&daemon, "/execute_cleanup_expired_files", "{}").await;
    assert_eq!(
        (status, body["type"].as_str()),
        (500, Some("RuntimeError")),
        "{body}"
    );

    // Request validation: 422 with FastAPI's detail list.
    let (status, body) = post(
        &daemon,
        "/delete_graph_execution_schedule",
        r#"{"user_id": "u1"}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "schedule_id"]));
    assert_eq!(body["detail"][0]["type"], "missing");
    let (status, body) = post(&daemon, "/add_graph_execution_schedule", "{\"user_id\": ").await;
    assert_eq!(
        (status, body["detail"][0]["type"].as_str()),
        (422, Some("json_invalid"))
    );
    let (status, body) = post(&daemon, "/add_graph_execution_schedule", "[1, 2]").await;
    assert_eq!(
        (status, body["detail"][0]["type"].as_str()),
        (422, Some("model_attributes_type"))
    );
    let wrong_type = json!({"user_id": "u1", "graph_id": "g1", "graph_version": "two", "cron": "* * * * *", "input_data": {}});
    let (status, _) = post(
        &daemon,
        "/add_graph_execution_schedule",
        &wrong_type.to_string(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post(&daemon, "/no_such_method", "{}").await;
    assert_eq!(status, 404);

    let http = reqwest::Client::new();
    for path in ["/health_check", "/health_check_async"] {
        let get: Value = http
            .get(format!("{}{path}", daemon.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (status, post_answer) = post(&daemon, path, "").await;
        assert_eq!(
            (get, status, post_answer),
            (json!("OK"), 200, json!("OK")),
            "{path}"
        );
    }

    // The paused schedule is still there after all the refused calls.
    let (_, all) = post(
        &daemon,
        "/get_graph_execution_schedules",
        r#"{"include_paused": true}"#,
    )
    .await;
    assert_eq!(all[0]["id"], json!(id));
}
