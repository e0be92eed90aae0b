//! AutoGPT's scheduler as it is today: the bodies its current `SchedulerClient` sends
//! (`add_execution_schedule`, `delete_schedule`, `pause_schedule`, `resume_schedule`,
//! `get_graph_execution_schedules`, `get_execution_schedules`, `get_parked_jobs`,
//! `reconcile_parked_jobs`) replayed on AutoGPT's routes of the real binary, the organisation
//! and team visibility table, a fire's tenancy, and the maintenance tasks of
//! `deploy/examples/autogpt.toml` run by `execute_<task>`.

use std::collections::BTreeSet;
use std::time::Duration;

use scheduler_client::Target;
use serde_json::{Value, json};
use service_kit::config::{Overrides, load_from};
use triggers::TriggerKind;

use crate::helpers::{Answer, Backend, Daemon, StubExecutor, StubService, TestDb, post_text};

const AUTOGPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/examples/autogpt.toml"
);

/// A keyword call on AutoGPT's route `/<method>`, as `AppServiceClient` sends it.
async fn call(daemon: &Daemon, method: &str, kwargs: Value) -> (u16, Value) {
    let (status, text) = post_text(daemon, &format!("/{method}"), &kwargs.to_string()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ids(listed: &Value) -> BTreeSet<String> {
    listed
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {listed}"))
        .iter()
        .map(|s| s["agent_name"].as_str().unwrap().to_string())
        .collect()
}

fn names(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_scheduler_client_is_answered_as_autogpt_answers_it() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let executor = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &executor.url).await;

    // add_execution_schedule, with every keyword today's backend passes.
    let (status, info) = call(
        &daemon,
        "add_graph_execution_schedule",
        json!({"user_id": "u1", "graph_id": "g1", "graph_version": 3, "cron": "* * * * * *",
               "input_data": {"q": "x"}, "input_credentials": {}, "name": "Morning digest",
               "user_timezone": "Europe/Berlin", "organization_id": "org-1", "team_id": "team-a",
               "expert_id": null}),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    let id = info["id"].as_str().unwrap().to_string();
    assert_eq!(info["kind"], "graph");
    assert_eq!(info["schedule_id"], info["id"]);
    assert_eq!(info["name"], "Morning digest");
    assert_eq!(info["agent_name"], "Morning digest");
    assert_eq!(info["organization_id"], "org-1");
    assert_eq!(info["team_id"], "team-a");
    assert_eq!(info["expert_id"], Value::Null);
    assert_eq!(info["timezone"], "Europe/Berlin");

    // A fire sends the tenancy on, with trigger and trigger_ref, beside what it sent before.
    let calls = executor.wait_for(1, Duration::from_secs(30)).await;
    let params = &calls.first().expect("the schedule fires").params;
    assert_eq!(params["organization_id"], "org-1");
    assert_eq!(params["team_id"], "team-a");
    assert_eq!(params["expert_id"], Value::Null);
    assert_eq!(params["trigger"], "SCHEDULE");
    assert_eq!(params["trigger_ref"], id.as_str());
    assert_eq!(params["schedule_id"], id.as_str());
    assert_eq!(params["graph_version"], 3);
    assert_eq!(params["inputs"], json!({"q": "x"}));

    // Without an organisation or a name: "" and null, as AutoGPT stores them.
    let (_, plain) = call(
        &daemon,
        "add_graph_execution_schedule",
        json!({"user_id": "u1", "graph_id": "g2", "graph_version": 1, "cron": "0 9 * * *",
               "input_data": {}, "input_credentials": {}, "user_timezone": null}),
    )
    .await;
    assert_eq!(
        (
            &plain["organization_id"],
            &plain["agent_name"],
            &plain["name"]
        ),
        (&json!(""), &Value::Null, &json!("execute_graph"))
    );

    // pause_schedule / resume_schedule: false when there was nothing to change.
    let target = json!({"schedule_id": id, "user_id": "u1"});
    for (method, expected) in [
        ("pause_execution_schedule", true),
        ("pause_execution_schedule", false),
        ("resume_execution_schedule", true),
        ("resume_execution_schedule", false),
    ] {
        let (status, answer) = call(&daemon, method, target.clone()).await;
        assert_eq!((status, answer), (200, json!(expected)), "{method}");
    }

    // get_execution_schedules: graph schedules, nothing for a copilot turn's kind or session.
    let (status, listed) = call(
        &daemon,
        "get_execution_schedules",
        json!({"user_id": "u1", "kind": "graph"}),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 2);
    for kwargs in [
        json!({"user_id": "u1", "kind": "copilot_turn"}),
        json!({"user_id": "u1", "session_id": "chat-1"}),
    ] {
        let (status, listed) = call(&daemon, "get_execution_schedules", kwargs.clone()).await;
        assert_eq!((status, listed), (200, json!([])), "{kwargs}");
    }
    let (status, refused) = call(
        &daemon,
        "get_execution_schedules",
        json!({"kind": "briefing"}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["type"], "ValueError");

    // get_parked_jobs and reconcile_parked_jobs: nothing parked, every jobstore answered.
    let (status, parked) = call(&daemon, "get_parked_jobs", json!({"limit": 1000})).await;
    assert_eq!(status, 200, "{parked}");
    assert_eq!(parked["execution"], json!([]));
    let (status, resumed) = call(&daemon, "reconcile_parked_jobs", json!({})).await;
    assert_eq!((status, &resumed["execution"]), (200, &json!([])));
    let (status, refused) = call(&daemon, "get_parked_jobs", json!({"limit": 0})).await;
    assert_eq!((status, &refused["type"]), (400, &json!("ValueError")));

    // delete_schedule: the schedule as it was, gone from the listing.
    let (status, deleted) = call(&daemon, "delete_graph_execution_schedule", target).await;
    assert_eq!((status, &deleted["id"]), (200, &json!(id)));
    let (_, listed) = call(
        &daemon,
        "get_graph_execution_schedules",
        json!({"user_id": "u1", "include_paused": true}),
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_sees_its_home_its_teams_and_its_own_but_no_ones_expert() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await.unwrap();
        let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
        let rows = [
            ("own", "u1", None, None, None),
            ("home", "u2", Some("o"), None, None),
            ("team-a", "u2", Some("o"), Some("a"), None),
            ("team-b", "u2", Some("o"), Some("b"), None),
            ("elsewhere", "u3", Some("p"), None, None),
            ("expert", "u2", Some("o"), None, Some("e")),
            ("own-expert", "u1", Some("o"), None, Some("e2")),
        ];
        for (name, user, org, team, expert) in rows {
            let (status, info) = call(
                &daemon,
                "add_graph_execution_schedule",
                json!({"user_id": user, "graph_id": "g", "graph_version": 1, "cron": "0 9 * * *",
                       "input_data": {}, "input_credentials": {}, "name": name,
                       "organization_id": org, "team_id": team, "expert_id": expert}),
            )
            .await;
            assert_eq!(status, 200, "{info}");
        }
        let table: [(Value, &[&str]); 7] = [
            (
                json!({"user_id": "u1", "organization_id": "o", "team_ids": ["a"]}),
                &["own", "home", "team-a", "own-expert"],
            ),
            (
                json!({"organization_id": "o"}),
                &["home"], // no user: nobody's expert schedule
            ),
            (
                json!({"user_id": "u3", "organization_id": "o", "team_ids": ["a", "b"]}),
                &["elsewhere", "home", "team-a", "team-b"],
            ),
            (
                json!({"user_id": "u2"}),
                &["home", "team-a", "team-b", "expert"],
            ),
            (
                json!({"user_id": "u1", "organization_id": "o", "graph_id": "other"}),
                &[],
            ),
            (
                json!({"organization_id": "p", "team_ids": []}),
                &["elsewhere"],
            ),
            (
                json!({}),
                &[
                    "own",
                    "home",
                    "team-a",
                    "team-b",
                    "elsewhere",
                    "expert",
                    "own-expert",
                ],
            ),
        ];
        for (kwargs, expected) in table {
            for method in ["get_graph_execution_schedules", "get_execution_schedules"] {
                let (status, listed) = call(&daemon, method, kwargs.clone()).await;
                assert_eq!(status, 200, "{method} {kwargs}: {listed}");
                assert_eq!(
                    ids(&listed),
                    names(expected),
                    "{backend:?} {method} {kwargs}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_schedule_is_listed_and_resumed_once_it_can_be_planned_again() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let with_calendar = db.dir.path().join("with.toml");
    std::fs::write(
        &with_calendar,
        "[calendars.closed]\ndates = [\"2099-12-24\"]\n",
    )
    .unwrap();
    let without = db.dir.path().join("without.toml");
    std::fs::write(&without, "").unwrap();

    let mut daemon = Daemon::start_with_config(&db, &with_calendar, &[]).await;
    let client = daemon.client();
    let mut schedule = scheduler_client::NewSchedule::new(
        "u1",
        scheduler_client::TriggerSpec {
            exclude: vec!["closed".into()],
            ..scheduler_client::TriggerSpec::from(TriggerKind::Cron {
                expression: "* * * * * *".into(),
                timezone: "UTC".into(),
            })
        },
        Target::GraphExecution(scheduler_api::GraphExecutionTarget {
            graph_id: "g".into(),
            graph_version: 1,
            input_data: json!({}),
            input_credentials: json!({}),
            ..Default::default()
        }),
    );
    schedule.id = Some("closing".into());
    client.create_schedule(schedule).await.unwrap();
    // A caller's pause with a reason is not a park.
    let held = crate::helpers::graph_schedule("u1", "g-held", "0 9 * * *");
    let held = client.add_graph_execution_schedule(held).await.unwrap();
    client
        .pause_schedule(&held.id, "u1", Some("waiting for the new graph".into()))
        .await
        .unwrap();
    assert_eq!(daemon.terminate().code(), Some(0));

    // Without the calendar the trigger cannot compile: the engine parks the schedule.
    let mut daemon = Daemon::start_with_config(&db, &without, &[]).await;
    test_support::wait_until(
        "the engine parks the schedule",
        Duration::from_secs(30),
        || async {
            let (status, parked) = call(&daemon, "get_parked_jobs", json!({})).await;
            match (status, &parked["execution"]) {
                (200, ids) if *ids == json!(["closing"]) => Ok(()),
                _ => Err(format!("{status}: {parked}")),
            }
        },
    )
    .await;
    let (_, parked) = call(&daemon, "get_parked_jobs", json!({})).await;
    assert_eq!(parked["execution"], json!(["closing"]));
    let (_, resumed) = call(&daemon, "reconcile_parked_jobs", json!({})).await;
    assert_eq!(resumed["execution"], json!([]), "still cannot be planned");
    let still = daemon.client().get_schedule("closing", "u1").await.unwrap();
    assert!(still.paused, "it stays parked");
    assert!(
        still.paused_reason.unwrap().contains("closed"),
        "with its reason"
    );
    assert_eq!(daemon.terminate().code(), Some(0));

    // With the calendar back, reconciling resumes it, and the audit log says who did.
    let daemon = Daemon::start_with_config(&db, &with_calendar, &[]).await;
    let (_, resumed) = call(&daemon, "reconcile_parked_jobs", json!({})).await;
    assert_eq!(resumed["execution"], json!(["closing"]));
    let back = daemon.client().get_schedule("closing", "u1").await.unwrap();
    assert!(!back.paused && back.next_run_time.is_some(), "{back:?}");
    let (_, parked) = call(&daemon, "get_parked_jobs", json!({})).await;
    assert_eq!(parked["execution"], json!([]));
}

#[test]
fn the_autogpt_example_declares_todays_maintenance_tasks() {
    let overrides = Overrides {
        config_file: Some(AUTOGPT.into()),
        ..Overrides::default()
    };
    let config = load_from::<scheduler::config::Config>(&overrides, &[]).unwrap();
    let every = |id: &str| {
        let declaration = config.schedules.iter().find(|s| s.id == id).unwrap();
        match &declaration.trigger.kind {
            TriggerKind::Interval { every_secs, .. } => json!(every_secs),
            TriggerKind::Cron { expression, .. } => json!(expression),
            other => panic!("{id}: {other:?}"),
        }
    };
    assert_eq!(every("flush_matured_alerts"), json!(60));
    assert_eq!(every("send_due_briefings"), json!("30 * * * *"));
    assert_eq!(every("ensure_embeddings_coverage"), json!(6 * 3600));
    assert_eq!(every("reconcile_schedule_index"), json!(24 * 3600));
    assert_eq!(every("optimize_block_descriptions"), json!(24 * 3600));
    let declared: BTreeSet<&str> = config.schedules.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        declared,
        scheduler_api::DECLARED_TASKS.into_iter().collect(),
        "each task a backend declares, and only those"
    );
    let tasks: BTreeSet<&str> = config
        .system_tasks
        .declarations()
        .iter()
        .map(|t| t.task.as_str())
        .collect();
    assert_eq!(
        tasks,
        BTreeSet::from([
            "report_late_executions",
            "report_block_error_rates",
            "cleanup_expired_files"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_runs_each_declared_maintenance_task_on_its_service() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let methods = [
        "flush_matured_alerts",
        "send_due_briefings",
        "cleanup_expired_oauth_tokens",
        "report_execution_accuracy_alerts",
        "ensure_embeddings_coverage",
        "reconcile_schedule_index",
        "optimize_block_descriptions",
        "cleanup_expired_files",
    ];
    let results: Vec<(&str, Value)> = methods.iter().map(|m| (*m, json!({"done": m}))).collect();
    let services = StubService::start(&results).await;
    let file = db.dir.path().join("autogpt.toml");
    std::fs::copy(AUTOGPT, &file).unwrap();
    let url = services.url.as_str();
    let env = [
        ("SCHEDULER__ENDPOINTS__NOTIFICATION_MANAGER__URL", url),
        ("SCHEDULER__ENDPOINTS__DATABASE_MANAGER__URL", url),
        ("SCHEDULER__ENDPOINTS__MAINTENANCE__URL", url),
        ("SCHEDULER__SYSTEM_TASKS__STORAGE_URL", url),
    ];
    let daemon = Daemon::start_with_config(&db, &file, &env).await;
    for (task, method) in scheduler_api::DECLARED_TASKS
        .iter()
        .zip(methods)
        .chain([(&"cleanup_expired_files", "cleanup_expired_files")])
    {
        let (status, answer) = call(&daemon, &format!("execute_{task}"), json!({})).await;
        assert_eq!(status, 200, "execute_{task}: {answer}");
        assert_eq!(answer, json!({"done": method}), "execute_{task}");
        assert_eq!(services.calls(method).len(), 1, "{method}");
        let runs = daemon
            .client()
            .list_runs(task, "system", scheduler_client::RunQuery::default())
            .await
            .unwrap();
        assert!(
            runs.runs
                .iter()
                .any(|r| r.status == scheduler_api::RunStatus::Dispatched),
            "execute_{task} is in the ledger: {runs:?}"
        );
    }
}
