//! Bearer tokens. The HTTP layer ([`authenticate`]) names the caller from its
//! `Authorization: Bearer` header, refuses a request without a valid token when one is
//! configured (401), and hands the caller on as a request extension, which jsonrpsee passes to
//! every call's `Extensions`; per-method checks ([`Auth::check_admin`], and the RPC middleware
//! in [`crate::calls`]) read it there.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonrpsee::Extensions;
use serde_json::json;

use crate::config::AuthConfig;

/// The JSON-RPC error code of a refused caller, the same in every API of the workspace.
pub const UNAUTHORIZED: i32 = 4001;
/// `error.data.type` of a refused caller.
pub const UNAUTHORIZED_TYPE: &str = "UnauthorizedError";

/// Who is calling, by the token presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User,
    Admin,
}

/// The configured tokens.
#[derive(Debug, Clone)]
pub struct Auth {
    token: Option<String>,
    admin_token: Option<String>,
    disabled: bool,
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Self {
        Auth {
            token: config.token.clone(),
            admin_token: config.admin_token.clone(),
            disabled: config.disabled,
        }
    }

    /// The caller a request's headers identify.
    pub fn identify(&self, headers: &HeaderMap) -> Caller {
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Caller::Anonymous;
        };
        let matches = |token: &Option<String>| {
            token
                .as_deref()
                .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
        };
        if matches(&self.admin_token) {
            Caller::Admin
        } else if matches(&self.token) {
            Caller::User
        } else {
            Caller::Anonymous
        }
    }

    /// Whether the caller may use the API at all.
    pub fn check_any(&self, caller: Caller) -> Result<(), String> {
        if self.disabled || self.token.is_none() || caller != Caller::Anonymous {
            return Ok(());
        }
        Err("missing or invalid bearer token (Authorization: Bearer <auth.token>)".into())
    }

    /// Whether the caller found in a call's extensions may use an admin method. A call made
    /// without passing through [`authenticate`] counts as anonymous.
    pub fn check_admin(&self, method: &str, extensions: &Extensions) -> Result<(), String> {
        if self.disabled || (self.token.is_none() && self.admin_token.is_none()) {
            return Ok(());
        }
        let caller = extensions
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::Anonymous);
        match (&self.admin_token, caller) {
            (Some(_), Caller::Admin) => Ok(()),
            (Some(_), _) => Err(format!(
                "{method} is an admin method: it needs the admin token (auth.admin_token)"
            )),
            (None, _) => Err(format!(
                "{method} is an admin method and auth.admin_token is not configured on this \
                 service"
            )),
        }
    }
}

/// What the HTTP layer lets through without a token.
#[derive(Debug, Clone)]
pub struct Access {
    pub auth: Auth,
    /// Paths served to anyone (probes).
    pub open_routes: Vec<&'static str>,
    /// Whether the JSON-RPC endpoint (`/`) is let through without a token, leaving each call
    /// to the per-method check: true when some methods are open to anyone.
    pub per_method: bool,
}

/// The HTTP layer: refuses requests without a valid token (401) and records the caller.
pub async fn authenticate(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = access.auth.identify(request.headers());
    let path = request.uri().path();
    let json_rpc = path == "/";
    let open = access.open_routes.contains(&path) || (json_rpc && access.per_method);
    if !open && let Err(message) = access.auth.check_any(caller) {
        tracing::warn!(path = %request.uri().path(), "request refused: {message}");
        return unauthorized(json_rpc, &message);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// A 401: a JSON-RPC error object on the JSON-RPC endpoint, FastAPI's `{"detail": ...}` on the
/// other routes.
fn unauthorized(json_rpc: bool, message: &str) -> Response {
    let body = if json_rpc {
        json!({"jsonrpc": "2.0", "id": null, "error": {
            "code": UNAUTHORIZED, "message": message, "data": {"type": UNAUTHORIZED_TYPE}
        }})
    } else {
        json!({ "detail": message })
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares without stopping at the first difference, so timing tells nothing of a token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: Option<&str>, admin: Option<&str>) -> Auth {
        Auth::new(&AuthConfig {
            token: token.map(str::to_string),
            admin_token: admin.map(str::to_string),
            disabled: false,
        })
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    fn with(caller: Caller) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(caller);
        extensions
    }

    #[test]
    fn tokens_name_the_caller() {
        let auth = auth(Some("user-secret"), Some("admin-secret"));
        assert_eq!(auth.identify(&bearer("admin-secret")), Caller::Admin);
        assert_eq!(auth.identify(&bearer("user-secret")), Caller::User);
        assert_eq!(auth.identify(&bearer("user-secreT")), Caller::Anonymous);
        assert_eq!(auth.identify(&HeaderMap::new()), Caller::Anonymous);
        assert!(auth.check_any(Caller::Anonymous).is_err());
        assert!(auth.check_any(Caller::User).is_ok());
    }

    #[test]
    fn admin_methods_need_the_admin_token() {
        let both = auth(Some("u"), Some("a"));
        assert!(
            both.check_admin("get_registry", &with(Caller::Admin))
                .is_ok()
        );
        let refused = both
            .check_admin("get_registry", &with(Caller::User))
            .unwrap_err();
        assert!(refused.contains("admin token"), "{refused}");
        assert!(
            both.check_admin("get_registry", &Extensions::new())
                .is_err(),
            "no caller recorded counts as anonymous"
        );
        let user_only = auth(Some("u"), None);
        let refused = user_only
            .check_admin("get_registry", &with(Caller::User))
            .unwrap_err();
        assert!(refused.contains("not configured"), "{refused}");
        let open = auth(None, None);
        assert!(open.check_admin("get_registry", &Extensions::new()).is_ok());
    }
}
