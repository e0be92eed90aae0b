//! The serving stack: one port for JSON-RPC over HTTP POST and WebSocket at `/`, the probes
//! (`/health_check`, `/ready`), `/metrics`, and whatever routes the service adds, served
//! through axum behind the body-size limit and the token check.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router, middleware};
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{
    RandomStringIdProvider, Server, ServerConfig as RpcConfig, ServerHandle, TowerServiceBuilder,
    stop_channel,
};
use jsonrpsee::{Methods, RpcModule};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::auth::{self, Access, Auth};
use crate::body_limit;
use crate::calls::{CallRules, CallsLayer, OverHttp};
use crate::config::ServerConfig;
use crate::request_ids::{self, Prepared};
use crate::shutdown::Shutdown;

/// Routes open to everyone, whatever the service adds.
pub const PROBES: [&str; 2] = ["/health_check", "/ready"];

type RpcService = jsonrpsee::server::TowerService<
    tower::layer::util::Stack<CallsLayer, tower::layer::util::Identity>,
    tower::layer::util::Identity,
>;

/// A service's answers to the probes.
pub trait Health: Send + Sync + 'static {
    /// Ready (with fields to add to the answer, such as `leader`), or why not.
    fn ready(&self) -> impl Future<Output = Result<Map<String, Value>, String>> + Send;

    /// Brings gauges up to date before `/metrics` renders them.
    fn refresh_metrics(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Everything a service serves.
pub struct Service<H> {
    /// The API, with `rpc.discover` (see [`rpc_module`]).
    pub module: RpcModule<()>,
    pub rules: CallRules,
    pub auth: Auth,
    /// Routes beyond the stack's own, behind the same limit and token check.
    pub routes: Router,
    /// Paths of `routes` open to everyone, beyond [`PROBES`].
    pub open_routes: Vec<&'static str>,
    pub health: Arc<H>,
    pub metrics: PrometheusHandle,
}

/// The service's methods plus `rpc.discover`, which returns its OpenRPC document.
pub fn rpc_module(
    methods: impl Into<Methods>,
    openrpc_document: &str,
) -> anyhow::Result<RpcModule<()>> {
    let document: Value =
        serde_json::from_str(openrpc_document).context("the OpenRPC document is not JSON")?;
    let mut module = RpcModule::new(());
    module.merge(methods)?;
    module.register_method("rpc.discover", move |_, _, _| document.clone())?;
    Ok(module)
}

/// Binds the configured address.
pub async fn listen(settings: &ServerConfig) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::new(settings.host, settings.port);
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// The service's routes behind the stack's layers, and the handle that stops its JSON-RPC
/// server (subscriptions end when it is stopped or dropped). [`serve`] listens with it; a test
/// can drive [`Routed::router`] in-process (`tower::ServiceExt::oneshot`).
pub struct Routed {
    pub router: Router,
    pub rpc: ServerHandle,
}

/// Builds the stack around `service`: JSON-RPC on `/` (HTTP and WebSocket), `/health_check`,
/// `/ready`, `/metrics` and the service's own routes, behind the token check and the body
/// limit.
pub fn router<H: Health>(settings: &ServerConfig, service: Service<H>) -> Routed {
    let limit = settings.max_body_bytes;
    let (stop_handle, server_handle) = stop_channel();
    // Subscription ids are strings, as the OpenRPC documents declare them.
    let config = RpcConfig::builder()
        .max_request_body_size(limit)
        .max_response_body_size(u32::MAX / 2)
        .set_id_provider(RandomStringIdProvider::new(16))
        .build();
    let access = Arc::new(Access {
        auth: service.auth.clone(),
        open_routes: PROBES.iter().copied().chain(service.open_routes).collect(),
        per_method: service.rules.per_method(),
    });
    let builder: TowerServiceBuilder<_, _> = Server::builder()
        .set_config(config)
        .set_rpc_middleware(
            RpcServiceBuilder::new().layer(CallsLayer::new(service.rules, service.auth)),
        )
        .to_service_builder();
    let rpc_service: RpcService = builder.build(service.module, stop_handle);

    let health = service.health;
    let metrics = service.metrics;
    let router = Router::new()
        .route("/", any(json_rpc))
        .with_state(rpc_service)
        .route("/health_check", get(alive).post(alive))
        .route("/ready", get(ready::<H>).with_state(health.clone()))
        .route(
            "/metrics",
            get(move || async move {
                health.refresh_metrics().await;
                metrics.render()
            }),
        )
        .merge(service.routes)
        .layer(middleware::from_fn_with_state(access, auth::authenticate))
        .layer(DefaultBodyLimit::max(limit as usize))
        .layer(middleware::from_fn_with_state(
            limit as usize,
            body_limit::enforce,
        ))
        .layer(middleware::from_fn(crate::traces::request_span));

    Routed {
        router,
        rpc: server_handle,
    }
}

/// Serves `service` on `listener` until `shutdown` is requested.
pub async fn serve<H: Health>(
    listener: TcpListener,
    settings: &ServerConfig,
    service: Service<H>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let reloads = tokio::spawn(reload_on_hangup(service.auth.clone()));
    let Routed { router, rpc } = router(settings, service);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.requested().await;
            let _ = rpc.stop();
        })
        .await?;
    reloads.abort();
    Ok(())
}

/// Reads the clients' token files again on each SIGHUP, so that tokens rotate without a
/// restart; a reload that fails keeps the tokens there were, and says why in the log.
async fn reload_on_hangup(auth: Auth) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: tokens reload only on restart");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match auth.reload() {
            Ok(tokens) => tracing::info!(tokens, "SIGHUP: the clients' tokens were read again"),
            Err(error) => tracing::error!(
                "SIGHUP: the clients' tokens were not reloaded, the previous ones stay: {error:#}"
            ),
        }
    }
}

/// `/health_check`: the process is up and serving.
pub async fn alive() -> Json<&'static str> {
    Json("OK")
}

/// `/ready`: 200 with `{"status": "ready", ...}`, or 503 with the reason.
async fn ready<H: Health>(State(health): State<Arc<H>>) -> Response {
    match health.ready().await {
        Ok(mut fields) => {
            fields.insert("status".into(), json!("ready"));
            (StatusCode::OK, Json(Value::Object(fields))).into_response()
        }
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// JSON-RPC over HTTP, with the ids jsonrpsee cannot hold handled in front of it
/// ([`request_ids`]); a WebSocket upgrade (a GET) goes straight on. The body was already read
/// whole, within the limit, by [`body_limit::enforce`].
async fn json_rpc(State(service): State<RpcService>, mut request: Request) -> Response {
    if request.method() != axum::http::Method::POST {
        return forward(service, request).await;
    }
    // A POST is a plain HTTP call, which cannot subscribe.
    request.extensions_mut().insert(OverHttp);
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )
            .into_response();
    };
    match request_ids::prepare(&bytes) {
        Prepared::Unchanged => {
            forward(service, Request::from_parts(parts, Body::from(bytes))).await
        }
        Prepared::Refused(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Prepared::Rewritten { body, ids } => {
            let response = forward(service, Request::from_parts(parts, Body::from(body))).await;
            let (mut parts, body) = response.into_parts();
            let Ok(answer) = axum::body::to_bytes(body, usize::MAX).await else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the answer could not be read",
                )
                    .into_response();
            };
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(request_ids::restore(&answer, &ids)))
        }
    }
}

async fn forward(service: RpcService, request: Request) -> Response {
    match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            tracing::error!(%error, "JSON-RPC transport error");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}
