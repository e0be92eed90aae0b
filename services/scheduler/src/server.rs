//! The scheduler on [`service_kit::serve`]: the JSON-RPC API (with `rpc.discover`), AutoGPT's
//! routes (`POST /<method>`, `/health_check_async`, see [`crate::autogpt::routes`]) on the same port, and the
//! readiness the engine and the stores decide ([`health`]).

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use jsonrpsee::RpcModule;
use metrics_exporter_prometheus::PrometheusHandle;
use scheduler_api::SchedulerApiServer;
use serde_json::{Map, Value, json};
use service_kit::Shutdown;
use service_kit::calls::{CallRules, ParamErrors};
use service_kit::serve::{Health, Service, alive};
use tokio::net::TcpListener;

use crate::api::RpcHandler;
use crate::app::App;
use crate::autogpt::routes;
use crate::config::Config;
use crate::{console, farm, health, openrpc};

/// The API as a jsonrpsee module: every method of the trait plus `rpc.discover`.
pub fn rpc_module(app: Arc<App>) -> anyhow::Result<RpcModule<()>> {
    service_kit::serve::rpc_module(RpcHandler::new(app).into_rpc(), openrpc::DOCUMENT)
}

/// Serves until `shutdown` is requested.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    config: Config,
    metrics: PrometheusHandle,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let service = service(app, &config, metrics)?;
    service_kit::serve::serve(listener, &config.server, service, shutdown).await
}

/// The scheduler as a service of the stack: its JSON-RPC module and call rules, AutoGPT's
/// routes, the farm's, the console's, its tokens and its probes. `service_kit::serve::router`
/// turns it into the router [`serve`] listens with, which a test can also drive in-process.
pub fn service(
    app: Arc<App>,
    config: &Config,
    metrics: PrometheusHandle,
) -> anyhow::Result<Service<Probes>> {
    let module = rpc_module(app.clone())?;
    let compat_routes = Router::new()
        .route("/health_check_async", get(alive).post(alive))
        .route("/{method}", post(routes::call))
        .with_state(module.clone())
        .merge(farm::routes(app.clone(), config)?)
        .merge(console::routes());
    Ok(Service {
        module,
        // Admin methods are checked by their handlers, so that AutoGPT's routes, which call the
        // module directly, are checked too.
        rules: CallRules {
            param_errors: Some(ParamErrors {
                methods: [
                    scheduler_api::GENERAL_METHODS.as_slice(),
                    scheduler_api::WATCH_METHODS.as_slice(),
                    scheduler_api::FLEET_METHODS.as_slice(),
                ]
                .concat(),
                code: scheduler_api::codes::VALUE_ERROR,
                kind: "ValueError",
            }),
            ..CallRules::default()
        },
        auth: app.auth.clone(),
        routes: compat_routes,
        open_routes: [["/health_check_async"].as_slice(), &console::OPEN_ROUTES].concat(),
        health: Arc::new(Probes(app)),
        metrics,
    })
}

/// Readiness: ready while the engine runs, the database answers and no due work is overdue
/// beyond `engine.max_overdue` (after a database outage the process stays up and resumes
/// firing by itself).
pub struct Probes(Arc<App>);

impl Health for Probes {
    async fn ready(&self) -> Result<Map<String, Value>, String> {
        health::readiness(&self.0).await?;
        let mut fields = Map::new();
        fields.insert("leader".into(), json!(self.0.is_leader()));
        Ok(fields)
    }

    async fn refresh_metrics(&self) {
        // Brings the overdue gauge up to date; readiness itself is `/ready`'s answer.
        let _ = health::readiness(&self.0).await;
    }
}
