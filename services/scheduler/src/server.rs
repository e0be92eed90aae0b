//! One port for everything: JSON-RPC over HTTP POST and WebSocket at `/`, the AutoGPT routes
//! (`/<method>`, `/health_check`), readiness (`/ready`) and metrics (`/metrics`), served
//! through axum behind the token check ([`crate::auth`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Router, middleware};
use jsonrpsee::RpcModule;
use jsonrpsee::server::{Server, ServerConfig, TowerServiceBuilder, stop_channel};
use metrics_exporter_prometheus::PrometheusHandle;
use scheduler_api::SchedulerApiServer;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::app::App;
use crate::config::ServerConfig as Settings;
use crate::request_ids::{self, Prepared};
use crate::rpc::RpcHandler;
use crate::{auth, body_limit, compat, health, openrpc};

type RpcService =
    jsonrpsee::server::TowerService<tower::layer::util::Identity, tower::layer::util::Identity>;

/// The API as a jsonrpsee module: every method of the trait plus `rpc.discover`.
pub fn rpc_module(app: Arc<App>) -> anyhow::Result<RpcModule<()>> {
    let mut module = RpcModule::new(());
    module.merge(RpcHandler::new(app).into_rpc())?;
    openrpc::register_discover(&mut module)?;
    Ok(module)
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    settings: Settings,
    metrics: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let auth = Arc::new(app.auth.clone());
    let module = rpc_module(app.clone())?;
    let (stop_handle, server_handle) = stop_channel();
    let config = ServerConfig::builder()
        .max_request_body_size(settings.max_body_bytes)
        .max_response_body_size(u32::MAX / 2)
        .build();
    let builder: TowerServiceBuilder<_, _> =
        Server::builder().set_config(config).to_service_builder();
    let rpc_service: RpcService = builder.build(module.clone(), stop_handle);

    let compat_routes = Router::new()
        .route("/health_check", get(compat::health).post(compat::health))
        .route(
            "/health_check_async",
            get(compat::health).post(compat::health),
        )
        .route("/{method}", post(compat::call))
        .with_state(module);
    let router = Router::new()
        .route("/", any(json_rpc))
        .with_state(rpc_service)
        .route("/ready", get(ready).with_state(app.clone()))
        .route(
            "/metrics",
            get(move || async move {
                // Brings the overdue gauge up to date; readiness itself is `/ready`'s answer.
                let _ = health::readiness(&app).await;
                metrics.render()
            }),
        )
        .merge(compat_routes)
        .layer(middleware::from_fn_with_state(auth, auth::authenticate))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes as usize))
        .layer(middleware::from_fn_with_state(
            settings.max_body_bytes as usize,
            body_limit::enforce,
        ));

    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            let _ = server_handle.stop();
        })
        .await?;
    Ok(())
}

/// Readiness: 200 while the engine runs, the database answers and no due work is overdue
/// beyond `engine.max_overdue`; 503 with the reason otherwise (after a database outage the
/// process stays up and resumes firing by itself).
async fn ready(State(app): State<Arc<App>>) -> Response {
    match health::readiness(&app).await.err() {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ready", "leader": app.is_leader()})),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// JSON-RPC over HTTP, with the ids jsonrpsee cannot hold handled in front of it
/// ([`request_ids`]). The body was already read whole, within the limit, by
/// [`body_limit::enforce`].
async fn json_rpc(State(service): State<RpcService>, request: Request) -> Response {
    if request.method() != axum::http::Method::POST {
        return forward(service, request).await;
    }
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
        Ok(response) => response.map(axum::body::Body::new),
        Err(error) => {
            tracing::error!(%error, "JSON-RPC transport error");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}
