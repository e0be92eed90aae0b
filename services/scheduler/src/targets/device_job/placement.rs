//! Following an occurrence placed by tags: waiting for a phone when none could take it,
//! following its job, and moving it when it waits on a phone that was quarantined (taken
//! back with `cancel_job`, placed again, the move written to its ledger row first).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{RunNote, RunOutcome, RunRecord, RunStatus};
use scheduler_api::DeviceJobTarget;
use serde_json::Value;

use super::{DeviceRunners, Follow, WAITING, follow_job, job_id};
use crate::endpoint::DispatchError;
use crate::targets::{Ended, Followed, Notes};

/// How long a wait for a phone sleeps at most between two looks at the fleet.
const LOOK_AGAIN: Duration = Duration::from_secs(5);

/// The run of an occurrence placed by tags ends with its job, wherever it was moved.
pub(super) async fn follow(
    job: &DeviceJobTarget,
    run: &RunRecord,
    followed: Followed<'_>,
) -> Ended {
    let Followed {
        targets,
        notes,
        outcome,
        answer,
    } = followed;
    let devices = &targets.devices;
    let end = |status: RunStatus, detail: String| {
        Ended::from(RunOutcome {
            status,
            detail: Some(detail),
            finished_at: Utc::now(),
            ..outcome.clone()
        })
    };
    // The dispatch failed: its outcome says why.
    let Some(answer) = answer else {
        return Ended::from(outcome);
    };
    let timeout = run.policy.placement_timeout();
    let (mut placed, mut queued) = match answer.get(WAITING).and_then(Value::as_str) {
        Some(reason) => match wait_for_phone(devices, notes, job, run, reason).await {
            Ok(placed) => placed,
            Err(detail) => return end(RunStatus::Failed, detail),
        },
        None => (placed_by(job, &answer), answer),
    };
    let mut moves = Vec::new();
    loop {
        let id = match job_id(&placed.runner, &queued) {
            Ok(id) => id,
            Err(detail) => return end(RunStatus::Failed, detail),
        };
        let from = (
            placed.runner.clone(),
            placed.device.clone().unwrap_or_default(),
        );
        let waiting = match follow_job(run, targets, notes, &from.0, &id, true).await {
            Follow::Quarantined(waiting) => waiting,
            ended => {
                let (status, detail) = ended.settled();
                return end(status, with_moves(&moves, detail));
            }
        };
        // The job that waits: the one queued, or the one that continues it.
        let id = waiting.id.clone();
        tracing::info!(schedule_id = %run.schedule_id, job_id = %id, runner = %from.0, device = %from.1, waiting = ?waiting.waiting, "its phone was quarantined; taking the job back to place it elsewhere");
        if !taken_back(devices, &from.0, &id).await {
            // It started meanwhile (or the runner cannot be asked): it stays where it is.
            let (status, detail) = follow_job(run, targets, notes, &from.0, &id, false)
                .await
                .settled();
            return end(status, with_moves(&moves, detail));
        }
        let deadline = Utc::now() + TimeDelta::from_std(timeout).unwrap_or(TimeDelta::MAX);
        let moved_from = Some((from.0.as_str(), from.1.as_str()));
        match place_when_free(devices, &placed, run, moved_from, deadline).await {
            Ok(next) => {
                moves.push(format!(
                    "moved from phone {} of device runner '{}' (quarantined)",
                    from.1, from.0
                ));
                (placed, queued) = next;
            }
            Err(detail) => {
                let detail = format!(
                    "job {id} was taken back from quarantined phone {} of device runner '{}', \
                     and {detail}",
                    from.1, from.0
                );
                return end(RunStatus::Failed, with_moves(&moves, detail));
            }
        }
    }
}

/// Waits for a phone to take an occurrence no phone could take when it was sent (`reason`),
/// saying so in its ledger row, until its scheduled time plus its placement timeout; the
/// placed target and its job, or why none came.
async fn wait_for_phone(
    devices: &DeviceRunners,
    notes: &Notes,
    job: &DeviceJobTarget,
    run: &RunRecord,
    reason: &str,
) -> Result<(DeviceJobTarget, Value), String> {
    tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %reason, "no phone can take the occurrence yet; it waits for one");
    let note = RunNote {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        detail: format!("waiting for a phone: {reason}"),
    };
    let _ = notes.send((run.jobstore, note));
    let timeout = TimeDelta::from_std(run.policy.placement_timeout()).unwrap_or(TimeDelta::MAX);
    place_when_free(devices, job, run, None, run.scheduled_time + timeout).await
}

/// Whether job `id` was taken back from runner `runner` (cancelled while still pending).
async fn taken_back(devices: &DeviceRunners, runner: &str, id: &str) -> bool {
    match devices.take_back(runner, id).await {
        Ok(taken) => taken,
        Err(error) => {
            tracing::warn!(%error, job_id = %id, "cannot take the job back; following it where it is");
            false
        }
    }
}

/// The target as placed by the send whose answer this is (the job, its runner and moves).
fn placed_by(job: &DeviceJobTarget, answer: &Value) -> DeviceJobTarget {
    let text = |field: &str| {
        answer
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    DeviceJobTarget {
        runner: text("runner").unwrap_or_else(|| job.runner.clone()),
        device: text("device").or_else(|| job.device.clone()),
        moves: answer
            .get("moves")
            .and_then(Value::as_u64)
            .map_or(job.moves, |m| m as u32),
        ..job.clone()
    }
}

/// Places the occurrence as soon as a phone can take it, before `deadline`, and queues its
/// job there; the placed target and the runner's answer, or why it could not be.
async fn place_when_free(
    devices: &DeviceRunners,
    job: &DeviceJobTarget,
    run: &RunRecord,
    moved_from: Option<(&str, &str)>,
    deadline: DateTime<Utc>,
) -> Result<(DeviceJobTarget, Value), String> {
    loop {
        match devices.place(job, run, moved_from).await {
            Ok(Ok((placed, choice))) => {
                let queued = queue(devices, &placed, run).await;
                devices.settle(choice, queued.is_ok());
                return queued.map(|answer| (placed, answer));
            }
            Ok(Err(reason)) => {
                let left = (deadline - Utc::now()).to_std().unwrap_or_default();
                if left.is_zero() {
                    return Err(reason);
                }
                devices.fleet.changed(left.min(LOOK_AGAIN)).await;
            }
            Err(DispatchError::Unreachable(error)) => {
                tracing::warn!(schedule_id = %run.schedule_id, %error, "cannot place the occurrence; trying again");
                if Utc::now() >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Queues the job of a placed occurrence. Its placement is in the ledger, so it goes to that
/// phone or nowhere: a runner that cannot be reached is asked again until it answers (or the
/// engine stops, and the next process delivers it to the same phone).
async fn queue(
    devices: &DeviceRunners,
    placed: &DeviceJobTarget,
    run: &RunRecord,
) -> Result<Value, String> {
    let mut wait = Duration::from_millis(200);
    loop {
        match devices.enqueue_placed(placed, run).await {
            Ok(answer) => return Ok(answer),
            Err(DispatchError::Unreachable(error)) => {
                tracing::warn!(schedule_id = %run.schedule_id, runner = %placed.runner, %error, "cannot queue the placed job; asking again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LOOK_AGAIN);
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// A run's detail with the moves it went through before it.
fn with_moves(moves: &[String], detail: String) -> String {
    if moves.is_empty() {
        detail
    } else {
        format!("{}; {detail}", moves.join("; "))
    }
}
