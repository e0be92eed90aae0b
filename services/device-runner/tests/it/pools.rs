//! Pools (jobs that need no phone, several at once) and the job engine's verbs over them.

use device_runner_client::Enqueue;
use std::time::Duration;

use device_runner_client::{
    DeviceRunnerApiClient, DeviceRunnerClient, Error, JobStatus, RunnerError,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, DEVICE, Runner};

const SOON: Duration = Duration::from_secs(20);

test_support::backend_matrix!([sqlite, postgres] [
    a_pool_runs_up_to_its_concurrency_first_in_first_out,
]);

async fn start(client: &DeviceRunnerClient, module: &str, inputs: Value) -> String {
    client
        .rpc()
        .start_job(module.into(), Some(inputs), None, None, None)
        .await
        .unwrap()
}

/// The most jobs that ran at the same moment, from their recorded start and end.
fn most_at_once(jobs: &[device_runner_client::Job]) -> usize {
    let mut events: Vec<(i64, i32)> = Vec::new();
    for job in jobs {
        events.push((job.started_at.unwrap().timestamp_millis(), 1));
        events.push((job.ended_at.unwrap().timestamp_millis(), -1));
    }
    // An end and a start at the same millisecond: the end first.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

async fn a_pool_runs_up_to_its_concurrency_first_in_first_out(backend: Backend) {
    let Some(runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let client = runner.client();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(start(&client, "module", json!({"n": n})).await);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(runner.wait_status(id, JobStatus::Completed, SOON).await);
    }
    assert_eq!(most_at_once(&jobs), 2, "two at once, never more: {jobs:#?}");
    // First in, first started (equal priorities).
    let mut by_start = jobs.clone();
    by_start.sort_by_key(|job| job.started_at);
    let order: Vec<&str> = by_start.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for job in &jobs {
        assert_eq!(job.pool.as_deref(), Some("modules"));
        assert_eq!(job.device, "pool:modules");
        let log = client
            .rpc()
            .get_logs(job.id.clone(), None, None)
            .await
            .unwrap();
        assert!(log.data.contains("serial=none"), "no phone: {}", log.data);
        assert!(log.data.contains(r#""inputs":{"n":"#), "{}", log.data);
        assert!(log.data.contains(r#""settings":{}"#), "{}", log.data);
    }
}

#[tokio::test]
async fn start_stop_and_resume_a_module_from_its_checkpoint() {
    let runner = Runner::start("").await;
    let client = runner.client();
    let id = client
        .rpc()
        .start_job(
            "resumable_module".into(),
            Some(json!({"url": "https://example.com"})),
            Some(json!({"depth": 2})),
            Some(json!({"step": 1})),
            Some(json!("7d")),
        )
        .await
        .unwrap();
    let job = runner
        .wait_for(&id, SOON, |job| job.checkpoint == Some(json!({"step": 3})))
        .await;
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.max_duration_secs, 7 * 86_400);
    assert_eq!(
        job.params,
        json!({"inputs": {"url": "https://example.com"}, "settings": {"depth": 2}})
    );
    let log = client.rpc().get_logs(id.clone(), None, None).await.unwrap();
    assert!(log.data.contains(r#"from {"step":1}"#), "{}", log.data);

    let status = client.rpc().get_status().await.unwrap();
    let types = client.rpc().list_job_types().await.unwrap();
    assert_eq!(status.modules, types.len());
    let module = types.iter().find(|t| t.name == "module").unwrap();
    assert_eq!(module.runs_on, "pool:modules");
    assert!(!status.uptime.is_empty(), "{status:?}");
    assert!(
        status.running_jobs.iter().any(|job| job.id == id),
        "{status:?}"
    );
    let pool = status.pools.iter().find(|p| p.name == "modules").unwrap();
    assert_eq!(pool.concurrency, 2);
    assert!(pool.running.iter().any(|job| job.id == id));
    assert!(
        status
            .devices
            .iter()
            .all(|d| !d.device.serial.starts_with("pool:")),
        "pools are not devices: {status:?}"
    );

    assert!(client.rpc().stop_job(id.clone()).await.unwrap());
    let stopped = runner.wait_status(&id, JobStatus::Killed, SOON).await;
    assert_eq!(stopped.checkpoint, Some(json!({"step": 3})));
    assert!(
        !client.rpc().stop_job(id.clone()).await.unwrap(),
        "already stopped"
    );
    assert!(
        !client.rpc().stop_job("nope".into()).await.unwrap(),
        "no such job"
    );

    let resumed = client.rpc().resume_job(id.clone()).await.unwrap();
    assert_eq!(resumed.requeued_from.as_deref(), Some(id.as_str()));
    assert_eq!(resumed.params, job.params);
    runner
        .wait_status(&resumed.id, JobStatus::Running, SOON)
        .await;
    let log = runner
        .wait_log(&resumed.id, r#"from {"step":3}"#, SOON)
        .await;
    assert!(log.contains("from"), "{log}");
    // A job that has not ended is not resumed.
    let error = Error::from(
        client
            .rpc()
            .resume_job(resumed.id.clone())
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(error, Error::Runner(RunnerError::Conflict(_))),
        "{error}"
    );
    assert!(client.rpc().stop_job(resumed.id.clone()).await.unwrap());
}

#[tokio::test]
async fn a_module_past_its_duration_limit_is_stopped_and_says_so() {
    let runner = Runner::start("").await;
    let client = runner.client();
    let id = client
        .rpc()
        .start_job(
            "resumable_module".into(),
            None,
            None,
            None,
            Some(json!("1s")),
        )
        .await
        .unwrap();
    let job = runner.wait_status(&id, JobStatus::Timeout, SOON).await;
    assert!(
        job.error.as_deref().unwrap().contains("max duration"),
        "{job:?}"
    );
    let log = runner.wait_log(&id, "Duration limit reached", SOON).await;
    assert!(log.contains("Duration limit reached (1s)"), "{log}");
}

#[tokio::test]
async fn jobs_go_where_their_type_runs_and_nowhere_else() {
    let runner = Runner::start("").await;
    let client = runner.client();
    let value_error =
        |result: Result<_, jsonrpsee::core::ClientError>| match result.map_err(Error::from) {
            Err(Error::Runner(RunnerError::Value(message))) => message,
            other => panic!("expected a ValueError, got {other:?}"),
        };
    for (module, inputs, expected) in [
        ("quick", None, "runs on a device"),
        ("nope", None, "unknown module 'nope'"),
        ("module", Some(json!([1])), "inputs must be a JSON object"),
    ] {
        let started = client
            .rpc()
            .start_job(module.into(), inputs, None, None, None)
            .await;
        let message = value_error(started.map(drop));
        assert!(message.contains(expected), "{module}: {message}");
    }
    let enqueue = |device: Option<&str>, job_type: &str, pool: Option<&str>| {
        let client = client.clone();
        let (device, job_type, pool) = (
            device.map(String::from),
            job_type.to_string(),
            pool.map(String::from),
        );
        async move {
            client
                .rpc()
                .enqueue(device_runner_client::EnqueueJob {
                    device,
                    job_type,
                    pool,
                    ..Default::default()
                })
                .await
                .map(drop)
        }
    };
    for (device, job_type, pool, expected) in [
        (
            Some(DEVICE),
            "module",
            None,
            "runs on pool 'modules', not on a device",
        ),
        (
            None,
            "quick",
            Some("modules"),
            "runs on a device: give device, not pool",
        ),
        (None, "quick", None, "device is required"),
        (
            Some(DEVICE),
            "quick",
            Some("modules"),
            "give device or pool, not both",
        ),
        (None, "module", Some("other"), "not on pool 'other'"),
    ] {
        let message = value_error(enqueue(device, job_type, pool).await);
        assert!(
            message.contains(expected),
            "{device:?} {job_type} {pool:?}: {message}"
        );
    }
    // A pool job type needs no pool named.
    enqueue(None, "module", None).await.unwrap();
    enqueue(None, "module", Some("modules")).await.unwrap();
    assert!(
        client
            .rpc()
            .list_devices()
            .await
            .unwrap()
            .iter()
            .all(|d| d.serial == DEVICE)
    );
}

#[tokio::test]
async fn a_full_pool_preempts_its_lowest_priority_job_for_a_higher_one() {
    let runner = Runner::start("preempt_grace = \"0s\"").await;
    let client = runner.client();
    let enqueue = |priority: i64| {
        let client = client.clone();
        async move {
            client
                .rpc()
                .enqueue(device_runner_client::EnqueueJob {
                    job_type: "resumable_module".into(),
                    priority: Some(priority),
                    pool: Some("modules".into()),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    let first = enqueue(4).await;
    runner
        .wait_status(&first.id, JobStatus::Running, SOON)
        .await;
    let second = enqueue(5).await;
    runner
        .wait_status(&second.id, JobStatus::Running, SOON)
        .await;
    // Full: the urgent one takes the slot of the lowest priority, and only that one.
    let urgent = enqueue(1).await;
    runner
        .wait_status(&urgent.id, JobStatus::Running, SOON)
        .await;
    let preempted = runner.job(&second.id).await;
    assert_eq!(preempted.status, JobStatus::Preempted, "{preempted:?}");
    assert_eq!(preempted.preempted_by.as_deref(), Some(urgent.id.as_str()));
    assert_eq!(runner.job(&first.id).await.status, JobStatus::Running);
    for id in [&first.id, &urgent.id] {
        assert!(client.rpc().stop_job(id.clone()).await.unwrap());
    }
}
