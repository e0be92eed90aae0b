//! What the benchmarks share: a release binary under measurement as a child process, a fresh
//! database per measurement, percentiles, and the scheduler's stub execution service.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Builds the release binary of `package` (named as the package) and returns its path.
pub(crate) fn build_release(package: &str) -> anyhow::Result<PathBuf> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // `cargo run` gave this process xtask's own package variables. A build script that
    // watches one (ring's watches CARGO_MANIFEST_DIR) would see it change between this build
    // and `cargo xtask`'s, and each would rebuild half the tree for the other.
    for (name, _) in std::env::vars() {
        let from_cargo_run = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || name == "CARGO_PRIMARY_PACKAGE";
        if from_cargo_run {
            cargo.env_remove(name);
        }
    }
    let status = cargo
        .args(["build", "--release", "-p", package])
        .current_dir(workspace_root())
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p {package} failed");
    }
    Ok(workspace_root().join("target/release").join(package))
}

/// The database at `url` as `binary` migrates it, opened for seeding through the store without
/// applying this tree's later migrations (another revision's binary refuses a database that
/// has migrations it does not know).
pub(crate) async fn migrated_by(
    binary: &Path,
    dir: &Path,
    url: &str,
    executor_url: &str,
) -> anyhow::Result<jobstore::Database> {
    Daemon::start(binary, dir, url, executor_url)
        .await?
        .stop()?;
    let url = jobstore::DatabaseUrl::parse(url)?;
    Ok(service_kit::database::open(&url, 4).await?)
}

/// A database for one measurement; the PostgreSQL schema is dropped afterwards.
pub(crate) struct BenchDb {
    pub url: String,
    _schema: Option<test_support::PgSchema>,
}

impl BenchDb {
    /// The PostgreSQL schema's name; `None` on SQLite.
    pub(crate) fn schema(&self) -> Option<&str> {
        self._schema.as_ref().map(test_support::PgSchema::name)
    }
}

pub(crate) async fn fresh_db(backend: &str, dir: &Path, name: &str) -> anyhow::Result<BenchDb> {
    Ok(match backend {
        "sqlite" => BenchDb {
            url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            _schema: None,
        },
        _ => {
            let schema = test_support::PgSchema::create("bench")
                .await
                .context("PostgreSQL is not reachable")?;
            BenchDb {
                url: schema.url(),
                _schema: Some(schema),
            }
        }
    })
}

/// The `p` quantile (0 to 1) of sorted samples, nearest rank.
pub(crate) fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The binary given to `--against`, checked to exist.
pub(crate) fn against_binary(value: &str) -> anyhow::Result<PathBuf> {
    let binary = PathBuf::from(value);
    if !binary.is_file() {
        bail!("--against {value}: no such binary");
    }
    Ok(binary)
}

/// The binaries a benchmark runs, labelled: `against`'s first when given, then this tree's.
pub(crate) fn builds<'a>(
    against: Option<&'a Path>,
    this_tree: &'a Path,
) -> Vec<(&'static str, &'a Path)> {
    let mut builds = Vec::new();
    if let Some(against) = against {
        builds.push(("against", against));
    }
    builds.push(("this tree", this_tree));
    builds
}

/// The binaries of one build of the device-runner benchmarks: a device runner and a scheduler.
pub(crate) struct RunnerBuild<'a> {
    pub(crate) name: &'static str,
    pub(crate) runner: &'a Path,
    pub(crate) scheduler: &'a Path,
}

/// The builds a device-runner benchmark runs: with `--against` or `--against-scheduler`,
/// another revision's runner and scheduler first (this tree's where only the other is given),
/// then this tree's.
pub(crate) fn runner_builds<'a>(
    against: Option<&'a Path>,
    against_scheduler: Option<&'a Path>,
    runner: &'a Path,
    scheduler: &'a Path,
) -> Vec<RunnerBuild<'a>> {
    let mut builds = Vec::new();
    if against.is_some() || against_scheduler.is_some() {
        builds.push(RunnerBuild {
            name: "against",
            runner: against.unwrap_or(runner),
            scheduler: against_scheduler.unwrap_or(scheduler),
        });
    }
    builds.push(RunnerBuild {
        name: "this tree",
        runner,
        scheduler,
    });
    builds
}

