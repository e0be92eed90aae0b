//! The device runner on [`service_kit::serve`]: its API, the rules its calls follow (every
//! method but `health_check` needs the token, `kill_job`, `restart_run`, `quarantine_device`
//! and `release_device` the admin token,
//! log subscriptions only over WebSocket), readiness (the database answers) and the gauges
//! brought up to date for each scrape.

use std::sync::Arc;
use std::time::Duration;

use device_runner_api::DeviceRunnerApiServer;
use jsonrpsee::RpcModule;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value};
use service_kit::Shutdown;
use service_kit::auth::Auth;
use service_kit::calls::CallRules;
use service_kit::serve::{Health, Service};
use service_kit::subscriptions::Accepting;
use tokio::net::TcpListener;

use crate::rpc::RpcHandler;
use crate::state::RunnerState;
use crate::telemetry;

/// The OpenRPC document, embedded in the binary and served by `rpc.discover`.
pub const OPENRPC: &str = include_str!("../../../proto-docs/device-runner.openrpc.json");

/// How long the database may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The API as a jsonrpsee module: every method of the trait plus `rpc.discover`.
pub fn rpc_module(state: Arc<RunnerState>) -> anyhow::Result<RpcModule<()>> {
    service_kit::serve::rpc_module(RpcHandler::new(state).into_rpc(), OPENRPC)
}

/// What every call is checked against.
pub fn call_rules(accepting: Accepting) -> CallRules {
    CallRules {
        open_methods: vec!["health_check"],
        admin_methods: vec![
            "kill_job",
            "restart_run",
            "quarantine_device",
            "release_device",
        ],
        websocket_only: vec!["subscribe_logs", "unsubscribe_logs"],
        named_unsubscribe: vec!["unsubscribe_logs"],
        accepting,
        param_errors: None,
    }
}

/// Serves until `shutdown` is requested.
pub async fn serve(
    listener: TcpListener,
    state: Arc<RunnerState>,
    metrics: PrometheusHandle,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let service = Service {
        module: rpc_module(state.clone())?,
        rules: call_rules(state.accepting.clone()),
        auth: Auth::new(&state.config.auth)?,
        routes: axum::Router::new(),
        open_routes: Vec::new(),
        metrics,
        health: Arc::new(Probes(state.clone())),
    };
    let settings = state.config.server.clone();
    service_kit::serve::serve(listener, &settings, service, shutdown).await
}

struct Probes(Arc<RunnerState>);

impl Health for Probes {
    async fn ready(&self) -> Result<Map<String, Value>, String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.0.store.ping()).await {
            Ok(Ok(())) => Ok(Map::new()),
            Ok(Err(error)) => Err(format!("the database does not answer: {error}")),
            Err(_) => Err(format!(
                "the database did not answer within {PROBE_TIMEOUT:?}"
            )),
        }
    }

    async fn refresh_metrics(&self) {
        let pending = match self.0.store.pending_counts().await {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(%error, "cannot count the queues for /metrics");
                return;
            }
        };
        let devices = self.0.devices.read().unwrap_or_else(|e| e.into_inner());
        for (serial, entry) in devices.iter() {
            let waiting = pending
                .iter()
                .find(|(device, _)| device == serial)
                .map_or(0, |(_, count)| *count);
            let running = entry
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .jobs
                .len();
            telemetry::queue(serial, waiting.max(0) as usize, running);
        }
    }
}
