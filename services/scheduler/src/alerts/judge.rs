//! What a schedule's checks find, from the schedule and what its runs tell: a pure function of
//! them and the time, so every case is tested without a clock or a database.

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{AlertKind, AlertPolicy, Watched};

/// What one check of one schedule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Work did not happen: what, and the last error.
    Trouble {
        summary: String,
        last_error: Option<String>,
    },
    /// Nothing to report; why (the resolution of an incident that was open).
    Fine(&'static str),
}

/// How a schedule stands with each check of `policy` (its own over the defaults) at `now`.
/// `paused_by_caller` is whether its pause, if paused, was a caller's (the engine parking it
/// is not).
pub(crate) fn judge(
    watched: &Watched,
    policy: AlertPolicy,
    now: DateTime<Utc>,
    paused_by_caller: bool,
) -> [(AlertKind, Verdict); 3] {
    [
        (AlertKind::Late, late(watched, policy.late_after_secs, now)),
        (AlertKind::Failing, failing(watched, policy.failed_in_a_row)),
        (
            AlertKind::Missing,
            missing(watched, policy.missing_after_secs, now, paused_by_caller),
        ),
    ]
}

fn late(watched: &Watched, after_secs: Option<u64>, now: DateTime<Utc>) -> Verdict {
    let Some(after_secs) = after_secs else {
        return Verdict::Fine("its late check was turned off");
    };
    let schedule = &watched.schedule;
    if schedule.paused {
        return Verdict::Fine("the schedule is paused");
    }
    let limit = now - secs(after_secs);
    let unclaimed = schedule.next_run_at.filter(|at| *at <= limit);
    let waiting = watched.runs.oldest_waiting.filter(|at| *at <= limit);
    let summary = match (unclaimed, waiting) {
        (Some(due), Some(queued)) if queued < due => waiting_summary(queued, after_secs),
        (Some(due), _) => format!(
            "the occurrence due at {} was not dispatched {after_secs} s after its time (no \
             scheduler took it: is the engine down or behind?)",
            due.to_rfc3339()
        ),
        (None, Some(queued)) => waiting_summary(queued, after_secs),
        (None, None) => return Verdict::Fine("its occurrences are dispatched on time again"),
    };
    Verdict::Trouble {
        summary,
        last_error: watched.runs.last_error.clone(),
    }
}

fn waiting_summary(queued: DateTime<Utc>, after_secs: u64) -> String {
    format!(
        "the occurrence due at {} was not dispatched {after_secs} s after its time: it waits \
         behind a run still in progress",
        queued.to_rfc3339()
    )
}

fn failing(watched: &Watched, in_a_row: Option<u32>) -> Verdict {
    let Some(in_a_row) = in_a_row else {
        return Verdict::Fine("its failing check was turned off");
    };
    let failed = watched.runs.failed_since;
    if failed < in_a_row {
        return Verdict::Fine("a run succeeded");
    }
    let counted = if failed > AlertPolicy::MAX_FAILED_IN_A_ROW {
        format!("more than {}", AlertPolicy::MAX_FAILED_IN_A_ROW)
    } else {
        failed.to_string()
    };
    Verdict::Trouble {
        summary: format!("{counted} runs in a row failed (the check allows {in_a_row})"),
        last_error: watched.runs.last_error.clone(),
    }
}

fn missing(
    watched: &Watched,
    after_secs: Option<u64>,
    now: DateTime<Utc>,
    paused_by_caller: bool,
) -> Verdict {
    let Some(after_secs) = after_secs else {
        return Verdict::Fine("its missing check was turned off");
    };
    let schedule = &watched.schedule;
    if schedule.paused && paused_by_caller {
        return Verdict::Fine("the schedule was paused by a caller");
    }
    if !schedule.paused && schedule.next_run_at.is_none() {
        return Verdict::Fine("the schedule has no more occurrences");
    }
    let last_success = watched.runs.last_success;
    let since = last_success.map_or(schedule.created_at, |at| at.max(schedule.created_at));
    if now - since <= secs(after_secs) {
        return Verdict::Fine("a run succeeded");
    }
    let mut summary = match last_success {
        Some(at) => format!(
            "no run succeeded for {after_secs} s: the last success was the occurrence of {}",
            at.to_rfc3339()
        ),
        None => format!(
            "no run succeeded in the {after_secs} s since the schedule was created at {}",
            schedule.created_at.to_rfc3339()
        ),
    };
    if schedule.paused {
        let reason = schedule
            .paused_reason
            .as_deref()
            .unwrap_or("no reason given");
        summary.push_str(&format!("; the engine parked it: {reason}"));
    }
    Verdict::Trouble {
        summary,
        last_error: watched.runs.last_error.clone(),
    }
}

