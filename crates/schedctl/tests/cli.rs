//! `schedctl` as an operator uses it: every subcommand once against the real scheduler and the
//! real device runner (a configured phone, shell-script jobs), `-o json` parsed and checked,
//! exit codes checked (0 done, 1 refused, 2 bad usage), `--help` with an example everywhere.
//!
//! The service binaries are the ones `cargo test --workspace` builds beside `schedctl`.

use std::process::Command;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use scheduler_client::{Check, ClientConfig, NewWatch, SchedulerClient};
use serde_json::{Value, json};
use test_support::{Stack, wait_until};

const ADMIN: &str = "admin-secret";
const USER: &str = "user-secret";

const RUNNER_CONFIG: &str = r#"
kill_grace = "1s"

[[devices]]
serial = "P1"
label = "Pixel one"
tags = ["sim", "tiktok"]

[job_types.tick]
argv = ["sh", "-c", "echo ran on $ANDROID_SERIAL"]
max_duration = "1m"

[job_types.slow]
argv = ["sh", "-c", "echo start; sleep 2; echo end"]
max_duration = "1m"

[job_types.long]
argv = ["sh", "-c", "echo waiting; exec sleep 60"]
max_duration = "2m"
"#;

struct Services {
    stack: Stack,
    _stub: tokio::task::JoinHandle<()>,
}

impl Services {
    async fn start() -> Services {
        // AutoGPT's database manager, for the system task run below: no late executions.
        let app = axum::Router::new().route(
            "/",
            post(|Json(request): Json<Value>| async move {
                Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": []}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub_url = format!("http://{}/", listener.local_addr().unwrap());
        let stub = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let stack = Stack::builder(RUNNER_CONFIG)
            .scheduler_env("SCHEDULER__AUTH__TOKEN", USER)
            .scheduler_env("SCHEDULER__AUTH__ADMIN_TOKEN", ADMIN)
            .scheduler_env("SCHEDULER__SYSTEM_TASKS__DATABASE_MANAGER_URL", &stub_url)
            // Watches notify through Redis (the test only cancels them).
            .scheduler_env("SCHEDULER__REDIS__URL", "redis://127.0.0.1:6379")
            // A target that always fails (nothing listens on port 9), for the alerts.
            .scheduler_env("SCHEDULER__ENDPOINTS__NOWHERE__URL", "http://127.0.0.1:9/")
            .scheduler_env("SCHEDULER__ALERTS__EVERY", "200ms")
            .start()
            .await;
        Services { stack, _stub: stub }
    }

    /// Runs schedctl with the admin token; returns its exit code, stdout and stderr.
    async fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        self.ctl_as(ADMIN, args).await
    }

    async fn ctl_as(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_schedctl"));
        command
            .args(args)
            .env("SCHEDULER_URL", self.stack.scheduler.url())
            .env("SCHEDULER_TOKEN", token)
            .env("DEVICE_RUNNER_URL", self.stack.runner.url())
            .env("TZ", "Europe/Paris");
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs schedctl `-o json`, expecting success, and parses what it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend(args);
        let (code, stdout, stderr) = self.ctl(&all).await;
        assert_eq!(code, 0, "schedctl {args:?} failed: {stderr}");
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("schedctl {args:?} printed no JSON ({e}): {stdout}"))
    }

    fn client(&self) -> SchedulerClient {
        SchedulerClient::new(ClientConfig {
            host: "127.0.0.1".into(),
            port: self.stack.scheduler.port,
            timeout: Duration::from_secs(30),
            retries: 1,
            retry_delay: Duration::from_millis(50),
            token: Some(ADMIN.into()),
        })
        .unwrap()
    }
}

const TICK: &str =
    r#"{"type": "device_job", "runner": "farm", "device": "P1", "job_type": "tick"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn schedules_runs_and_cron_through_schedctl() {
    let services = Services::start().await;

