//! Start-up reconciliation: jobs recorded as running belong to a previous life of the runner.
//! A recorded process that is still that same process is an orphan and its group is killed;
//! one whose identity does not match is never signalled (its pid may be someone else's now).
//! Each job is then resumed from its last checkpoint when its type allows, else recorded as
//! `interrupted`. Every decision is logged with its reason.

use chrono::Utc;
use device_runner_api::JobStatus;

use crate::config::Config;
use crate::process;
use crate::store::{Ending, Store, StoreError};

pub async fn reconcile(store: &Store, config: &Config) -> Result<(), StoreError> {
    for (job, identity) in store.running().await? {
        let what = match &identity {
            Some(identity) if process::is_same_process(identity) => {
                tracing::warn!(job_id = %job.id, pid = identity.pid, pgid = identity.pgid,
                    "killing the orphaned process group of a job from before the restart");
                process::terminate_group(identity.pgid, config.kill_grace).await;
                format!("orphan process {} killed", identity.pid)
            }
            Some(identity) => {
                tracing::info!(job_id = %job.id, pid = identity.pid,
                    "the recorded process is gone (or its pid now belongs to another process); not signalled");
                format!("process {} no longer running", identity.pid)
            }
            None => "the runner stopped before its process was recorded".to_string(),
        };
        let resumable = job.checkpoint.is_some()
            && config
                .job_types
                .get(&job.job_type)
                .is_some_and(|t| t.requeue_on_preempt);
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
        if resumable {
            let new_id = uuid::Uuid::new_v4().to_string();
            store.finish_and_requeue(&job.id, &ending, &new_id).await?;
        } else {
            store.finish(&job.id, &ending).await?;
        }
        tracing::warn!(job_id = %job.id, device = %job.device, %reason, "job recorded as interrupted");
    }
    Ok(())
}
