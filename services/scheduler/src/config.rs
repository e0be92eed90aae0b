//! The one configuration struct. Layers, each overriding the one before: built-in defaults,
//! the TOML file (`scheduler.toml`, or `--config FILE`), the environment (`SCHEDULER__SECTION__KEY`,
//! and `DATABASE_URL`/`DIRECT_URL` as AutoGPT sets them), the command line. Unknown keys are an
//! error in every layer.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use jobstore::Jobstore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tasks::SystemTask;

/// The default file read when `--config` is not given (optional).
pub const DEFAULT_FILE: &str = "scheduler.toml";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub executor: ExecutorConfig,
    pub engine: EngineConfig,
    pub system_tasks: SystemTasksConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to listen on.
    pub host: IpAddr,
    pub port: u16,
    /// Request bodies above this size are refused (JSON-RPC and AutoGPT routes alike).
    pub max_body_bytes: u32,
    /// After SIGTERM or SIGINT: how long in-flight dispatches may take to finish before they
    /// are released to other replicas and the process exits.
    #[serde(with = "human_duration")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the embedded default) or `postgres://…` (with optional `?schema=`).
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// The execution service that receives `add_graph_execution`.
    pub url: String,
    /// Per-attempt timeout of a dispatch.
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// Retries after a failed attempt before the run is recorded as failed.
    pub retries: u32,
    /// The first backoff delay between attempts; it doubles each time.
    #[serde(with = "human_duration")]
    pub retry_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How many due schedules one claim transaction takes.
    pub batch_size: u32,
    /// How many dispatches may be in flight at once.
    pub dispatch_concurrency: u32,
    /// How long a claimed run stays ours before another process may take it over.
    #[serde(with = "human_duration")]
    pub lease: Duration,
    /// The longest the engine sleeps without re-reading the stores, as a guard against
    /// wall-clock jumps; changes made through the API wake it at once regardless.
    #[serde(with = "human_duration")]
    pub max_sleep: Duration,
    /// On PostgreSQL: how often a replica that does not lead tries to take the lead, and how
    /// often the leader checks the connection that holds its lock.
    #[serde(with = "human_duration")]
    pub leader_poll: Duration,
    /// When the oldest due occurrence is overdue by more than this, `/ready` answers 503: the
    /// engine is stuck (or far behind). `scheduler_oldest_overdue_seconds` shows how far.
    #[serde(with = "human_duration")]
    pub max_overdue: Duration,
}

/// The system tasks and the services they call. Each service is a JSON-RPC endpoint; a task
/// whose service has no URL is not registered (and says so in `get_registry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemTasksConfig {
    /// The notification manager (`queue_weekly_summary`, `process_existing_batches`).
    pub notification_manager_url: Option<String>,
    /// The database manager (`get_graph_executions`, `get_block_error_stats`).
    pub database_manager_url: Option<String>,
    /// The storage service (`cleanup_expired_files`).
    pub storage_url: Option<String>,
    /// Where alerts go, as a Discord-compatible webhook (`{"content": "..."}`). Without it alerts
    /// are only logged.
    pub alert_webhook_url: Option<String>,
    /// A QUEUED execution older than this is late; also how often `report_late_executions` runs.
    pub execution_late_notification_threshold_secs: u64,
    /// How far back `report_late_executions` looks.
    pub execution_late_notification_checkrange_secs: u64,
    /// How often `report_block_error_rates` runs; it looks at the last 24 hours.
    pub block_error_rate_check_interval_secs: u64,
    /// A block failing at least this share of its runs (0-1) is reported...
    pub block_error_rate_threshold: f64,
    /// ...when it ran at least this many times.
    pub block_error_min_runs: u64,
    /// How often `cleanup_expired_files` runs (1-24).
    pub cloud_storage_cleanup_interval_hours: u64,
    /// The declared tasks; absent means the AutoGPT set built from the settings above, and an
    /// empty list means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskDeclaration>>,
}

/// One system task: which task, where its schedule lives and when it fires. Without `cron` or
/// `every_secs` it runs only when asked (`execute_<task>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDeclaration {
    /// The schedule id, unique over all tasks.
    pub id: String,
    pub task: SystemTask,
    pub jobstore: Jobstore,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA zone of `cron` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    /// Keyword arguments passed to the task.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub kwargs: Value,
}