fn secs(secs: u64) -> TimeDelta {
    TimeDelta::try_seconds(i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use jobstore::{GraphExecutionTarget, Policy, RunFacts, Schedule, Target};
    use triggers::{TriggerKind, TriggerSpec};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn watched(next: Option<&str>, runs: RunFacts) -> Watched {
        Watched {
            schedule: Schedule {
                id: "s1".into(),
                name: "nightly".into(),
                owner: "agnt".into(),
                trigger: TriggerSpec::from(TriggerKind::Interval {
                    every_secs: 60,
                    anchor: None,
                }),
                target: Target::GraphExecution(GraphExecutionTarget {
                    graph_id: "g".into(),
                    graph_version: 1,
                    input_data: serde_json::json!({}),
                    input_credentials: serde_json::json!({}),
                    ..Default::default()
                }),
                policy: Policy::default(),
                tags: Vec::new(),
                paused: false,
                paused_reason: None,
                next_run_at: next.map(at),
                created_at: at("2026-01-01T00:00:00Z"),
            },
            runs,
        }
    }

    fn all(late: u64, failing: u32, missing: u64) -> AlertPolicy {
        AlertPolicy {
            late_after_secs: Some(late),
            failed_in_a_row: Some(failing),
            missing_after_secs: Some(missing),
        }
    }

    fn verdict(found: &[(AlertKind, Verdict); 3], kind: AlertKind) -> &Verdict {
        &found.iter().find(|(k, _)| *k == kind).unwrap().1
    }

    fn is_trouble(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Trouble { .. })
    }

    #[test]
    fn an_occurrence_nobody_took_is_late_once_past_the_limit() {
        let now = at("2026-01-01T12:00:00Z");
        let w = watched(Some("2026-01-01T11:59:00Z"), RunFacts::default());
        let found = judge(&w, all(30, 3, 86_400), now, false);
        let Verdict::Trouble { summary, .. } = verdict(&found, AlertKind::Late) else {
            panic!("late: {found:?}");
        };
        assert!(summary.contains("2026-01-01T11:59:00"), "{summary}");
        let within = judge(&w, all(90, 3, 86_400), now, false);
        assert!(!is_trouble(verdict(&within, AlertKind::Late)));
    }

    #[test]
    fn an_occurrence_waiting_behind_a_run_in_progress_is_late() {
        let now = at("2026-01-01T12:00:00Z");
        let runs = RunFacts {
            oldest_waiting: Some(at("2026-01-01T11:58:00Z")),
            ..RunFacts::default()
        };
        let w = watched(Some("2026-01-01T12:01:00Z"), runs);
        let found = judge(&w, all(60, 3, 86_400), now, false);
        let Verdict::Trouble { summary, .. } = verdict(&found, AlertKind::Late) else {
            panic!("late: {found:?}");
        };
        assert!(
            summary.contains("behind a run still in progress"),
            "{summary}"
        );
    }

    #[test]
    fn failures_in_a_row_reach_the_check_and_a_success_clears_them() {
        let now = at("2026-01-01T12:00:00Z");
        let failing = RunFacts {
            last_success: Some(at("2026-01-01T11:00:00Z")),
            failed_since: 3,
            last_error: Some("HTTP 500".into()),
            oldest_waiting: None,
        };
        let w = watched(Some("2026-01-01T12:01:00Z"), failing.clone());
        let found = judge(&w, all(60, 3, 86_400), now, false);
        assert_eq!(
            verdict(&found, AlertKind::Failing),
            &Verdict::Trouble {
                summary: "3 runs in a row failed (the check allows 3)".into(),
                last_error: Some("HTTP 500".into()),
            }
        );
        let fewer = RunFacts {
            failed_since: 2,
            ..failing
        };
        let w = watched(Some("2026-01-01T12:01:00Z"), fewer);
        let found = judge(&w, all(60, 3, 86_400), now, false);
        assert_eq!(
            verdict(&found, AlertKind::Failing),
            &Verdict::Fine("a run succeeded")
        );
    }

    #[test]
    fn missing_counts_from_the_last_success_or_the_creation() {
        let now = at("2026-01-02T00:00:00Z");
        let never = watched(Some("2026-01-02T00:01:00Z"), RunFacts::default());
        let found = judge(&never, all(60, 3, 3600), now, false);
        assert!(is_trouble(verdict(&found, AlertKind::Missing)));
        let recent = RunFacts {
            last_success: Some(at("2026-01-01T23:30:00Z")),
            ..RunFacts::default()
        };
        let w = watched(Some("2026-01-02T00:01:00Z"), recent);
        let found = judge(&w, all(60, 3, 3600), now, false);
        assert!(!is_trouble(verdict(&found, AlertKind::Missing)));
    }

    #[test]
    fn a_parked_schedule_is_missing_and_a_paused_one_is_not() {
        let now = at("2026-01-02T00:00:00Z");
        let mut w = watched(None, RunFacts::default());
        w.schedule.paused = true;
        w.schedule.paused_reason = Some("target rejected".into());
        let parked = judge(&w, all(60, 3, 3600), now, false);
        let Verdict::Trouble { summary, .. } = verdict(&parked, AlertKind::Missing) else {
            panic!("missing: {parked:?}");
        };
        assert!(
            summary.contains("the engine parked it: target rejected"),
            "{summary}"
        );
        assert!(!is_trouble(verdict(&parked, AlertKind::Late)));
        let paused = judge(&w, all(60, 3, 3600), now, true);
        assert_eq!(
            verdict(&paused, AlertKind::Missing),
            &Verdict::Fine("the schedule was paused by a caller")
        );
    }

    #[test]
    fn a_check_left_unset_finds_nothing() {
        let now = at("2026-01-02T00:00:00Z");
        let w = watched(Some("2026-01-01T00:00:00Z"), RunFacts::default());
        let found = judge(&w, AlertPolicy::default(), now, false);
        assert!(found.iter().all(|(_, v)| !is_trouble(v)), "{found:?}");
    }
}
