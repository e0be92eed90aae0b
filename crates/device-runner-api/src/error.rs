//! Application errors with stable codes; `error.data.type` names the kind of error, as in the
//! scheduler's API.

use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use serde_json::json;

/// Stable application error codes, listed in `proto-docs/device-runner.openrpc.json`.
pub mod codes {
    /// Bad arguments: unknown device or job type, priority, duration, oversized params.
    pub const VALUE_ERROR: i32 = 4000;
    /// No such job or run.
    pub const NOT_FOUND: i32 = 4004;
    /// The request conflicts with the job's state (for example killing a finished job).
    pub const CONFLICT: i32 = 4009;
    /// No token, or a wrong one: every method but `health_check` needs `auth.token` when it
    /// is set, `kill_job` and `restart_run` need `auth.admin_token`.
    pub const UNAUTHORIZED: i32 = 4001;
    /// The runner could not do it: storage failure, shutting down.
    pub const RUNTIME_ERROR: i32 = 5000;
}

/// An application error of the device runner API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Value(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Unauthorized(String),
}

impl RunnerError {
    pub fn code(&self) -> i32 {
        match self {
            RunnerError::Value(_) => codes::VALUE_ERROR,
            RunnerError::NotFound(_) => codes::NOT_FOUND,
            RunnerError::Conflict(_) => codes::CONFLICT,
            RunnerError::Runtime(_) => codes::RUNTIME_ERROR,
            RunnerError::Unauthorized(_) => codes::UNAUTHORIZED,
        }
    }

    /// The name carried in `error.data.type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            RunnerError::Value(_) => "ValueError",
            RunnerError::NotFound(_) => "NotFoundError",
            RunnerError::Conflict(_) => "ConflictError",
            RunnerError::Runtime(_) => "RuntimeError",
            RunnerError::Unauthorized(_) => "UnauthorizedError",
        }
    }

    /// Reads an application error back from a JSON-RPC error object; `None` for other errors.
    pub fn from_error_object(error: &ErrorObject<'_>) -> Option<Self> {
        let message = error.message().to_string();
        Some(match error.code() {
            codes::VALUE_ERROR => RunnerError::Value(message),
            codes::NOT_FOUND => RunnerError::NotFound(message),
            codes::CONFLICT => RunnerError::Conflict(message),
            codes::RUNTIME_ERROR => RunnerError::Runtime(message),
            codes::UNAUTHORIZED => RunnerError::Unauthorized(message),
            _ => return None,
        })
    }
}

impl From<RunnerError> for ErrorObjectOwned {
    fn from(error: RunnerError) -> Self {
        let data = json!({ "type": error.type_name() });
        ErrorObject::owned(error.code(), error.to_string(), Some(data))
    }
}
