use device_runner_client::Enqueue;
use std::time::Duration;

use device_runner_client::{DeviceRunnerApiClient, Error, JobStatus, RunnerError};
use serde_json::json;

use crate::helpers::{Backend, DEVICE, Runner};

const SOON: Duration = Duration::from_secs(10);

test_support::backend_matrix!([sqlite, postgres] [
    the_queue_runs_by_priority_then_first_in,
    protocol_lines_are_persisted_and_the_log_keeps_the_rest,
    an_idempotency_key_enqueues_one_job_whatever_its_state,
]);

async fn enqueue_keyed(
    client: &device_runner_client::DeviceRunnerClient,
    key: &str,
    params: serde_json::Value,
) -> Result<device_runner_client::Job, Error> {
    enqueue_typed(client, "quick", key, params).await
}

/// Queues a job of `job_type` on the device with idempotency key `key`.
async fn enqueue_typed(
    client: &device_runner_client::DeviceRunnerClient,
    job_type: &str,
    key: &str,
    params: serde_json::Value,
) -> Result<device_runner_client::Job, Error> {
    client
        .rpc()
        .enqueue(device_runner_client::EnqueueJob {
            device: Some(DEVICE.into()),
            job_type: job_type.into(),
            params: Some(params),
            idempotency_key: Some(key.into()),
            ..Default::default()
        })
        .await
        .map_err(Error::from)
}

async fn an_idempotency_key_enqueues_one_job_whatever_its_state(backend: Backend) {
    let Some(runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let client = runner.client();
    // Eight callers at once with one key: one job, and each of them is told its id.
    let calls = (0..8).map(|n| enqueue_keyed(&client, "fire-1", json!({"n": n})));
    let jobs: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let first = &jobs[0];
    assert!(jobs.iter().all(|job| job.id == first.id), "{jobs:#?}");
    assert_eq!(first.idempotency_key.as_deref(), Some("fire-1"));
    let done = runner
        .wait_status(&first.id, JobStatus::Completed, SOON)
        .await;
    // Once it has ended, the key still answers with it, and nothing new is queued.
    let again = enqueue_keyed(&client, "fire-1", json!({"n": 99}))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.status, JobStatus::Completed);
    assert_eq!(again.params, done.params);
    assert!(client.rpc().list_queue(None).await.unwrap().is_empty());
    // It answers with its job even where the same call would now be refused; a new key
    // with that call is refused.
    let of_type = |key: &'static str| enqueue_typed(&client, "no-such-type", key, json!({}));
    assert_eq!(of_type("fire-1").await.unwrap().id, first.id);
    let refused = of_type("fire-3").await.unwrap_err().to_string();
    assert!(
        refused.contains("unknown job type 'no-such-type'"),
        "{refused}"
    );
    let runs = client
        .rpc()
        .list_runs(None, None, Some("quick".into()), None, None, None)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    // Another key is another job.
    let other = enqueue_keyed(&client, "fire-2", json!({})).await.unwrap();
    assert_ne!(other.id, first.id);

    for (key, expected) in [
        ("", "1 to 256 characters"),
        (&"k".repeat(257)[..], "1 to 256 characters"),
        ("a\nb", "control characters"),
    ] {
        let error = enqueue_keyed(&client, key, json!({})).await.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(&error, Error::Runner(RunnerError::Value(_))) && text.contains(expected),
            "{key:?}: {text}"
        );
    }
}

async fn the_queue_runs_by_priority_then_first_in(backend: Backend) {
    let Some(runner) = Runner::start_with(backend, "preempt_grace = \"1h\"").await else {
        return;
    };
    // Hold the device with a job nothing may preempt, then queue behind it.
    let blocker = runner.enqueue("long", 1).await;
    runner
        .wait_status(&blocker.id, JobStatus::Running, SOON)
        .await;
    let low = runner.enqueue("quick", 5).await;
    let first_mid = runner.enqueue("quick", 3).await;
    let second_mid = runner.enqueue("quick", 3).await;
    let high = runner.enqueue("quick", 2).await;
    let queue = runner
        .client()
        .rpc()
        .list_queue(Some(DEVICE.into()))
        .await
        .unwrap();
    let order: Vec<_> = queue.iter().map(|j| j.id.clone()).collect();
    assert_eq!(
        order,
        [
            high.id.as_str(),
            first_mid.id.as_str(),
            second_mid.id.as_str(),
            low.id.as_str()
        ]
    );

    runner
        .client()
        .rpc()
        .kill_job(blocker.id.clone())
        .await
        .unwrap();
    let mut started = Vec::new();
    for job in [&high, &first_mid, &second_mid, &low] {
        let done = runner
            .wait_status(&job.id, JobStatus::Completed, SOON)
            .await;
        started.push((done.started_at.unwrap(), done.id.clone()));
    }
    started.sort();
    let started: Vec<_> = started.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        started,
        [
            high.id.as_str(),
            first_mid.id.as_str(),
            second_mid.id.as_str(),
            low.id.as_str()
        ]
    );
    let blocker = runner.job(&blocker.id).await;
    assert_eq!(blocker.status, JobStatus::Killed);
}