/// Who may call. Tokens travel as `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When set, every method and route except the health, readiness and metrics routes needs
    /// this token (or the admin token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token for admin methods (`get_registry`) and the `execute_*` triggers. When only
    /// `token` is set, admin methods are refused to everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Serve without any token even when listening beyond loopback.
    pub disabled: bool,
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
    /// A tracing filter such as `info` or `scheduler=debug,sqlx=warn`.
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: scheduler_api::DEFAULT_PORT,
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://./data/scheduler.db".into(),
            max_connections: 16,
        }
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            url: "http://127.0.0.1:8002".into(),
            timeout: Duration::from_secs(30),
            retries: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

impl EngineConfig {
    /// The lease as the stores take it.
    pub fn lease_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.lease).unwrap_or(chrono::TimeDelta::seconds(30))
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 500,
            dispatch_concurrency: 256,
            lease: Duration::from_secs(30),
            max_sleep: Duration::from_secs(60),
            leader_poll: Duration::from_secs(1),
            max_overdue: Duration::from_secs(300),
        }
    }
}

impl Default for SystemTasksConfig {
    fn default() -> Self {
        SystemTasksConfig {
            notification_manager_url: None,
            database_manager_url: None,
            storage_url: None,
            alert_webhook_url: None,
            execution_late_notification_threshold_secs: 300,
            execution_late_notification_checkrange_secs: 3600,
            block_error_rate_check_interval_secs: 86_400,
            block_error_rate_threshold: 0.5,
            block_error_min_runs: 10,
            cloud_storage_cleanup_interval_hours: 6,
            tasks: None,
        }
    }
}

impl SystemTasksConfig {
    /// The declared tasks: the configured list, or AutoGPT's set.
    pub fn declarations(&self) -> Vec<TaskDeclaration> {
        if let Some(tasks) = &self.tasks {
            return tasks.clone();
        }
        let task = |task: SystemTask, jobstore, cron: Option<&str>, every_secs| TaskDeclaration {
            id: task.as_str().to_string(),
            task,
            jobstore,
            cron: cron.map(str::to_string),
            timezone: cron.map(|_| "UTC".to_string()),
            every_secs,
            kwargs: Value::Null,
        };
        vec![
            // Monday 09:00 UTC. AutoGPT's APScheduler read the 1 as Tuesday.
            task(
                SystemTask::ProcessWeeklySummary,
                Jobstore::WeeklyNotifications,
                Some("0 9 * * 1"),
                None,
            ),
            task(
                SystemTask::ReportLateExecutions,
                Jobstore::Execution,
                None,
                Some(self.execution_late_notification_threshold_secs),
            ),
            task(
                SystemTask::ReportBlockErrorRates,
                Jobstore::Execution,
                None,
                Some(self.block_error_rate_check_interval_secs),
            ),
            task(
                SystemTask::CleanupExpiredFiles,
                Jobstore::Execution,
                None,
                Some(self.cloud_storage_cleanup_interval_hours * 3600),
            ),
            task(
                SystemTask::ProcessExistingBatches,
                Jobstore::BatchedNotifications,
                None,
                None,
            ),
        ]
    }

