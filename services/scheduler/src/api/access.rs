//! Who may do what: every access rule of the API, in one place. A rule says whether a call
//! may go on and, when it may not, why ([`Denied`]); each surface words the refusal as its
//! callers expect (AutoGPT's routes keep AutoGPT's words).
//!
//! The rules: a schedule is its owner's; the admin token may act on any; a schedule declared
//! in the configuration (owner `system`) is read-only, but the admin may run or backfill it;
//! a schedule holding a watch's checks changes only through the watch; the runs of a deleted
//! schedule are read by the owner they carry; a watch is its user's. (That no caller makes a
//! schedule for `system` is a check of the request itself, `scheduler_api::NewSchedule`.)

use jobstore::{Schedule, Target};
use jsonrpsee::Extensions;
use scheduler_api::{SYSTEM_OWNER, SchedulerError};
use service_kit::auth::Caller;

/// A caller as the rules see it: the owner it acts for, and whether it holds the admin token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) owner: &'a str,
    pub(crate) admin: bool,
}

impl<'a> Who<'a> {
    /// The caller of a JSON-RPC call, acting for `owner`.
    pub(crate) fn of(owner: &'a str, extensions: &Extensions) -> Self {
        Who {
            owner,
            admin: extensions.get::<Caller>() == Some(&Caller::Admin),
        }
    }

    /// A caller acting for `owner` with no more rights than the owner's (AutoGPT's routes).
    pub(crate) fn owner(owner: &'a str) -> Self {
        Who {
            owner,
            admin: false,
        }
    }
}

/// What a call does with a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    /// Change it: never a declared schedule, nor a watch's.
    Change,
    /// Run it now or backfill it: a declared schedule only with the admin token.
    Run,
}

/// Why a call may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The schedule holds a watch's checks.
    WatchChecks,
    /// The schedule is declared in the configuration.
    Declared,
    /// It belongs to another owner.
    OtherOwner,
}

/// Whether `who` may do `access` with `schedule`.
pub(crate) fn schedule(schedule: &Schedule, who: Who<'_>, access: Access) -> Result<(), Denied> {
    if matches!(schedule.target, Target::Watch(_)) && access != Access::Read {
        return Err(Denied::WatchChecks);
    }
    if schedule.owner == SYSTEM_OWNER {
        return match access {
            Access::Read => Ok(()),
            Access::Run if who.admin => Ok(()),
            _ => Err(Denied::Declared),
        };
    }
    owner(&schedule.owner, who)
}

/// Whether `who` may read the runs a deleted schedule left, which carry their owner: as for a
/// schedule still there, a declared one's are anyone's.
pub(crate) fn runs_of_deleted(run_owner: &str, who: Who<'_>) -> Result<(), Denied> {
    if run_owner == SYSTEM_OWNER {
        return Ok(());
    }
    owner(run_owner, who)
}

/// Whether `who` may act on what `owner` owns (a watch is its user's).
pub(crate) fn owner(owner: &str, who: Who<'_>) -> Result<(), Denied> {
    if owner == who.owner || who.admin {
        Ok(())
    } else {
        Err(Denied::OtherOwner)
    }
}

impl Denied {
    /// The general API's refusal, about schedule `id`.
    pub(crate) fn of_schedule(self, id: &str) -> SchedulerError {
        SchedulerError::NotAuthorized(match self {
            Denied::WatchChecks => {
                format!("schedule '{id}' holds the checks of a watch: cancel it with cancel_watch")
            }
            Denied::Declared => format!(
                "schedule '{id}' is declared in the configuration and read-only through the API"
            ),
            Denied::OtherOwner => format!("schedule '{id}' belongs to another owner"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobstore::{GraphExecutionTarget, Policy, WatchTarget};
    use scheduler_api::Check;
    use triggers::{TriggerKind, TriggerSpec};

    fn owned_by(owner: &str, target: Target) -> Schedule {
        Schedule {
            id: "s".into(),
            name: "s".into(),
            owner: owner.into(),
            trigger: TriggerSpec::from(TriggerKind::Cron {
                expression: "* * * * *".into(),
                timezone: "UTC".into(),
            }),
            target,
            policy: Policy::default(),
            tags: Vec::new(),
            paused: false,
            paused_reason: None,
            next_run_at: None,
            created_at: chrono::Utc::now(),
        }
    }

    fn graph() -> Target {
        Target::GraphExecution(GraphExecutionTarget {
            graph_id: "g".into(),
            graph_version: 1,
            input_data: serde_json::json!({}),
            input_credentials: serde_json::json!({}),
        })
    }

    #[test]
    fn a_schedule_is_its_owners_and_the_admins() {
        let s = owned_by("u1", graph());
        for access in [Access::Read, Access::Change, Access::Run] {
            assert_eq!(schedule(&s, Who::owner("u1"), access), Ok(()));
            assert_eq!(
                schedule(&s, Who::owner("u2"), access),
                Err(Denied::OtherOwner)
            );
            let admin = Who {
                owner: "u2",
                admin: true,
            };
            assert_eq!(schedule(&s, admin, access), Ok(()));
        }
    }

    #[test]
    fn a_declared_schedule_is_read_by_anyone_and_run_only_by_the_admin() {
        let s = owned_by(SYSTEM_OWNER, graph());
        let admin = Who {
            owner: "u1",
            admin: true,
        };
        assert_eq!(schedule(&s, Who::owner("u1"), Access::Read), Ok(()));
        assert_eq!(
            schedule(&s, Who::owner("u1"), Access::Run),
            Err(Denied::Declared)
        );
        assert_eq!(schedule(&s, admin, Access::Run), Ok(()));
        assert_eq!(schedule(&s, admin, Access::Change), Err(Denied::Declared));
        assert_eq!(runs_of_deleted(SYSTEM_OWNER, Who::owner("u1")), Ok(()));
    }

    #[test]
    fn a_watchs_schedule_changes_only_through_the_watch() {
        let check =
            Check::parse("poll_url", &serde_json::json!({"url": "http://x.test/"})).unwrap();
        let s = owned_by("u1", Target::Watch(WatchTarget { check }));
        let admin = Who {
            owner: "u1",
            admin: true,
        };
        assert_eq!(schedule(&s, Who::owner("u1"), Access::Read), Ok(()));
        assert_eq!(
            schedule(&s, admin, Access::Change),
            Err(Denied::WatchChecks)
        );
        assert_eq!(schedule(&s, admin, Access::Run), Err(Denied::WatchChecks));
    }
}
