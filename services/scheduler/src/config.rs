//! The one configuration struct, loaded by [`service_kit::config`]: built-in defaults, the
//! TOML file (`scheduler.toml`, or `--config FILE`), the environment (`SCHEDULER__SECTION__KEY`,
//! and `DATABASE_URL`/`DIRECT_URL` as AutoGPT sets them), the command line. Unknown keys are an
//! error in every layer.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use service_kit::config::{
    AuthConfig, DatabaseConfig, LogConfig, REDACTED, ServerConfig, ServiceConfig, check_http_url,
    duration,
};

pub use crate::alerts::{AlertsConfig, ChannelConfig, ChannelKind};
pub use crate::autogpt::tasks::{SystemTasksConfig, TaskDeclaration};
pub use crate::calendars::CalendarConfig;
use crate::declared::ScheduleDeclaration;
pub use crate::outbound::{EndpointConfig, RedisConfig};
use crate::retention::LedgerConfig;
use crate::targets::Configured;
pub use crate::targets::DeviceRunnerConfig;
pub use crate::watches::{ModuleConfig, WatchesConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub executor: ExecutorConfig,
    pub engine: EngineConfig,
    pub system_tasks: SystemTasksConfig,
    /// The services targets may call, by name (`[endpoints.backend] url = "http://…"`): an
    /// `rpc` or `http` target names one, so no caller can make the scheduler call an address
    /// of its choosing.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// The device runners `device_job` targets queue jobs on, by name
    /// (`[device_runners.farm] url = "http://…"`).
    pub device_runners: BTreeMap<String, DeviceRunnerConfig>,
    /// The phone farm's REST API (`/api/schedules`, `/api/scheduler/*`).
    pub farm: FarmConfig,
    pub redis: RedisConfig,
    /// The JSON-RPC modules `poll_module` checks call, by name (`[modules.deployer] url = …`).
    pub modules: BTreeMap<String, ModuleConfig>,
    /// Watches: their checks' limits and where `resume_conversation` goes.
    pub watches: WatchesConfig,
    /// Schedules declared here (`[[schedules]]`): registered at start, replaced when changed,
    /// removed when no longer declared, read-only through the API.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleDeclaration>,
    /// Exclusion calendars, by name (`[calendars.holidays] dates = ["2026-12-25"]`): a
    /// trigger naming one (`exclude = ["holidays"]`) skips its dates.
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// The run ledger's retention.
    pub ledger: LedgerConfig,
    /// When schedules' incidents open (the defaults of `policy.alerts`) and where they go.
    pub alerts: AlertsConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    /// Traces over OTLP (`otlp_endpoint`); off when unset.
    pub telemetry: service_kit::config::TelemetryConfig,
}

impl Config {
    /// The names this configuration offers targets, for their checks.
    pub fn configured(&self) -> Configured {
        Configured {
            endpoints: self.endpoints.keys().cloned().collect(),
            runners: self.device_runners.keys().cloned().collect(),
            redis: self.redis.url.is_some(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::new(scheduler_api::DEFAULT_PORT, 10 * 1024 * 1024),
            database: DatabaseConfig::new("sqlite://./data/scheduler.db", 16),
            executor: ExecutorConfig::default(),
            engine: EngineConfig::default(),
            system_tasks: SystemTasksConfig::default(),
            endpoints: BTreeMap::new(),
            device_runners: BTreeMap::new(),
            farm: FarmConfig::default(),
            redis: RedisConfig::default(),
            modules: BTreeMap::new(),
            watches: WatchesConfig::default(),
            schedules: Vec::new(),
            calendars: BTreeMap::new(),
            ledger: LedgerConfig::default(),
            alerts: AlertsConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            telemetry: Default::default(),
        }
    }
}

impl ServiceConfig for Config {
    const NAME: &'static str = "scheduler";
    const ENV_PREFIX: &'static str = "SCHEDULER";
    // AutoGPT's variables: DIRECT_URL wins over DATABASE_URL, as in AutoGPT's scheduler.
    const ENV_ALIASES: &'static [(&'static str, &'static str)] = &[
        ("DIRECT_URL", "database.url"),
        ("DATABASE_URL", "database.url"),
    ];

    service_kit::shared_sections!();