    /// The URL of the service a task calls, or the name of the setting that is missing.
    pub fn service_url(&self, task: SystemTask) -> Result<&str, &'static str> {
        let (url, key) = match task {
            SystemTask::ProcessWeeklySummary | SystemTask::ProcessExistingBatches => (
                &self.notification_manager_url,
                "system_tasks.notification_manager_url",
            ),
            SystemTask::ReportLateExecutions | SystemTask::ReportBlockErrorRates => (
                &self.database_manager_url,
                "system_tasks.database_manager_url",
            ),
            SystemTask::CleanupExpiredFiles => (&self.storage_url, "system_tasks.storage_url"),
        };
        url.as_deref().filter(|u| !u.is_empty()).ok_or(key)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (key, url) in [
            ("notification_manager_url", &self.notification_manager_url),
            ("database_manager_url", &self.database_manager_url),
            ("storage_url", &self.storage_url),
            ("alert_webhook_url", &self.alert_webhook_url),
        ] {
            if let Some(url) = url.as_deref().filter(|u| !u.is_empty()) {
                check_http_url(&format!("system_tasks.{key}"), url)?;
            }
        }
        if !(1..=24).contains(&self.cloud_storage_cleanup_interval_hours) {
            bail!(
                "system_tasks.cloud_storage_cleanup_interval_hours must be between 1 and 24, got {}",
                self.cloud_storage_cleanup_interval_hours
            );
        }
        if self.execution_late_notification_threshold_secs == 0
            || self.block_error_rate_check_interval_secs == 0
        {
            bail!(
                "system_tasks.execution_late_notification_threshold_secs and \
                 block_error_rate_check_interval_secs must be at least 1"
            );
        }
        if self.execution_late_notification_checkrange_secs
            <= self.execution_late_notification_threshold_secs
        {
            bail!(
                "system_tasks.execution_late_notification_checkrange_secs ({}) must exceed \
                 execution_late_notification_threshold_secs ({})",
                self.execution_late_notification_checkrange_secs,
                self.execution_late_notification_threshold_secs
            );
        }
        if !(self.block_error_rate_threshold > 0.0 && self.block_error_rate_threshold <= 1.0) {
            bail!(
                "system_tasks.block_error_rate_threshold must be in (0, 1], got {}",
                self.block_error_rate_threshold
            );
        }
        let mut seen = std::collections::HashSet::new();
        for declaration in self.declarations() {
            if declaration.id.trim().is_empty() {
                bail!("system_tasks.tasks: a task has an empty id");
            }
            if !seen.insert(declaration.id.clone()) {
                bail!(
                    "system_tasks.tasks: the id '{}' is declared twice",
                    declaration.id
                );
            }
            declaration
                .trigger(chrono::Utc::now())
                .with_context(|| format!("system_tasks.tasks: task '{}'", declaration.id))?;
        }
        Ok(())
    }
}

impl AuthConfig {
    fn validate(&self, host: IpAddr) -> anyhow::Result<()> {
        for (key, token) in [("token", &self.token), ("admin_token", &self.admin_token)] {
            if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                bail!("auth.{key} must not be empty; leave it out to set no token");
            }
        }
        if !self.disabled && self.token.is_none() && !host.is_loopback() {
            bail!(
                "server.host is {host}, beyond loopback, and auth.token is not set: set \
                 auth.token (and auth.admin_token), or auth.disabled = true to serve without \
                 authentication"
            );
        }
        Ok(())
    }
}

impl TaskDeclaration {
    /// The trigger this declaration asks for, anchored at `now` for intervals (the first fire
    /// is one interval after registration, as in AutoGPT); `None` for a task run only by hand.
    pub fn trigger(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Option<triggers::TriggerSpec>> {
        let spec = match (&self.cron, self.every_secs) {
            (Some(_), Some(_)) => bail!("give either cron or every_secs, not both"),
            (None, None) => {
                if self.timezone.is_some() {
                    bail!("timezone is given without cron");
                }
                return Ok(None);
            }
            (Some(expression), None) => triggers::TriggerSpec::Cron {
                expression: expression.clone(),
                timezone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            },
            (None, Some(every_secs)) => triggers::TriggerSpec::Interval {
                every_secs,
                anchor: chrono::SubsecRound::trunc_subsecs(now, 0)
                    + chrono::TimeDelta::seconds(every_secs.min(i64::MAX as u64) as i64),
            },
        };
        spec.compile()?;
        Ok(Some(spec))
    }
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
    pub executor_url: Option<String>,
}

impl Config {
    /// Builds the configuration from all layers, reading the process environment.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Config> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Config::load_from(overrides, &vars)
    }

