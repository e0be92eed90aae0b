//! Declared schedules: `[[schedules]]` in the configuration and the system tasks, stored as
//! schedules owned by `system`. [`sync`] makes the stores hold exactly what is declared at
//! start: it adds what is missing, replaces what changed (keeping the next run when the trigger
//! did not change) and removes system schedules no longer declared. Running it again changes
//! nothing, so restarts and replicas never duplicate a declared schedule.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SubsecRound, Utc};
use jobstore::{JobStore, ListFilter, Policy, Schedule, StoreError, StoreName, Target};
use scheduler_api::{Origin, SYSTEM_OWNER};
use serde::{Deserialize, Serialize};
use triggers::{TriggerKind, TriggerSpec};

use crate::audit::{self, Actor};
use crate::autogpt::tasks::{DeclaredTask, OWNER, SystemTasksConfig};
use crate::stores::Stores;
use crate::targets::{self, Configured};

/// What declarations are checked against: the rest of the configuration.
pub(crate) struct Checks {
    /// The names the configuration offers targets.
    pub configured: Configured,
    /// Ids already declared elsewhere (the system tasks').
    pub taken: Vec<String>,
    /// The calendars triggers may name.
    pub calendars: triggers::Calendars,
}

/// One `[[schedules]]` entry. Its target may name a configured endpoint or, unlike the API, a
/// raw `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDeclaration {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub trigger: TriggerSpec,
    pub target: Target,
    #[serde(default)]
    pub policy: Policy,
    /// Default `execution`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobstore: Option<StoreName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl ScheduleDeclaration {
    /// The schedule this declaration stands for, as registered at `now`.
    pub fn schedule(&self, now: DateTime<Utc>) -> Declared {
        declared(
            self.jobstore.unwrap_or(StoreName::Execution),
            Schedule {
                id: self.id.clone(),
                name: self.name.clone().unwrap_or_else(|| self.id.clone()),
                owner: SYSTEM_OWNER.to_string(),
                trigger: self.trigger.clone(),
                target: self.target.clone(),
                policy: self.policy,
                tags: self.tags.clone(),
                paused: false,
                paused_reason: None,
                next_run_at: None,
                created_at: now,
            },
            now,
        )
    }

    /// Checks the declaration against the rest of the configuration, naming what is wrong.
    fn validate(&self, context: &Checks) -> anyhow::Result<()> {
        if self.id.trim().is_empty() {
            bail!("an id must not be empty");
        }
        self.trigger
            .clone()
            .anchored(Utc::now())
            .compile_with(Some(&self.id), &context.calendars)
            .context("trigger")?;
        targets::check(&self.target, Origin::Configuration, &context.configured)
            .map_err(anyhow::Error::msg)?;
        self.policy.validate().map_err(anyhow::Error::msg)
    }
}

/// Makes the stores hold exactly the declared schedules: the runnable, triggered system tasks
/// and the `[[schedules]]` of the configuration, through one mechanism ([`sync`]).
/// Returns every task declaration with its state, for `get_registry` and `execute_<task>`.
pub(crate) async fn register(
    stores: &Stores,
    config: &SystemTasksConfig,
    schedules: &[ScheduleDeclaration],
    now: DateTime<Utc>,
) -> Result<Vec<DeclaredTask>, StoreError> {
    let mut tasks = Vec::new();
    let mut wanted = Vec::new();
    for declaration in config.declarations() {
        // The configuration was validated at load, so the trigger compiles.
        let trigger = declaration.trigger(now).ok().flatten();
        let mut task = DeclaredTask {
            declaration,
            trigger,
            disabled: None,
        };
        let id = task.declaration.id.clone();
        if let Err(key) = config.service_url(task.declaration.task) {
            tracing::warn!(task = %id, "system task not registered: {key} is not set");
            task.disabled = Some(format!("{key} is not set"));
        } else if stores.get(task.declaration.jobstore).is_none() {
            task.disabled = Some(format!(
                "jobstore '{}' is not served",
                task.declaration.jobstore.as_str()
            ));
        } else if let Some(trigger) = &task.trigger {
            let schedule = Schedule {
                id: id.clone(),
                name: id.clone(),
                owner: OWNER.to_string(),
                trigger: trigger.clone(),
                target: task.target(),
                policy: Policy::default(),
                tags: Vec::new(),
                paused: false,
                paused_reason: None,
                next_run_at: None,
                created_at: now,
            };
            wanted.push(declared(task.declaration.jobstore, schedule, now));
        }
        tasks.push(task);
    }
    wanted.extend(
        schedules
            .iter()
            .map(|declaration| declaration.schedule(now)),
    );
    let refused = sync(stores, &wanted).await?;
    for task in &mut tasks {
        if let Some(reason) = refused.get(&task.declaration.id) {
            task.disabled = Some(reason.clone());
        }
    }
    Ok(tasks)
}

/// Checks every `[[schedules]]` entry, and that no id is declared twice (system tasks
/// included).
pub(crate) fn validate(schedules: &[ScheduleDeclaration], context: &Checks) -> anyhow::Result<()> {
    let mut seen: HashSet<String> = context.taken.iter().cloned().collect();
    for declaration in schedules {
        declaration
            .validate(context)
            .with_context(|| format!("schedules: '{}'", declaration.id))?;
        if !seen.insert(declaration.id.clone()) {
            bail!(
                "schedules: the id '{}' is declared twice (or is a system task's)",
                declaration.id
            );
        }
    }
    Ok(())
}

