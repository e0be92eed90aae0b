//! The scheduler's HTTP stack driven in-process (`tower::ServiceExt::oneshot` on the router the
//! server listens with), for what needs no process: the token check, the body limit, the
//! probes and the console left open, JSON-RPC and AutoGPT's routes answering.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jobstore::{MemoryStore, StoreName};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "router-token";

/// The router of a scheduler on an in-memory store, with a token and a small body limit, and
/// the handle of its JSON-RPC server (which stops when the handle is dropped).
fn routed() -> service_kit::serve::Routed {
    let stores = scheduler::stores::Stores::new([
        Arc::new(MemoryStore::new(StoreName::Execution)) as Arc<dyn jobstore::JobStore>
    ]);
    let mut config = scheduler::config::Config::default();
    config.auth.token = Some(TOKEN.into());
    config.server.max_body_bytes = 4096;
    let app = scheduler::app::App::new(
        stores,
        tokio::sync::watch::channel(true).1,
        "memory",
        &config,
        Vec::new(),
        tokio::sync::watch::channel(None).1,
    )
    .unwrap();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let service = scheduler::server::service(app, &config, metrics).unwrap();
    service_kit::serve::router(&config.server, service)
}

async fn send(request: Request<Body>) -> (StatusCode, Value) {
    let routed = routed();
    let response = routed.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

fn post(path: &str, token: Option<&str>, body: String) -> Request<Body> {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn the_probes_and_the_console_are_open_and_everything_else_needs_the_token() {
    let (status, body) = send(Request::get("/health_check").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!("OK")));
    let (status, _) = send(Request::get("/ui/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "health_check"}).to_string();
    let (status, body) = send(post("/", None, call.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], 4001, "{body}");
    let (status, body) = send(post("/", Some("wrong"), call.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send(post("/", Some(TOKEN), call)).await;
    assert_eq!(
        (status, body["result"].clone()),
        (StatusCode::OK, json!("OK"))
    );
}

#[tokio::test]
async fn json_rpc_and_autogpt_routes_answer_through_the_stack() {
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "next_fire_times",
                      "params": {"cron": "0 9 * * 1", "after": "2026-12-06T00:00:00Z", "count": 2}});
    let (status, body) = send(post("/", Some(TOKEN), call.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"],
        json!(["2026-12-07T09:00:00Z", "2026-12-14T09:00:00Z"]),
        "{body}"
    );

    let (status, body) = send(post(
        "/get_graph_execution_schedules",
        Some(TOKEN),
        json!({"user_id": "u1"}).to_string(),
    ))
    .await;
    assert_eq!(
        (status, body.clone()),
        (StatusCode::OK, json!([])),
        "{body}"
    );
    // FastAPI's shape for a missing argument.
    let (status, body) = send(post(
        "/add_graph_execution_schedule",
        Some(TOKEN),
        json!({"user_id": "u1"}).to_string(),
    ))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["detail"].is_array(), "{body}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let padding = "x".repeat(8192);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "health_check", "pad": padding});
    let (status, _) = send(post("/", Some(TOKEN), call.to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
