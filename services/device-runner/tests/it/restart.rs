use std::process::Command;
use std::time::Duration;

use device_runner_client::{DeviceRunnerApiClient, Job, JobStatus};

use crate::helpers::{Backend, Runner, TestDb, group_members};

const SOON: Duration = Duration::from_secs(10);

test_support::backend_matrix!([sqlite, postgres] [
    after_sigkill_the_orphan_is_killed_and_its_job_resumed_or_interrupted,
    children_left_by_a_leader_that_died_with_the_runner_are_killed_at_restart,
    a_resumable_job_stopped_by_sigterm_resumes_from_its_checkpoint_at_the_next_start,
]);

async fn children_left_by_a_leader_that_died_with_the_runner_are_killed_at_restart(
    backend: Backend,
) {
    let Some(mut runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let job = runner.enqueue("orphaning", 5).await;
    let running = runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    let log_path = running.log_path.clone().unwrap();
    let log = runner
        .wait_for(&job.id, SOON, |_| {
            std::fs::read_to_string(&log_path).is_ok_and(|text| text.contains("tick"))
        })
        .await;
    let text = std::fs::read_to_string(log.log_path.unwrap()).unwrap();
    let child: i32 = text
        .lines()
        .find_map(|line| line.strip_prefix("child "))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("the job printed its child's pid: {text}"));
    let leader = running.pid.unwrap();

    runner.kill_9();
    // The leader writes into a pipe nobody reads any more and dies of SIGPIPE; its child,
    // which writes nothing, lives on in the group.
    wait_until(SOON, "the leader dies of SIGPIPE", || {
        !group_members(leader).contains(&leader)
    })
    .await;
    assert_eq!(
        group_members(leader),
        [child],
        "the child outlives its leader"
    );

    restart_and_wait_interrupted(&mut runner, &job.id, "left in its group killed").await;
    wait_until(SOON, "nothing of the group survives", || {
        group_members(leader).is_empty()
    })
    .await;
    assert!(
        runner
            .log()
            .contains("carrying its JOB_ID live on in its group")
    );
}

async fn a_resumable_job_stopped_by_sigterm_resumes_from_its_checkpoint_at_the_next_start(
    backend: Backend,
) {
    let Some(mut runner) = Runner::start_with(backend, "").await else {
        return;
    };
    let job = runner.enqueue("resumable", 5).await;
    let running = runner
        .wait_for(&job.id, SOON, |j| j.checkpoint.is_some())
        .await;
    assert!(runner.terminate().success(), "a clean exit on SIGTERM");
    assert!(group_members(running.pid.unwrap()).is_empty());
    let stopped = runner.job_offline(&job.id).await;
    assert_eq!(stopped.status, JobStatus::Interrupted);
    assert!(
        stopped.error.as_deref().unwrap().contains("queued again"),
        "{stopped:?}"
    );

    runner.spawn().await;
    wait_resumed_from_its_checkpoint(&runner, &job.id).await;
}

/// Starts the runner again and waits until the job `id` is recorded `interrupted` with a reason
/// that contains `reason`.
async fn restart_and_wait_interrupted(runner: &mut Runner, id: &str, reason: &str) -> Job {
    runner.spawn().await;
    let ended = runner.wait_status(id, JobStatus::Interrupted, SOON).await;
    assert!(
        ended.error.as_deref().unwrap_or_default().contains(reason),
        "{ended:?}"
    );
    ended
}

/// Waits until the job queued again in place of `from` runs from the `resumable` type's
/// checkpoint, `{"step": 7}`.
async fn wait_resumed_from_its_checkpoint(runner: &Runner, from: &str) -> Job {
    let resumed = runner.wait_requeued(from, SOON).await;
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
    resumed
}

/// Waits until `done` holds, failing after `within`.
async fn wait_until(within: Duration, what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn after_sigkill_the_orphan_is_killed_and_its_job_resumed_or_interrupted(backend: Backend) {
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

    restart_and_wait_interrupted(&mut runner, &resumable.id, "orphan process").await;
    assert!(
        group_members(pgid).is_empty(),
        "the orphaned group was killed"
    );
    let resumed = wait_resumed_from_its_checkpoint(&runner, &resumable.id).await;

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
    restart_and_wait_interrupted(&mut runner, &plain.id, "restarted").await;
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
    // The jobs start-up settles are counted like any other end.
    let (_, metrics) = crate::serving::get(&runner, "/metrics", None).await;
    let settled = crate::serving::sample(
        &metrics,
        "device_runner_jobs_finished_total",
        &[("job_type", "long"), ("status", "interrupted")],
    );
    assert_eq!(settled, Some(1.0), "{metrics}");
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
    device_runner::process::kill_now(old.pid.unwrap());
    let mut stranger = Command::new("sleep").arg("300").spawn().unwrap();
    let stranger_pid = stranger.id() as i32;
    runner.point_job_at(&job.id, stranger_pid).await;

    restart_and_wait_interrupted(&mut runner, &job.id, "no longer running").await;
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was left alone"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}
