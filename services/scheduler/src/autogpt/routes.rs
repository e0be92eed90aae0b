//! AutoGPT wire compatibility: `POST /<method>` with a JSON object of keyword arguments, as
//! AutoGPT's `AppServiceClient` sends it. Each call goes through the same JSON-RPC methods as
//! the JSON-RPC endpoint; only the envelope differs:
//!
//! - success: 200 and the bare JSON result;
//! - `ValueError`, `NotFoundError`, `NotAuthorizedError`: 400 `{"type": …, "args": [message]}`;
//! - `UnauthorizedError` (an admin method without the admin token): 401 in the same shape;
//! - other failures: 500 in the same shape;
//! - a body that is not a JSON object, or lacks required arguments: 422 `{"detail": [...]}`
//!   as FastAPI reports request validation errors.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jsonrpsee::RpcModule;
use jsonrpsee::core::server::MethodsError;
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::types::error::INVALID_PARAMS_CODE;
use scheduler_api::{SchedulerError, codes};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::openrpc;
use service_kit::auth::Caller;

pub(crate) async fn call(
    State(module): State<RpcModule<()>>,
    Path(method): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let Some(spec) = openrpc::method(&method) else {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response();
    };
    let arguments = match parse_arguments(&body) {
        Ok(arguments) => arguments,
        Err(detail) => return unprocessable(detail),
    };
    let missing: Vec<Value> = spec
        .params
        .iter()
        .filter(|p| p.required && !arguments.contains_key(&p.name))
        .map(|p| {
            json!({"type": "missing", "loc": ["body", p.name], "msg": "Field required", "input": Value::Object(arguments.clone())})
        })
        .collect();
    if !missing.is_empty() {
        return unprocessable(missing);
    }
    let input = Value::Object(arguments.clone());
    // A direct call carries the module's extensions: give it the caller the token check found.
    let mut module = module;
    module.extensions_mut().insert(caller);
    module.extensions_mut().insert(crate::audit::AUTOGPT);
    match module
        .call::<_, Value>(&method, ObjectParams(arguments))
        .await
    {
        Ok(result) => (StatusCode::OK, Json(result)).into_response(),
        Err(MethodsError::JsonRpc(error)) => error_response(&error, input),
        Err(other) => remote_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "RuntimeError",
            &other.to_string(),
        ),
    }
}

fn parse_arguments(body: &[u8]) -> Result<Map<String, Value>, Vec<Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(arguments)) => Ok(arguments),
        Ok(other) => Err(vec![json!({
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": other,
        })]),
        Err(error) => Err(vec![json!({
            "type": "json_invalid",
            "loc": ["body", error.column()],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": error.to_string()},
        })]),
    }
}

fn error_response(error: &ErrorObjectOwned, input: Value) -> Response {
    if error.code() == INVALID_PARAMS_CODE {
        let detail =
            json!({"type": "value_error", "loc": ["body"], "msg": error.message(), "input": input});
        return unprocessable(vec![detail]);
    }
    match SchedulerError::from_error_object(error) {
        Some(app) => {
            let status = match app.code() {
                codes::RUNTIME_ERROR => StatusCode::INTERNAL_SERVER_ERROR,
                codes::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            remote_error(status, app.exception_type(), error.message())
        }
        None => remote_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "RuntimeError",
            error.message(),
        ),
    }
}

fn remote_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"type": kind, "args": [message]}))).into_response()
}

fn unprocessable(detail: Vec<Value>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": detail})),
    )
        .into_response()
}

/// Keyword arguments handed to a JSON-RPC method as named params.
pub(crate) struct ObjectParams(pub(crate) Map<String, Value>);

impl ToRpcParams for ObjectParams {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        serde_json::value::to_raw_value(&Value::Object(self.0)).map(Some)
    }
}
