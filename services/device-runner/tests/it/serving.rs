//! The serving stack the runner shares with the scheduler: tokens, readiness, metrics, the
//! refusal to listen beyond loopback without a token, `RUST_LOG`.

use device_runner_client::Enqueue;
use std::time::Duration;

use device_runner_client::{DeviceRunnerApiClient, Error, JobStatus, RunnerError};
use test_support::{DbProxy, wait_until};

use crate::helpers::{DEVICE, Runner, TestDb};

const USER: &str = "user-token-1";
const ADMIN: &str = "admin-token-1";
const TOKENS: [(&str, &str); 2] = [
    ("DEVICE_RUNNER__AUTH__TOKEN", USER),
    ("DEVICE_RUNNER__AUTH__ADMIN_TOKEN", ADMIN),
];

fn refused<T: std::fmt::Debug>(result: Result<T, jsonrpsee::core::ClientError>) -> String {
    match result.map_err(Error::from) {
        Err(Error::Runner(RunnerError::Unauthorized(message))) => message,
        other => panic!("expected an UnauthorizedError, got {other:?}"),
    }
}

pub(crate) async fn get(runner: &Runner, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", runner.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn every_method_but_health_check_needs_the_token_and_kill_needs_the_admin_token() {
    let runner = Runner::start_env(None, "", &TOKENS).await;
    let anonymous = runner.client();
    assert_eq!(anonymous.rpc().health_check().await.unwrap(), "OK");
    let message = refused(anonymous.rpc().list_queue(None).await);
    assert!(message.contains("bearer token"), "{message}");
    refused(anonymous.rpc().get_status().await);
    let wrong = runner.client_with_token("not-the-token");
    refused(wrong.rpc().list_devices().await);

    let user = runner.client_with_token(USER);
    let job = user
        .rpc()
        .enqueue(device_runner_client::EnqueueJob {
            device: Some(DEVICE.into()),
            job_type: "long".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    runner_wait_running(&runner, &user, &job.id).await;
    let message = refused(user.rpc().kill_job(job.id.clone()).await);
    assert!(message.contains("admin token"), "{message}");
    refused(user.rpc().restart_run(job.id.clone()).await);
    refused(user.rpc().quarantine_device(DEVICE.into(), None).await);
    refused(user.rpc().release_device(DEVICE.into()).await);

    // The user's log subscription works over WebSocket with the token, and not without it.
    let mut follower = user.follow_logs(&job.id, 0).await.unwrap();
    let first = follower.next().await.unwrap().unwrap();
    assert!(first.data.contains("running"), "{first:?}");
    assert!(anonymous.follow_logs(&job.id, 0).await.is_err());

    let admin = runner.client_with_token(ADMIN);
    let killed = admin.rpc().kill_job(job.id.clone()).await.unwrap();
    assert_eq!(killed.status, JobStatus::Killed);
    admin.rpc().restart_run(job.id.clone()).await.unwrap();

    // Plain routes: the probes are open, the metrics are not.
    assert_eq!(get(&runner, "/health_check", None).await.0, 200);
    assert_eq!(get(&runner, "/ready", None).await.0, 200);
    assert_eq!(get(&runner, "/metrics", None).await.0, 401);
    assert_eq!(get(&runner, "/metrics", Some(USER)).await.0, 200);
}

/// `[[auth.clients]]` works on the runner as on the scheduler: each token names a client, an
/// admin client calls the admin methods, and a client's token file is read again on SIGHUP.
#[tokio::test]
async fn configured_clients_call_by_their_tokens_which_rotate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops.token");
    std::fs::write(&file, "ops-token-1\n").unwrap();
    let clients = format!(
        "auth = {{ clients = [\
         {{ name = \"ops\", token_file = \"{}\", admin = true }}, \
         {{ name = \"farm-bot\", token = \"farm-bot-token\", owners = [\"farm\"] }}] }}",
        file.display()
    );
    let runner = Runner::start(&clients).await;
    refused(runner.client().rpc().list_queue(None).await);
    let bot = runner.client_with_token("farm-bot-token");
    bot.rpc().list_queue(None).await.unwrap();
    let message = refused(bot.rpc().kill_job("nope".into()).await);
    assert!(message.contains("admin token"), "{message}");
    let ops = runner.client_with_token("ops-token-1");
    match ops.rpc().kill_job("nope".into()).await.map_err(Error::from) {
        Err(Error::Runner(RunnerError::NotFound(_))) => {}
        other => panic!("the admin client's kill_job of no job: {other:?}"),
    }

    // Rotation: the new token is written, SIGHUP, and only the new one is taken.
    std::fs::write(&file, "ops-token-2\n").unwrap();
    let pid = nix::unistd::Pid::from_raw(runner.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let rotated = runner.client_with_token("ops-token-2");
    wait_until(
        "the new token is taken",
        Duration::from_secs(10),
        || async {
            rotated
                .rpc()
                .list_queue(None)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    refused(ops.rpc().list_queue(None).await);
    assert!(runner.log().contains("SIGHUP"), "{}", runner.log());
}

async fn runner_wait_running(
    runner: &Runner,
    client: &device_runner_client::DeviceRunnerClient,
    id: &str,
) {
    wait_until("the job runs", Duration::from_secs(20), || async {
        let job = client
            .rpc()
            .get_run(id.into())
            .await
            .map_err(|e| e.to_string())?;
        if job.status == JobStatus::Running && job.pid.is_some() {
            Ok(())
        } else {
            Err(format!("{:?}\n{}", job.status, runner.log()))
        }
    })
    .await;
}

#[test]
fn it_refuses_to_listen_beyond_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_device-runner"))
        .args(["--host", "0.0.0.0", "--port", "0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.token is not set"), "{stderr}");
}

#[tokio::test]
async fn ready_follows_the_database() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let proxy = DbProxy::start(&db.url).await;
    let runner = Runner::start_env(Some(proxy.url(&db.url)), "", &[]).await;
    let (status, body) = get(&runner, "/ready", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));

    proxy.cut();
    let reason = wait_until("/ready fails", Duration::from_secs(20), || async {
        match get(&runner, "/ready", None).await {
            (503, body) => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert!(reason.contains("database"), "{reason}");

    proxy.restore();
    wait_until("/ready recovers", Duration::from_secs(30), || async {
        match get(&runner, "/ready", None).await {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    drop(runner);
    drop(db);
}

/// The value of the sample of `name` whose labels include every one of `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_jobs_by_type_and_status_and_the_signals_sent() {
    let runner = Runner::start("").await;
    let quick = runner.enqueue("quick", 3).await;
    runner
        .wait_status(&quick.id, JobStatus::Completed, Duration::from_secs(20))
        .await;
    let long = runner.enqueue("long", 3).await;
    runner
        .wait_status(&long.id, JobStatus::Running, Duration::from_secs(20))
        .await;
    let queued = runner.enqueue("quick", 5).await;
    let text = wait_until(
        "the gauges show the queue",
        Duration::from_secs(20),
        || async {
            let (status, text) = get(&runner, "/metrics", None).await;
            let depth = sample(&text, "device_runner_queue_depth", &[("device", DEVICE)]);
            let running = sample(&text, "device_runner_running_jobs", &[("device", DEVICE)]);
            match (status, depth, running) {
                (200, Some(1.0), Some(1.0)) => Ok(text),
                _ => Err(format!("{status}: {depth:?} {running:?}")),
            }
        },
    )
    .await;
    let started = sample(
        &text,
        "device_runner_jobs_started_total",
        &[("job_type", "long")],
    );
    assert_eq!(started, Some(1.0), "{text}");

    runner
        .client()
        .rpc()
        .kill_job(long.id.clone())
        .await
        .unwrap();
    runner
        .wait_status(&queued.id, JobStatus::Completed, Duration::from_secs(20))
        .await;
    let text = wait_until(
        "the counters show the ends",
        Duration::from_secs(20),
        || async {
            let (_, text) = get(&runner, "/metrics", None).await;
            let completed = sample(
                &text,
                "device_runner_jobs_finished_total",
                &[("job_type", "quick"), ("status", "completed")],
            );
            match completed {
                Some(2.0) => Ok(text),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    for (name, labels, expected) in [
        (
            "device_runner_jobs_finished_total",
            vec![("job_type", "long"), ("status", "killed")],
            1.0,
        ),
        (
            "device_runner_jobs_started_total",
            vec![("job_type", "quick")],
            2.0,
        ),
        (
            "device_runner_job_start_latency_seconds_count",
            vec![("job_type", "quick")],
            2.0,
        ),
        (
            "device_runner_job_duration_seconds_count",
            vec![("job_type", "long"), ("status", "killed")],
            1.0,
        ),
        (
            "device_runner_process_kills_total",
            vec![("signal", "SIGTERM")],
            1.0,
        ),
        ("device_runner_queue_depth", vec![("device", DEVICE)], 0.0),
    ] {
        assert_eq!(
            sample(&text, name, &labels),
            Some(expected),
            "{name} {labels:?}\n{text}"
        );
    }
}

#[tokio::test]
async fn rust_log_wins_over_the_configured_level() {
    let quiet = Runner::start_env(None, "", &[("RUST_LOG", "error")]).await;
    let chatty = Runner::start("").await;
    // Both logged their start before answering; only the one at `info` says so.
    assert!(
        chatty.log().contains("device-runner listening"),
        "{}",
        chatty.log()
    );
    assert!(
        !quiet.log().contains("device-runner listening"),
        "{}",
        quiet.log()
    );
}

#[tokio::test]
async fn a_request_over_the_body_limit_gets_413_and_the_runner_goes_on() {
    let runner = Runner::start("").await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"list_queue","params":{{"pad":"{padding}"}}}}"#
    );
    let response = reqwest::Client::new()
        .post(runner.url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32007, "{answer}");
    assert_eq!(
        runner.client().rpc().list_queue(None).await.unwrap(),
        vec![]
    );
}
