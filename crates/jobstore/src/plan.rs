//! What firing a due schedule means, decided once for every backend.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::model::{Overlap, RunRecord, RunStatus, Schedule, StoreName, Target};

/// A schedule's runs in the ledger that have not ended: what the overlap policy looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Active {
    /// `pending` rows: claimed, being dispatched, or waiting for their target to answer.
    pub running: u32,
    /// Of the `pending` rows, those taken over from a holder that died: being delivered again
    /// (`recovered`), their job or call may well have ended already.
    pub recovering: u32,
    /// `buffered` rows: waiting for the running one to end.
    pub buffered: u32,
}

/// What the overlap policy makes of an occurrence that is to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Run,
    /// It waits, `buffered`, for the run in progress to end.
    Buffer,
    /// It is skipped with this reason.
    Skip(String),
}

/// Whether a schedule's due occurrence runs, waits or is skipped, given its runs in progress.
/// Targets without a duration (graph executions, system tasks) always run, as in AutoGPT.
///
/// An occurrence that meets only runs being delivered again after their holder died waits for
/// them to end, as `buffer_one` would, whatever the policy: whether their job or call is still
/// going is not known until the redelivery has asked, so skipping it could lose an occurrence
/// that nothing overlaps.
pub fn admit(target: &Target, overlap: Overlap, active: Active) -> Admission {
    if !target.has_duration() || active.running + active.buffered == 0 {
        return Admission::Run;
    }
    let reason = || {
        format!(
            "overlap: a run of this schedule is still in progress ({} running, {} waiting; \
             policy overlap = {})",
            active.running,
            active.buffered,
            overlap.as_str()
        )
    };
    let only_recovering = active.running == active.recovering;
    match overlap {
        Overlap::AllowAll => Admission::Run,
        Overlap::BufferOne if active.buffered == 0 => Admission::Buffer,
        Overlap::Skip if active.buffered == 0 && only_recovering => Admission::Buffer,
        Overlap::BufferOne | Overlap::Skip => Admission::Skip(reason()),
    }
}

/// A run started by hand (run now, backfill) as the overlap policy admits it: `pending` with
/// its lease as given, `buffered`, or `skipped` with the reason, finished at `now`.
pub fn admitted(
    mut run: RunRecord,
    overlap: Overlap,
    active: Active,
    now: DateTime<Utc>,
) -> RunRecord {
    match admit(&run.target, overlap, active) {
        Admission::Run => {}
        Admission::Buffer => {
            run.status = RunStatus::Buffered;
            run.lease_until = None;
        }
        Admission::Skip(reason) => {
            run.status = RunStatus::Skipped;
            run.detail = Some(reason);
            run.lease_until = None;
            run.finished_at = Some(now);
        }
    }
    run
}

/// Whether planning a fire of `schedule` needs its [`Active`] runs: only when the overlap
/// policy could change the outcome.
pub fn needs_active(schedule: &Schedule) -> bool {
    schedule.target.has_duration() && schedule.policy.overlap != Overlap::AllowAll
}

/// The next run of a replacement `schedule` whose runs claimed ahead of their time were given
/// back, the earliest at `given_back`: that one when the replacement `keeps_next` (its trigger
/// did not change) and is not paused, so that the runs are claimed again as the schedule now
/// is; the replacement's own next run otherwise.
pub fn replanned(
    schedule: &Schedule,
    keeps_next: bool,
    given_back: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match given_back {
        Some(earliest) if keeps_next && !schedule.paused => Some(
            schedule
                .next_run_at
                .map_or(earliest, |next| next.min(earliest)),
        ),
        _ => schedule.next_run_at,
    }
}

/// When a store next has work for an engine claiming `ahead` of time: the next run of a
/// schedule that is claimed only once `due`, `ahead` before the next run of one that may be
/// `claimable` ahead, or the expiry of a pending run's `lease`.
pub fn earliest(
    due: Option<DateTime<Utc>>,
    claimable: Option<DateTime<Utc>>,
    ahead: TimeDelta,
    lease: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let claimable = claimable.map(|at| at.checked_sub_signed(ahead).unwrap_or(at));
    [due, claimable, lease].into_iter().flatten().min()
}

