use std::time::Duration;

use device_runner_client::{DeviceRunnerApiClient, JobStatus};

use crate::helpers::{Backend, Runner, group_members};

const SOON: Duration = Duration::from_secs(10);

test_support::backend_matrix!([sqlite, postgres] [
    a_higher_priority_job_preempts_after_the_grace_and_requeues_with_its_checkpoint,
    kill_job_cancels_pending_and_stops_running_jobs,
]);

async fn a_higher_priority_job_preempts_after_the_grace_and_requeues_with_its_checkpoint(
    backend: Backend,
) {
    let Some(runner) = Runner::start_with(backend, "preempt_grace = \"1s\"").await else {
        return;
    };
    let low = runner.enqueue("resumable", 5).await;
    let running = runner.wait_status(&low.id, JobStatus::Running, SOON).await;
    // Wait for its checkpoint to be persisted before the preemption.
    runner
        .wait_for(&low.id, SOON, |job| job.checkpoint.is_some())
        .await;
    let high = runner.enqueue("quick", 1).await;
    let preempted = runner
        .wait_status(&low.id, JobStatus::Preempted, SOON)
        .await;
    assert_eq!(preempted.preempted_by.as_deref(), Some(high.id.as_str()));
    let ran_for = preempted.ended_at.unwrap() - running.started_at.unwrap();
    assert!(
        ran_for.num_milliseconds() >= 1000,
        "preempted only after the grace: {ran_for}"
    );
    assert!(group_members(preempted.pid.unwrap()).is_empty());
    runner
        .wait_status(&high.id, JobStatus::Completed, SOON)
        .await;

    // requeue_on_preempt: the job comes back with its checkpoint and resumes from it.
    let finished = runner
        .client()
        .rpc()
        .list_runs(None, None, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(finished.len(), 2, "the preempted run and the quick one");
    let resumed = runner.wait_requeued(&low.id, SOON).await;
    assert_eq!(resumed.checkpoint, Some(serde_json::json!({"step": 7})));
    // The requeued job carries the checkpoint from the start; wait for it to run and say so.
    let running = runner
        .wait_status(&resumed.id, JobStatus::Running, SOON)
        .await;
    let log_path = running.log_path.unwrap();
    runner
        .wait_for(&resumed.id, SOON, |_| {
            std::fs::read_to_string(&log_path)
                .is_ok_and(|text| text.contains("resumed from {\"step\":7}"))
        })
        .await;
}

#[tokio::test]
async fn a_protected_job_is_never_preempted() {
    let runner = Runner::start("preempt_grace = \"200ms\"").await;
    let guarded = runner.enqueue("guarded", 5).await;
    runner
        .wait_status(&guarded.id, JobStatus::Running, SOON)
        .await;
    let high = runner.enqueue("quick", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runner.job(&guarded.id).await.status, JobStatus::Running);
    assert_eq!(runner.job(&high.id).await.status, JobStatus::Pending);
    runner
        .client()
        .rpc()
        .kill_job(guarded.id.clone())
        .await
        .unwrap();
    runner
        .wait_status(&high.id, JobStatus::Completed, SOON)
        .await;
}

#[tokio::test]
async fn a_job_that_ignores_sigterm_is_killed_at_its_deadline_with_its_whole_group() {
    let runner = Runner::start("kill_grace = \"500ms\"").await;
    let job = runner.enqueue("stubborn", 5).await;
    let running = runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    let pgid = running.pid.unwrap();
    runner
        .wait_for(&job.id, SOON, |_| group_members(pgid).len() >= 3)
        .await;
    let ended = runner.wait_status(&job.id, JobStatus::Timeout, SOON).await;
    assert_eq!(
        ended.signal,
        Some(9),
        "SIGTERM was ignored, so SIGKILL ended it: {ended:?}"
    );
    assert!(
        ended
            .error
            .as_deref()
            .unwrap()
            .contains("max duration of 1s"),
        "{ended:?}"
    );
    assert_eq!(
        group_members(pgid),
        Vec::<i32>::new(),
        "nothing of the group survives"
    );
}

async fn kill_job_cancels_pending_and_stops_running_jobs(backend: Backend) {
    let Some(runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let client = runner.client();
    let running = runner.enqueue("long", 5).await;
    let pending = runner.enqueue("long", 5).await;
    runner
        .wait_status(&running.id, JobStatus::Running, SOON)
        .await;
    let cancelled = client.rpc().kill_job(pending.id.clone()).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let killed = client.rpc().kill_job(running.id.clone()).await.unwrap();
    assert_eq!(killed.status, JobStatus::Killed);
    assert_eq!(killed.signal, Some(15), "sleep dies of the SIGTERM");
    assert!(group_members(killed.pid.unwrap()).is_empty());
    let error = client.rpc().kill_job(running.id.clone()).await.unwrap_err();
    assert!(
        error.to_string().contains("already ended (killed)"),
        "{error}"
    );
}

#[tokio::test]
async fn sigterm_stops_running_jobs_as_interrupted_and_exits() {
    let mut runner = Runner::start("").await;
    let job = runner.enqueue("long", 5).await;
    let running = runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    let status = runner.terminate();
    assert!(status.success(), "{status:?}\n{}", runner.log());
    assert!(group_members(running.pid.unwrap()).is_empty());
    runner.spawn().await;
    let after = runner.job(&job.id).await;
    assert_eq!(after.status, JobStatus::Interrupted);
    assert_eq!(after.error.as_deref(), Some("the runner shut down"));
}
