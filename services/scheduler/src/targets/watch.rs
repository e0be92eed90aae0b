//! The `watch` target: one attempt of a watch's check ([`crate::watches`]). Its run lasts until
//! the check has answered, and its end records what the check found with the attempt.

use async_trait::async_trait;
use jobstore::{RunOutcome, RunRecord, RunStatus};
use scheduler_api::{CheckResult, WatchTarget};
use serde_json::Value;

use super::{Ended, Followed, Kind, Targets};
use crate::endpoint::DispatchError;
use crate::watches;

#[async_trait]
impl Kind for WatchTarget {
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