/// The ledger rows to write and the schedule's new next run time.
#[derive(Debug, Clone, PartialEq)]
pub struct FirePlan {
    /// Rows for the run ledger: at most one `coalesced` row and one row for the occurrence that
    /// runs (`pending`, or `skipped`/`failed` with the reason).
    pub runs: Vec<RunRecord>,
    /// The schedule's next run time, computed from the scheduled instant, never from `now`.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Set when the schedule cannot fire again as it is: it is paused with this reason, so it
    /// neither loops on the error nor stops the others. Resuming it tries afresh.
    pub parked: Option<String>,
}

/// Plans the fire of `schedule`, whose `next_run_at` is at or before `now`.
///
/// Ledger instants are whole milliseconds, the finest precision every backend stores, so a run
/// and its stored row (and its idempotency key) always agree, whatever precision a trigger's
/// instants have.
///
/// Planning never fails and never unwinds into the caller: whatever goes wrong with one
/// schedule (a trigger that no longer compiles, or a bug that panics) becomes a `failed` row
/// for that schedule and parks it, so the claim of every other schedule goes on.
pub fn plan_fire(
    jobstore: StoreName,
    schedule: &Schedule,
    now: DateTime<Utc>,
    lease: TimeDelta,
    active: Active,
) -> FirePlan {
    contain(jobstore, schedule, now, lease, || {
        plan(jobstore, schedule, now, lease, active)
    })
}

/// Runs `planner`, turning a panic into a parked schedule with a `failed` row.
fn contain(
    jobstore: StoreName,
    schedule: &Schedule,
    now: DateTime<Utc>,
    lease: TimeDelta,
    planner: impl FnOnce() -> FirePlan,
) -> FirePlan {
    match catch_unwind(AssertUnwindSafe(planner)) {
        Ok(plan) => plan,
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::error!(schedule_id = %schedule.id, %message, "planning a fire panicked; the schedule is parked");
            let rows = Rows::new(jobstore, schedule, now, lease);
            let reason = format!("planning its next fire failed unexpectedly: {message}");
            rows.park(reason)
        }
    }
}

/// The message a panic carried, for the ledger and the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

/// Builds the ledger rows of one claim.
struct Rows<'a> {
    jobstore: StoreName,
    schedule: &'a Schedule,
    now: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
}

impl<'a> Rows<'a> {
    fn new(
        jobstore: StoreName,
        schedule: &'a Schedule,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Self {
        let now = now.trunc_subsecs(3);
        Rows {
            jobstore,
            schedule,
            now,
            lease_until: now.checked_add_signed(lease),
        }
    }

    /// A plan that records the due occurrence `failed` with `reason` and parks the schedule
    /// with the same reason.
    fn park(&self, reason: String) -> FirePlan {
        FirePlan {
            runs: vec![self.row(self.due(), RunStatus::Failed, Some(reason.clone()))],
            next_run_at: None,
            parked: Some(reason),
        }
    }

    /// The instant the schedule was due, as the ledger keeps it.
    fn due(&self) -> DateTime<Utc> {
        self.schedule
            .next_run_at
            .unwrap_or(self.now)
            .trunc_subsecs(3)
    }

    fn row(
        &self,
        scheduled_time: DateTime<Utc>,
        status: RunStatus,
        detail: Option<String>,
    ) -> RunRecord {
        let pending = status == RunStatus::Pending;
        let open = status.is_open();
        RunRecord {
            schedule_id: self.schedule.id.clone(),
            scheduled_time,
            jobstore: self.jobstore,
            owner: self.schedule.owner.clone(),
            target: self.schedule.target.clone(),
            policy: self.schedule.policy,
            status,
            detail,
            attempts: 0,
            claimed_at: self.now,
            lease_until: if pending {
                Some(self.lease_until.unwrap_or(self.now))
            } else {
                None
            },
            finished_at: (!open).then_some(self.now),
        }
    }
}

