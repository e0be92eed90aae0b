//! The request size limit, enforced in front of every route.
//!
//! A server that answers "too large" and hangs up while the client is still sending makes the
//! client see a broken pipe instead of the answer. So an oversized body is read on and thrown
//! away, up to [`DRAIN_CAP`] bytes and for at most [`DRAIN_TIMEOUT`], before the 413 goes out;
//! only a client that sends more than that sees the connection closed.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

/// The most an oversized request may still send before the connection is closed on it.
pub const DRAIN_CAP: usize = 16 * 1024 * 1024;
/// How long an oversized request may take to finish sending.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// JSON-RPC's code for an oversized request, as jsonrpsee uses it.
const OVERSIZED_REQUEST_CODE: i32 = -32007;

/// Buffers the body up to `limit` bytes and passes the request on; answers 413 past it.
pub async fn enforce(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let json_rpc = request.uri().path() == "/";
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();

    let mut kept = Kept::default();
    let mut oversized = declared.is_some_and(|length| length > limit as u64);
    if !oversized {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return (
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
                    .into_response();
            };
            if kept.len() + chunk.len() > limit {
                oversized = true;
                break;
            }
            kept.push(chunk);
        }
    }
    if !oversized {
        return next
            .run(Request::from_parts(parts, Body::from(kept.into_bytes())))
            .await;
    }

    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = kept.len();
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_CAP {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    tracing::warn!(
        limit,
        declared,
        drained,
        "refused a request body over the size limit"
    );
    too_large(json_rpc, limit, drained)
}

/// The body read so far: most bodies arrive in one chunk, which is kept as it came; only a
/// body in several chunks is copied into one buffer.
#[derive(Default)]
enum Kept {
    #[default]
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

impl Kept {
    fn len(&self) -> usize {
        match self {
            Kept::Empty => 0,
            Kept::One(bytes) => bytes.len(),
            Kept::Many(buffer) => buffer.len(),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        *self = match std::mem::take(self) {
            Kept::Empty => Kept::One(chunk),
            Kept::One(first) => {
                let mut buffer = Vec::with_capacity(first.len() + chunk.len());
                buffer.extend_from_slice(&first);
                buffer.extend_from_slice(&chunk);
                Kept::Many(buffer)
            }
            Kept::Many(mut buffer) => {
                buffer.extend_from_slice(&chunk);
                Kept::Many(buffer)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Kept::Empty => Bytes::new(),
            Kept::One(bytes) => bytes,
            Kept::Many(buffer) => Bytes::from(buffer),
        }
    }
}

fn too_large(json_rpc: bool, limit: usize, drained: bool) -> Response {
    let message = format!("request body exceeds the limit of {limit} bytes");
    let body = if json_rpc {
        json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": OVERSIZED_REQUEST_CODE, "message": message},
        })
    } else {
        json!({"detail": message})
    };
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
    if !drained {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}