/// A schedule to hold in a store because the configuration declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub jobstore: StoreName,
    /// The trigger as declared: an interval may have no anchor.
    pub trigger: TriggerSpec,
    /// As registered now: anchored, with its next run.
    pub schedule: Schedule,
}

/// A declared schedule anchored and with its next run as of `now`.
pub(crate) fn declared(
    jobstore: StoreName,
    mut schedule: Schedule,
    now: DateTime<Utc>,
) -> Declared {
    let now = now.trunc_subsecs(0);
    let trigger = schedule.trigger.clone();
    schedule.trigger = trigger.clone().anchored(now);
    schedule.next_run_at = schedule
        .trigger
        .compile_for(&schedule.id)
        .ok()
        .and_then(|trigger| trigger.next_after(now));
    Declared {
        jobstore,
        trigger,
        schedule,
    }
}

/// Makes the stores hold exactly `wanted`. Returns, by id, why a declared schedule could not
/// be registered (its jobstore is not served, or a user's schedule has its id).
pub(crate) async fn sync(
    stores: &Stores,
    wanted: &[Declared],
) -> Result<HashMap<String, String>, StoreError> {
    let mut refused = HashMap::new();
    let mut keep = HashSet::new();
    for declared in wanted {
        let id = &declared.schedule.id;
        let Some(store) = stores.get(declared.jobstore) else {
            let reason = format!("jobstore '{}' is not served", declared.jobstore.as_str());
            refused.insert(id.clone(), reason);
            continue;
        };
        match ensure(stores, store, declared).await? {
            Some(reason) => {
                tracing::error!(schedule_id = %id, %reason, "declared schedule not registered");
                refused.insert(id.clone(), reason);
            }
            None => {
                keep.insert(id.clone());
            }
        }
    }
    remove_undeclared(stores, &keep).await?;
    Ok(refused)
}

/// Adds or replaces one declared schedule; says why it cannot, or `None` once it is there.
async fn ensure(
    stores: &Stores,
    store: &Arc<dyn JobStore>,
    declared: &Declared,
) -> Result<Option<String>, StoreError> {
    let config = Actor::product("config");
    let jobstore = store.jobstore();
    let wanted = &declared.schedule;
    let id = &wanted.id;
    let Some(existing) = store.get(id).await? else {
        return match store.insert(wanted).await {
            Ok(()) => {
                audit::schedule(stores, &config, "sync", jobstore, None, Some(wanted)).await;
                tracing::info!(schedule_id = %id, jobstore = store.jobstore().as_str(), next_run_at = ?wanted.next_run_at, "declared schedule registered");
                Ok(None)
            }
            // Another replica registered it at the same moment.
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(error) => Err(error),
        };
    };
    if existing.owner != SYSTEM_OWNER {
        return Ok(Some(format!("the id '{id}' is taken by a user's schedule")));
    }
    let same_trigger = fires_alike(&existing.trigger, &declared.trigger);
    // A schedule the engine parked (paused, or without a next run) is renewed.
    let healthy = !existing.paused && existing.next_run_at.is_some();
    if same_trigger
        && healthy
        && existing.target == wanted.target
        && existing.policy == wanted.policy
        && existing.name == wanted.name
        && existing.tags == wanted.tags
    {
        tracing::debug!(schedule_id = %id, next_run_at = ?existing.next_run_at, "declared schedule unchanged");
        return Ok(None);
    }
    let mut replacement = wanted.clone();
    if same_trigger && healthy {
        // The same trigger keeps its anchor and its next run.
        replacement.trigger = existing.trigger.clone();
        replacement.next_run_at = existing.next_run_at;
    }
    let stored = store.replace(&replacement, same_trigger && healthy).await?;
    let after = stored.as_ref();
    audit::schedule(stores, &config, "sync", jobstore, Some(&existing), after).await;
    tracing::info!(schedule_id = %id, next_run_at = ?replacement.next_run_at, kept_next_run = same_trigger && healthy, "declared schedule changed; replaced in place");
    Ok(None)
}

/// Two triggers fire alike: intervals declared without an anchor compare by period and
/// window, since each registration anchors them at its own start.
fn fires_alike(stored: &TriggerSpec, declared: &TriggerSpec) -> bool {
    match (&stored.kind, &declared.kind) {
        (
            TriggerKind::Interval { every_secs: a, .. },
            TriggerKind::Interval {
                every_secs: b,
                anchor: None,
            },
        ) => a == b && stored.start_at == declared.start_at && stored.end_at == declared.end_at,
        _ => stored == declared,
    }
}

async fn remove_undeclared(stores: &Stores, keep: &HashSet<String>) -> Result<(), StoreError> {
    let filter = ListFilter {
        owner: Some(SYSTEM_OWNER.to_string()),
        include_inactive: true,
        ..ListFilter::default()
    };
    for store in stores.all() {
        for schedule in store.list(&filter).await? {
            if !keep.contains(&schedule.id) {
                if let Some(deleted) = store.delete(&schedule.id).await? {
                    let config = Actor::product("config");
                    let jobstore = store.jobstore();
                    audit::schedule(stores, &config, "sync", jobstore, Some(&deleted), None).await;
                }
                tracing::info!(schedule_id = %schedule.id, jobstore = store.jobstore().as_str(), "no longer declared (or disabled); its schedule is removed, its runs kept");
            }
        }
    }
    Ok(())
}
