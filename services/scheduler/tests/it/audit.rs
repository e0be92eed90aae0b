//! The audit log against the real binary: who did what, through which route, and what changed
//! — the JSON-RPC methods, AutoGPT's routes, the declared schedules synced at start, the engine
//! parking a schedule — paged, scoped to a client's owners, and kept across a restart.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::wait_until;

use crate::helpers::{Backend, Daemon, TestDb, rpc_as};

const ALL: &str = "audit-all-token";

async fn rpc(daemon: &Daemon, token: &str, method: &str, params: Value) -> Value {
    rpc_as(daemon, token, method, params)
        .await
        .unwrap_or_else(|error| panic!("{method}: {error:?}"))
}

/// `(action, actor, route)` of each change of `id`, newest first.
async fn history(daemon: &Daemon, token: &str, id: &str) -> Vec<(String, String, String)> {
    let page = rpc(daemon, token, "list_changes", json!({"schedule_id": id})).await;
    page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |field: &str| c[field].as_str().unwrap().to_string();
            (text("action"), text("actor"), text("route"))
        })
        .collect()
}

fn triple(action: &str, actor: &str, route: &str) -> (String, String, String) {
    (action.into(), actor.into(), route.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_shows_who_did_what_through_each_route() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let config = db.dir.path().join("scheduler.toml");
    let write_config = |declared: &str, calendar: &str| {
        std::fs::write(
            &config,
            format!(
                "{calendar}[auth]\ntoken = \"{ALL}\"\n\n\
                 [[auth.clients]]\nname = \"agnt\"\ntoken = \"agnt-token\"\nowners = [\"agnt\"]\n\n\
                 [[auth.clients]]\nname = \"ops\"\ntoken = \"ops-token\"\nowners = [\"ops\"]\n\n\
                 [[schedules]]\nid = \"nightly\"\nname = \"{declared}\"\n\
                 trigger = {{ type = \"cron\", expression = \"0 3 * * *\" }}\n\
                 target = {{ type = \"http\", url = \"http://127.0.0.1:9/nightly\" }}\n"
            ),
        )
        .unwrap();
    };
    write_config("nightly cleanup", "[calendars.none]\ndates = []\n\n");
    let mut daemon = Daemon::start_with_config(&db, &config, &[]).await;

    // JSON-RPC, by the agent's client: create, update, pause, resume, run now.
    let schedule = json!({
        "id": "a1", "owner": "agnt",
        "trigger": {"type": "cron", "expression": "0 4 * * *", "timezone": "UTC"},
        "target": {"type": "graph_execution", "graph_id": "g", "graph_version": 1,
                   "input_data": {}, "input_credentials": {}},
    });
    rpc(&daemon, "agnt-token", "create_schedule", schedule).await;
    let a1 = json!({"id": "a1", "owner": "agnt"});
    let renamed = json!({"id": "a1", "owner": "agnt", "name": "report"});
    rpc(&daemon, "agnt-token", "update_schedule", renamed).await;
    let pause = json!({"id": "a1", "owner": "agnt", "reason": "holiday"});
    rpc(&daemon, "agnt-token", "pause_schedule", pause).await;
    rpc(&daemon, "agnt-token", "resume_schedule", a1.clone()).await;
    rpc(&daemon, "agnt-token", "trigger_schedule", a1.clone()).await;
    assert_eq!(
        history(&daemon, "agnt-token", "a1").await,
        [
            triple("trigger", "agnt", "jsonrpc"),
            triple("resume", "agnt", "jsonrpc"),
            triple("pause", "agnt", "jsonrpc"),
            triple("update", "agnt", "jsonrpc"),
            triple("create", "agnt", "jsonrpc"),
        ]
    );
    let page = rpc(
        &daemon,
        "agnt-token",
        "list_changes",
        json!({"schedule_id": "a1"}),
    )
    .await;
    let update = &page["changes"][3];
    assert_eq!(
        update["changes"],
        json!({"name": {"before": "a1", "after": "report"}}),
        "what changed, field by field: {update}"
    );
    let pause = &page["changes"][2]["changes"];
    assert_eq!(pause["paused"], json!({"before": false, "after": true}));
    assert_eq!(pause["paused_reason"]["after"], "holiday");

    // AutoGPT's route, by the all-owners token.
    let added: Value = reqwest::Client::new()
        .post(format!("{}/add_graph_execution_schedule", daemon.url()))
        .bearer_auth(ALL)
        .json(
            &json!({"user_id": "agnt", "graph_id": "g2", "graph_version": 1,
                      "cron": "0 5 * * *", "input_data": {}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let graph_id = added["id"].as_str().unwrap().to_string();
    assert_eq!(
        history(&daemon, ALL, &graph_id).await,
        [triple("create", "user", "autogpt")]
    );

    // The declared schedule, synced from the configuration at start.
    assert_eq!(
        history(&daemon, ALL, "nightly").await,
        [triple("sync", "config", "config")]
    );

    // A client sees only its owners' changes; another owner is refused.
    let ops = rpc(&daemon, "ops-token", "list_changes", json!({})).await;
    assert_eq!(
        ops["changes"],
        json!([]),
        "ops has no change of its own: {ops}"
    );
    let refused = rpc_as(
        &daemon,
        "ops-token",
        "list_changes",
        json!({"owner": "agnt"}),
    )
    .await;
    assert!(
        matches!(&refused, Err((kind, _)) if kind == "NotAuthorizedError"),
        "{refused:?}"
    );

    // Pages, newest first, by cursor.
    let first = rpc(&daemon, ALL, "list_changes", json!({"limit": 2})).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = rpc(
        &daemon,
        ALL,
        "list_changes",
        json!({"limit": 2, "cursor": cursor}),
    )
    .await;
    let seqs: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|page| page["changes"].as_array().unwrap().clone())
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    assert_eq!(seqs.len(), 4);

    // A schedule whose calendar goes from the configuration at the restart below.
    let parked = json!({
        "id": "p1", "owner": "agnt",
        "trigger": {"type": "interval", "every_secs": 1, "exclude": ["none"]},
        "target": {"type": "graph_execution", "graph_id": "g", "graph_version": 1,
                   "input_data": {}, "input_credentials": {}},
    });
    rpc(&daemon, "agnt-token", "create_schedule", parked).await;

    // A restart keeps the log; a changed declaration is a second sync, with what changed;
    // the engine parks the schedule whose calendar is gone, and says so.
    daemon.terminate();
    write_config("nightly cleanup, v2", "");
    let daemon = Daemon::start_with_config(&db, &config, &[]).await;
    let synced = wait_until("the second sync", Duration::from_secs(10), || async {
        let page = rpc(
            &daemon,
            ALL,
            "list_changes",
            json!({"schedule_id": "nightly"}),
        )
        .await;
        match page["changes"].as_array().unwrap().len() {
            2 => Ok(page),
            _ => Err(page.to_string()),
        }
    })
    .await;
    assert_eq!(
        synced["changes"][0]["changes"]["name"],
        json!({"before": "nightly cleanup", "after": "nightly cleanup, v2"})
    );
    assert_eq!(history(&daemon, "agnt-token", "a1").await.len(), 5);
    let park = wait_until("the engine parks p1", Duration::from_secs(20), || async {
        let page = rpc(&daemon, ALL, "list_changes", json!({"schedule_id": "p1"})).await;
        let newest = page["changes"][0].clone();
        if newest["action"] == "park" {
            Ok(newest)
        } else {
            Err(page.to_string())
        }
    })
    .await;
    assert_eq!(
        (&park["actor"], &park["route"]),
        (&json!("engine"), &json!("engine"))
    );
    let reason = park["changes"]["paused_reason"]["after"].as_str().unwrap();
    assert!(
        reason.contains("calendar 'none' is not configured"),
        "{reason}"
    );
}
