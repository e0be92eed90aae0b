//! The one configuration struct, loaded by [`service_kit::config`]: built-in defaults, the
//! TOML file (`device-runner.toml`, or `--config FILE`), the environment
//! (`DEVICE_RUNNER__KEY`, `DEVICE_RUNNER__SECTION__KEY`), the command line, unknown keys
//! rejected in every layer. Job types from the file are merged key by key over the defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use service_kit::config::{
    AuthConfig, DatabaseConfig, LogConfig, ServerConfig, ServiceConfig, duration,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The runner's name, as it reports it (a farm has a runner per host); unset: the host
    /// name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How long a job runs before a job of higher priority may preempt it.
    #[serde(with = "duration")]
    pub preempt_grace: Duration,
    /// How long a stopped job has between SIGTERM and SIGKILL.
    #[serde(with = "duration")]
    pub kill_grace: Duration,
    /// The most a job's log file holds; what comes after is dropped behind a marker line.
    pub log_cap_bytes: u64,
    /// Where job logs are written, one file per job.
    pub log_dir: PathBuf,
    /// The largest `params` (as JSON) a job may be given.
    pub max_params_bytes: u64,
    pub devices: Vec<DeviceConfig>,
    /// Queues for jobs that need no phone (`[[pools]] name = "modules", concurrency = 4`).
    pub pools: Vec<PoolConfig>,
    pub job_types: BTreeMap<String, JobTypeConfig>,
    pub adb: AdbConfig,
    pub health: HealthConfig,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    /// Traces over OTLP (`otlp_endpoint`); off when unset.
    pub telemetry: service_kit::config::TelemetryConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub serial: String,
    #[serde(default)]
    pub label: Option<String>,
    /// What the phone offers, for placing jobs by what they need (`["tiktok", "android-13",
    /// "sim"]`): letters, digits, `.`, `_` and `-`, up to 64 each.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl DeviceConfig {
    /// Checks `[[devices]]`' tags, naming the device and the tag at fault.
    fn check_tags(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for tag in &self.tags {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
            if tag.is_empty() || tag.len() > 64 || !tag.bytes().all(allowed) {
                bail!(
                    "devices: serial {}: tag '{tag}' must be 1 to 64 letters, digits, '.', '_' \
                     or '-'",
                    self.serial
                );
            }
            if !seen.insert(tag) {
                bail!(
                    "devices: serial {}: tag '{tag}' is listed twice",
                    self.serial
                );
            }
        }
        Ok(())
    }
}

impl Config {
    /// The name the runner reports: `name`, or the host name.
    pub fn runner_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_else(|| "device-runner".into())
        })
    }
}

/// A pool: up to `concurrency` of its jobs run at once, in priority then FIFO order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub concurrency: u32,
}

/// The queue a pool's jobs wait in, where a device's serial names a phone's.
pub fn pool_queue(name: &str) -> String {
    format!("{POOL_PREFIX}{name}")
}

/// What a pool's queue name starts with; no device serial does.
pub const POOL_PREFIX: &str = "pool:";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTypeConfig {
    /// The command; `{device}`, `{job_id}` and `{params_json}` are filled in per job.
    pub argv: Vec<String>,
    /// Working directory, relative to the runner's own.
    #[serde(default = "default_cwd")]
    pub cwd: PathBuf,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(with = "duration")]
    pub max_duration: Duration,
    /// Never preempted.
    #[serde(default)]
    pub protected: bool,
    /// Queued again (with its last checkpoint) when preempted or interrupted by a restart.
    #[serde(default)]
    pub requeue_on_preempt: bool,
    /// Where its jobs run: `device` (a phone's queue, the default) or `pool:<name>`.
    #[serde(default = "default_runs_on")]
    pub runs_on: String,
}

fn default_runs_on() -> String {
    "device".into()
}

