//! Alerts against the real binary: a late and a failing schedule open and resolve incidents
//! once across three replicas while one is SIGKILLed, each message arriving once at a stub
//! webhook and a Slack-compatible stub; a dead man's switch on SQLite that survives a restart,
//! published on Redis, resolved by a caller's pause, scoped to a client's owners and counted
//! in the metrics.

use std::collections::HashMap;
use std::time::Duration;

use scheduler_client::{AlertKind, AlertQuery, AlertState};
use serde_json::{Value, json};
use test_support::wait_until;

use crate::helpers::{
    Backend, BackendRequest, Daemon, REDIS, StubBackend, Subscriber, TestDb, rpc_as,
};

const TOKEN: &str = "alerts-token";

async fn rpc(daemon: &Daemon, method: &str, params: Value) -> Value {
    rpc_as(daemon, TOKEN, method, params)
        .await
        .unwrap_or_else(|error| panic!("{method}: {error:?}"))
}

/// An `http` schedule on the stub backend, every second, with `policy`.
fn every_second(id: &str, owner: &str, path: &str, policy: Value) -> Value {
    json!({
        "id": id, "name": format!("{id} job"), "owner": owner,
        "trigger": {"type": "interval", "every_secs": 1},
        "target": {"type": "http", "endpoint": "backend", "method": "POST", "path": path},
        "policy": policy,
    })
}

