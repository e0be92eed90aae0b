//! One port for everything: JSON-RPC over HTTP POST and WebSocket at `/`, and the AutoGPT
//! routes (`/<method>`, `/health_check`), served through axum.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Router, middleware};
use jsonrpsee::RpcModule;
use jsonrpsee::server::{Server, ServerConfig, TowerServiceBuilder, stop_channel};
use scheduler_api::SchedulerApiServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::app::App;
use crate::config::ServerConfig as Settings;
use crate::rpc::RpcHandler;
use crate::{body_limit, compat, openrpc};

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
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let module = rpc_module(app)?;
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
        .merge(compat_routes)
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

async fn json_rpc(State(service): State<RpcService>, request: Request) -> Response {
    match service.oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(error) => {
            tracing::error!(%error, "JSON-RPC transport error");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}