fn plan(
    jobstore: StoreName,
    schedule: &Schedule,
    now: DateTime<Utc>,
    lease: TimeDelta,
    active: Active,
) -> FirePlan {
    let rows = Rows::new(jobstore, schedule, now, lease);
    let now = rows.now;
    let exact_due = schedule.next_run_at.unwrap_or(now);
    let trigger = match schedule.trigger.compile_for(&schedule.id) {
        Ok(trigger) => trigger,
        Err(error) => {
            // A stored trigger that no longer compiles (say, a zone removed from the tz
            // database) cannot fire again: record why and park it rather than loop on it.
            let reason = format!("trigger cannot be evaluated: {error}");
            return rows.park(reason);
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
            runs.push(rows.row(rows.due(), RunStatus::Coalesced, Some(detail)));
        }
        folded.latest
    } else {
        exact_due
    };
    let fire_at = occurrence.trunc_subsecs(3);
    let lateness = now.signed_duration_since(fire_at);
    // On a date an exclusion calendar names, the occurrence is accounted for, not run.
    let excluded = trigger.excluded_by(occurrence);
    match schedule.policy.misfire_grace_secs.and_then(grace) {
        _ if excluded.is_some() => {
            let detail = excluded.map(|calendar| format!("calendar {calendar}"));
            runs.push(rows.row(fire_at, RunStatus::Skipped, detail));
        }
        Some(grace) if lateness > grace => {
            let detail = format!(
                "missed: started {}s late, beyond the misfire grace of {}s",
                lateness.num_seconds(),
                grace.num_seconds()
            );
            runs.push(rows.row(fire_at, RunStatus::Skipped, Some(detail)));
        }
        _ => match admit(&schedule.target, schedule.policy.overlap, active) {
            Admission::Run => runs.push(rows.row(fire_at, RunStatus::Pending, None)),
            Admission::Buffer => runs.push(rows.row(fire_at, RunStatus::Buffered, None)),
            Admission::Skip(reason) => {
                runs.push(rows.row(fire_at, RunStatus::Skipped, Some(reason)));
            }
        },
    }
    FirePlan {
        runs,
        // From the exact occurrence: from its truncation, a sub-millisecond instant would come
        // round again.
        next_run_at: trigger.next_after(occurrence),
        parked: None,
    }
}

/// The reason an unreadable schedule row is parked with: it must not be claimed again and
/// again, and its target cannot be read to write a ledger row.
pub fn unreadable(schedule_id: &str, error: &dyn std::fmt::Display) -> String {
    tracing::error!(%schedule_id, %error, "unreadable schedule parked");
    format!("the stored schedule cannot be read: {error}")
}