    fn validate(&self) -> anyhow::Result<()> {
        check_http_url("executor.url", &self.executor.url)?;
        crate::endpoint::check_batch("executor.batch", self.executor.batch)?;
        self.system_tasks.validate()?;
        self.engine.validate()?;
        for (name, endpoint) in &self.endpoints {
            check_name("endpoints", name)?;
            endpoint.validate(name)?;
        }
        for (name, runner) in &self.device_runners {
            check_name("device_runners", name)?;
            runner.validate(name)?;
        }
        self.redis.validate()?;
        for (name, module) in &self.modules {
            check_name("modules", name)?;
            module.validate(name)?;
        }
        self.watches.validate()?;
        self.ledger.validate()?;
        for name in self.alerts.channels.keys() {
            check_name("alerts.channels", name)?;
        }
        self.alerts.validate(self.redis.url.is_some())?;
        self.farm.validate(self)?;
        for client in &self.auth.clients {
            if client.owners.is_empty() && !client.admin {
                bail!(
                    "auth.clients '{}': owners is empty: list the owners it may act for \
                     (\"*\" for every owner)",
                    client.name
                );
            }
        }
        for name in self.calendars.keys() {
            check_name("calendars", name)?;
        }
        let calendars = crate::calendars::of(&self.calendars)?;
        let context = crate::declared::Checks {
            configured: self.configured(),
            calendars,
            taken: self
                .system_tasks
                .declarations()
                .into_iter()
                .map(|task| task.id)
                .collect(),
        };
        crate::declared::validate(&self.schedules, &context)?;
        Ok(())
    }

    fn redact(&mut self) {
        for endpoint in self.endpoints.values_mut() {
            for secret in [&mut endpoint.token, &mut endpoint.signing_secret] {
                if secret.is_some() {
                    *secret = Some(REDACTED.into());
                }
            }
        }
        for runner in self.device_runners.values_mut() {
            for token in [&mut runner.token, &mut runner.admin_token] {
                if token.is_some() {
                    *token = Some(REDACTED.into());
                }
            }
        }
        for module in self.modules.values_mut() {
            if module.token.is_some() {
                module.token = Some(REDACTED.into());
            }
        }
        self.alerts.redact();
        if self.watches.core_token.is_some() {
            self.watches.core_token = Some(REDACTED.into());
        }
        if let Some(url) = &mut self.redis.url
            && let Some((scheme, rest)) = url.split_once("://")
            && let Some((_, host)) = rest.rsplit_once('@')
        {
            *url = format!("{scheme}://{REDACTED}@{host}");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// The execution service that receives `add_graph_execution`.
    pub url: String,
    /// Per-attempt timeout of a dispatch.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Retries after a failed attempt before the run is recorded as failed.
    pub retries: u32,
    /// The first backoff delay between attempts; it doubles each time.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// Graph executions due together are sent as JSON-RPC batch requests of up to this many
    /// `add_graph_execution` calls (1: one request per call). An execution service that
    /// answers a batch request as a service without batches does is sent one call per request
    /// from then on.
    pub batch: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How many due schedules one claim transaction takes.
    pub batch_size: u32,
    /// How many dispatches may be in flight at once.
    pub dispatch_concurrency: u32,
    /// How long a claimed run stays ours before another process may take it over.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How far ahead of their time due occurrences are claimed (`0s`: only once due). The
    /// claim's database work then happens before the due second, and a large burst goes out
    /// on time; each run is still dispatched at its time, not at all if its schedule is
    /// paused or deleted meanwhile, and as the schedule now is if it is updated meanwhile.
    /// Schedules whose overlap policy looks at their runs in progress (`rpc` and `http`
    /// targets, unless `allow_all`) are claimed only once due.
    #[serde(with = "duration")]
    pub lookahead: Duration,
    /// The longest the engine sleeps without re-reading the stores, as a guard against
    /// wall-clock jumps; changes made through the API wake it at once regardless.
    #[serde(with = "duration")]
    pub max_sleep: Duration,
    /// On PostgreSQL: how often a replica that does not lead tries to take the lead, and how
    /// often the leader checks the connection that holds its lock.
    #[serde(with = "duration")]
    pub leader_poll: Duration,
    /// When the oldest due occurrence is overdue by more than this, `/ready` answers 503: the
    /// engine is stuck (or far behind). `scheduler_oldest_overdue_seconds` shows how far.
    #[serde(with = "duration")]
    pub max_overdue: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            url: "http://127.0.0.1:8002".into(),
            timeout: Duration::from_secs(30),
            retries: 3,
            retry_delay: Duration::from_secs(1),
            batch: 100,
        }
    }
}

impl EngineConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.batch_size == 0 || self.dispatch_concurrency == 0 {
            bail!("engine.batch_size and engine.dispatch_concurrency must be at least 1");
        }
        if self.max_overdue < Duration::from_secs(1) {
            bail!("engine.max_overdue must be at least 1s");
        }
        if self.lease < Duration::from_secs(1) {
            bail!("engine.lease must be at least 1s");
        }
        if self.lookahead > Duration::from_secs(60) {
            bail!("engine.lookahead must be at most 60s (it holds claimed runs in memory)");
        }
        Ok(())
    }

    /// The lease as the stores take it.
    pub fn lease_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.lease).unwrap_or(chrono::TimeDelta::seconds(30))
    }

    /// The lookahead as the stores take it.
    pub fn lookahead_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.lookahead).unwrap_or_default()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 500,
            dispatch_concurrency: 256,
            lease: Duration::from_secs(30),
            lookahead: Duration::from_secs(2),
            max_sleep: Duration::from_secs(60),
            leader_poll: Duration::from_secs(1),
            max_overdue: Duration::from_secs(300),
        }
    }
}

