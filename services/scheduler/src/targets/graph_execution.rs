//! The `graph_execution` target: AutoGPT's `add_graph_execution` on the execution service, for
//! the schedule's owner, in batch requests when `executor.batch` is over 1 and
//! the service takes them.

use async_trait::async_trait;
use chrono::SecondsFormat;
use jobstore::RunRecord;
use scheduler_api::GraphExecutionTarget;
use serde_json::{Value, json};

use super::{Call, Kind, Targets};
use crate::endpoint::DispatchError;

#[async_trait]
impl Kind for GraphExecutionTarget {
    fn batch(&self, targets: &Targets) -> Option<(String, usize)> {
        let size = targets.executor.batch()?;
        Some(("executor".to_string(), size))
    }

    fn call<'a>(
        &'a self,
        run: &RunRecord,
        targets: &'a Targets,
    ) -> Result<Call<'a>, DispatchError> {
        Ok(Call {
            service: &targets.executor,
            method: "add_graph_execution",
            params: params(self, run),
        })
    }

    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        self.call(run, targets)?.send().await
    }

    /// AutoGPT's ledger keeps nothing of a graph execution's answer.
    fn keeps_answer(&self) -> bool {
        false
    }
}

/// The parameters of `add_graph_execution` for a run, as AutoGPT's scheduler sends them
/// (the tenancy, `trigger` and `trigger_ref`). The ledger key goes along as the idempotency
/// key, so the execution service can drop a repeat after a crash between dispatch and
/// recording.
fn params(graph: &GraphExecutionTarget, run: &RunRecord) -> Value {
    json!({
        "user_id": run.owner,
        "graph_id": graph.graph_id,
        "graph_version": graph.graph_version,
        "inputs": graph.input_data,
        "graph_credentials_inputs": graph.input_credentials,
        "organization_id": graph.organization_id.as_deref().unwrap_or_default(),
        "team_id": graph.team_id,
        "expert_id": graph.expert_id,
        "trigger": "SCHEDULE",
        "trigger_ref": run.schedule_id,
        "schedule_id": run.schedule_id,
        "scheduled_time": run.scheduled_time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "idempotency_key": run.idempotency_key(),
    })
}
