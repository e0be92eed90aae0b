//! Start-up reconciliation: jobs recorded as running belong to a previous life of the runner.
//! A recorded process that is still that same process is an orphan and its group is killed.
//! When the leader is gone but live members of its group on this boot carry the job's
//! `JOB_ID`, they are the job's children and the group is killed too. Anything else is never
//! signalled (the pid may be someone else's now). Each job is then resumed from its last
//! checkpoint when its type allows, else recorded as `interrupted`. Every decision is logged
//! with its reason.

use chrono::Utc;
use device_runner_api::{Job, JobStatus};

use crate::config::Config;
use crate::store::{Ending, Store, StoreError};
use crate::{process, telemetry};

/// Whether a job stopped from outside (a restart, a shutdown) is queued again from its last
/// checkpoint rather than left `interrupted`: its type requeues on preemption and it has a
/// checkpoint to resume from.
pub fn resumes(config: &Config, job: &Job) -> bool {
    job.checkpoint.is_some()
        && config
            .job_types
            .get(&job.job_type)
            .is_some_and(|t| t.requeue_on_preempt)
}

pub async fn reconcile(store: &Store, config: &Config) -> Result<(), StoreError> {
    for (job, identity) in store.running().await? {
        let what = match &identity {
            Some(identity) if process::is_same_process(identity) => {
                tracing::warn!(job_id = %job.id, pid = identity.pid, pgid = identity.pgid,
                    "killing the orphaned process group of a job from before the restart");
                process::terminate_group(identity.pgid, config.kill_grace).await;
                format!("orphan process {} killed", identity.pid)
            }
            Some(identity)
                if identity.boot_id == process::boot_id()
                    && !process::job_members(identity.pgid, &job.id).is_empty() =>
            {
                let members = process::job_members(identity.pgid, &job.id);
                tracing::warn!(job_id = %job.id, pid = identity.pid, pgid = identity.pgid, ?members,
                    "the job's leader is gone but processes carrying its JOB_ID live on in its group; killing the group");
                process::terminate_group(identity.pgid, config.kill_grace).await;
                format!(
                    "process {} gone; {} left in its group killed",
                    identity.pid,
                    members.len()
                )
            }
            Some(identity) => {
                tracing::info!(job_id = %job.id, pid = identity.pid,
                    "the recorded process is gone (or its pid now belongs to another process); not signalled");
                format!("process {} no longer running", identity.pid)
            }
            None => "the runner stopped before its process was recorded".to_string(),
        };
        let resumable = resumes(config, &job);
        let reason = if resumable {
            format!("the runner restarted while it ran ({what}); resumed from its last checkpoint")
        } else {
            format!("the runner restarted while it ran ({what})")
        };
        let ending = Ending {
            status: JobStatus::Interrupted,
            ended_at: Utc::now(),
            exit_code: None,
            signal: None,
            error: Some(reason.clone()),
            preempted_by: None,
        };
        store.end(&job.id, &ending, resumable).await?;
        telemetry::job_finished(&job.job_type, JobStatus::Interrupted, None);
        tracing::warn!(job_id = %job.id, device = %job.device, %reason, "job recorded as interrupted");
    }
    Ok(())
}