    let times = services
        .json(&[
            "cron",
            "next",
            "0 9 * * mon-fri",
            "--tz",
            "Asia/Makassar",
            "--count",
            "3",
        ])
        .await;
    let times = times.as_array().unwrap();
    assert_eq!(times.len(), 3);
    // 09:00 in Makassar (UTC+8) is 01:00 UTC.
    assert!(
        times
            .iter()
            .all(|t| t.as_str().unwrap().ends_with("T01:00:00Z")),
        "{times:?}"
    );
    // H is what it becomes for the schedule named by --hash-key: the same for the same id.
    let hashed = |key: &'static str| {
        let services = &services;
        async move {
            services
                .json(&[
                    "cron",
                    "next",
                    "H H(0-7) * * *",
                    "--count",
                    "2",
                    "--hash-key",
                    key,
                ])
                .await
        }
    };
    let report = hashed("nightly-report").await;
    assert_eq!(report, hashed("nightly-report").await);
    // Worked out apart from the scheduler (Python's hashlib, as the triggers' test pins H):
    // the minute's hash modulo 60 is 4, the hour's modulo 8 is 7.
    let first = report[0].as_str().unwrap();
    assert!(first.ends_with("T07:04:00Z"), "{report}");
    let (code, _, stderr) = services.ctl(&["cron", "next", "H * * * *"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("hash_key"), "{stderr}");
    // What will fire: the preview's totals, and a window too long named.
    let preview = services.json(&["preview", "--next", "2h"]).await;
    assert!(preview["total"].is_u64(), "{preview}");
    assert!(preview["busiest"].is_array(), "{preview}");
    let (code, table, _) = services.ctl(&["preview", "--next", "90m"]).await;
    assert_eq!(code, 0);
    assert!(table.contains("occurrences in"), "{table}");
    let (code, _, stderr) = services.ctl(&["preview", "--next", "8d"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("at most 7 days"), "{stderr}");
    let (code, table, _) = services
        .ctl(&["cron", "next", "0 9 * * *", "--count", "2"])
        .await;
    assert_eq!(code, 0);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("+01:00") || table.contains("+02:00"),
        "local times: {table}"
    );

    // Bad usage is 2, a refusal 1, each with what is wrong.
    let (code, _, stderr) = services
        .ctl(&[
            "schedule",
            "create",
            "--owner",
            "alice",
            "--cron",
            "0 3 * * *",
            "--target",
            "{",
        ])
        .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--target is not JSON"), "{stderr}");
    let (code, _, stderr) = services.ctl(&["schedule", "frobnicate"]).await;
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = services
        .ctl(&[
            "schedule",
            "create",
            "--owner",
            "alice",
            "--cron",
            "61 * * * *",
            "--target",
            TICK,
        ])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("ValueError: "), "{stderr}");

    let created = services
        .json(&[
            "schedule",
            "create",
            "--owner",
            "alice",
            "--id",
            "nightly",
            "--name",
            "Nightly tick",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Paris",
            "--target",
            TICK,
            "--tag",
            "ops",
        ])
        .await;
    assert_eq!(created["id"], "nightly");
    assert_eq!(created["trigger"]["expression"], "0 3 * * *");
    assert_eq!(created["tags"], json!(["ops"]));

    let listed = services
        .json(&["schedule", "list", "--owner", "alice", "--tag", "ops"])
        .await;
    let ids: Vec<&str> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["nightly"]);
    let (code, table, _) = services
        .ctl(&["schedule", "list", "--owner", "alice"])
        .await;
    assert_eq!(code, 0);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("cron 0 3 * * * Europe/Paris"), "{table}");
    assert!(table.contains("device_job farm P1 tick"), "{table}");

    let described = services
        .json(&["schedule", "describe", "nightly", "--owner", "alice"])
        .await;
    assert_eq!(described["schedule"]["name"], "Nightly tick");
    assert_eq!(
        described["schedule"]["next_fire_times"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let updated = services
        .json(&[
            "schedule",
            "update",
            "nightly",
            "--owner",
            "alice",
            "--cron",
            "30 3 * * *",
            "--tz",
            "Europe/Paris",
        ])
        .await;
    assert_eq!(updated["trigger"]["expression"], "30 3 * * *");
    // A new expression without --tz keeps the schedule's zone.
    let kept = services
        .json(&[
            "schedule",
            "update",
            "nightly",
            "--owner",
            "alice",
            "--cron",
            "45 3 * * *",
        ])
        .await;
    assert_eq!(kept["trigger"]["expression"], "45 3 * * *");
    assert_eq!(kept["trigger"]["timezone"], "Europe/Paris", "{kept}");

    // A missing or wrong token is a refusal, said at once: exit 1, no retries.
    for token in ["", "wrong-token"] {
        let (code, _, stderr) = services
            .ctl_as(token, &["schedule", "list", "--owner", "alice"])
            .await;
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.starts_with("UnauthorizedError: "), "{stderr}");
        assert!(!stderr.contains("attempt"), "not retried: {stderr}");
    }

    let run = services
        .json(&["schedule", "trigger", "nightly", "--owner", "alice"])
        .await;
    assert!(
        run["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("nightly@"),
        "{run}"
    );
    let key = run["idempotency_key"].clone();
    wait_until(
        "the triggered run dispatched",
        Duration::from_secs(20),
        || async {
            let runs = services
                .json(&["runs", "nightly", "--owner", "alice"])
                .await;
            let found = runs["runs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["idempotency_key"] == key && r["status"] == "dispatched");
            if found { Ok(()) } else { Err(runs.to_string()) }
        },
    )
    .await;
    let (code, table, _) = services.ctl(&["runs", "nightly", "--owner", "alice"]).await;
    assert_eq!(code, 0);
    assert!(table.contains("dispatched"), "{table}");

    // A device job placed by tags: run now, it goes to the phone that carries them.
    let anyphone = r#"{"type": "device_job", "job_type": "tick"}"#;
    let created = services
        .json(&[
            "schedule",
            "create",
            "--owner",
            "alice",
            "--id",
            "anyphone",
            "--interval",
            "3600",
            "--target",
            anyphone,
            "--select",
            "tags=sim,tiktok",
            "--select",
            "runner=farm",
        ])
        .await;
    assert_eq!(
        created["target"]["select"],
        json!({"tags": ["sim", "tiktok"], "runner": "farm"})
    );
    let (_, table, _) = services
        .ctl(&["schedule", "list", "--owner", "alice"])
        .await;
    assert!(
        table.contains("device_job on tags sim,tiktok tick"),
        "{table}"
    );
    services
        .json(&["schedule", "trigger", "anyphone", "--owner", "alice"])
        .await;
    wait_until(
        "the placed run dispatched",
        Duration::from_secs(20),
        || async {
            let runs = services
                .json(&["runs", "anyphone", "--owner", "alice"])
                .await;
            let run = &runs["runs"][0];
            if run["status"] == "dispatched" && run["placement"]["device"] == "P1" {
                Ok(())
            } else {
                Err(runs.to_string())
            }
        },
    )
    .await;
    for select in [["--select", "tags="], ["--select", "phones=x"]] {
        let mut args = vec!["schedule", "create", "--owner", "alice", "--interval", "60"];
        args.extend(["--target", anyphone]);
        args.extend(select);
        let (code, _, stderr) = services.ctl(&args).await;
        assert_eq!(code, 2, "{select:?}: {stderr}");
        assert!(stderr.contains("--select"), "{stderr}");
    }

    // The 03:30 (Paris) of the day before yesterday, backfilled once, then again: nothing twice.
    let start = (chrono::Utc::now() - chrono::TimeDelta::days(2))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let end = (chrono::Utc::now() - chrono::TimeDelta::days(1))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let first = services
        .json(&[
            "schedule", "backfill", "nightly", "--owner", "alice", "--start", &start, "--end", &end,
        ])
        .await;
    assert_eq!(first["queued"], 1, "{first}");
    let second = services
        .json(&[
            "schedule", "backfill", "nightly", "--owner", "alice", "--start", &start, "--end", &end,
        ])
        .await;
    assert_eq!(second["queued"], 0, "{second}");
    assert_eq!(second["already_in_ledger"], 1, "{second}");

    let paused = services
        .json(&[
            "schedule",
            "pause",
            "nightly",
            "--owner",
            "alice",
            "--reason",
            "phone repair",
        ])
        .await;
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["paused_reason"], "phone repair");
    let (_, table, _) = services
        .ctl(&["schedule", "list", "--owner", "alice"])
        .await;
    assert!(table.contains("paused: phone repair"), "{table}");
    let resumed = services
        .json(&["schedule", "resume", "nightly", "--owner", "alice"])
        .await;
    assert_eq!(resumed["paused"], false);

    // Its history, newest first: the pause and the resume, who and through which route.
    let (_, table, _) = services.ctl(&["schedule", "history", "nightly"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("AT") && lines[0].contains("WHO"),
        "{table}"
    );
    assert!(
        lines[1].contains("resume") && lines[1].contains("jsonrpc"),
        "{table}"
    );
    assert!(
        lines[2].contains("pause") && lines[2].contains(r#"paused_reason: null -> "phone repair""#),
        "{table}"
    );
    let history = services
        .json(&["schedule", "history", "nightly", "--limit", "2"])
        .await;
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");

    // Another owner's token may not act on alice's schedule.
    let (code, _, stderr) = services
        .ctl_as(USER, &["schedule", "delete", "nightly", "--owner", "bob"])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Error: "), "{stderr}");

    let deleted = services
        .json(&["schedule", "delete", "nightly", "--owner", "alice"])
        .await;
    assert_eq!(deleted["id"], "nightly");
    let (code, _, stderr) = services
        .ctl(&["schedule", "describe", "nightly", "--owner", "alice"])
        .await;
    assert_eq!(code, 1);
    assert!(stderr.starts_with("NotFoundError: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_watches_and_the_system_through_schedctl() {
    let services = Services::start().await;

    let status = services.json(&["device", "status"]).await;
    assert_eq!(status["devices"][0]["serial"], "P1");
    let (code, table, _) = services.ctl(&["device", "status"]).await;
    assert_eq!(code, 0);
    assert!(table.contains("P1 (Pixel one)"), "{table}");

    // A job followed live to its end.
    let job = services
        .json(&["device", "enqueue", "--type", "slow", "--device", "P1"])
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (code, log, stderr) = services.ctl(&["device", "logs", &id, "-f"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(log.contains("start") && log.contains("end"), "{log}");
    let runs = services
        .json(&["device", "runs", "--device", "P1", "--status", "completed"])
        .await;
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{runs}"));
    assert_eq!(run["exit_code"], 0);
    let (code, log, _) = services.ctl(&["device", "logs", &id]).await;
    assert_eq!(code, 0);
    assert_eq!(log, "start\nend\n");

    // A job killed while it runs.
    let job = services
        .json(&["device", "enqueue", "--type", "long", "--device", "P1"])
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    // Queued behind nothing, it starts: the status shows what runs, the queue what waits.
    wait_until("the long job running", Duration::from_secs(20), || async {
        let status = services.json(&["device", "status"]).await;
        if status["devices"][0]["running"]["id"] == id.as_str() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
    .await;
    let waiting = services
        .json(&["device", "enqueue", "--type", "tick", "--device", "P1"])
        .await;
    let queue = services.json(&["device", "queue", "--device", "P1"]).await;
    assert_eq!(queue[0]["id"], waiting["id"], "{queue}");
    let (_, table, _) = services.ctl(&["device", "status"]).await;
    assert!(table.contains(&format!("long {id}")), "{table}");
    let killed = services.json(&["device", "kill", &id]).await;
    assert_eq!(killed["id"], id.as_str());
    wait_until("the long job killed", Duration::from_secs(20), || async {
        let runs = services
            .json(&["device", "runs", "--status", "killed"])
            .await;
        let found = runs
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str());
        if found { Ok(()) } else { Err(runs.to_string()) }
    })
    .await;
    let (code, _, stderr) = services.ctl(&["device", "kill", "no-such-job"]).await;
    assert_eq!(code, 1);
    assert!(stderr.starts_with("NotFoundError: "), "{stderr}");
    let (code, _, stderr) = services
        .ctl(&[
            "device", "enqueue", "--type", "tick", "--device", "P1", "--params", "[1",
        ])
        .await;
    assert_eq!(code, 2, "{stderr}");

    // The fleet as the scheduler follows it, and a quarantine on the runner and back.
    let fleet = services.json(&["fleet", "--tag", "sim"]).await;
    assert_eq!(fleet["runners"][0]["name"], "farm");
    assert_eq!(fleet["runners"][0]["reachable"], true);
    assert_eq!(fleet["phones"][0]["serial"], "P1");
    assert_eq!(fleet["phones"][0]["tags"], json!(["sim", "tiktok"]));
    let none = services.json(&["fleet", "--tag", "ios"]).await;
    assert_eq!(none["phones"], json!([]));
    let quarantined = services
        .json(&["device", "quarantine", "P1", "--reason", "cracked screen"])
        .await;
    assert_eq!(quarantined["quarantine"]["reason"], "cracked screen");
    wait_until(
        "P1 quarantined in the fleet",
        Duration::from_secs(20),
        || async {
            let fleet = services.json(&["fleet", "--state", "quarantined"]).await;
            match fleet["phones"].as_array().map(Vec::len) {
                Some(1) => Ok(()),
                _ => Err(fleet.to_string()),
            }
        },
    )
    .await;
    let (code, table, _) = services.ctl(&["fleet"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("quarantined") && table.contains("cracked screen"),
        "{table}"
    );
    let released = services.json(&["device", "release", "P1"]).await;
    assert_eq!(released["quarantine"], Value::Null);
    // Through the scheduler it needs the runner's admin token, which this one is not given.
    let (code, _, stderr) = services
        .ctl(&["device", "quarantine", "P1", "--runner", "farm"])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("admin_token"), "{stderr}");
    let (code, _, stderr) = services.ctl(&["fleet", "--state", "asleep"]).await;
    assert_eq!(code, 2, "{stderr}");

    // Watches: one cancelled by id, one with its workflow.
    let client = services.client();
    let delay = || Check::Delay {
        delay_seconds: 3600,
    };
    let one = client
        .add_watch(NewWatch::new("carol", delay(), "done"))
        .await
        .unwrap();
    let mut two = NewWatch::new("carol", delay(), "done");
    two.workflow_id = Some("deploy-42".into());
    client.add_watch(two).await.unwrap();
    let listed = services
        .json(&["watch", "list", "--status", "active", "--user", "carol"])
        .await;
    assert_eq!(listed["watches"].as_array().unwrap().len(), 2);
    let cancelled = services.json(&["watch", "cancel", &one.id]).await;
    assert_eq!(cancelled["status"], "cancelled");
    let by_workflow = services
        .json(&["watch", "cancel-workflow", "deploy-42"])
        .await;
    assert_eq!(by_workflow["cancelled"], 1);
    let (code, _, stderr) = services
        .ctl(&["watch", "list", "--status", "sleeping"])
        .await;
    assert_eq!(code, 2, "{stderr}");

    // The system: status for anyone, the registry and task runs for the admin.
    let status = services.json(&["system", "status"]).await;
    assert_eq!(status["database_ok"], true);
    let registry = services.json(&["system", "registry"]).await;
    assert!(
        !registry["system_tasks"].as_array().unwrap().is_empty(),
        "{registry}"
    );
    let result = services
        .json(&["system", "run", "report_late_executions"])
        .await;
    assert_eq!(result, "No late executions detected.");
    let (code, _, stderr) = services.ctl_as(USER, &["system", "registry"]).await;
    assert_eq!(code, 1);
    assert!(stderr.starts_with("UnauthorizedError: "), "{stderr}");

    // The migration is reachable here too.
    let (code, help, _) = services.ctl(&["import-apscheduler", "--help"]).await;
    assert_eq!(code, 0);
    assert!(help.contains("--dry-run"), "{help}");
    // Without a source it says what is wrong and exits 1; without a store it is bad usage.
    let (code, _, stderr) = services
        .ctl(&[
            "import-apscheduler",
            "--from",
            "postgres://nobody@127.0.0.1:1/none",
            "--database-url",
            "sqlite:///nonexistent/dir/s.db",
            "--dry-run",
        ])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("ImportError: --from: cannot connect"),
        "{stderr}"
    );
    let (code, _, stderr) = services
        .ctl(&["import-apscheduler", "--from", "postgres://x@127.0.0.1/db"])
        .await;
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &[],
        &["schedule", "create"],
        &["schedule", "list"],
        &["schedule", "describe"],
        &["schedule", "update"],
        &["schedule", "pause"],
        &["schedule", "resume"],
        &["schedule", "trigger"],
        &["schedule", "backfill"],
        &["schedule", "delete"],
        &["schedule", "history"],
        &["runs"],
        &["cron", "next"],
        &["device", "status"],
        &["device", "queue"],
        &["device", "runs"],
        &["device", "logs"],
        &["device", "kill"],
        &["device", "enqueue"],
        &["device", "quarantine"],
        &["device", "release"],
        &["fleet"],
        &["watch", "list"],
        &["watch", "cancel"],
        &["watch", "cancel-workflow"],
        &["system", "registry"],
        &["system", "status"],
        &["system", "run"],
        &["import-apscheduler"],
    ];
    for command in commands {
        let output = Command::new(env!("CARGO_BIN_EXE_schedctl"))
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{command:?} --help failed");
        assert!(
            text.contains("Example"),
            "{command:?} --help has no example:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incident_is_listed_by_schedctl_alerts() {
    let services = Services::start().await;
    let (code, table, _) = services.ctl(&["alerts", "--open"]).await;
    assert_eq!((code, table.trim()), (0, "no incident"));
    let target = r#"{"type": "http", "endpoint": "nowhere", "path": "/export"}"#;
    let policy = r#"{"attempts": 1, "alerts": {"failed_in_a_row": 1}}"#;
    let args = [
        "schedule",
        "create",
        "--owner",
        "alice",
        "--id",
        "export",
        "--interval",
        "1",
        "--target",
        target,
        "--policy",
        policy,
    ];
    let (code, _, stderr) = services.ctl(&args).await;
    assert_eq!(code, 0, "{stderr}");
    let open = wait_until("an open incident", Duration::from_secs(30), || async {
        let open = services
            .json(&["alerts", "--open", "--owner", "alice"])
            .await;
        match open.as_array().map(Vec::len) {
            Some(1) => Ok(open),
            _ => Err(open.to_string()),
        }
    })
    .await;
    assert_eq!(open[0]["kind"], "failing");
    assert_eq!(open[0]["schedule_id"], "export");
    let (code, table, _) = services.ctl(&["alerts", "--schedule", "export"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("OPENED") && lines[0].contains("KIND"),
        "{table}"
    );
    assert!(
        lines[1].contains("failing") && lines[1].contains("open") && lines[1].contains("alice"),
        "{table}"
    );
    let (code, _, stderr) = services.ctl(&["alerts", "--open", "--resolved"]).await;
    assert_eq!(code, 2, "{stderr}");
}
