use std::process::Command;
use std::time::Duration;

use device_runner_client::{DeviceRunnerApiClient, JobStatus};

use crate::helpers::{Backend, Runner, TestDb, group_members};

const SOON: Duration = Duration::from_secs(10);

on_both_backends! {
    after_sigkill_the_orphan_is_killed_and_its_job_resumed_or_interrupted => restart_after_sigkill;
}

async fn restart_after_sigkill(backend: Backend) {
    let Some(mut runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let resumable = runner.enqueue("resumable", 5).await;
    let running = runner
        .wait_for(&resumable.id, SOON, |j| j.checkpoint.is_some())
        .await;
    let pgid = running.pid.unwrap();
    runner.kill_9();
    assert!(
        !group_members(pgid).is_empty(),
        "the job outlives a SIGKILLed runner"
    );

    runner.spawn().await;
    let old = runner
        .wait_status(&resumable.id, JobStatus::Interrupted, SOON)
        .await;
    assert!(
        old.error.as_deref().unwrap().contains("orphan process"),
        "{old:?}"
    );
    assert!(
        group_members(pgid).is_empty(),
        "the orphaned group was killed"
    );
    let runs = runner.client().rpc().list_queue(None).await.unwrap();
    let status = runner.client().rpc().get_status().await.unwrap();
    let resumed = status.devices[0]
        .running
        .clone()
        .or_else(|| runs.first().cloned())
        .expect("the job was queued again");
    assert_eq!(
        resumed.requeued_from.as_deref(),
        Some(resumable.id.as_str())
    );
    assert_eq!(resumed.checkpoint, Some(serde_json::json!({"step": 7})));
    let log = runner
        .wait_for(&resumed.id, SOON, |j| j.status == JobStatus::Running)
        .await;
    runner
        .wait_for(&resumed.id, SOON, |_| {
            std::fs::read_to_string(log.log_path.as_ref().unwrap())
                .is_ok_and(|text| text.contains("resumed from {\"step\":7}"))
        })
        .await;

    // A type that does not requeue is recorded as interrupted and stays so.
    runner
        .client()
        .rpc()
        .kill_job(resumed.id.clone())
        .await
        .unwrap();
    let plain = runner.enqueue("long", 5).await;
    let plain_running = runner
        .wait_status(&plain.id, JobStatus::Running, SOON)
        .await;
    runner.kill_9();
    runner.spawn().await;
    let ended = runner
        .wait_status(&plain.id, JobStatus::Interrupted, SOON)
        .await;
    assert!(
        ended.error.as_deref().unwrap().contains("restarted"),
        "{ended:?}"
    );
    assert!(group_members(plain_running.pid.unwrap()).is_empty());
    assert!(
        runner
            .client()
            .rpc()
            .list_queue(None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(runner.log().contains("killing the orphaned process group"));
}

#[tokio::test]
async fn a_recorded_pid_now_used_by_another_process_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap().keep();
    let db = TestDb::sqlite(&dir);
    let mut runner = Runner::start_on(dir, db.url.clone(), "").await;
    let job = runner.enqueue("long", 5).await;
    runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    runner.kill_9();
    // The job's process is gone; a stranger now has a pid the store points at.
    let old = runner.job_offline(&job.id).await;
    device_runner::process::signal_group(old.pid.unwrap(), nix::sys::signal::Signal::SIGKILL);
    let mut stranger = Command::new("sleep").arg("300").spawn().unwrap();
    let stranger_pid = stranger.id() as i32;
    runner.point_job_at(&job.id, stranger_pid).await;

    runner.spawn().await;
    let ended = runner
        .wait_status(&job.id, JobStatus::Interrupted, SOON)
        .await;
    assert!(
        ended
            .error
            .as_deref()
            .unwrap()
            .contains("no longer running"),
        "{ended:?}"
    );
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was left alone"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}
