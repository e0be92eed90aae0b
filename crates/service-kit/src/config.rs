//! The configuration loader every service uses, and the sections they share.
//!
//! Layers, each overriding the one before: the service's built-in defaults, its TOML file
//! (`<name>.toml` in the working directory when it exists, or `--config FILE`), the environment
//! (`<PREFIX>__SECTION__KEY`, plus any variables the service reads under other names), the
//! command line. Unknown keys are an error in every layer, naming the key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::auth::{AuthConfig, ClientConfig};
use crate::database::DatabaseUrl;

/// What the loader needs to know of a service's configuration struct.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// The service's name: its default file is `<NAME>.toml`, and its messages start with it.
    const NAME: &'static str;
    /// The environment prefix: `<ENV_PREFIX>__SECTION__KEY` sets `section.key`.
    const ENV_PREFIX: &'static str;
    /// Variables read under other names, as `(variable, key)`, the first one set winning; used
    /// only when the service's own variable for that key is not set.
    const ENV_ALIASES: &'static [(&'static str, &'static str)] = &[];

    fn server(&self) -> &ServerConfig;
    fn database(&self) -> &DatabaseConfig;
    fn auth(&self) -> &AuthConfig;
    fn log(&self) -> &LogConfig;
    fn telemetry(&self) -> &TelemetryConfig;
    /// The auth section, so that [`to_toml`] can hide its tokens.
    fn auth_mut(&mut self) -> &mut AuthConfig;

    /// The service's own checks, after the shared sections passed theirs.
    fn validate(&self) -> anyhow::Result<()>;

    /// Hides secrets beyond the auth tokens before the configuration is shown.
    fn redact(&mut self) {}
}

/// Implements the accessors of [`ServiceConfig`] for a struct whose shared sections are the
/// fields `server`, `database`, `auth`, `log` and `telemetry`; use it inside the `impl`.
#[macro_export]
macro_rules! shared_sections {
    () => {
        fn server(&self) -> &$crate::config::ServerConfig {
            &self.server
        }
        fn database(&self) -> &$crate::config::DatabaseConfig {
            &self.database
        }
        fn auth(&self) -> &$crate::config::AuthConfig {
            &self.auth
        }
        fn log(&self) -> &$crate::config::LogConfig {
            &self.log
        }
        fn telemetry(&self) -> &$crate::config::TelemetryConfig {
            &self.telemetry
        }
        fn auth_mut(&mut self) -> &mut $crate::config::AuthConfig {
            &mut self.auth
        }
    };
}

/// Where the server listens and what it accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on.
    pub host: IpAddr,
    pub port: u16,
    /// Request bodies above this size are refused with 413.
    pub max_body_bytes: u32,
    /// After SIGTERM or SIGINT: how long the service may take to finish what is in flight
    /// before it exits anyway.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
}

impl ServerConfig {
    /// Loopback on `port`, with the given body limit and a 30 s shutdown deadline.
    pub fn new(port: u16, max_body_bytes: u32) -> Self {
        ServerConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port,
            max_body_bytes,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// The database a service keeps its state in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the embedded default) or `postgres://…` (with optional `?schema=`).
    pub url: String,
    pub max_connections: u32,
}

impl DatabaseConfig {
    pub fn new(url: &str, max_connections: u32) -> Self {
        DatabaseConfig {
            url: url.to_string(),
            max_connections,
        }
    }
}

/// `[telemetry]`: where traces go ([`crate::traces`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// A collector's OTLP/HTTP address (`http://collector:4318`); spans go to its
    /// `/v1/traces` as protobuf. Unset: no traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(endpoint) = &self.otlp_endpoint {
            check_http_url("telemetry.otlp_endpoint", endpoint)?;
        }
        Ok(())
    }

    /// The URL spans are posted to: the endpoint's `/v1/traces`, unless it names that path;
    /// `None` when traces are off.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(match endpoint.ends_with("/v1/traces") {
            true => endpoint.to_string(),
            false => format!("{endpoint}/v1/traces"),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `scheduler=debug,sqlx=warn`; `RUST_LOG`, when set,
    /// wins over it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// Values given on the command line, the last layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub database_url: Option<String>,
    /// Further `(key, value)` pairs a service's own flags set, such as `executor.url`.
    pub keys: Vec<(&'static str, String)>,
}

/// Builds a service's configuration from all layers, reading the process environment.
pub fn load<C: ServiceConfig>(overrides: &Overrides) -> anyhow::Result<C> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_from(overrides, &vars)
}

