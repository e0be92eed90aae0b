//! Bearer tokens. The HTTP layer ([`authenticate`]) names the caller from its
//! `Authorization: Bearer` header, refuses a request without a valid token when one is
//! configured (401), and hands the caller on as a request extension, which jsonrpsee passes to
//! every call's `Extensions`; per-method checks ([`Auth::check_admin`], and the RPC middleware
//! in [`crate::calls`]) read it there. Each token names a client ([`clients`]): its name, the
//! owners it may act for, and whether it is the admin.

mod clients;
mod config;

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonrpsee::Extensions;
use serde_json::json;

use self::clients::Tokens;
pub use self::clients::{
    ADMIN_CLIENT, ANONYMOUS, Caller, Client, Owners, RESERVED_NAMES, USER_CLIENT,
};
pub use self::config::{AuthConfig, ClientConfig};

/// The JSON-RPC error code of a refused caller, the same in every API of the workspace.
pub const UNAUTHORIZED: i32 = 4001;
/// `error.data.type` of a refused caller.
pub const UNAUTHORIZED_TYPE: &str = "UnauthorizedError";

/// The configured clients and their tokens. Clones share the tokens, so that a reload
/// ([`Auth::reload`]) reaches every part of the service that holds one.
#[derive(Debug, Clone)]
pub struct Auth {
    config: Arc<AuthConfig>,
    tokens: Arc<RwLock<Arc<Tokens>>>,
}

