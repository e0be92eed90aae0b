//! What firing a due schedule means, decided once for every backend.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::model::{Jobstore, RunRecord, RunStatus, Schedule};

/// The ledger rows to write and the schedule's new next run time.
#[derive(Debug, Clone, PartialEq)]
pub struct FirePlan {
    /// Rows for the run ledger: at most one `coalesced` row and one row for the occurrence that
    /// runs (`pending`, or `skipped`/`failed` with the reason).
    pub runs: Vec<RunRecord>,
    /// The schedule's next run time, computed from the scheduled instant, never from `now`.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Plans the fire of `schedule`, whose `next_run_at` is at or before `now`.
///
/// Ledger instants are whole milliseconds, the finest precision every backend stores, so a run
/// and its stored row (and its idempotency key) always agree, whatever precision a trigger's
/// instants have.
pub fn plan_fire(
    jobstore: Jobstore,
    schedule: &Schedule,
    now: DateTime<Utc>,
    lease: TimeDelta,
) -> FirePlan {
    let now = now.trunc_subsecs(3);
    let exact_due = schedule.next_run_at.unwrap_or(now);
    let due = exact_due.trunc_subsecs(3);
    let row = |scheduled_time, status: RunStatus, detail: Option<String>| RunRecord {
        schedule_id: schedule.id.clone(),
        scheduled_time,
        jobstore,
        owner: schedule.owner.clone(),
        target: schedule.target.clone(),
        status,
        detail,
        attempts: 0,
        claimed_at: now,
        lease_until: (status == RunStatus::Pending).then(|| now + lease),
        finished_at: (status != RunStatus::Pending).then_some(now),
    };
    let trigger = match schedule.trigger.compile() {
        Ok(trigger) => trigger,
        Err(error) => {
            // A stored trigger that no longer compiles (say, a zone removed from the tz
            // database) cannot fire again: record why and stop it rather than loop on it.
            let detail = format!("trigger cannot be evaluated: {error}");
            return FirePlan {
                runs: vec![row(due, RunStatus::Failed, Some(detail))],
                next_run_at: None,
            };
        }
    };
    let mut runs = Vec::with_capacity(2);
    let occurrence = if schedule.policy.coalesce {
        let folded = trigger.coalesce(exact_due, now);
        if folded.missed > 0 {
            let count = if folded.exact {
                folded.missed.to_string()
            } else {
                format!("at least {}", folded.missed)
            };
            let detail = format!(
                "{count} missed occurrence(s) from this one on were coalesced into the run at {}",
                folded.latest.to_rfc3339()
            );
            runs.push(row(due, RunStatus::Coalesced, Some(detail)));
        }
        folded.latest
    } else {
        exact_due
    };
    let fire_at = occurrence.trunc_subsecs(3);
    let lateness = now - fire_at;
    let beyond_grace = schedule
        .policy
        .misfire_grace_secs
        .is_some_and(|grace| lateness > TimeDelta::seconds(grace as i64));
    if beyond_grace {
        let detail = format!(
            "missed: started {}s late, beyond the misfire grace of {}s",
            lateness.num_seconds(),
            schedule.policy.misfire_grace_secs.unwrap_or_default()
        );
        runs.push(row(fire_at, RunStatus::Skipped, Some(detail)));
    } else {
        runs.push(row(fire_at, RunStatus::Pending, None));
    }
    FirePlan {
        runs,
        // From the exact occurrence: from its truncation, a sub-millisecond instant would come
        // round again.
        next_run_at: trigger.next_after(occurrence),
    }
}