/// Builds a service's configuration from all layers with the given environment.
pub fn load_from<C: ServiceConfig>(
    overrides: &Overrides,
    env: &[(String, String)],
) -> anyhow::Result<C> {
    let mut builder =
        config::Config::builder().add_source(config::Config::try_from(&C::default())?);
    builder = match &overrides.config_file {
        Some(path) if !path.is_file() => bail!("config file {} does not exist", path.display()),
        Some(path) => builder.add_source(toml_file(path)),
        None => {
            let default = format!("{}.toml", C::NAME);
            builder.add_source(toml_file(Path::new(&default)).required(false))
        }
    };
    let own_prefix = format!("{}__", C::ENV_PREFIX);
    let own: config::Map<String, String> = env
        .iter()
        .filter(|(key, _)| key.starts_with(&own_prefix))
        .cloned()
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(C::ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(own.clone())),
    );
    for key in alias_keys::<C>() {
        let own_variable = format!("{own_prefix}{}", key.replace('.', "__").to_uppercase());
        if own.contains_key(&own_variable) {
            continue;
        }
        let set = C::ENV_ALIASES
            .iter()
            .filter(|(_, k)| *k == key)
            .find_map(|(variable, _)| {
                env.iter()
                    .find(|(name, value)| name == variable && !value.is_empty())
            });
        if let Some((_, value)) = set {
            builder = builder.set_override(key, value.as_str())?;
        }
    }
    if let Some(host) = overrides.host {
        builder = builder.set_override("server.host", host.to_string())?;
    }
    if let Some(port) = overrides.port {
        builder = builder.set_override("server.port", port)?;
    }
    if let Some(url) = &overrides.database_url {
        builder = builder.set_override("database.url", url.as_str())?;
    }
    for (key, value) in &overrides.keys {
        builder = builder.set_override(*key, value.as_str())?;
    }
    let config: C = builder
        .build()
        .context("reading configuration")?
        .try_deserialize()
        .context("invalid configuration")?;
    validate_shared(&config)?;
    config.validate()?;
    Ok(config)
}

/// The keys that have aliases, each once, in the order first named.
fn alias_keys<C: ServiceConfig>() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for (_, key) in C::ENV_ALIASES {
        if !keys.contains(key) {
            keys.push(key);
        }
    }
    keys
}

fn validate_shared<C: ServiceConfig>(config: &C) -> anyhow::Result<()> {
    DatabaseUrl::parse(&config.database().url).context("database.url")?;
    config.auth().validate(config.server().host)?;
    if config.server().max_body_bytes < 1024 {
        bail!("server.max_body_bytes must be at least 1024");
    }
    if config.database().max_connections == 0 {
        bail!("database.max_connections must be at least 1");
    }
    tracing_subscriber::EnvFilter::try_new(&config.log().level)
        .with_context(|| format!("log.level '{}' is not a tracing filter", config.log().level))?;
    config.telemetry().validate()?;
    Ok(())
}

/// The effective configuration as TOML, for `--check-config`, with secrets redacted.
pub fn to_toml<C: ServiceConfig + Clone>(config: &C) -> anyhow::Result<String> {
    let mut shown = config.clone();
    let auth = shown.auth_mut();
    let clients = auth.clients.iter_mut().map(|client| &mut client.token);
    for token in [&mut auth.token, &mut auth.admin_token]
        .into_iter()
        .chain(clients)
    {
        if token.is_some() {
            *token = Some(REDACTED.into());
        }
    }
    shown.redact();
    Ok(toml::to_string_pretty(&shown)?)
}

/// What `--check-config` shows in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Checks that `url` is an http:// or https:// URL, naming the key when it is not.
pub fn check_http_url(key: &str, url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{key} must be an http:// or https:// URL, got '{url}'");
    }
    Ok(())
}

fn toml_file(path: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path).format(config::FileFormat::Toml)
}