impl JobTypeConfig {
    /// The pool its jobs run in; `None` for a job type that runs on a device.
    pub fn pool(&self) -> Option<&str> {
        self.runs_on.strip_prefix(POOL_PREFIX)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdbConfig {
    /// `true`, `false`, or absent: use adb when `path` is found.
    pub enabled: Option<bool>,
    /// The adb binary, looked up on PATH when it has no slash.
    pub path: String,
    /// How often `adb devices -l` is read.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How many reads in a row must agree before a device's state change is believed.
    pub debounce: u32,
}

/// Phones' health: how often their facts are read from adb, the gates a phone must be inside
/// to start a job (each off until set), and quarantine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often each online phone's model, Android version, battery and temperature are read.
    #[serde(with = "duration")]
    pub poll: Duration,
    /// A phone whose battery is below this percentage starts no job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_battery: Option<u8>,
    /// A phone whose battery is hotter than this (°C) starts no job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_temperature: Option<f64>,
    /// A phone hotter than this (°C) has its running job stopped (`interrupted`, queued again
    /// from its checkpoint when its type resumes), and starts none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_above_temperature: Option<f64>,
    /// After this many jobs in a row failed, timed out or lost their device, a phone is
    /// quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_after: Option<u32>,
    /// What the runner does for a phone quarantined after failures: `none` (an operator
    /// releases it) or `reboot` (reboot it, wait until it is back and inside its gates,
    /// release it).
    pub recovery: Recovery,
    /// How long a reboot may take to bring a phone back before the recovery gives up (the
    /// phone stays quarantined).
    #[serde(with = "duration")]
    pub recovery_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    None,
    Reboot,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            poll: Duration::from_secs(30),
            min_battery: None,
            max_temperature: None,
            stop_above_temperature: None,
            quarantine_after: None,
            recovery: Recovery::None,
            recovery_timeout: Duration::from_secs(300),
        }
    }
}

impl HealthConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.poll.is_zero() || self.recovery_timeout.is_zero() {
            bail!("health.poll and health.recovery_timeout must be more than 0");
        }
        if self.min_battery.is_some_and(|b| b > 100) {
            bail!("health.min_battery must be 0 to 100 (a percentage)");
        }
        for (key, limit) in [
            ("max_temperature", self.max_temperature),
            ("stop_above_temperature", self.stop_above_temperature),
        ] {
            if limit.is_some_and(|t| !t.is_finite() || !(-40.0..=150.0).contains(&t)) {
                bail!("health.{key} must be a temperature in °C between -40 and 150");
            }
        }
        if let (Some(start), Some(stop)) = (self.max_temperature, self.stop_above_temperature)
            && stop < start
        {
            bail!(
                "health.stop_above_temperature ({stop}) must not be below health.max_temperature \
                 ({start}): a job would be stopped at a temperature it may start at"
            );
        }
        if self.quarantine_after == Some(0) {
            bail!("health.quarantine_after must be at least 1 (leave it out to turn it off)");
        }
        Ok(())
    }
}

fn default_cwd() -> PathBuf {
    PathBuf::from(".")
}

