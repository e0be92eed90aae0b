//! The `rpc` target: a JSON-RPC 2.0 call on a configured endpoint (or, in a declared
//! schedule, a raw URL), its params carrying the run's `idempotency_key` and `scheduled_time`;
//! in batch requests when the endpoint's `batch` is over 1.

use async_trait::async_trait;
use jobstore::RunRecord;
use scheduler_api::RpcTarget;
use serde_json::Value;

use super::{Call, Configured, Kind, Targets, scheduled_time};
use crate::endpoint::{DispatchError, Endpoint};

#[async_trait]
impl Kind for RpcTarget {
    fn check(&self, configured: &Configured) -> Result<(), String> {
        match &self.endpoint {
            Some(name) => {
                Configured::lookup("target.endpoint", name, "endpoints", &configured.endpoints)
            }
            None => Ok(()),
        }
    }

    fn batch(&self, targets: &Targets) -> Option<(String, usize)> {
        let name = self.endpoint.as_ref()?;
        let size = targets.outbound.rpc_service(name).ok()?.batch()?;
        Some((format!("endpoint {name}"), size))
    }

    fn call<'a>(
        &'a self,
        run: &RunRecord,
        targets: &'a Targets,
    ) -> Result<Call<'a>, DispatchError> {
        let name = self
            .endpoint
            .as_deref()
            .ok_or_else(|| DispatchError::Rejected("a raw url's call is not batched".into()))?;
        Ok(Call {
            service: targets.outbound.rpc_service(name)?,
            method: &self.method,
            params: params(self, run),
        })
    }

    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        if self.endpoint.is_some() {
            return self.call(run, targets)?.send().await;
        }
        let address = targets.outbound.address(None, self.url.as_deref())?;
        let raw = Endpoint::new(address.http.clone(), address.service, address.url);
        raw.call(&self.method, params(self, run)).await
    }
}

/// The target's params with the run's `idempotency_key` and `scheduled_time`.
fn params(rpc: &RpcTarget, run: &RunRecord) -> Value {
    let mut params = rpc.params.clone();
    params.insert("idempotency_key".into(), run.idempotency_key().into());
    params.insert("scheduled_time".into(), scheduled_time(run).into());
    Value::Object(params)
}