/// Durations as humantime strings ("30s", "1m 30s"), for `#[serde(with = "duration")]`; an
/// invalid one is named in the error.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration '{text}': {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        server: ServerConfig,
        database: DatabaseConfig,
        auth: AuthConfig,
        log: LogConfig,
        telemetry: TelemetryConfig,
        #[serde(with = "duration")]
        grace: Duration,
        secret: Option<String>,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                server: ServerConfig::new(7000, 4096),
                database: DatabaseConfig::new("sqlite://./demo.db", 2),
                auth: AuthConfig::default(),
                log: LogConfig::default(),
                telemetry: Default::default(),
                grace: Duration::from_secs(5),
                secret: None,
            }
        }
    }

    impl ServiceConfig for Demo {
        const NAME: &'static str = "demo-service-that-has-no-file";
        const ENV_PREFIX: &'static str = "DEMO";
        const ENV_ALIASES: &'static [(&'static str, &'static str)] = &[
            ("PRIMARY_URL", "database.url"),
            ("FALLBACK_URL", "database.url"),
        ];
        crate::shared_sections!();
        fn validate(&self) -> anyhow::Result<()> {
            if self.grace.is_zero() {
                bail!("grace must be more than 0");
            }
            Ok(())
        }
        fn redact(&mut self) {
            if self.secret.is_some() {
                self.secret = Some(REDACTED.into());
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, Overrides) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, text).unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            ..Default::default()
        };
        (dir, overrides)
    }

    #[test]
    fn each_layer_overrides_the_one_before() {
        let (_dir, overrides) = file("grace = \"7s\"\n[server]\nport = 7001\n");
        let demo: Demo = load_from(&overrides, &env(&[("DEMO__GRACE", "9s")])).unwrap();
        assert_eq!(demo.server.port, 7001, "file over default");
        assert_eq!(demo.grace, Duration::from_secs(9), "environment over file");
        assert_eq!(demo.server.max_body_bytes, 4096, "unset keys keep defaults");
        let overrides = Overrides {
            port: Some(7002),
            keys: vec![("grace", "11s".into())],
            ..overrides
        };
        let demo: Demo = load_from(&overrides, &env(&[("DEMO__GRACE", "9s")])).unwrap();
        assert_eq!(demo.server.port, 7002, "command line over file");
        assert_eq!(demo.grace, Duration::from_secs(11), "command line over env");
    }

    #[test]
    fn aliases_apply_in_order_below_the_own_variable() {
        let none = Overrides::default();
        let both = env(&[
            ("FALLBACK_URL", "sqlite://b.db"),
            ("PRIMARY_URL", "sqlite://a.db"),
        ]);
        let demo: Demo = load_from(&none, &both).unwrap();
        assert_eq!(demo.database.url, "sqlite://a.db");
        let mut own = both.clone();
        own.push(("DEMO__DATABASE__URL".into(), "sqlite://own.db".into()));
        let demo: Demo = load_from(&none, &own).unwrap();
        assert_eq!(demo.database.url, "sqlite://own.db");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        for (text, expected) in [
            ("[server]\nprot = 1\n", "prot"),
            ("grace = \"soon\"\n", "invalid duration 'soon'"),
            ("grace = \"0s\"\n", "grace must be more than 0"),
            (
                "[database]\nurl = \"mysql://x\"\n",
                "expected sqlite://PATH",
            ),
            ("[log]\nlevel = \"info,[[\"\n", "log.level"),
            ("[server]\nhost = \"0.0.0.0\"\n", "beyond loopback"),
            ("[auth]\ntoken = \" \"\n", "auth.token must not be empty"),
            (
                "[[auth.clients]]\nname = \"user\"\ntoken = \"t\"\nowners = [\"*\"]\n",
                "the name 'user' is reserved",
            ),
            (
                "[[auth.clients]]\nname = \"agnt\"\nowners = [\"agnt\"]\n",
                "give token or token_file",
            ),
            (
                "[[auth.clients]]\nname = \"agnt\"\ntoken = \"t\"\nowners = [\"a*b\"]\n",
                "owner pattern 'a*b'",
            ),
            (
                "[[auth.clients]]\nname = \"agnt\"\ntoken_file = \"/nonexistent/t\"\n\
                 owners = [\"agnt\"]\n",
                "token_file /nonexistent/t: cannot be read",
            ),
        ] {
            let (_dir, overrides) = file(text);
            let error = format!("{:#}", load_from::<Demo>(&overrides, &[]).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
        let missing = Overrides {
            config_file: Some("/nonexistent/demo.toml".into()),
            ..Default::default()
        };
        let error = load_from::<Demo>(&missing, &[]).unwrap_err().to_string();
        assert!(error.contains("does not exist"), "{error}");
    }

    #[test]
    fn shown_configuration_hides_secrets() {
        let (_dir, overrides) = file(
            "secret = \"s3\"\n[auth]\ntoken = \"user-token\"\nadmin_token = \"admin-token\"\n\
             [[auth.clients]]\nname = \"agnt\"\ntoken = \"agnt-token\"\nowners = [\"agnt\"]\n",
        );
        let demo: Demo = load_from(&overrides, &[]).unwrap();
        let shown = to_toml(&demo).unwrap();
        for secret in ["user-token", "admin-token", "agnt-token", "s3\""] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains(REDACTED), "{shown}");
        let reloaded: Demo = toml::from_str(&shown).unwrap();
        assert_eq!(reloaded.grace, demo.grace, "the shown file reads back");
    }
}