/// `[farm]`: where the farm's schedules queue their jobs, and as whom they are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FarmConfig {
    /// The device runner of `[device_runners]` the farm's jobs go to (default: the only one
    /// configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// The owner of the farm's schedules in the general API.
    pub owner: String,
    /// The zone of `daily_times`.
    pub timezone: String,
}

impl Default for FarmConfig {
    fn default() -> Self {
        FarmConfig {
            runner: None,
            owner: "farm".into(),
            timezone: "UTC".into(),
        }
    }
}

impl FarmConfig {
    /// The runner the farm uses, if it has one.
    pub fn runner_name<'a>(&'a self, config: &'a Config) -> Option<&'a str> {
        match &self.runner {
            Some(name) => Some(name),
            None if config.device_runners.len() == 1 => {
                config.device_runners.keys().next().map(String::as_str)
            }
            None => None,
        }
    }

    pub fn validate(&self, config: &Config) -> anyhow::Result<()> {
        if let Some(name) = &self.runner
            && !config.device_runners.contains_key(name)
        {
            anyhow::bail!("farm.runner '{name}' is not configured: add [device_runners.{name}]");
        }
        if self.owner.trim().is_empty() {
            anyhow::bail!("farm.owner must not be empty");
        }
        let probe = triggers::TriggerKind::DailyTimes {
            times: vec!["00:00".into()],
            timezone: self.timezone.clone(),
        };
        probe
            .compile()
            .map_err(|e| anyhow::anyhow!("farm.timezone: {e}"))?;
        Ok(())
    }
}

/// Refuses a name of `[section.<name>]` that is not letters, digits, '_' and '-'.
fn check_name(section: &str, name: &str) -> anyhow::Result<()> {
    let fine = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !fine {
        bail!("{section}.{name}: a name is letters, digits, '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::config::{Overrides, load_from};

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
            load_from::<Config>(&overrides, &env(&[("SCHEDULER__EXECUTOR__RETRIES", "9")]))
                .unwrap();
        assert_eq!(config.server.port, 9001, "file over default");
        assert_eq!(config.executor.retries, 9, "environment over file");
        assert_eq!(config.executor.timeout, Duration::from_secs(5));
        let overrides = Overrides {
            port: Some(9002),
            ..overrides
        };
        let config = load_from::<Config>(&overrides, &env(&[])).unwrap();
        assert_eq!(config.server.port, 9002, "command line over file");
    }

    #[test]
    fn autogpt_database_variables_are_honoured() {
        let config =
            load_from::<Config>(&no_file(), &env(&[("DATABASE_URL", "postgres://a@h/x")])).unwrap();
        assert_eq!(config.database.url, "postgres://a@h/x");
        let both = env(&[
            ("DATABASE_URL", "postgres://a@h/x"),
            ("DIRECT_URL", "postgres://b@h/y?schema=platform"),
        ]);
        assert_eq!(
            load_from::<Config>(&no_file(), &both).unwrap().database.url,
            "postgres://b@h/y?schema=platform"
        );
        let mut own = both.clone();
        own.push(("SCHEDULER__DATABASE__URL".into(), "sqlite://x.db".into()));
        assert_eq!(
            load_from::<Config>(&no_file(), &own).unwrap().database.url,
            "sqlite://x.db"
        );
        let cli = Overrides {
            database_url: Some("sqlite://cli.db".into()),
            ..no_file()
        };
        assert_eq!(
            load_from::<Config>(&cli, &own).unwrap().database.url,
            "sqlite://cli.db"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let error =
            load_from::<Config>(&no_file(), &env(&[("SCHEDULER__SERVER__PROT", "1")])).unwrap_err();
        assert!(format!("{error:#}").contains("prot"), "{error:#}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[engine]\nlease = \"soon\"\n").unwrap();
        let error = load_from::<Config>(
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
        std::fs::write(
            dir.path().join("bad.toml"),
            "[[auth.clients]]\nname = \"agnt\"\ntoken = \"t\"\n",
        )
        .unwrap();
        let unscoped = Overrides {
            config_file: Some(dir.path().join("bad.toml")),
            ..Default::default()
        };
        let error = load_from::<Config>(&unscoped, &[]).unwrap_err();
        assert!(
            format!("{error:#}").contains("auth.clients 'agnt': owners is empty"),
            "{error:#}"
        );
        let error = load_from::<Config>(
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
            load_from::<Config>(&missing, &[])
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }
}