/// The phone-farm job types: every one 15 minutes at most except content generation (1 hour);
/// posting and publishing are never preempted. Their commands are placeholders meant to be
/// set in the configuration.
pub fn default_job_types() -> BTreeMap<String, JobTypeConfig> {
    let names = [
        "crawl",
        "outreach",
        "post",
        "publish_draft",
        "perf_scan",
        "inbox_scan",
        "engage",
        "skill_workflow",
        "skill_action",
        "app_explore",
        "content_gen",
    ];
    names
        .into_iter()
        .map(|name| {
            let minutes = if name == "content_gen" { 60 } else { 15 };
            let job_type = JobTypeConfig {
                argv: vec![
                    "python3".into(),
                    format!("bots/{name}.py"),
                    "--params".into(),
                    "{params_json}".into(),
                ],
                cwd: default_cwd(),
                env: BTreeMap::from([("PYTHONUNBUFFERED".to_string(), "1".to_string())]),
                max_duration: Duration::from_secs(minutes * 60),
                protected: matches!(name, "post" | "publish_draft"),
                requeue_on_preempt: false,
                runs_on: default_runs_on(),
            };
            (name.to_string(), job_type)
        })
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            preempt_grace: Duration::from_secs(90),
            kill_grace: Duration::from_secs(5),
            log_cap_bytes: 10 * 1024 * 1024,
            log_dir: PathBuf::from("./data/logs"),
            max_params_bytes: 64 * 1024,
            devices: Vec::new(),
            pools: Vec::new(),
            job_types: default_job_types(),
            adb: AdbConfig::default(),
            health: HealthConfig::default(),
            server: ServerConfig::new(device_runner_api::DEFAULT_PORT, 1024 * 1024),
            database: DatabaseConfig::new("sqlite://./data/device-runner.db", 8),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            telemetry: Default::default(),
        }
    }
}

impl Default for AdbConfig {
    fn default() -> Self {
        AdbConfig {
            enabled: None,
            path: "adb".into(),
            poll_interval: Duration::from_secs(2),
            debounce: 2,
        }
    }
}

impl Config {
    /// Where a job's log goes.
    pub fn log_path(&self, device: &str, job_id: &str) -> PathBuf {
        let safe: String = device
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.log_dir.join(safe).join(format!("{job_id}.log"))
    }
}

impl ServiceConfig for Config {
    const NAME: &'static str = "device-runner";
    const ENV_PREFIX: &'static str = "DEVICE_RUNNER";

    service_kit::shared_sections!();

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.len() > 128)
        {
            bail!("name must be 1 to 128 characters, got '{name}'");
        }
        let mut serials = std::collections::HashSet::new();
        for device in &self.devices {
            if device.serial.trim().is_empty() {
                bail!("devices: a serial is empty");
            }
            if !serials.insert(&device.serial) {
                bail!("devices: serial {} is listed twice", device.serial);
            }
            if device.serial.starts_with(POOL_PREFIX) {
                bail!(
                    "devices: serial {} starts with '{POOL_PREFIX}', which names pools",
                    device.serial
                );
            }
            device.check_tags()?;
        }
        let mut pools = std::collections::HashSet::new();
        for pool in &self.pools {
            if pool.name.is_empty()
                || !pool
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!(
                    "pools: a name is letters, digits, '_' and '-', got '{}'",
                    pool.name
                );
            }
            if !pools.insert(pool.name.as_str()) {
                bail!("pools: {} is listed twice", pool.name);
            }
            if !(1..=256).contains(&pool.concurrency) {
                bail!("pools.{}.concurrency must be 1 to 256", pool.name);
            }
        }
        for (name, job_type) in &self.job_types {
            if job_type.argv.is_empty() || job_type.argv[0].is_empty() {
                bail!("job_types.{name}.argv must name a program");
            }
            if job_type.max_duration.is_zero() {
                bail!("job_types.{name}.max_duration must be more than 0");
            }
            match job_type.pool() {
                None if job_type.runs_on == "device" => {}
                Some(pool) if pools.contains(pool) => {}
                Some(pool) => {
                    bail!("job_types.{name}.runs_on names pool '{pool}', which is not in [[pools]]")
                }
                None => bail!(
                    "job_types.{name}.runs_on must be \"device\" or \"pool:<name>\", got '{}'",
                    job_type.runs_on
                ),
            }
        }
        if self.kill_grace.is_zero() {
            bail!("kill_grace must be more than 0");
        }
        if self.log_cap_bytes < 1024 {
            bail!("log_cap_bytes must be at least 1024");
        }
        if self.adb.debounce == 0 || self.adb.poll_interval.is_zero() {
            bail!("adb.debounce and adb.poll_interval must be more than 0");
        }
        self.health.validate()
    }
}