/// `--flag value` pairs, in order; a flag without its value is an error.
pub(crate) fn flag_pairs(args: &[String]) -> anyhow::Result<Vec<(&str, &str)>> {
    args.chunks(2)
        .map(|pair| match pair {
            [flag, value] => Ok((flag.as_str(), value.as_str())),
            [flag] => bail!("{flag} needs a value"),
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// `--backend sqlite|postgres|both`.
pub(crate) fn parse_backends(value: &str) -> anyhow::Result<Vec<&'static str>> {
    Ok(match value {
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        "both" => vec!["sqlite", "postgres"],
        other => bail!("unknown backend '{other}'"),
    })
}

/// A release binary under measurement, started by the shared harness
/// ([`test_support::daemon`]).
pub(crate) struct Daemon {
    process: test_support::Daemon,
    pub port: u16,
}

impl Daemon {
    /// Starts the scheduler and waits until it answers.
    pub(crate) async fn start(
        binary: &Path,
        dir: &Path,
        database_url: &str,
        executor_url: &str,
    ) -> anyhow::Result<Daemon> {
        Daemon::start_with(binary, dir, database_url, executor_url, &[]).await
    }

    /// Starts the scheduler with settings in its environment and waits until it answers.
    pub(crate) async fn start_with(
        binary: &Path,
        dir: &Path,
        database_url: &str,
        executor_url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        let launch = test_support::Launch::new(binary, dir)
            .args([
                "--database-url",
                database_url,
                "--executor-url",
                executor_url,
            ])
            .env("SCHEDULER__LOG__LEVEL", "warn")
            .envs(env);
        Daemon::launch(launch).await
    }

    /// Starts the device runner with the configuration file `config` and waits until it
    /// answers.
    pub(crate) async fn start_runner(
        binary: &Path,
        dir: &Path,
        config: &Path,
        database_url: &str,
    ) -> anyhow::Result<Daemon> {
        let launch = test_support::Launch::new(binary, dir)
            .arg("--config")
            .arg(config)
            .args(["--database-url", database_url])
            .env("DEVICE_RUNNER__LOG__LEVEL", "warn");
        Daemon::launch(launch).await
    }

    async fn launch(launch: test_support::Launch) -> anyhow::Result<Daemon> {
        let process = launch
            .start_within(Duration::from_secs(60))
            .start()
            .await
            .map_err(anyhow::Error::msg)?;
        let port = process.port;
        Ok(Daemon { process, port })
    }

    pub(crate) fn url(&self) -> String {
        self.process.url()
    }

    pub(crate) fn client_config(&self) -> scheduler_client::ClientConfig {
        scheduler_client::ClientConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            retries: 0,
            ..Default::default()
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// CPU time (user + system) the process has used so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        Ok(ticks / clock_ticks()?)
    }

    /// Peak resident set size in MiB (VmHWM).
    pub(crate) fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        self.memory_mib("VmHWM")
    }

    /// The resident set now, in MiB.
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        self.memory_mib("VmRSS")
    }

    /// A `/proc/<pid>/status` figure in kB, in MiB.
    fn memory_mib(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|l| {
                l.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with(':'))
            })
            .with_context(|| format!("no {field}"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("{field} value"))?
            .parse()?;
        Ok(kib / 1024.0)
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.process
            .stop(Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

fn clock_ticks() -> anyhow::Result<f64> {
    let output = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// Every call the stub accepted: (scheduled time, when it arrived).
pub(crate) type Received = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// Waits until `count` calls have arrived at a stub executor (for up to two minutes after
/// `due_at`, when they were due) and returns them.
pub(crate) async fn received_by(
    received: &Received,
    count: usize,
    due_at: DateTime<Utc>,
) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let deadline = std::time::Instant::now()
        + Duration::from_secs(120)
        + (due_at - Utc::now()).to_std().unwrap_or_default();
    while received.lock().unwrap().len() < count && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = received.lock().unwrap().clone();
    if calls.len() < count {
        bail!(
            "only {} of {count} due occurrences were dispatched",
            calls.len()
        );
    }
    Ok(calls)
}

/// A stand-in execution service (and backend) on loopback that accepts every call and notes
/// when it came: JSON-RPC at `/`, one call or a batch, and HTTP requests at `/job`, whose
/// `X-Scheduled-Time` header says which occurrence they are.
pub(crate) async fn stub_executor() -> anyhow::Result<(String, Received)> {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/", post(accept))
        .route("/job", post(accept_http))
        .with_state(received.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, received))
}

fn note(received: &Received, scheduled: Option<&str>, now: DateTime<Utc>) {
    if let Some(scheduled) = scheduled.and_then(|t| t.parse().ok()) {
        received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((scheduled, now));
    }
}

async fn accept(State(received): State<Received>, Json(request): Json<Value>) -> Json<Value> {
    let now = Utc::now();
    let answer = |call: &Value| {
        note(&received, call["params"]["scheduled_time"].as_str(), now);
        json!({"jsonrpc": "2.0", "id": call["id"], "result": {"id": "x"}})
    };
    Json(match &request {
        Value::Array(calls) => Value::Array(calls.iter().map(answer).collect()),
        call => answer(call),
    })
}

async fn accept_http(
    State(received): State<Received>,
    headers: axum::http::HeaderMap,
) -> &'static str {
    let scheduled = headers
        .get("x-scheduled-time")
        .and_then(|v| v.to_str().ok());
    note(&received, scheduled, Utc::now());
    "ok"
}

/// Makes `total` calls from `callers` concurrent tasks, call `i` made by `call(client, i)`
/// with a clone of `client`; how long they all took.
pub(crate) async fn from_callers<C, T, F, Fut>(
    client: &C,
    callers: usize,
    total: usize,
    call: F,
) -> anyhow::Result<Duration>
where
    C: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (client, call) = (client.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            for i in (caller..total).step_by(callers) {
                call(client.clone(), i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}