async fn protocol_lines_are_persisted_and_the_log_keeps_the_rest(backend: Backend) {
    let Some(runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let client = runner.client();
    let job = client
        .rpc()
        .enqueue(device_runner_client::EnqueueJob {
            device: Some(DEVICE.into()),
            job_type: "reporter".into(),
            params: Some(json!({"tag": "x"})),
            source: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = runner
        .wait_status(&job.id, JobStatus::Completed, SOON)
        .await;
    assert_eq!(
        done.checkpoint,
        Some(json!({"page": 2})),
        "the last good checkpoint"
    );
    assert_eq!(done.results, [json!({"likes": 3}), json!({"likes": 5})]);
    assert_eq!(done.progress.as_ref().unwrap().percent, 100);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.source.as_deref(), Some("test"));
    assert!(done.duration_secs.unwrap() >= 0.0);

    let log = client
        .rpc()
        .get_logs(job.id.clone(), None, None)
        .await
        .unwrap();
    assert!(log.eof, "{log:?}");
    assert!(
        log.data.contains("::checkpoint {\"page\": 1}"),
        "{}",
        log.data
    );
    assert!(
        log.data.contains("done\n"),
        "stderr is logged too: {}",
        log.data
    );
    assert!(
        log.data.contains("ignored a malformed line"),
        "{}",
        log.data
    );
    // Reading by offset continues where the last read stopped.
    let head = client
        .rpc()
        .get_logs(job.id.clone(), Some(0), Some(10))
        .await
        .unwrap();
    let tail = client
        .rpc()
        .get_logs(job.id.clone(), Some(head.next_offset), None)
        .await
        .unwrap();
    assert_eq!(format!("{}{}", head.data, tail.data), log.data);
    assert!(!head.eof);
}

#[tokio::test]
async fn the_job_environment_and_argv_carry_the_job() {
    let runner = Runner::start("").await;
    let client = runner.client();
    let job = client
        .rpc()
        .enqueue(device_runner_client::EnqueueJob {
            device: Some(DEVICE.into()),
            job_type: "quick".into(),
            params: Some(json!({"n": 1})),
            ..Default::default()
        })
        .await
        .unwrap();
    runner
        .wait_status(&job.id, JobStatus::Completed, SOON)
        .await;
    let log = client
        .rpc()
        .get_logs(job.id.clone(), None, None)
        .await
        .unwrap();
    assert!(
        log.data
            .contains(&format!("started {} on {DEVICE}", job.id)),
        "{}",
        log.data
    );
    assert!(log.data.contains("params={\"n\":1}"), "{}", log.data);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_nothing_is_queued() {
    let runner = Runner::start("max_params_bytes = 1024").await;
    let client = runner.client();
    let not_an_object = "params must be a JSON object";
    let cases = [
        ("NOPE", "quick", None, None, None, "unknown device 'NOPE'"),
        (
            DEVICE,
            "dance",
            None,
            None,
            None,
            "unknown job type 'dance'",
        ),
        (
            DEVICE,
            "quick",
            None,
            Some(9),
            None,
            "priority must be from 1 (highest) to 5, got 9",
        ),
        (DEVICE, "quick", None, Some(0), None, "priority must be"),
        (
            DEVICE,
            "quick",
            None,
            None,
            Some(json!("soon")),
            "max_duration must be",
        ),
        (
            DEVICE,
            "quick",
            None,
            None,
            Some(json!(-3)),
            "max_duration must be",
        ),
        (
            DEVICE,
            "quick",
            Some(json!(true)),
            None,
            None,
            not_an_object,
        ),
        (DEVICE, "quick", Some(json!("x")), None, None, not_an_object),
        (DEVICE, "quick", Some(json!([])), None, None, not_an_object),
        (
            DEVICE,
            "quick",
            Some(json!(1e308)),
            None,
            None,
            not_an_object,
        ),
        (
            DEVICE,
            "quick",
            Some(json!({"blob": "x".repeat(2000)})),
            None,
            None,
            "the limit is 1024",
        ),
    ];
    for (device, job_type, params, priority, duration, expected) in cases {
        let error = client
            .rpc()
            .enqueue(device_runner_client::EnqueueJob {
                device: Some(device.into()),
                job_type: job_type.into(),
                params: params.clone(),
                priority,
                max_duration: duration,
                ..Default::default()
            })
            .await
            .unwrap_err();
        let error = Error::from(error);
        assert!(
            matches!(&error, Error::Runner(RunnerError::Value(message)) if message.contains(expected)),
            "{device} {job_type} {params:?}: {error}"
        );
    }
    let error = Error::from(client.rpc().get_run("nope".into()).await.unwrap_err());
    assert!(
        matches!(error, Error::Runner(RunnerError::NotFound(_))),
        "{error}"
    );
    let error = Error::from(
        client
            .rpc()
            .list_runs(None, Some("sleeping".into()), None, None, None, None)
            .await
            .unwrap_err(),
    );
    assert!(
        error.to_string().contains("unknown status 'sleeping'"),
        "{error}"
    );
    assert!(client.rpc().list_queue(None).await.unwrap().is_empty());
    assert!(
        client
            .rpc()
            .list_runs(None, None, None, None, None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_missing_program_is_a_recorded_failure_and_the_queue_goes_on() {
    let runner = Runner::start("").await;
    let missing = runner.enqueue("missing", 5).await;
    let next = runner.enqueue("quick", 5).await;
    let failed = runner
        .wait_status(&missing.id, JobStatus::Failed, SOON)
        .await;
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("cannot start '/nonexistent/bot'"),
        "{failed:?}"
    );
    runner
        .wait_status(&next.id, JobStatus::Completed, SOON)
        .await;
    // A finished run can be queued again with the same parameters.
    let again = runner
        .client()
        .rpc()
        .restart_run(next.id.clone())
        .await
        .unwrap();
    assert_eq!(again.requeued_from.as_deref(), Some(next.id.as_str()));
    assert_eq!(again.job_type, "quick");
    runner
        .wait_status(&again.id, JobStatus::Completed, SOON)
        .await;
    let runs = runner
        .client()
        .rpc()
        .list_runs(None, None, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].id, again.id, "newest first");
    let failed_only = runner
        .client()
        .rpc()
        .list_runs(None, Some("failed".into()), None, None, None, None)
        .await
        .unwrap();
    assert_eq!(failed_only.len(), 1);
    let older = runner
        .client()
        .rpc()
        .list_runs(None, None, None, None, Some(runs[0].id.clone()), None)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);
    // The phone's row holds its runs; the pool's row (pools are timed too) none.
    let timeline = runner.client().rpc().get_timeline(None).await.unwrap();
    let rows: Vec<(&str, usize)> = timeline
        .iter()
        .map(|row| (row.serial.as_str(), row.runs.len()))
        .collect();
    assert_eq!(rows, [(DEVICE, 3), ("pool:modules", 0)]);
}

#[tokio::test]
async fn a_flood_of_output_is_capped_on_disk_and_the_job_still_completes() {
    let runner = Runner::start("").await;
    let job = runner.enqueue("flood", 5).await;
    let done = runner
        .wait_status(&job.id, JobStatus::Completed, SOON)
        .await;
    let size = std::fs::metadata(done.log_path.as_ref().unwrap())
        .unwrap()
        .len();
    assert!(size < 65536 + 200, "log is {size} bytes; the cap is 65536");
    let text = std::fs::read_to_string(done.log_path.unwrap()).unwrap();
    assert_eq!(text.matches("log cap of 65536 bytes reached").count(), 1);
    assert!(
        !text.contains("finished"),
        "output after the cap is dropped"
    );
}

#[tokio::test]
async fn log_offsets_past_the_end_are_value_errors_without_server_paths() {
    let runner = Runner::start("").await;
    let job = runner.enqueue("quick", 5).await;
    let done = runner
        .wait_status(&job.id, JobStatus::Completed, SOON)
        .await;
    let length = std::fs::metadata(done.log_path.unwrap()).unwrap().len();
    let at_end = runner
        .client()
        .rpc()
        .get_logs(job.id.clone(), Some(length), None)
        .await
        .unwrap();
    assert!(at_end.data.is_empty() && at_end.eof, "{at_end:?}");
    for offset in [length + 1, i64::MAX as u64, 1 << 63, u64::MAX] {
        let error = Error::from(
            runner
                .client()
                .rpc()
                .get_logs(job.id.clone(), Some(offset), None)
                .await
                .unwrap_err(),
        );
        let message = error.to_string();
        assert!(
            matches!(&error, Error::Runner(RunnerError::Value(m)) if m.contains("past the end")),
            "{offset}: {error}"
        );
        assert!(
            !message.contains(&runner.dir.display().to_string()),
            "{message}"
        );
    }
}

#[tokio::test]
async fn unsubscribe_by_name_ends_the_subscription() {
    use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
    use jsonrpsee::rpc_params;
    let runner = Runner::start("").await;
    let job = runner.enqueue("long", 5).await;
    runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    let ws = jsonrpsee::ws_client::WsClientBuilder::default()
        .build(format!("ws://127.0.0.1:{}", runner.port))
        .await
        .unwrap();
    // A raw subscription, so its id can be unsubscribed by hand with named params.
    let mut subscription: jsonrpsee::core::client::Subscription<serde_json::Value> = ws
        .subscribe(
            "subscribe_logs",
            rpc_params![job.id.clone()],
            "unsubscribe_logs_unused",
        )
        .await
        .unwrap();
    // jsonrpsee answers a subscribe before it registers the subscription; once a chunk has
    // come, it is registered for sure.
    let first = tokio::time::timeout(SOON, subscription.next())
        .await
        .expect("the first chunk within 10 s")
        .expect("the subscription is open");
    assert!(first.is_ok(), "{first:?}");
    let id = match subscription.kind() {
        jsonrpsee::core::client::SubscriptionKind::Subscription(id) => id.clone(),
        other => panic!("{other:?}"),
    };
    let id = serde_json::to_value(&id).unwrap();
    assert!(id.is_string(), "subscription ids are strings: {id}");
    let mut named = jsonrpsee::core::params::ObjectParams::new();
    named.insert("subscription", id.clone()).unwrap();
    let ended: bool = ws.request("unsubscribe_logs", named).await.unwrap();
    assert!(ended, "unsubscribed by name");
    let again: bool = ws
        .request("unsubscribe_logs", rpc_params![id])
        .await
        .unwrap();
    assert!(!again, "the subscription is gone");
    drop(subscription);
}

#[tokio::test]
async fn an_unsubscribe_right_after_the_subscribe_always_ends_it() {
    use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
    use jsonrpsee::rpc_params;
    let runner = Runner::start("").await;
    let job = runner.enqueue("long", 5).await;
    runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    let ws = jsonrpsee::ws_client::WsClientBuilder::default()
        .build(format!("ws://127.0.0.1:{}", runner.port))
        .await
        .unwrap();
    // No wait between the subscribe's answer and the unsubscribe: jsonrpsee registers a
    // subscription only after it has sent its id.
    for round in 0..200 {
        let subscription: jsonrpsee::core::client::Subscription<serde_json::Value> = ws
            .subscribe(
                "subscribe_logs",
                rpc_params![job.id.clone()],
                "unsubscribe_logs_unused",
            )
            .await
            .unwrap();
        let id = match subscription.kind() {
            jsonrpsee::core::client::SubscriptionKind::Subscription(id) => id.clone(),
            other => panic!("{other:?}"),
        };
        let id = serde_json::to_value(&id).unwrap();
        let mut named = jsonrpsee::core::params::ObjectParams::new();
        named.insert("subscription", id.clone()).unwrap();
        let ended: bool = ws.request("unsubscribe_logs", named).await.unwrap();
        assert!(
            ended,
            "round {round}: the unsubscribe found its subscription"
        );
        drop(subscription);
    }
}

#[tokio::test]
async fn a_log_subscription_replays_then_follows_until_the_end() {
    let runner = Runner::start("").await;
    let job = runner.enqueue("chatty", 5).await;
    runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    let mut follower = runner.client().follow_logs(&job.id, 0).await.unwrap();
    let mut text = String::new();
    let mut chunks = 0;
    loop {
        let chunk = tokio::time::timeout(SOON, follower.next())
            .await
            .expect("a chunk within 10 s")
            .expect("the subscription stays open until eof")
            .unwrap();
        assert_eq!(chunk.offset as usize, text.len(), "chunks are contiguous");
        text.push_str(&chunk.data);
        chunks += 1;
        if chunk.eof {
            break;
        }
    }
    assert_eq!(text, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    assert!(
        chunks >= 2,
        "lines arrived live, not in one piece at the end"
    );
    assert_eq!(runner.job(&job.id).await.status, JobStatus::Completed);
}
