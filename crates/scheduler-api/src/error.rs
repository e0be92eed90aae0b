//! Application errors with stable codes. `error.data.type` carries the exception name the
//! AutoGPT Python client maps back to an exception class.

use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use serde_json::json;

/// Stable application error codes, listed in `proto-docs/scheduler.openrpc.json`.
pub mod codes {
    /// Bad arguments: cron, time zone, ranges (`ValueError`).
    pub const VALUE_ERROR: i32 = 4000;
    /// The schedule belongs to another user (`NotAuthorizedError`).
    pub const NOT_AUTHORIZED: i32 = 4003;
    /// No such schedule (`NotFoundError`).
    pub const NOT_FOUND: i32 = 4004;
    /// A schedule with that id exists (`AlreadyExistsError`).
    pub const ALREADY_EXISTS: i32 = 4009;
    /// The scheduler could not do it: storage down, task unavailable (`RuntimeError`).
    pub const RUNTIME_ERROR: i32 = 5000;
    /// No token, or a wrong one (`UnauthorizedError`; HTTP 401 on the AutoGPT routes).
    pub const UNAUTHORIZED: i32 = 4001;
}

/// An application error of the scheduler API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("{0}")]
    Value(String),
    #[error("{0}")]
    NotAuthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Unauthorized(String),
}

impl SchedulerError {
    pub fn code(&self) -> i32 {
        match self {
            SchedulerError::Value(_) => codes::VALUE_ERROR,
            SchedulerError::NotAuthorized(_) => codes::NOT_AUTHORIZED,
            SchedulerError::NotFound(_) => codes::NOT_FOUND,
            SchedulerError::AlreadyExists(_) => codes::ALREADY_EXISTS,
            SchedulerError::Runtime(_) => codes::RUNTIME_ERROR,
            SchedulerError::Unauthorized(_) => codes::UNAUTHORIZED,
        }
    }

    /// The Python exception name AutoGPT's client raises for this error.
    pub fn exception_type(&self) -> &'static str {
        match self {
            SchedulerError::Value(_) => "ValueError",
            SchedulerError::NotAuthorized(_) => "NotAuthorizedError",
            SchedulerError::NotFound(_) => "NotFoundError",
            SchedulerError::AlreadyExists(_) => "AlreadyExistsError",
            SchedulerError::Runtime(_) => "RuntimeError",
            SchedulerError::Unauthorized(_) => "UnauthorizedError",
        }
    }

    /// Reads an application error back from a JSON-RPC error object; `None` for other errors.
    pub fn from_error_object(error: &ErrorObject<'_>) -> Option<Self> {
        let message = error.message().to_string();
        Some(match error.code() {
            codes::VALUE_ERROR => SchedulerError::Value(message),
            codes::NOT_AUTHORIZED => SchedulerError::NotAuthorized(message),
            codes::NOT_FOUND => SchedulerError::NotFound(message),
            codes::ALREADY_EXISTS => SchedulerError::AlreadyExists(message),
            codes::RUNTIME_ERROR => SchedulerError::Runtime(message),
            codes::UNAUTHORIZED => SchedulerError::Unauthorized(message),
            _ => return None,
        })
    }
}

impl From<SchedulerError> for ErrorObjectOwned {
    fn from(error: SchedulerError) -> Self {
        let data = json!({ "type": error.exception_type() });
        ErrorObject::owned(error.code(), error.to_string(), Some(data))
    }
}
