//! Starting a real service binary the way an operator does: in a directory of its own, on a
//! free port, its stderr in a log file there, and waiting until it answers `/health_check`.
//! Used by the services' integration tests and by `cargo xtask`'s benchmarks.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How a binary is started.
#[derive(Debug, Clone)]
pub struct Launch {
    binary: PathBuf,
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    start_within: Duration,
    graceful_drop: bool,
    /// The port to listen on, when it must be this one (a restart others know the address
    /// of); otherwise a free one is picked.
    port: Option<u16>,
}

impl Launch {
    /// `binary`, run in `dir` (created if missing).
    pub fn new(binary: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Launch {
            binary: binary.into(),
            dir: dir.into(),
            args: Vec::new(),
            env: Vec::new(),
            start_within: Duration::from_secs(30),
            graceful_drop: false,
            port: None,
        }
    }

    /// Listens on `port` (tried once) instead of a free port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs<'a>(mut self, pairs: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Self {
        for (key, value) in pairs {
            self.env.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// How long the binary may take to answer `/health_check` (default 30 s).
    pub fn start_within(mut self, within: Duration) -> Self {
        self.start_within = within;
        self
    }

    /// Whether dropping the [`Daemon`] stops it with SIGTERM (waiting for its exit, as a
    /// service that must clean up needs) instead of SIGKILL.
    pub fn graceful_drop(mut self, graceful: bool) -> Self {
        self.graceful_drop = graceful;
        self
    }

    /// Starts the binary with `--port N` on a free port and waits until `GET /health_check`
    /// answers 200. A start that loses its port to another process is tried again on another.
    pub async fn start(&self) -> Result<Daemon, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let name = self
            .binary
            .file_name()
            .map_or_else(|| "service".into(), |n| n.to_string_lossy().into_owned());
        let mut last_log = String::new();
        let tries = if self.port.is_some() { 1 } else { 10 };
        for _ in 0..tries {
            let port = self.port.unwrap_or_else(free_port);
            let log = self.dir.join(format!("{name}-{port}.log"));
            let stderr = std::fs::File::create(&log)
                .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
            let child = Command::new(&self.binary)
                .args(&self.args)
                .args(["--port", &port.to_string()])
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
            let mut daemon = Daemon {
                child: Some(child),
                port,
                log,
                graceful_drop: self.graceful_drop,
            };
            match daemon.wait_healthy(self.start_within).await {
                Ok(()) => return Ok(daemon),
                Err(Exited::LostPort(text)) => last_log = text,
                Err(Exited::Failed(message)) => return Err(message),
            }
        }
        Err(format!(
            "{name} found no free port in {tries} tries; its last log:\n{last_log}"
        ))
    }
}

/// A running binary. Dropping it stops it (see [`Launch::graceful_drop`]).
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    /// Whether dropping it stops it with SIGTERM first.
    graceful_drop: bool,
}

enum Exited {
    /// It exited because another process took its port first.
    LostPort(String),
    Failed(String),
}

impl Daemon {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// What the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status; panics with the log when it does not exit in 30 s.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop(Duration::from_secs(30))
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// SIGTERM, then the exit status, waiting at most `within`; after that, SIGKILL and an
    /// error with the log.
    pub fn stop(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("the process was already stopped".into());
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the process ignored SIGTERM for {within:?}:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn wait_healthy(&mut self, within: Duration) -> Result<(), Exited> {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::new();
        let url = format!("{}/health_check", self.url());
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = self.log_text();
                return Err(if log.contains("cannot listen") {
                    Exited::LostPort(log)
                } else {
                    Exited::Failed(format!("exited during start-up ({status}):\n{log}"))
                });
            }
            let answer = http.get(&url).timeout(Duration::from_secs(2)).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(Exited::Failed(format!(
                    "not answering {url} after {within:?}:\n{}",
                    self.log_text()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() && self.graceful_drop {
            let _ = self.stop(Duration::from_secs(10));
        }
        self.kill9();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("the loopback interface has a free port")
}

/// Polls `probe` until it gives a value, failing after `within` with `what` and the last
/// thing `probe` said.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not so after {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// A workspace binary built beside the running test: `target/<profile>/<name>`, as `cargo test
/// --workspace` leaves the services' binaries. Panics, saying how to build it, when missing.
pub fn built_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: these tests run the real binaries; build them first \
         (`cargo test --workspace` does, or `cargo build -p scheduler -p device-runner`)",
        path.display()
    );
    path
}
