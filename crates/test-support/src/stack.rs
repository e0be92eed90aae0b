//! The product's stack as a farm runs it, for the tests that need more than one service: a
//! device runner (on a SQLite file, with the test's job types and phones, fake ones listed by a
//! stub `adb` when asked for) and the scheduler with that runner as `[device_runners.farm]`.
//! The scheduler sends graph executions nowhere (`executor.url` is a closed port) unless a test
//! says otherwise.

use std::path::{Path, PathBuf};

use crate::daemon::{Daemon, Launch, built_binary};

/// How a [`Stack`] is to be started.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    runner_config: String,
    fake_phones: Vec<String>,
    scheduler_env: Vec<(String, String)>,
    /// The scheduler's `scheduler.toml`, when it has one.
    scheduler_file: Option<String>,
}

/// The device runner and the scheduler, on files in a directory of their own that goes away
/// with the stack.
#[derive(Debug)]
pub struct Stack {
    dir: tempfile::TempDir,
    scheduler_env: Vec<(String, String)>,
    pub runner: Daemon,
    pub scheduler: Daemon,
}

impl Stack {
    /// A stack whose device runner reads `runner_config` (its devices, pools and job types;
    /// `log_dir` is set to the stack's directory).
    pub fn builder(runner_config: &str) -> StackBuilder {
        StackBuilder {
            runner_config: runner_config.to_string(),
            fake_phones: Vec::new(),
            scheduler_file: None,
            scheduler_env: vec![
                (
                    "SCHEDULER__DEVICE_RUNNERS__FARM__POLL".into(),
                    "200ms".into(),
                ),
                ("SCHEDULER__LOG__LEVEL".into(), "info".into()),
            ],
        }
    }

    /// The stack's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A device runner on the stack's files, on `port` when given (a restart in place of one
    /// that was killed).
    pub async fn start_runner(&self, port: Option<u16>) -> Daemon {
        runner_on(self.dir(), port).await
    }

    /// A scheduler on the stack's files, with the stack's runner as `farm`.
    pub async fn start_scheduler(&self) -> Daemon {
        scheduler_on(self.dir(), &self.runner, &self.scheduler_env).await
    }
}

impl StackBuilder {
    /// Phones the runner finds attached: a stub `adb` lists them (polled every 100 ms).
    pub fn fake_phones(mut self, serials: &[&str]) -> Self {
        self.fake_phones = serials.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A setting of the scheduler's, as an environment variable (`SCHEDULER__…`).
    pub fn scheduler_env(mut self, key: &str, value: &str) -> Self {
        self.scheduler_env.retain(|(k, _)| k != key);
        self.scheduler_env
            .push((key.to_string(), value.to_string()));
        self
    }

    /// The scheduler's configuration file (what the environment cannot say, such as lists).
    pub fn scheduler_file(mut self, toml: &str) -> Self {
        self.scheduler_file = Some(toml.to_string());
        self
    }

    /// Starts the runner, then the scheduler.
    pub async fn start(self) -> Stack {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = format!(
            "log_dir = \"{}\"\n{}\n",
            dir.path().join("logs").display(),
            self.runner_config
        );
        if !self.fake_phones.is_empty() {
            let adb = fake_adb(dir.path(), &self.fake_phones);
            config.push_str(&format!(
                "\n[adb]\nenabled = true\npath = \"{}\"\npoll_interval = \"100ms\"\ndebounce = 1\n",
                adb.display()
            ));
        }
        std::fs::write(dir.path().join("device-runner.toml"), config)
            .expect("the runner's configuration is written");
        if let Some(toml) = &self.scheduler_file {
            // The scheduler reads `scheduler.toml` in its working directory.
            let own = dir.path().join("scheduler");
            std::fs::create_dir_all(&own).expect("the scheduler's directory is made");
            std::fs::write(own.join("scheduler.toml"), toml)
                .expect("the scheduler's configuration is written");
        }
        let runner = runner_on(dir.path(), None).await;
        let scheduler = scheduler_on(dir.path(), &runner, &self.scheduler_env).await;
        Stack {
            dir,
            scheduler_env: self.scheduler_env,
            runner,
            scheduler,
        }
    }
}

async fn runner_on(dir: &Path, port: Option<u16>) -> Daemon {
    let db = format!("sqlite://{}/runner.db", dir.display());
    let mut launch = Launch::new(built_binary("device-runner"), dir.join("runner"))
        .arg("--config")
        .arg(dir.join("device-runner.toml"))
        .args(["--database-url", &db])
        .graceful_drop(true);
    if let Some(port) = port {
        launch = launch.port(port);
    }
    launch
        .start()
        .await
        .unwrap_or_else(|message| panic!("the device runner did not start: {message}"))
}

async fn scheduler_on(dir: &Path, runner: &Daemon, env: &[(String, String)]) -> Daemon {
    let db = format!("sqlite://{}/scheduler.db", dir.display());
    let mut launch = Launch::new(built_binary("scheduler"), dir.join("scheduler"))
        .args([
            "--database-url",
            &db,
            "--executor-url",
            "http://127.0.0.1:9/",
        ])
        .env("SCHEDULER__DEVICE_RUNNERS__FARM__URL", &runner.url());
    for (key, value) in env {
        launch = launch.env(key, value);
    }
    launch
        .start()
        .await
        .unwrap_or_else(|message| panic!("the scheduler did not start: {message}"))
}

/// An `adb` that lists `serials` as attached devices.
fn fake_adb(dir: &Path, serials: &[String]) -> PathBuf {
    let listing: String = serials
        .iter()
        .map(|serial| format!("{serial}\tdevice model:Fake\n"))
        .collect();
    crate::phones::fake_adb(dir, &listing)
}
