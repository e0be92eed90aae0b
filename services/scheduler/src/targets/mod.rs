//! What each target kind does, one module per kind behind one trait ([`Kind`]): its check
//! against the configuration, whether its runs share batch requests, how a run is sent, how a
//! run that lasts is followed until it ends, and what its outcome keeps. The kinds' data are
//! `scheduler_api`'s structs ([`scheduler_api::Target`]); [`kind_of`] is the registry that
//! maps each to its behaviour, and the only `match` on target kinds outside their own modules.
//!
//! Adding a kind: its data struct in `scheduler-api/src/target/`, a module here implementing
//! [`Kind`] for it, a line in [`kind_of`].

mod device_job;
mod graph_execution;
mod http;
mod redis_publish;
mod rpc;
mod system_task;
mod watch;

pub use device_job::DeviceRunnerConfig;
pub(crate) use device_job::DeviceRunners;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use jobstore::{RunNote, RunOutcome, RunRecord, Target};
use scheduler_api::CheckResult;
use serde_json::Value;

use crate::autogpt::tasks::TaskRunner;
use crate::endpoint::{DispatchError, Endpoint};
use crate::outbound::Outbound;
use crate::watches::Watches;

/// What a target kind does.
#[async_trait]
pub(crate) trait Kind: Send + Sync {
    /// Checks the target against the configuration (the services it names are configured),
    /// after its own fields were checked (`Target::validate`). The one check for the API, the
    /// declared schedules and the farm's routes.
    fn check(&self, _configured: &Configured) -> Result<(), String> {
        Ok(())
    }

    /// What an API caller waits for beyond [`Kind::check`]: the judgement of the service the
    /// target names, where it can give one (a device runner's `check_job`).
    async fn admit(&self, _targets: &Targets) -> Result<(), String> {
        Ok(())
    }

    /// The batch request a run may share, as its key and the most calls one request carries;
    /// `None` for a run sent alone.
    fn batch(&self, _targets: &Targets) -> Option<(String, usize)> {
        None
    }

    /// The JSON-RPC call a run makes, for a batch request ([`Kind::batch`]).
    fn call<'a>(
        &'a self,
        _run: &RunRecord,
        _targets: &'a Targets,
    ) -> Result<Call<'a>, DispatchError> {
        Err(DispatchError::Rejected("this target is not batched".into()))
    }

    /// What a call's answer in a batch request comes to, as [`Kind::send`] would have
    /// returned it; `None` sends the run again alone, with its retries. By default the answer
    /// is the result, and a call that failed in its batch is sent again alone.
    fn answered(
        &self,
        _run: &RunRecord,
        answer: Result<Value, DispatchError>,
    ) -> Option<Result<Value, DispatchError>> {
        answer.ok().map(Ok)
    }

    /// Sends one run (one attempt), returning the target's answer.
    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError>;

    /// What a sent run comes to once the target is done with it: for a run that lasts beyond
    /// its send (a device job), its end, waited for without a dispatch slot.
    async fn follow(&self, _run: &RunRecord, followed: Followed<'_>) -> Ended {
        Ended::from(followed.outcome)
    }

    /// Whether the ledger keeps the target's answer (a short summary) in the run's detail.
    fn keeps_answer(&self) -> bool {
        true
    }
}

/// The behaviour of `target`'s kind: the registry, one line per kind.
pub(crate) fn kind_of(target: &Target) -> &dyn Kind {
    match target {
        Target::GraphExecution(data) => data,
        Target::SystemTask(data) => data,
        Target::Rpc(data) => data,
        Target::Http(data) => data,
        Target::RedisPublish(data) => data,
        Target::DeviceJob(data) => data,
        Target::Watch(data) => data,
    }
}

/// Checks a target's fields and then its kind's [`Kind::check`], for a caller that knows the
/// configuration.
pub(crate) fn check(
    target: &Target,
    origin: scheduler_api::Origin,
    configured: &Configured,
) -> Result<(), String> {
    target.validate(origin)?;
    kind_of(target).check(configured)
}

/// What the targets reach, built once from the configuration.
pub struct Targets {
    /// The execution service of `graph_execution` targets.
    pub executor: Endpoint,
    /// The services of `system_task` targets.
    pub tasks: TaskRunner,
    /// The endpoints and the Redis of `rpc`, `http` and `redis_publish` targets.
    pub outbound: Arc<Outbound>,
    /// The device runners of `device_job` targets.
    pub devices: DeviceRunners,
    /// The checks and completion sends of watches.
    pub watches: Arc<Watches>,
    /// The names the configuration gives, for the checks.
    pub configured: Configured,
}

/// The names of what the configuration offers targets: what [`Kind::check`] looks up.
#[derive(Debug, Clone, Default)]
pub struct Configured {
    /// `[endpoints.<name>]`.
    pub endpoints: BTreeSet<String>,
    /// `[device_runners.<name>]`.
    pub runners: BTreeSet<String>,
    /// Whether `redis.url` is set.
    pub redis: bool,
}

impl Configured {
    /// Refuses `name` unless `section` of the configuration names it, listing what it does.
    fn lookup(
        field: &str,
        name: &str,
        section: &str,
        known: &BTreeSet<String>,
    ) -> Result<(), String> {
        if known.contains(name) {
            return Ok(());
        }
        if known.is_empty() {
            return Err(format!(
                "{field} '{name}' is not configured: the scheduler has no [{section}]"
            ));
        }
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        Err(format!(
            "{field} '{name}' is not configured: configured {section} are {}",
            known.join(", ")
        ))
    }
}

/// One JSON-RPC call of a run: the service, the method and its params.
pub(crate) struct Call<'a> {
    pub service: &'a Endpoint,
    pub method: &'a str,
    pub params: Value,
}

impl Call<'_> {
    /// Makes the call on its own.
    pub(crate) async fn send(self) -> Result<Value, DispatchError> {
        self.service.call(self.method, self.params).await
    }
}

/// Where a run's progress is sent to be noted in the ledger, with the others noted meanwhile
/// (the engine's notes writer).
pub(crate) type Notes = tokio::sync::mpsc::UnboundedSender<(jobstore::StoreName, RunNote)>;

/// What [`Kind::follow`] has to go on: the targets, where to note progress in the ledger, and
/// the dispatch's outcome and answer.
pub(crate) struct Followed<'a> {
    pub targets: &'a Targets,
    pub notes: &'a Notes,
    pub outcome: RunOutcome,
    pub answer: Option<Value>,
}

/// How a run ended, for the ledger: its outcome, and for a watch's attempt what its check
/// found (recorded with the attempt's count in the same transaction).
pub(crate) struct Ended {
    pub outcome: RunOutcome,
    pub check: Option<CheckResult>,
}

impl From<RunOutcome> for Ended {
    fn from(outcome: RunOutcome) -> Self {
        Ended {
            outcome,
            check: None,
        }
    }
}

/// A run's scheduled time as the calling targets send it (RFC 3339, UTC, fractions only when
/// it has them).
fn scheduled_time(run: &RunRecord) -> String {
    run.scheduled_time
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