impl Auth {
    /// The clients of `config`, their token files read.
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let tokens = Tokens::read(config)?;
        Ok(Auth {
            config: Arc::new(config.clone()),
            tokens: Arc::new(RwLock::new(Arc::new(tokens))),
        })
    }

    /// Reads the token files again (on SIGHUP), so that tokens rotate without a restart. When
    /// a file cannot be read, or holds a token another client has, the tokens stay as they
    /// were and the error says why.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let tokens = Tokens::read(&self.config)?;
        let count = tokens.entries.len();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
        Ok(count)
    }

    fn tokens(&self) -> Arc<Tokens> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a caller needs a token for anything beyond the open methods and routes.
    fn required(&self) -> bool {
        !self.config.disabled && (self.config.token.is_some() || !self.config.clients.is_empty())
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
        // Every token is compared, whichever matches, so timing tells nothing of them.
        let mut found = Caller::Anonymous;
        for (token, caller) in &self.tokens().entries {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                found = caller.clone();
            }
        }
        found
    }

    /// Whether the caller may use the API at all.
    pub fn check_any(&self, caller: &Caller) -> Result<(), String> {
        if !self.required() || *caller != Caller::Anonymous {
            return Ok(());
        }
        Err("missing or invalid bearer token (Authorization: Bearer <token>)".into())
    }

    /// Whether the caller found in a call's extensions may use an admin method. A call made
    /// without passing through [`authenticate`] counts as anonymous.
    pub fn check_admin(&self, method: &str, extensions: &Extensions) -> Result<(), String> {
        let config = &self.config;
        if config.disabled
            || (config.token.is_none() && config.admin_token.is_none() && config.clients.is_empty())
        {
            return Ok(());
        }
        if extensions.get::<Caller>().is_some_and(Caller::is_admin) {
            return Ok(());
        }
        if self.tokens().has_admin {
            Err(format!(
                "{method} is an admin method: it needs an admin token (auth.admin_token, or a \
                 client with admin = true)"
            ))
        } else {
            Err(format!(
                "{method} is an admin method and no admin token is configured on this service \
                 (auth.admin_token, or a client with admin = true)"
            ))
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
    if !open && let Err(message) = access.auth.check_any(&caller) {
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

    fn config(token: Option<&str>, admin: Option<&str>) -> AuthConfig {
        AuthConfig {
            token: token.map(str::to_string),
            admin_token: admin.map(str::to_string),
            ..AuthConfig::default()
        }
    }

    fn auth(token: Option<&str>, admin: Option<&str>) -> Auth {
        Auth::new(&config(token, admin)).unwrap()
    }

    fn client(name: &str, token: &str, owners: &[&str]) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            token: Some(token.into()),
            token_file: None,
            owners: owners.iter().map(|o| o.to_string()).collect(),
            admin: false,
        }
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
        let admin = auth.identify(&bearer("admin-secret"));
        assert!(admin.is_admin() && admin.name() == ADMIN_CLIENT);
        let user = auth.identify(&bearer("user-secret"));
        assert!(!user.is_admin() && user.name() == USER_CLIENT);
        assert!(
            user.may_act_for("anyone"),
            "auth.token acts for every owner"
        );
        assert_eq!(auth.identify(&bearer("user-secreT")), Caller::Anonymous);
        assert_eq!(auth.identify(&HeaderMap::new()), Caller::Anonymous);
        assert!(auth.check_any(&Caller::Anonymous).is_err());
        assert!(auth.check_any(&user).is_ok());
    }

    #[test]
    fn a_configured_client_is_named_and_scoped_by_its_token() {
        let mut config = config(None, None);
        config.clients = vec![
            client("agnt", "agnt-secret", &["agnt", "user-*"]),
            ClientConfig {
                admin: true,
                ..client("ops", "ops-secret", &[])
            },
        ];
        let auth = Auth::new(&config).unwrap();
        let agnt = auth.identify(&bearer("agnt-secret"));
        assert_eq!(agnt.name(), "agnt");
        assert!(agnt.may_act_for("user-9") && !agnt.may_act_for("farm"));
        assert!(
            auth.check_any(&Caller::Anonymous).is_err(),
            "clients need a token"
        );
        let refused = auth.check_admin("get_registry", &with(agnt)).unwrap_err();
        assert!(refused.contains("admin token"), "{refused}");
        let ops = auth.identify(&bearer("ops-secret"));
        assert!(ops.may_act_for("farm"));
        assert!(auth.check_admin("get_registry", &with(ops)).is_ok());
        config.clients.push(client("twin", "agnt-secret", &["x"]));
        let error = Auth::new(&config).unwrap_err().to_string();
        assert!(
            error.contains("'twin'") && error.contains("one client"),
            "{error}"
        );
    }

    #[test]
    fn a_reload_reads_the_token_files_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agnt.token");
        std::fs::write(&path, "first\n").unwrap();
        let mut config = config(None, None);
        config.clients = vec![ClientConfig {
            token: None,
            token_file: Some(path.clone()),
            ..client("agnt", "", &["agnt"])
        }];
        let auth = Auth::new(&config).unwrap();
        let held = auth.clone();
        assert_eq!(auth.identify(&bearer("first")).name(), "agnt");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(held.reload().unwrap(), 1);
        assert_eq!(auth.identify(&bearer("first")), Caller::Anonymous);
        assert_eq!(auth.identify(&bearer("second")).name(), "agnt");
        std::fs::remove_file(&path).unwrap();
        let error = format!("{:#}", held.reload().unwrap_err());
        assert!(
            error.contains("agnt") && error.contains("cannot be read"),
            "{error}"
        );
        assert_eq!(
            auth.identify(&bearer("second")).name(),
            "agnt",
            "a failed reload keeps the tokens"
        );
    }

    #[test]
    fn admin_methods_need_the_admin_token() {
        let both = auth(Some("u"), Some("a"));
        let admin = both.identify(&bearer("a"));
        let user = both.identify(&bearer("u"));
        assert!(both.check_admin("get_registry", &with(admin)).is_ok());
        let refused = both
            .check_admin("get_registry", &with(user.clone()))
            .unwrap_err();
        assert!(refused.contains("admin token"), "{refused}");
        assert!(
            both.check_admin("get_registry", &Extensions::new())
                .is_err(),
            "no caller recorded counts as anonymous"
        );
        let user_only = auth(Some("u"), None);
        let refused = user_only
            .check_admin("get_registry", &with(user))
            .unwrap_err();
        assert!(
            refused.contains("no admin token is configured"),
            "{refused}"
        );
        let open = auth(None, None);
        assert!(open.check_admin("get_registry", &Extensions::new()).is_ok());
    }
}
