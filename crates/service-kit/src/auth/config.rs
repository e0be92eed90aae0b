//! The `[auth]` section: the tokens of old and the named clients.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::{Auth, RESERVED_NAMES};

/// Who may call. Tokens travel as `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When set, everything but the probes needs this token (or the admin token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token for admin methods. When only `token` is set, admin methods are refused to
    /// everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Serve without any token even when listening beyond loopback.
    pub disabled: bool,
    /// Named clients, each with its token and the owners it may act for
    /// (`[[auth.clients]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientConfig>,
}

/// A client of the service (`[[auth.clients]]`): who holds a token, for the audit log and the
/// owners it may act for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's name, which the audit log records.
    pub name: String,
    /// Its token (or give `token_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding its tokens, one per line; read again on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The owners it may act for: names, or prefixes followed by `*` (`"*"` is every owner).
    #[serde(default)]
    pub owners: Vec<String>,
    /// Whether it may call admin methods, for every owner.
    #[serde(default)]
    pub admin: bool,
}

impl AuthConfig {
    /// Tokens are not empty, and a server listening beyond loopback has one (or says it wants
    /// none with `auth.disabled = true`).
    pub fn validate(&self, host: IpAddr) -> anyhow::Result<()> {
        for (key, token) in [("token", &self.token), ("admin_token", &self.admin_token)] {
            if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                bail!("auth.{key} must not be empty; leave it out to set no token");
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for client in &self.clients {
            let name = client.name.as_str();
            if name.trim().is_empty() {
                bail!("auth.clients: a client's name must not be empty");
            }
            if RESERVED_NAMES.contains(&name) {
                bail!(
                    "auth.clients: the name '{name}' is reserved (it stands for {}); choose \
                     another",
                    RESERVED_NAMES.join(", ")
                );
            }
            if names.contains(&name) {
                bail!("auth.clients: two clients are named '{name}'");
            }
            names.push(name);
            if client.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                bail!("auth.clients '{name}': token must not be empty");
            }
        }
        // Reading the clients' tokens checks the rest: a token or a token file each, files
        // readable and not empty, owner patterns, no token held twice.
        Auth::new(self)?;
        let has_token = self.token.is_some() || !self.clients.is_empty();
        if !self.disabled && !has_token && !host.is_loopback() {
            bail!(
                "server.host is {host}, beyond loopback, and auth.token is not set (nor any \
                 [[auth.clients]]): set auth.token (and auth.admin_token) or clients, or \
                 auth.disabled = true to serve without authentication"
            );
        }
        Ok(())
    }
}