/// A misfire grace as a span of time; `None` (no limit) for one longer than any span between
/// two instants a trigger can produce, which the API refuses anyway.
fn grace(secs: u64) -> Option<TimeDelta> {
    i64::try_from(secs).ok().and_then(TimeDelta::try_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HttpTarget, SystemTaskTarget};
    use crate::model::{Policy, Target};
    use triggers::{TriggerKind, TriggerSpec};

    fn schedule(trigger: TriggerSpec, policy: Policy, due: &str) -> Schedule {
        Schedule {
            id: "s1".into(),
            name: "s1".into(),
            owner: "u1".into(),
            trigger,
            target: Target::SystemTask(SystemTaskTarget {
                task: "t".into(),
                kwargs: serde_json::Value::Null,
            }),
            policy,
            paused: false,
            tags: Vec::new(),
            paused_reason: None,
            next_run_at: Some(at(due)),
            created_at: at(due),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cron(expression: &str) -> TriggerSpec {
        TriggerSpec::from(TriggerKind::Cron {
            expression: expression.into(),
            timezone: "UTC".into(),
        })
    }

    #[test]
    fn a_panicking_planner_parks_the_schedule_with_a_failed_row() {
        let s = schedule(cron("* * * * *"), Policy::default(), "2026-01-01T00:00:00Z");
        let now = at("2026-01-01T00:00:05Z");
        let plan = contain(
            StoreName::Execution,
            &s,
            now,
            TimeDelta::seconds(30),
            || panic!("boom"),
        );
        assert_eq!(plan.next_run_at, None);
        let reason = plan.parked.expect("parked");
        assert!(reason.contains("boom"), "{reason}");
        assert_eq!(plan.runs.len(), 1);
        assert_eq!(plan.runs[0].status, RunStatus::Failed);
        assert_eq!(plan.runs[0].scheduled_time, at("2026-01-01T00:00:00Z"));
        assert_eq!(plan.runs[0].detail.as_deref(), Some(reason.as_str()));
    }

    #[test]
    fn a_trigger_that_no_longer_compiles_parks_the_schedule() {
        let trigger = TriggerSpec::from(TriggerKind::Cron {
            expression: "* * * * *".into(),
            timezone: "Mars/Olympus_Mons".into(),
        });
        let s = schedule(trigger, Policy::default(), "2026-01-01T00:00:00Z");
        let plan = plan_fire(
            StoreName::Execution,
            &s,
            at("2026-01-01T00:00:01Z"),
            TimeDelta::seconds(30),
            Active::default(),
        );
        assert!(
            plan.parked
                .as_deref()
                .unwrap()
                .contains("Mars/Olympus_Mons")
        );
        assert_eq!(plan.runs[0].status, RunStatus::Failed);
    }

    #[test]
    fn misfire_graces_beyond_any_span_mean_no_limit_instead_of_a_panic() {
        for secs in [9_223_372_036_854_776, i64::MAX as u64, 1 << 63, u64::MAX] {
            let policy = Policy {
                misfire_grace_secs: Some(secs),
                ..Policy::default()
            };
            let s = schedule(cron("* * * * *"), policy, "2000-01-01T00:00:00Z");
            let plan = plan_fire(
                StoreName::Execution,
                &s,
                at("2026-01-01T00:00:01Z"),
                TimeDelta::seconds(30),
                Active::default(),
            );
            assert_eq!(plan.parked, None, "grace {secs}");
            let last = plan.runs.last().unwrap();
            assert_eq!(last.status, RunStatus::Pending, "grace {secs}: {last:?}");
        }
    }

    #[test]
    fn an_occurrence_meeting_only_a_recovering_run_waits_for_it_instead_of_being_skipped() {
        let target = Target::Http(HttpTarget {
            endpoint: Some("e".into()),
            url: None,
            method: "POST".into(),
            path: "/".into(),
            headers: Default::default(),
            body: serde_json::Value::Null,
            expected_status: "2xx".into(),
        });
        let recovering = Active {
            running: 1,
            recovering: 1,
            buffered: 0,
        };
        assert_eq!(admit(&target, Overlap::Skip, recovering), Admission::Buffer);
        assert_eq!(
            admit(&target, Overlap::BufferOne, recovering),
            Admission::Buffer
        );
        assert_eq!(
            admit(&target, Overlap::AllowAll, recovering),
            Admission::Run
        );
        // One waits already, or a live run is among them: the policy as it is.
        let waiting = Active {
            buffered: 1,
            ..recovering
        };
        assert!(matches!(
            admit(&target, Overlap::Skip, waiting),
            Admission::Skip(_)
        ));
        let live = Active {
            running: 2,
            ..recovering
        };
        assert!(matches!(
            admit(&target, Overlap::Skip, live),
            Admission::Skip(_)
        ));
        assert!(matches!(
            admit(
                &target,
                Overlap::Skip,
                Active {
                    running: 1,
                    recovering: 0,
                    buffered: 0
                }
            ),
            Admission::Skip(_)
        ));
    }

    #[test]
    fn a_grace_still_skips_an_occurrence_later_than_it() {
        let policy = Policy {
            coalesce: false,
            misfire_grace_secs: Some(10),
            ..Policy::default()
        };
        let s = schedule(cron("* * * * *"), policy, "2026-01-01T00:00:00Z");
        let plan = plan_fire(
            StoreName::Execution,
            &s,
            at("2026-01-01T00:00:11Z"),
            TimeDelta::seconds(30),
            Active::default(),
        );
        assert_eq!(plan.runs[0].status, RunStatus::Skipped);
        assert!(
            plan.runs[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("grace of 10s")
        );
        assert_eq!(plan.next_run_at, Some(at("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn an_occurrence_on_an_excluded_date_is_skipped_naming_the_calendar() {
        let weekends = triggers::Calendar::new("weekends", "UTC", &[], &["sat".into()]).unwrap();
        triggers::Calendars::new([weekends]).install();
        let mut trigger = cron("0 9 * * *");
        trigger.exclude = vec!["weekends".into()];
        // 2026-01-03 is a Saturday.
        let s = schedule(trigger, Policy::default(), "2026-01-03T09:00:00Z");
        let plan = plan_fire(
            StoreName::Execution,
            &s,
            at("2026-01-03T09:00:00Z"),
            TimeDelta::seconds(30),
            Active::default(),
        );
        assert_eq!(plan.runs.len(), 1);
        assert_eq!(plan.runs[0].status, RunStatus::Skipped);
        assert_eq!(plan.runs[0].detail.as_deref(), Some("calendar weekends"));
        assert_eq!(plan.next_run_at, Some(at("2026-01-04T09:00:00Z")));
        let sunday = Schedule {
            next_run_at: Some(at("2026-01-04T09:00:00Z")),
            ..s
        };
        let plan = plan_fire(
            StoreName::Execution,
            &sunday,
            at("2026-01-04T09:00:00Z"),
            TimeDelta::seconds(30),
            Active::default(),
        );
        assert_eq!(plan.runs[0].status, RunStatus::Pending);
    }
}
