//! The device runner under a barrage of hostile requests derived from its OpenRPC document:
//! every answer comes in time and is a success or a client error, the runner stays healthy,
//! nothing panics, and a plain job still runs to completion after it.

use std::time::Duration;

use device_runner_client::{DeviceRunnerApiClient, JobStatus};
use serde_json::{Value, json};
use test_support::hostile;

use crate::helpers::{DEVICE, Runner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_params_get_client_errors_and_the_runner_keeps_running_jobs() {
    let runner = Runner::start("").await;
    let done = runner.enqueue("quick", 5).await;
    runner
        .wait_status(&done.id, JobStatus::Completed, Duration::from_secs(10))
        .await;
    let document: Value = serde_json::from_str(device_runner::server::OPENRPC).unwrap();
    let valid = |_method: &str, param: &str| -> Option<Value> {
        Some(match param {
            "device" => json!(DEVICE),
            "job_type" => json!("quick"),
            "params" | "checkpoint" => json!({}),
            "priority" => json!(5),
            "max_duration" => json!("1m"),
            "source" => json!("hostile"),
            "id" | "run_id" | "job_id" | "before" => json!(done.id),
            "offset" => json!(0),
            "limit" => json!(10),
            "status" => json!("completed"),
            "hours" => json!(24),
            "subscription" => json!("none"),
            _ => return None,
        })
    };
    let probes = hostile::probes(&document, valid);
    assert!(probes.len() > 300, "{} probes", probes.len());
    hostile::assert_all_answered(&runner.url(), &probes, false).await;

    assert_eq!(runner.client().rpc().health_check().await.unwrap(), "OK");
    let plain = runner.enqueue("quick", 1).await;
    runner
        .wait_status(&plain.id, JobStatus::Completed, Duration::from_secs(60))
        .await;
    let log = runner.log();
    assert!(!log.contains("panicked"), "{log}");
}
