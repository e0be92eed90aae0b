//! The clients a service knows: each token names a client, and a client has a name (what the
//! audit log records), the owners it may act for, and whether it is the admin.
//!
//! Clients come from `[[auth.clients]]`, plus the two tokens of old: `auth.token` is the
//! all-owners client `user`, `auth.admin_token` the admin `admin`. A client's token is given
//! inline (`token`) or in a file (`token_file`, one token per line, any of which is valid, so
//! that a rotation can add the new token before it removes the old one); the files are read at
//! start and again on SIGHUP ([`super::Auth::reload`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::config::{AuthConfig, ClientConfig};

/// The name of the all-owners client `auth.token` stands for.
pub const USER_CLIENT: &str = "user";
/// The name of the admin client `auth.admin_token` stands for.
pub const ADMIN_CLIENT: &str = "admin";
/// Names a configured client may not take: the two of old, what the audit log calls the
/// product itself, and a caller without a token.
pub const RESERVED_NAMES: [&str; 6] = [
    USER_CLIENT,
    ADMIN_CLIENT,
    "engine",
    "config",
    "import",
    ANONYMOUS,
];
/// The name of a caller that presented no token (where none is needed).
pub const ANONYMOUS: &str = "anonymous";

/// The owners a client may act for: names, and prefixes written `prefix*` (`*` alone is every
/// owner). A `*` anywhere but at the end is refused when the configuration is read, so that a
/// scope is always something a database index can answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl Owners {
    /// Every owner.
    pub fn all() -> Owners {
        Owners {
            names: Vec::new(),
            prefixes: vec![String::new()],
        }
    }

    /// The owners `patterns` name, or what is wrong with one of them.
    pub fn parse(patterns: &[String]) -> Result<Owners, String> {
        let mut owners = Owners::default();
        for pattern in patterns {
            match pattern.find('*') {
                None if pattern.trim().is_empty() => {
                    return Err("an owner pattern is empty".into());
                }
                None => owners.names.push(pattern.clone()),
                Some(at) if at + 1 == pattern.len() => {
                    owners.prefixes.push(pattern[..at].to_string());
                }
                Some(_) => {
                    return Err(format!(
                        "owner pattern '{pattern}' has a '*' before its end: a pattern is a \
                         name, or a prefix followed by '*'"
                    ));
                }
            }
        }
        if owners.is_all() {
            return Ok(Owners::all());
        }
        Ok(owners)
    }

    /// Whether `owner` is one of them.
    pub fn allows(&self, owner: &str) -> bool {
        self.names.iter().any(|name| name == owner)
            || self.prefixes.iter().any(|prefix| owner.starts_with(prefix))
    }

    /// Whether they are every owner.
    pub fn is_all(&self) -> bool {
        self.prefixes.iter().any(String::is_empty)
    }

    /// The owners named in full.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The prefixes of the owners named by a prefix.
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// The patterns they were written as.
    pub fn patterns(&self) -> Vec<String> {
        let prefixes = self.prefixes.iter().map(|p| format!("{p}*"));
        self.names.iter().cloned().chain(prefixes).collect()
    }
}

/// A client: who presents one of its tokens.
#[derive(Debug, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub admin: bool,
    pub owners: Owners,
}

/// Who is calling, by the token presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token, or one no client holds.
    Anonymous,
    Client(Arc<Client>),
}

/// What an anonymous caller may act for: it reaches an owner's methods only where no token
/// is configured, and then for every owner.
static EVERY_OWNER: std::sync::LazyLock<Owners> = std::sync::LazyLock::new(Owners::all);

/// The caller of a call that did not pass the token check (a call made inside the service).
static INSIDE: Caller = Caller::Anonymous;

impl Caller {
    /// The caller a call's extensions carry ([`super::authenticate`] put it there), or an
    /// anonymous one for a call made inside the service.
    pub fn of(extensions: &jsonrpsee::Extensions) -> &Caller {
        extensions.get::<Caller>().unwrap_or(&INSIDE)
    }

    /// Whether the caller holds an admin token.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Client(client) if client.admin)
    }

    /// The client's name, or [`ANONYMOUS`].
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => ANONYMOUS,
            Caller::Client(client) => &client.name,
        }
    }

    /// The owners the caller may act for: an admin's are every owner.
    pub fn owners(&self) -> &Owners {
        match self {
            Caller::Client(client) if !client.admin => &client.owners,
            _ => &EVERY_OWNER,
        }
    }

    /// Whether the caller may act for `owner`.
    pub fn may_act_for(&self, owner: &str) -> bool {
        self.owners().allows(owner)
    }
}