    /// Builds the configuration from all layers with the given environment.
    pub fn load_from(overrides: &Overrides, env: &[(String, String)]) -> anyhow::Result<Config> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Config::default())?);
        builder = match &overrides.config_file {
            Some(path) => {
                if !path.is_file() {
                    bail!("config file {} does not exist", path.display());
                }
                builder.add_source(toml_file(path))
            }
            None => builder.add_source(toml_file(Path::new(DEFAULT_FILE)).required(false)),
        };
        let scheduler_vars: config::Map<String, String> = env
            .iter()
            .filter(|(key, _)| key.starts_with("SCHEDULER__"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SCHEDULER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(scheduler_vars.clone())),
        );
        // AutoGPT's variables, below the scheduler's own key: DIRECT_URL wins over DATABASE_URL
        // as in AutoGPT's scheduler.
        if !scheduler_vars.contains_key("SCHEDULER__DATABASE__URL") {
            let lookup = |name: &str| {
                env.iter()
                    .find(|(k, v)| k == name && !v.is_empty())
                    .map(|(_, v)| v.clone())
            };
            if let Some(url) = lookup("DIRECT_URL").or_else(|| lookup("DATABASE_URL")) {
                builder = builder.set_override("database.url", url)?;
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
        if let Some(url) = &overrides.executor_url {
            builder = builder.set_override("executor.url", url.as_str())?;
        }
        let config: Config = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        jobstore::DatabaseUrl::parse(&self.database.url).context("database.url")?;
        check_http_url("executor.url", &self.executor.url)?;
        self.system_tasks.validate()?;
        self.auth.validate(self.server.host)?;
        if self.engine.batch_size == 0 || self.engine.dispatch_concurrency == 0 {
            bail!("engine.batch_size and engine.dispatch_concurrency must be at least 1");
        }
        if self.engine.max_overdue < Duration::from_secs(1) {
            bail!("engine.max_overdue must be at least 1s");
        }
        if self.engine.lease < Duration::from_secs(1) {
            bail!("engine.lease must be at least 1s");
        }
        if self.server.max_body_bytes < 1024 {
            bail!("server.max_body_bytes must be at least 1024");
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `--check-config`, with tokens redacted.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        for token in [&mut shown.auth.token, &mut shown.auth.admin_token] {
            if token.is_some() {
                *token = Some("<redacted>".into());
            }
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}

fn check_http_url(key: &str, url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{key} must be an http:// or https:// URL, got '{url}'");
    }
    Ok(())
}

fn toml_file(path: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path).format(config::FileFormat::Toml)
}

/// Durations as humantime strings ("30s", "1m 30s").
mod human_duration {
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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn no_file() -> Overrides {
        // A directory with no scheduler.toml, so the optional default file is absent.
        Overrides {
            config_file: None,
            ..Default::default()
        }
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "[server]\nport = 9001\n[executor]\nretries = 7\ntimeout = \"5s\"\n",
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let config =
            Config::load_from(&overrides, &env(&[("SCHEDULER__EXECUTOR__RETRIES", "9")])).unwrap();
        assert_eq!(config.server.port, 9001, "file over default");
        assert_eq!(config.executor.retries, 9, "environment over file");
        assert_eq!(config.executor.timeout, Duration::from_secs(5));
        let overrides = Overrides {
            port: Some(9002),
            ..overrides
        };
        let config = Config::load_from(&overrides, &env(&[])).unwrap();
        assert_eq!(config.server.port, 9002, "command line over file");
    }

    #[test]
    fn autogpt_database_variables_are_honoured() {
        let config =
            Config::load_from(&no_file(), &env(&[("DATABASE_URL", "postgres://a@h/x")])).unwrap();
        assert_eq!(config.database.url, "postgres://a@h/x");
        let both = env(&[
            ("DATABASE_URL", "postgres://a@h/x"),
            ("DIRECT_URL", "postgres://b@h/y?schema=platform"),
        ]);
        assert_eq!(
            Config::load_from(&no_file(), &both).unwrap().database.url,
            "postgres://b@h/y?schema=platform"
        );
        let mut own = both.clone();
        own.push(("SCHEDULER__DATABASE__URL".into(), "sqlite://x.db".into()));
        assert_eq!(
            Config::load_from(&no_file(), &own).unwrap().database.url,
            "sqlite://x.db"
        );
        let cli = Overrides {
            database_url: Some("sqlite://cli.db".into()),
            ..no_file()
        };
        assert_eq!(
            Config::load_from(&cli, &own).unwrap().database.url,
            "sqlite://cli.db"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let error =
            Config::load_from(&no_file(), &env(&[("SCHEDULER__SERVER__PROT", "1")])).unwrap_err();
        assert!(format!("{error:#}").contains("prot"), "{error:#}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[engine]\nlease = \"soon\"\n").unwrap();
        let error = Config::load_from(
            &Overrides {
                config_file: Some(file),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("invalid duration 'soon'"),
            "{error:#}"
        );
        let error = Config::load_from(
            &no_file(),
            &env(&[("SCHEDULER__DATABASE__URL", "mysql://x")]),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("expected sqlite://PATH"),
            "{error:#}"
        );
        let missing = Overrides {
            config_file: Some("/nonexistent/s.toml".into()),
            ..Default::default()
        };
        assert!(
            Config::load_from(&missing, &[])
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }
}
