//! A phone farm over several hosts, for the tests and benchmarks that need it: device runners
//! (each on its own SQLite file, with fake phones behind a fake `adb` whose batteries and
//! temperatures a test changes, and with tokens) and a scheduler following all of them, some
//! through relays a test can hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::daemon::{Daemon, Launch, built_binary};
use crate::db_proxy::DbProxy;
use crate::phones::{fake_adb, set_facts};

/// The runners' `auth.token`, given to the scheduler as each runner's `token`.
pub const RUNNER_TOKEN: &str = "runner-user-token";
/// The runners' `auth.admin_token`, given to the scheduler as each runner's `admin_token`.
pub const RUNNER_ADMIN: &str = "runner-admin-token";

/// A phone: its serial and tags.
type Phone = (String, Vec<String>);

/// How a [`FleetStack`] is to be started.
#[derive(Debug, Clone, Default)]
pub struct FleetBuilder {
    /// Each host's name and phones.
    hosts: Vec<(String, Vec<Phone>)>,
    relayed: Vec<String>,
    runner_config: String,
    scheduler_env: Vec<(String, String)>,
}

/// A host: a device runner and its fake phones.
#[derive(Debug)]
pub struct Host {
    pub name: String,
    /// Its configuration, database, logs, and the fake adb with its answers.
    pub dir: PathBuf,
    pub daemon: Option<Daemon>,
    pub port: u16,
}

/// The hosts and the scheduler that follows them; their files go away with it.
pub struct FleetStack {
    root: tempfile::TempDir,
    pub hosts: BTreeMap<String, Host>,
    /// The relays in front of the runners named [`FleetBuilder::relayed`].
    pub proxies: BTreeMap<String, DbProxy>,
    pub scheduler: Option<Daemon>,
    scheduler_env: Vec<(String, String)>,
}

impl FleetStack {
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// The directory of the stack's files.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    pub fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// Starts (or starts again) the scheduler on the stack's files, following every host
    /// (through its relay when it has one) every 200 ms, with its tokens.
    pub async fn start_scheduler(&mut self) {
        let dir = self.root.path().join("scheduler");
        let db = format!("sqlite://{}/scheduler.db", dir.display());
        let mut launch = Launch::new(built_binary("scheduler"), &dir)
            .args([
                "--database-url",
                &db,
                "--executor-url",
                "http://127.0.0.1:9/",
            ])
            .env("SCHEDULER__LOG__LEVEL", "info");
        for (name, host) in &self.hosts {
            let url = match self.proxies.get(name) {
                Some(proxy) => proxy.url(&host.url()),
                None => host.url(),
            };
            let key = |field: &str| {
                format!(
                    "SCHEDULER__DEVICE_RUNNERS__{}__{field}",
                    name.to_uppercase()
                )
            };
            launch = launch
                .env(&key("URL"), &url)
                .env(&key("TOKEN"), RUNNER_TOKEN)
                .env(&key("ADMIN_TOKEN"), RUNNER_ADMIN)
                .env(&key("POLL"), "200ms")
                .env(&key("TIMEOUT"), "20s");
        }
        for (key, value) in &self.scheduler_env {
            launch = launch.env(key, value);
        }
        let daemon = launch
            .start()
            .await
            .unwrap_or_else(|message| panic!("the scheduler did not start: {message}"));
        self.scheduler = Some(daemon);
    }

    /// The scheduler's port.
    pub fn scheduler_port(&self) -> u16 {
        self.scheduler.as_ref().expect("the scheduler runs").port
    }

    /// The scheduler's log so far.
    pub fn scheduler_log(&self) -> String {
        self.scheduler
            .as_ref()
            .map(Daemon::log_text)
            .unwrap_or_default()
    }
}

impl FleetBuilder {
    /// A host named `name` (also its name in the scheduler's `[device_runners.<name>]`) with
    /// `phones`: serial and tags, each cool and charged, listed by its fake adb.
    pub fn host(mut self, name: &str, phones: &[(&str, &[&str])]) -> Self {
        let phones = phones
            .iter()
            .map(|(serial, tags)| {
                (
                    serial.to_string(),
                    tags.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect();
        self.hosts.push((name.to_string(), phones));
        self
    }

    /// The scheduler reaches host `name` through a relay a test can hold or cut.
    pub fn relayed(mut self, name: &str) -> Self {
        self.relayed.push(name.to_string());
        self
    }

    /// More of every runner's configuration: its job types, its `[health]`.
    pub fn runner_config(mut self, toml: &str) -> Self {
        self.runner_config.push_str(toml);
        self.runner_config.push('\n');
        self
    }

    /// A setting of the scheduler's, as an environment variable (`SCHEDULER__…`).
    pub fn scheduler_env(mut self, key: &str, value: &str) -> Self {
        self.scheduler_env
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Starts every host's runner, then the scheduler.
    pub async fn start(self) -> FleetStack {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut hosts = BTreeMap::new();
        let mut proxies = BTreeMap::new();
        for (name, phones) in &self.hosts {
            let mut host = Host::prepare(root.path(), name, phones, &self.runner_config);
            host.start().await;
            if self.relayed.contains(name) {
                proxies.insert(name.clone(), DbProxy::start(&host.url()).await);
            }
            hosts.insert(name.clone(), host);
        }
        let mut stack = FleetStack {
            root,
            hosts,
            proxies,
            scheduler: None,
            scheduler_env: self.scheduler_env,
        };
        stack.start_scheduler().await;
        stack
    }
}

impl Host {
    /// Writes the host's configuration (its `name` is `host-<name>`) and its adb.
    fn prepare(root: &Path, name: &str, phones: &[Phone], extra: &str) -> Host {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("the host's directory");
        let listing: String = phones
            .iter()
            .map(|(serial, _)| format!("{serial}\tdevice\n"))
            .collect();
        let adb = fake_adb(&dir, &listing);
        let mut config = format!(
            "name = \"host-{name}\"\nkill_grace = \"1s\"\nlog_dir = \"{}\"\n{extra}\n\
             [adb]\nenabled = true\npath = \"{}\"\npoll_interval = \"100ms\"\ndebounce = 1\n\n\
             [auth]\ntoken = \"{RUNNER_TOKEN}\"\nadmin_token = \"{RUNNER_ADMIN}\"\n",
            dir.join("logs").display(),
            adb.display()
        );
        for (serial, tags) in phones {
            set_facts(&dir, serial, 80, 30.0);
            let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            config.push_str(&format!(
                "\n[[devices]]\nserial = \"{serial}\"\ntags = [{}]\n",
                tags.join(", ")
            ));
        }
        std::fs::write(dir.join("device-runner.toml"), config)
            .expect("the runner's configuration is written");
        Host {
            name: name.into(),
            dir,
            daemon: None,
            port: 0,
        }
    }

    /// Starts its runner, on the port it had when it is started again.
    pub async fn start(&mut self) {
        let db = format!("sqlite://{}/runner.db", self.dir.display());
        let mut launch = Launch::new(built_binary("device-runner"), self.dir.join("process"))
            .arg("--config")
            .arg(self.dir.join("device-runner.toml"))
            .args(["--database-url", &db])
            .graceful_drop(true);
        if self.port != 0 {
            launch = launch.port(self.port);
        }
        let daemon = launch
            .start()
            .await
            .unwrap_or_else(|message| panic!("runner {} did not start: {message}", self.name));
        self.port = daemon.port;
        self.daemon = Some(daemon);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the fake adb answers for phone `serial`'s battery from now on.
    pub fn facts(&self, serial: &str, level: u8, celsius: f64) {
        set_facts(&self.dir, serial, level, celsius);
    }
}