/// Every token with its client, as read from the configuration and the token files.
#[derive(Debug, Default)]
pub(super) struct Tokens {
    pub(super) entries: Vec<(String, Caller)>,
    /// Whether some client is the admin.
    pub(super) has_admin: bool,
}

impl Tokens {
    /// The tokens of `config`, reading its token files.
    pub(super) fn read(config: &AuthConfig) -> anyhow::Result<Tokens> {
        let mut tokens = Tokens::default();
        let mut add = |client: Client, secrets: Vec<String>| {
            tokens.has_admin |= client.admin;
            let caller = Caller::Client(Arc::new(client));
            for secret in secrets {
                tokens.entries.push((secret, caller.clone()));
            }
        };
        if let Some(token) = &config.token {
            let owners = Owners::all();
            let name = USER_CLIENT.into();
            add(
                Client {
                    name,
                    admin: false,
                    owners,
                },
                vec![token.clone()],
            );
        }
        if let Some(token) = &config.admin_token {
            let owners = Owners::all();
            let name = ADMIN_CLIENT.into();
            add(
                Client {
                    name,
                    admin: true,
                    owners,
                },
                vec![token.clone()],
            );
        }
        for client in &config.clients {
            let secrets = client_tokens(client)?;
            let owners = Owners::parse(&client.owners)
                .map_err(|e| anyhow::anyhow!("auth.clients '{}': owners: {e}", client.name))?;
            let (name, admin) = (client.name.clone(), client.admin);
            add(
                Client {
                    name,
                    admin,
                    owners,
                },
                secrets,
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for (token, caller) in &tokens.entries {
            if seen.contains(&token.as_str()) {
                bail!(
                    "auth: client '{}' has a token another client (or itself) already has; \
                     each token names one client",
                    caller.name()
                );
            }
            seen.push(token);
        }
        Ok(tokens)
    }
}

/// The tokens of one configured client.
fn client_tokens(client: &ClientConfig) -> anyhow::Result<Vec<String>> {
    let name = &client.name;
    match (&client.token, &client.token_file) {
        (Some(token), None) => Ok(vec![token.clone()]),
        (None, Some(path)) => read_token_file(path)
            .with_context(|| format!("auth.clients '{name}': token_file {}", path.display())),
        _ => bail!("auth.clients '{name}': give token or token_file, one of them"),
    }
}

/// A token file: one token per line; blank lines and lines starting with `#` are skipped.
fn read_token_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).context("cannot be read")?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        bail!("holds no token");
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn owner_patterns_are_names_and_prefixes() {
        let owners = Owners::parse(&patterns(&["agnt", "user-*"])).unwrap();
        assert!(owners.allows("agnt"));
        assert!(owners.allows("user-17"));
        assert!(owners.allows("user-"));
        assert!(!owners.allows("agnt2"), "a name is matched whole");
        assert!(!owners.allows("farm"));
        assert!(!owners.is_all());
        assert_eq!(owners.patterns(), patterns(&["agnt", "user-*"]));
        let all = Owners::parse(&patterns(&["farm", "*"])).unwrap();
        assert!(all.is_all() && all.allows("anything"));
        let error = Owners::parse(&patterns(&["*-bot"])).unwrap_err();
        assert!(error.contains("'*-bot'"), "{error}");
        assert!(Owners::parse(&patterns(&[" "])).is_err());
        assert!(
            !Owners::default().allows("agnt"),
            "no pattern allows nothing"
        );
    }

    #[test]
    fn an_admin_acts_for_every_owner() {
        let scoped = Owners::parse(&patterns(&["agnt"])).unwrap();
        let client = |admin| {
            Caller::Client(Arc::new(Client {
                name: "c".into(),
                admin,
                owners: scoped.clone(),
            }))
        };
        assert!(!client(false).may_act_for("farm"));
        assert!(client(false).may_act_for("agnt"));
        assert!(client(true).may_act_for("farm"));
        assert!(Caller::Anonymous.may_act_for("farm"));
        assert_eq!(Caller::Anonymous.name(), ANONYMOUS);
    }

    #[test]
    fn a_token_file_holds_one_token_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agnt.token");
        std::fs::write(&path, "# rotated 2026-12-06\nnew-token\n\n  old-token  \n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), ["new-token", "old-token"]);
        std::fs::write(&path, "# nothing yet\n").unwrap();
        let error = format!("{:#}", read_token_file(&path).unwrap_err());
        assert!(error.contains("holds no token"), "{error}");
    }
}