/// Parses a duration given to the API: a number of seconds, or a string such as `90`, `15m`,
/// `1h`, `24h`, `7d`.
pub fn parse_api_duration(value: &serde_json::Value) -> Result<Duration, String> {
    let invalid =
        || format!("max_duration must be seconds or a duration such as 15m, 1h, 7d; got {value}");
    let duration = match value {
        serde_json::Value::Number(n) => Duration::from_secs(n.as_u64().ok_or_else(invalid)?),
        serde_json::Value::String(text) => match text.trim().parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(text.trim()).map_err(|_| invalid())?,
        },
        _ => return Err(invalid()),
    };
    if duration.is_zero() || duration > Duration::from_secs(30 * 86_400) {
        return Err(format!(
            "max_duration must be between 1s and 30d; got {value}"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::config::{Overrides, load_from};

    #[test]
    fn file_job_types_merge_over_the_defaults_and_env_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        std::fs::write(
            &file,
            r#"preempt_grace = "2s"
name = "host-a"
[[devices]]
serial = "A1"
label = "phone 1"
tags = ["tiktok", "android-13"]
[job_types.crawl]
max_duration = "20m"
[job_types.custom]
argv = ["sh", "-c", "echo {job_id}"]
max_duration = "1m"
"#,
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let env = vec![("DEVICE_RUNNER__KILL_GRACE".to_string(), "1s".to_string())];
        let config = load_from::<Config>(&overrides, &env).unwrap();
        assert_eq!(config.runner_name(), "host-a");
        assert_eq!(config.preempt_grace, Duration::from_secs(2));
        assert_eq!(
            config.kill_grace,
            Duration::from_secs(1),
            "environment over file"
        );
        let crawl = &config.job_types["crawl"];
        assert_eq!(crawl.max_duration, Duration::from_secs(1200));
        assert_eq!(
            crawl.argv[1], "bots/crawl.py",
            "unset keys keep their default"
        );
        assert!(config.job_types["post"].protected);
        assert_eq!(
            config.job_types["content_gen"].max_duration,
            Duration::from_secs(3600)
        );
        assert_eq!(config.job_types["custom"].argv[0], "sh");
        assert_eq!(config.devices[0].label.as_deref(), Some("phone 1"));
        assert_eq!(config.devices[0].tags, ["tiktok", "android-13"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("preempt_grase = \"1s\"", "preempt_grase"),
            ("kill_grace = \"soon\"", "soon"),
            (
                "[job_types.x]\nargv = []\nmax_duration = \"1m\"",
                "job_types.x.argv",
            ),
            (
                "[[devices]]\nserial = \"A\"\n[[devices]]\nserial = \"A\"",
                "listed twice",
            ),
            (
                "[[devices]]\nserial = \"A\"\ntags = [\"sim card\"]",
                "devices: serial A: tag 'sim card' must be 1 to 64 letters",
            ),
            (
                "[[devices]]\nserial = \"A\"\ntags = [\"sim\", \"sim\"]",
                "devices: serial A: tag 'sim' is listed twice",
            ),
            ("name = \" \"", "name must be 1 to 128 characters"),
        ] {
            let file = dir.path().join("bad.toml");
            std::fs::write(&file, text).unwrap();
            let overrides = Overrides {
                config_file: Some(file),
                ..Default::default()
            };
            let error = format!("{:#}", load_from::<Config>(&overrides, &[]).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn api_durations_accept_seconds_and_units() {
        use serde_json::json;
        assert_eq!(
            parse_api_duration(&json!(90)).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_api_duration(&json!("15m")).unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            parse_api_duration(&json!("24h")).unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            parse_api_duration(&json!("7d")).unwrap(),
            Duration::from_secs(604_800)
        );
        for bad in [
            json!(-5),
            json!("soon"),
            json!(0),
            json!("90d"),
            json!(true),
        ] {
            assert!(parse_api_duration(&bad).is_err(), "{bad}");
        }
    }
}