/// `(event, kind, schedule)` → how many times each incident's message arrived, by alert id.
fn messages(requests: &[BackendRequest]) -> HashMap<(String, String), Vec<(String, String)>> {
    let mut by_alert: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for request in requests {
        let alert = &request.body["alert"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        by_alert
            .entry((text(&alert["id"]), text(&request.body["event"])))
            .or_default()
            .push((text(&alert["kind"]), text(&alert["schedule_id"])));
    }
    by_alert
}

/// The webhook's messages of `kind` for `schedule` with `event`.
fn of(requests: &[BackendRequest], event: &str, kind: &str, schedule: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r.body["event"] == event
                && r.body["alert"]["kind"] == kind
                && r.body["alert"]["schedule_id"] == schedule
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_failing_incidents_open_and_resolve_once_across_replicas_while_one_is_killed() {
    let db = TestDb::new(Backend::Postgres)
        .await
        .expect("PostgreSQL is needed for replicas");
    let backend = StubBackend::start().await;
    backend.answer("/fail", 500, Duration::ZERO);
    // A run that lasts: the occurrence after it waits in line, late.
    backend.answer("/slow", 200, Duration::from_secs(12));
    let hook = format!("{}/hook", backend.url);
    let chat = format!("{}/chat", backend.url);
    let env = [
        ("SCHEDULER__AUTH__TOKEN", TOKEN),
        ("SCHEDULER__ENGINE__LEASE", "2s"),
        ("SCHEDULER__ENGINE__LEADER_POLL", "200ms"),
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__ENDPOINTS__BACKEND__TIMEOUT", "30s"),
        ("SCHEDULER__ALERTS__EVERY", "200ms"),
        ("SCHEDULER__ALERTS__RETRY_DELAY", "100ms"),
        ("SCHEDULER__ALERTS__CHANNELS__HOOK__KIND", "webhook"),
        ("SCHEDULER__ALERTS__CHANNELS__HOOK__URL", hook.as_str()),
        ("SCHEDULER__ALERTS__CHANNELS__HOOK__TOKEN", "hook-secret"),
        ("SCHEDULER__ALERTS__CHANNELS__CHAT__KIND", "slack"),
        ("SCHEDULER__ALERTS__CHANNELS__CHAT__URL", chat.as_str()),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await);
    }
    let failing = json!({"attempts": 1, "alerts": {"failed_in_a_row": 2}});
    rpc(
        &replicas[0],
        "create_schedule",
        every_second("broken", "agnt", "/fail", failing),
    )
    .await;
    let late = json!({"overlap": "buffer_one", "alerts": {"late_after_secs": 2}});
    rpc(
        &replicas[0],
        "create_schedule",
        every_second("busy", "farm", "/slow", late),
    )
    .await;

    // Both incidents open, each announced once to each channel.
    wait_until("both incidents announced", Duration::from_secs(60), || {
        let requests = backend.requests("/hook");
        async move {
            let failing = of(&requests, "alert.opened", "failing", "broken");
            let late = of(&requests, "alert.opened", "late", "busy");
            if failing >= 1 && late >= 1 {
                Ok(())
            } else {
                Err(format!("{} messages", requests.len()))
            }
        }
    })
    .await;
    let opened = backend.requests("/hook");
    let failing_alert = opened
        .iter()
        .find(|r| r.body["alert"]["kind"] == "failing")
        .unwrap();
    let alert = &failing_alert.body["alert"];
    assert_eq!(alert["owner"], "agnt");
    assert_eq!(alert["schedule_name"], "broken job");
    assert!(
        alert["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{alert}"
    );
    assert_eq!(
        failing_alert.header("authorization"),
        Some("Bearer hook-secret")
    );

    // Fix both targets, and kill the leader before the incidents resolve.
    backend.answer("/fail", 200, Duration::ZERO);
    backend.answer("/slow", 200, Duration::ZERO);
    let mut leader = None;
    for (i, replica) in replicas.iter().enumerate() {
        let client = replica.client_with_token(TOKEN);
        let status = client.get_scheduler_status().await.unwrap();
        if status.leader {
            leader = Some(i);
        }
    }
    let killed = leader.unwrap_or(0);
    replicas[killed].kill9();
    let alive = replicas
        .iter()
        .enumerate()
        .find(|(i, _)| *i != killed)
        .map(|(_, r)| r)
        .unwrap();

    wait_until(
        "both incidents resolved and announced",
        Duration::from_secs(90),
        || {
            let requests = backend.requests("/hook");
            async move {
                let failing = of(&requests, "alert.resolved", "failing", "broken");
                let late = of(&requests, "alert.resolved", "late", "busy");
                if failing >= 1 && late >= 1 {
                    Ok(())
                } else {
                    Err(format!("{} messages", requests.len()))
                }
            }
        },
    )
    .await;
    // Time for a second sender to repeat one, were it going to (ten evaluations).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hook = backend.requests("/hook");
    let by_alert = messages(&hook);
    for ((id, event), seen) in &by_alert {
        assert_eq!(
            seen.len(),
            1,
            "incident {id} {event} arrived once: {seen:?}"
        );
    }
    for (kind, schedule) in [("failing", "broken"), ("late", "busy")] {
        for event in ["alert.opened", "alert.resolved"] {
            assert_eq!(of(&hook, event, kind, schedule), 1, "{event} {kind}");
        }
    }
    // The Slack-compatible channel got the same four messages, as lines of text.
    let chat = backend.wait_for("/chat", 4, Duration::from_secs(30)).await;
    let lines: Vec<&str> = chat
        .iter()
        .filter_map(|r| r.body["text"].as_str())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("failing alert opened") && l.contains("'broken job'")),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("alert resolved"))
            .count(),
        2
    );

    // The survivors list them resolved, with why.
    let resolved = alive
        .client_with_token(TOKEN)
        .list_alerts(AlertQuery {
            state: Some(AlertState::Resolved),
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    let kinds: Vec<AlertKind> = resolved.iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&AlertKind::Failing) && kinds.contains(&AlertKind::Late));
    let failing = resolved
        .iter()
        .find(|a| a.kind == AlertKind::Failing)
        .unwrap();
    assert_eq!(failing.resolution.as_deref(), Some("a run succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mans_switch_survives_a_restart_and_a_callers_pause_resolves_it() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    backend.answer("/fail", 500, Duration::ZERO);
    let channel = format!("it-alerts-{}", std::process::id());
    let config = db.dir.path().join("scheduler.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ntoken = \"{TOKEN}\"\n\n\
             [[auth.clients]]\nname = \"farm\"\ntoken = \"farm-token\"\nowners = [\"farm\"]\n\n\
             [endpoints.backend]\nurl = \"{}\"\n\n[redis]\nurl = \"{REDIS}\"\n\n\
             [alerts]\nmissing_after_secs = 2\nevery = \"200ms\"\n\n\
             [alerts.channels.bus]\nkind = \"redis\"\nchannel = \"{channel}\"\n",
            backend.url
        ),
    )
    .unwrap();
    let mut subscriber = Subscriber::subscribe(&channel).await;
    let mut daemon = Daemon::start_with_config(&db, &config, &[]).await;
    // No policy of its own: the `[alerts]` default applies. It never succeeds.
    let quiet = every_second("quiet", "agnt", "/fail", json!({"attempts": 1}));
    rpc(&daemon, "create_schedule", quiet).await;

    let opened = subscriber.next(Duration::from_secs(30)).await;
    assert_eq!(opened["event"], "alert.opened");
    assert_eq!(opened["alert"]["kind"], "missing");
    assert_eq!(opened["alert"]["schedule_id"], "quiet");
    let summary = opened["alert"]["summary"].as_str().unwrap();
    assert!(summary.contains("no run succeeded"), "{summary}");

    // Listed open, counted in the metrics, and out of reach of a client scoped to `farm`.
    let open = rpc(&daemon, "list_alerts", json!({"state": "open"})).await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    wait_until("the metric counts it", Duration::from_secs(10), || {
        let url = format!("{}/metrics", daemon.url());
        async move {
            let scrape = reqwest::Client::new().get(url).bearer_auth(TOKEN).send();
            let text = scrape.await.map_err(|e| e.to_string())?;
            let text = text.text().await.map_err(|e| e.to_string())?;
            let line = "scheduler_alerts_open{kind=\"missing\"} 1";
            text.contains(line).then_some(()).ok_or(text)
        }
    })
    .await;
    let scoped = rpc_as(&daemon, "farm-token", "list_alerts", json!({})).await;
    assert_eq!(scoped, Ok(json!([])), "the farm sees none of agnt's");
    let refused = rpc_as(
        &daemon,
        "farm-token",
        "list_alerts",
        json!({"owner": "agnt"}),
    )
    .await;
    assert_eq!(refused.unwrap_err().0, "NotAuthorizedError");
    let (kind, message) = rpc_as(&daemon, TOKEN, "list_alerts", json!({"state": "stuck"}))
        .await
        .unwrap_err();
    assert_eq!(kind, "ValueError", "{message}");
    assert!(message.contains("stuck"), "{message}");

    // A restart: the incident is stored, so it is not announced again.
    daemon.terminate();
    let daemon = Daemon::start_with_config(&db, &config, &[]).await;
    let pause = json!({"id": "quiet", "owner": "agnt", "reason": "maintenance"});
    rpc(&daemon, "pause_schedule", pause).await;
    let resolved = subscriber.next(Duration::from_secs(30)).await;
    assert_eq!(resolved["event"], "alert.resolved", "{resolved}");
    assert_eq!(resolved["alert"]["id"], opened["alert"]["id"]);
    assert_eq!(
        resolved["alert"]["resolution"],
        "the schedule was paused by a caller"
    );
    assert_eq!(
        subscriber.another(Duration::from_secs(2)).await,
        None,
        "nothing else was published"
    );
    let all = rpc(&daemon, "list_alerts", json!({"schedule_id": "quiet"})).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["state"], "resolved");
}
