//! One port: JSON-RPC over HTTP POST and WebSocket at `/`, served through axum so plain routes
//! can share it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use device_runner_api::DeviceRunnerApiServer;
use jsonrpsee::RpcModule;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{
    RandomStringIdProvider, Server, ServerConfig, TowerServiceBuilder, stop_channel,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::rpc::RpcHandler;
use crate::runner::Runner;
use crate::subscriptions::{OverHttp, SubscriptionCallsLayer};

type RpcService = jsonrpsee::server::TowerService<
    tower::layer::util::Stack<SubscriptionCallsLayer, tower::layer::util::Identity>,
    tower::layer::util::Identity,
>;

/// The API as a jsonrpsee module: every method of the trait plus `rpc.discover`.
pub fn rpc_module(runner: Arc<Runner>) -> anyhow::Result<RpcModule<()>> {
    let mut module = RpcModule::new(());
    module.merge(RpcHandler::new(runner).into_rpc())?;
    crate::openrpc::register_discover(&mut module)?;
    Ok(module)
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    runner: Arc<Runner>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let max_body = runner.config.server.max_body_bytes;
    let module = rpc_module(runner)?;
    let (stop_handle, server_handle) = stop_channel();
    // Subscription ids are strings, as the OpenRPC document declares them.
    let config = ServerConfig::builder()
        .max_request_body_size(max_body)
        .max_response_body_size(u32::MAX / 2)
        .set_id_provider(RandomStringIdProvider::new(16))
        .build();
    let builder: TowerServiceBuilder<_, _> = Server::builder()
        .set_config(config)
        .set_rpc_middleware(RpcServiceBuilder::new().layer(SubscriptionCallsLayer))
        .to_service_builder();
    let rpc_service: RpcService = builder.build(module, stop_handle);
    let router = Router::new()
        .route("/", any(json_rpc))
        .with_state(rpc_service)
        .route("/health_check", get(|| async { axum::Json("OK") }));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            let _ = server_handle.stop();
        })
        .await?;
    Ok(())
}

async fn json_rpc(State(service): State<RpcService>, mut request: Request) -> Response {
    // A WebSocket upgrade is a GET; a POST is a plain HTTP call, which cannot subscribe.
    if request.method() == axum::http::Method::POST {
        request.extensions_mut().insert(OverHttp);
    }
    match service.oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(error) => {
            tracing::error!(%error, "JSON-RPC transport error");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}
