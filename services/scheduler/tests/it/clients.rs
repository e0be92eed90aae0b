//! Scoped clients (`[[auth.clients]]`): a client acts only for the owners its patterns allow,
//! by every route (the JSON-RPC methods the console and the clients call, AutoGPT's routes,
//! the farm's REST API); `auth.token` stays an all-owners client; a client's token file is read
//! again on SIGHUP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::wait_until;

use crate::helpers::{Backend, Daemon, TestDb, rpc_as};

const ALL: &str = "all-owners-token";
const ADMIN: &str = "admin-token-77";

/// An AutoGPT route (`POST /<method>`) with `token`: the status and the body.
async fn route(daemon: &Daemon, token: &str, method: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/{method}", daemon.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A farm REST call with `token`: the status and the body.
async fn farm(daemon: &Daemon, token: &str, method: &str, path: &str) -> (StatusCode, Value) {
    let url = format!("{}{path}", daemon.url());
    let request = match method {
        "GET" => reqwest::Client::new().get(url),
        "DELETE" => reqwest::Client::new().delete(url),
        _ => reqwest::Client::new().post(url),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn graph_schedule(id: &str, owner: &str) -> Value {
    json!({
        "id": id,
        "owner": owner,
        "trigger": {"type": "cron", "expression": "0 3 * * *", "timezone": "UTC"},
        "target": {"type": "graph_execution", "graph_id": "g", "graph_version": 1,
                   "input_data": {}, "input_credentials": {}},
    })
}

fn ids(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> = listing["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn not_authorized(answer: Result<Value, (String, String)>, what: &str) -> String {
    match answer {
        Err((kind, message)) if kind == "NotAuthorizedError" => message,
        other => panic!("{what}: expected NotAuthorizedError, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_scoped_to_its_owners_cannot_reach_anothers_by_any_route() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let token_file = db.dir.path().join("agnt.token");
    std::fs::write(&token_file, "# the agent's token\nagnt-token-1\n").unwrap();
    let config = db.dir.path().join("scheduler.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ntoken = \"{ALL}\"\nadmin_token = \"{ADMIN}\"\n\n\
             [[auth.clients]]\nname = \"agnt\"\ntoken_file = \"{}\"\nowners = [\"agnt\", \"user-*\"]\n",
            token_file.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_config(&db, &config, &[]).await;
    let agnt = "agnt-token-1";

    // The all-owners token makes farm's schedules; the agent makes its own.
    rpc_as(
        &daemon,
        ALL,
        "create_schedule",
        graph_schedule("farm-1", "farm"),
    )
    .await
    .unwrap();
    rpc_as(
        &daemon,
        agnt,
        "create_schedule",
        graph_schedule("agnt-1", "agnt"),
    )
    .await
    .unwrap();
    rpc_as(
        &daemon,
        agnt,
        "create_schedule",
        graph_schedule("user-7-1", "user-7"),
    )
    .await
    .unwrap();
    let message = not_authorized(
        rpc_as(
            &daemon,
            agnt,
            "create_schedule",
            graph_schedule("farm-2", "farm"),
        )
        .await,
        "create for farm",
    );
    assert!(
        message.contains("client 'agnt' may not act for owner 'farm'")
            && message.contains("agnt, user-*"),
        "{message}"
    );

    // JSON-RPC, as the console and the clients call it: listings hold only its owners'.
    let all = rpc_as(&daemon, ALL, "list_schedules", json!({}))
        .await
        .unwrap();
    assert_eq!(ids(&all), ["agnt-1", "farm-1", "user-7-1"]);
    let own = rpc_as(&daemon, agnt, "list_schedules", json!({}))
        .await
        .unwrap();
    assert_eq!(ids(&own), ["agnt-1", "user-7-1"]);
    not_authorized(
        rpc_as(&daemon, agnt, "list_schedules", json!({"owner": "farm"})).await,
        "list farm's",
    );
    let from = chrono::Utc::now();
    let window = json!({"from": from, "to": from + chrono::TimeDelta::days(7)});
    let preview = rpc_as(&daemon, agnt, "preview_fires", window.clone())
        .await
        .unwrap();
    let previewed: Vec<&str> = preview["fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["schedule_id"].as_str().unwrap())
        .collect();
    assert!(
        previewed.contains(&"agnt-1") && !previewed.contains(&"farm-1"),
        "{preview}"
    );
    for (method, extra) in [
        ("get_schedule", json!({})),
        ("update_schedule", json!({"name": "mine now"})),
        ("pause_schedule", json!({})),
        ("resume_schedule", json!({})),
        ("trigger_schedule", json!({})),
        ("list_runs", json!({})),
        ("delete_schedule", json!({})),
        (
            "backfill_schedule",
            json!({"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}),
        ),
    ] {
        for owner in ["farm", "agnt"] {
            let mut params = json!({"id": "farm-1", "owner": owner});
            params
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            if method == "list_runs" {
                params = json!({"schedule_id": "farm-1", "owner": owner});
            }
            not_authorized(
                rpc_as(&daemon, agnt, method, params).await,
                &format!("{method} as {owner}"),
            );
        }
    }
    // Whether a schedule exists is not told to an owner the client may not act for.
    let message = not_authorized(
        rpc_as(
            &daemon,
            agnt,
            "get_schedule",
            json!({"id": "no-such", "owner": "farm"}),
        )
        .await,
        "get a missing one as farm",
    );
    assert!(
        message.contains("may not act for owner 'farm'"),
        "{message}"
    );
    not_authorized(
        rpc_as(&daemon, agnt, "list_watches", json!({"user_id": "farm"})).await,
        "list farm's watches",
    );

    // AutoGPT's methods and routes: `user_id` is the owner.
    let (status, body) = route(&daemon, agnt, "get_graph_execution_schedules", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        !listed.contains(&"farm-1") && listed.contains(&"agnt-1"),
        "{body}"
    );
    for (method, body) in [
        ("get_graph_execution_schedules", json!({"user_id": "farm"})),
        (
            "delete_graph_execution_schedule",
            json!({"schedule_id": "farm-1", "user_id": "farm"}),
        ),
        (
            "pause_execution_schedule",
            json!({"schedule_id": "farm-1", "user_id": "farm"}),
        ),
        (
            "get_schedule_runs",
            json!({"schedule_id": "farm-1", "user_id": "farm"}),
        ),
        (
            "add_graph_execution_schedule",
            json!({"user_id": "farm", "graph_id": "g", "graph_version": 1, "cron": "0 3 * * *",
                   "input_data": {}}),
        ),
    ] {
        let (status, answer) = route(&daemon, agnt, method, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method}: {answer}");
        assert_eq!(answer["type"], "NotAuthorizedError", "{method}: {answer}");
    }

    // The farm's REST API is farm's: every route refuses the agent, not the all-owners token.
    for (method, path) in [
        ("GET", "/api/schedules"),
        ("POST", "/api/schedules/farm-1/run-now"),
        ("DELETE", "/api/schedules/farm-1"),
        ("GET", "/api/scheduler/queue"),
    ] {
        let (status, body) = farm(&daemon, agnt, method, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("'agnt'"), "{body}");
    }
    let (status, body) = farm(&daemon, ALL, "GET", "/api/schedules").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Nothing of farm's changed.
    let kept = rpc_as(
        &daemon,
        ALL,
        "get_schedule",
        json!({"id": "farm-1", "owner": "farm"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (kept["name"].as_str(), kept["paused"].as_bool()),
        (Some("farm-1"), Some(false))
    );

    // The token rotates on SIGHUP: the new one is taken, the old one refused.
    std::fs::write(&token_file, "agnt-token-2\n").unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until(
        "the rotated token is taken",
        Duration::from_secs(10),
        || async {
            rpc_as(&daemon, "agnt-token-2", "list_schedules", json!({}))
                .await
                .map(|listing| ids(&listing))
                .map_err(|e| format!("{e:?}"))
        },
    )
    .await;
    let old = reqwest::Client::new()
        .post(format!("{}/", daemon.url()))
        .bearer_auth(agnt)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "list_schedules", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    // A reload that cannot read the file keeps the tokens there are.
    std::fs::remove_file(&token_file).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until(
        "the failed reload is logged",
        Duration::from_secs(10),
        || async {
            let log = daemon.log_text();
            if log.contains("were not reloaded") {
                Ok(())
            } else {
                Err(log)
            }
        },
    )
    .await;
    rpc_as(&daemon, "agnt-token-2", "list_schedules", json!({}))
        .await
        .unwrap();
}
