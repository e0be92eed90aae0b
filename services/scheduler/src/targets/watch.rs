//! The `watch` target: one attempt of a watch's check ([`crate::watches`]). Its run lasts until
//! the check has answered, and its end records what the check found with the attempt.

use async_trait::async_trait;
use jobstore::{RunOutcome, RunRecord, RunStatus};
use scheduler_api::{Check, CheckResult, WatchTarget};
use serde_json::Value;

use super::{Call, Ended, Followed, Kind, Targets};
use crate::endpoint::DispatchError;
use crate::watches;

#[async_trait]
impl Kind for WatchTarget {
    /// A module's checks due together share its batch requests.
    fn batch(&self, targets: &Targets) -> Option<(String, usize)> {
        let Check::PollModule { module, .. } = &self.check else {
            return None;
        };
        let size = targets.watches.module(module).ok()?.batch()?;
        Some((format!("module {module}"), size))
    }

    fn call<'a>(
        &'a self,
        _run: &RunRecord,
        targets: &'a Targets,
    ) -> Result<Call<'a>, DispatchError> {
        let Check::PollModule {
            module, tool, args, ..
        } = &self.check
        else {
            return Err(DispatchError::Rejected(
                "only a module's check is batched".into(),
            ));
        };
        let service = targets
            .watches
            .module(module)
            .map_err(DispatchError::Rejected)?;
        Ok(Call {
            service,
            method: tool,
            params: Value::Object(args.clone()),
        })
    }

    /// A tool's answer is judged as the check alone judges it; a refusal is a check that
    /// could not be made. A module that could not be reached is checked again alone.
    fn answered(
        &self,
        run: &RunRecord,
        answer: Result<Value, DispatchError>,
    ) -> Option<Result<Value, DispatchError>> {
        let Check::PollModule {
            success_field,
            success_values,
            ..
        } = &self.check
        else {
            return answer.ok().map(Ok);
        };
        let made = match answer {
            Ok(result) => Ok(watches::judged(&result, success_field, success_values)),
            Err(DispatchError::Rejected(error)) => Err(error),
            Err(DispatchError::Unreachable(_)) => return None,
        };
        let result = watches::found(run, made);
        Some(
            serde_json::to_value(result)
                .map_err(|error| DispatchError::Rejected(error.to_string())),
        )
    }

    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        let result = targets.watches.check(run, &self.check).await;
        serde_json::to_value(result).map_err(|error| DispatchError::Rejected(error.to_string()))
    }

    async fn follow(&self, run: &RunRecord, followed: Followed<'_>) -> Ended {
        let Some(answer) = followed.answer else {
            return Ended::from(followed.outcome);
        };
        match serde_json::from_value::<CheckResult>(answer) {
            Ok(check) => Ended {
                outcome: watches::ledger_outcome(run, &check),
                check: Some(check),
            },
            Err(error) => Ended::from(RunOutcome {
                status: RunStatus::Failed,
                detail: Some(format!("the check's result is unreadable: {error}")),
                ..followed.outcome
            }),
        }
    }
}
