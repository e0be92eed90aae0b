//! Who may do what: every access rule of the API, in one place. A rule says whether a call
//! may go on and, when it may not, why ([`Denied`]); each surface words the refusal as its
//! callers expect (AutoGPT's routes keep AutoGPT's words).
//!
//! The rules: a caller acts only for the owners its client allows (`[[auth.clients]] owners`;
//! the admin and `auth.token` act for every owner); a schedule is its owner's; the admin token
//! may act on any; a schedule declared in the configuration (owner `system`) is read-only, but
//! the admin may run or backfill it; a schedule holding a watch's checks changes only through
//! the watch; the runs of a deleted schedule are read by the owner they carry; a watch is its
//! user's. (That no caller makes a schedule for `system` is a check of the request itself,
//! `scheduler_api::NewSchedule`.)

use jobstore::{Schedule, Target};
use jsonrpsee::Extensions;
use scheduler_api::{SYSTEM_OWNER, SchedulerError};
use service_kit::auth::{Caller, Owners};

/// A caller as the rules see it: the owner it acts for, and the client it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) owner: &'a str,
    pub(crate) caller: &'a Caller,
    /// Whether the admin token's rights count (not on AutoGPT's methods, where a caller has
    /// no more rights than the user it names).
    admin: bool,
}

/// The caller a call's extensions carry.
pub(crate) fn caller_of(extensions: &Extensions) -> &Caller {
    Caller::of(extensions)
}

impl<'a> Who<'a> {
    /// The caller of a JSON-RPC call, acting for `owner`.
    pub(crate) fn of(owner: &'a str, extensions: &'a Extensions) -> Self {
        let caller = caller_of(extensions);
        Who {
            owner,
            caller,
            admin: caller.is_admin(),
        }
    }

    /// The caller of a call acting for `owner` with no more rights than the owner's (AutoGPT's
    /// methods), within its client's owners.
    pub(crate) fn owner(owner: &'a str, extensions: &'a Extensions) -> Self {
        Who {
            admin: false,
            ..Who::of(owner, extensions)
        }
    }
}

/// The owners a listing by `caller` is limited to: none when it may see every owner's.
pub(crate) fn listing_scope(caller: &Caller) -> Option<Owners> {
    let owners = caller.owners();
    (!owners.is_all()).then(|| owners.clone())
}

/// The owners a listing by the caller of `extensions` is limited to, once the owner it names
/// (if any) is one it may act for.
pub(crate) fn listing_scope_naming(
    owner: Option<&str>,
    extensions: &Extensions,
) -> Result<Option<Owners>, SchedulerError> {
    let caller = caller_of(extensions);
    if let Some(owner) = owner {
        acting_for(owner, caller).map_err(|_| Denied::out_of_scope(owner, caller))?;
    }
    Ok(listing_scope(caller))
}

/// Whether `caller` may name `owner` in a call (a listing's filter, a new schedule's owner).
pub(crate) fn acting_for(owner: &str, caller: &Caller) -> Result<(), Denied> {
    if caller.may_act_for(owner) {
        Ok(())
    } else {
        Err(Denied::OutOfScope)
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
    /// The caller's client may not act for the owner the call names.
    OutOfScope,
}

/// Whether `who` may do `access` with `schedule`.
pub(crate) fn schedule(schedule: &Schedule, who: Who<'_>, access: Access) -> Result<(), Denied> {
    acting_for(who.owner, who.caller)?;
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
        return acting_for(who.owner, who.caller);
    }
    owner(run_owner, who)
}

/// Whether `who` may act on what `owner` owns (a watch is its user's).
pub(crate) fn owner(owner: &str, who: Who<'_>) -> Result<(), Denied> {
    // What the caller names must be within its client's owners; a non-admin's then acts only
    // for that one owner, an admin's for every owner.
    acting_for(who.owner, who.caller)?;
    if owner == who.owner || who.admin {
        Ok(())
    } else {
        Err(Denied::OtherOwner)
    }
}

impl Denied {
    /// The refusal of a caller naming an owner its client may not act for.
    pub(crate) fn out_of_scope(owner: &str, caller: &Caller) -> SchedulerError {
        SchedulerError::NotAuthorized(format!(
            "client '{}' may not act for owner '{owner}' (its owners are {})",
            caller.name(),
            caller.owners().patterns().join(", ")
        ))
    }

    /// The general API's refusal to `who`, about schedule `id`.
    pub(crate) fn of_schedule(self, id: &str, who: Who<'_>) -> SchedulerError {
        SchedulerError::NotAuthorized(match self {
            Denied::OutOfScope => return Denied::out_of_scope(who.owner, who.caller),
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
    use service_kit::auth::Client;
    use std::sync::Arc;
    use triggers::{TriggerKind, TriggerSpec};

    fn client(admin: bool, owners: &[&str]) -> Caller {
        let owners: Vec<String> = owners.iter().map(|o| o.to_string()).collect();
        Caller::Client(Arc::new(Client {
            name: "c".into(),
            admin,
            owners: Owners::parse(&owners).unwrap(),
        }))
    }

    fn who<'a>(owner: &'a str, caller: &'a Caller) -> Who<'a> {
        Who {
            owner,
            caller,
            admin: caller.is_admin(),
        }
    }

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
            ..Default::default()
        })
    }

    #[test]
    fn a_schedule_is_its_owners_and_the_admins() {
        let s = owned_by("u1", graph());
        let (user, admin) = (client(false, &["*"]), client(true, &[]));
        for access in [Access::Read, Access::Change, Access::Run] {
            assert_eq!(schedule(&s, who("u1", &user), access), Ok(()));
            assert_eq!(
                schedule(&s, who("u2", &user), access),
                Err(Denied::OtherOwner)
            );
            assert_eq!(schedule(&s, who("u2", &admin), access), Ok(()));
        }
    }

    #[test]
    fn a_client_acts_only_for_its_owners() {
        let agnt = client(false, &["agnt", "user-*"]);
        let s = owned_by("user-7", graph());
        assert_eq!(schedule(&s, who("user-7", &agnt), Access::Change), Ok(()));
        let farms = owned_by("farm", graph());
        for access in [Access::Read, Access::Change, Access::Run] {
            assert_eq!(
                schedule(&farms, who("farm", &agnt), access),
                Err(Denied::OutOfScope),
                "naming the owner does not widen the client's"
            );
        }
        assert_eq!(
            owner("farm", who("agnt", &agnt)),
            Err(Denied::OtherOwner),
            "acting for its own owner, it reaches no other"
        );
        assert_eq!(acting_for("farm", &agnt), Err(Denied::OutOfScope));
        assert_eq!(acting_for("user-1", &agnt), Ok(()));
        let scope = listing_scope(&agnt).unwrap();
        assert_eq!(scope.patterns(), ["agnt", "user-*"]);
        assert_eq!(
            listing_scope(&client(true, &["agnt"])),
            None,
            "an admin sees all"
        );
        assert_eq!(listing_scope(&Caller::Anonymous), None);
        let declared = owned_by(SYSTEM_OWNER, graph());
        assert_eq!(
            schedule(&declared, who("agnt", &agnt), Access::Read),
            Ok(())
        );
        assert_eq!(
            schedule(&declared, who("farm", &agnt), Access::Read),
            Err(Denied::OutOfScope)
        );
    }

    #[test]
    fn a_declared_schedule_is_read_by_anyone_and_run_only_by_the_admin() {
        let s = owned_by(SYSTEM_OWNER, graph());
        let (user, admin) = (client(false, &["*"]), client(true, &[]));
        let admin = who("u1", &admin);
        assert_eq!(schedule(&s, who("u1", &user), Access::Read), Ok(()));
        assert_eq!(
            schedule(&s, who("u1", &user), Access::Run),
            Err(Denied::Declared)
        );
        assert_eq!(schedule(&s, admin, Access::Run), Ok(()));
        assert_eq!(schedule(&s, admin, Access::Change), Err(Denied::Declared));
        assert_eq!(runs_of_deleted(SYSTEM_OWNER, who("u1", &user)), Ok(()));
    }

    #[test]
    fn a_watchs_schedule_changes_only_through_the_watch() {
        let check =
            Check::parse("poll_url", &serde_json::json!({"url": "http://x.test/"})).unwrap();
        let s = owned_by("u1", Target::Watch(WatchTarget { check }));
        let (user, admin) = (client(false, &["*"]), client(true, &[]));
        let admin = who("u1", &admin);
        assert_eq!(schedule(&s, who("u1", &user), Access::Read), Ok(()));
        assert_eq!(
            schedule(&s, admin, Access::Change),
            Err(Denied::WatchChecks)
        );
        assert_eq!(schedule(&s, admin, Access::Run), Err(Denied::WatchChecks));
    }
}
