//! `cargo xtask bench-peer`: the same burst through AutoGPT's scheduler as it was (APScheduler
//! 3.11, configured as AutoGPT configures it: see `peer/apscheduler_burst.py`) and through this
//! scheduler with its defaults, one after the other in one run, on the same PostgreSQL and
//! against the same stub execution service: `--due` graph executions (default 10,000) due in
//! the same second; when the last reached the stub, the lag p50/p99, and the ratio.
//!
//! APScheduler is installed by the command itself into a virtual environment under
//! `target/bench-peer/` (`python3 -m venv`, then pip from PyPI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::bench::seed;
use crate::daemon::{
    Daemon, build_release, flag_pairs, fresh_db, migrated_by, percentile, received_by,
    stub_executor, workspace_root,
};

/// The peer's script, written into the virtual environment.
const SCRIPT: &str = include_str!("peer/apscheduler_burst.py");

/// What pip installs: APScheduler 3.11 with the SQLAlchemy job store AutoGPT uses.
const PACKAGES: [&str; 3] = [
    "apscheduler==3.11.*",
    "sqlalchemy==2.0.*",
    "psycopg2-binary==2.9.*",
];

pub(crate) struct Options {
    due: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options { due: 10_000 };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--due" => options.due = value.parse()?,
                other => bail!("unknown option '{other}'"),
            }
        }
        if options.due == 0 {
            bail!("--due must be at least 1");
        }
        Ok(options)
    }
}

/// When the last of a burst reached the stub after its second, and the lags.
struct Figures {
    last_after: Duration,
    lag_p50: Duration,
    lag_p99: Duration,
}

impl Figures {
    fn of(calls: &[(DateTime<Utc>, DateTime<Utc>)], due_at: DateTime<Utc>) -> Figures {
        let last = calls.iter().map(|(_, at)| *at).max().unwrap_or(due_at);
        let mut lags: Vec<TimeDelta> = calls.iter().map(|(s, at)| *at - *s).collect();
        lags.sort();
        let lag = |p: f64| percentile(&lags, p).to_std().unwrap_or_default();
        Figures {
            last_after: (last - due_at).to_std().unwrap_or_default(),
            lag_p50: lag(0.50),
            lag_p99: lag(0.99),
        }
    }
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let (python, script) = venv()?;
    let binary = build_release("scheduler")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    eprintln!("== APScheduler, as AutoGPT configures it");
    let peer = runtime.block_on(peer_burst(&python, &script, options.due))?;
    eprintln!("== this scheduler, default configuration");
    let ours = runtime.block_on(our_burst(&binary, options.due))?;
    println!();
    println!(
        "| {} graph executions due in one second, PostgreSQL | last dispatched after | lag p50 | lag p99 |",
        options.due
    );
    println!("|---|---|---|---|");
    for (name, f) in [
        ("APScheduler 3.11 as AutoGPT configures it", &peer),
        ("this scheduler, defaults", &ours),
    ] {
        println!(
            "| {name} | {:.2} s | {} ms | {} ms |",
            f.last_after.as_secs_f64(),
            f.lag_p50.as_millis(),
            f.lag_p99.as_millis()
        );
    }
    let ratio = peer.last_after.as_secs_f64() / ours.last_after.as_secs_f64().max(0.001);
    println!("\nthis scheduler's burst ended {ratio:.1}× sooner");
    Ok(())
}

/// The virtual environment's Python, with APScheduler installed, and the script beside it.
fn venv() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = workspace_root().join("target/bench-peer/venv");
    let python = dir.join("bin/python");
    if !python.is_file() {
        run_quietly(Command::new("python3").args(["-m", "venv"]).arg(&dir))
            .context("creating the virtual environment (is python3 with venv installed?)")?;
    }
    run_quietly(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
    )
    .context("installing APScheduler into the virtual environment")?;
    let script = dir.join("apscheduler_burst.py");
    std::fs::write(&script, SCRIPT)?;
    Ok((python, script))
}

fn run_quietly(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// The burst through APScheduler: its jobs stored by the script itself (they are pickled
/// Python objects), due `lead` after the start, while the script runs the scheduler.
async fn peer_burst(python: &Path, script: &Path, due: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let (executor_url, received) = stub_executor().await?;
    let db = fresh_db("postgres", dir.path(), "peer").await?;
    let schema = db.schema().context("a PostgreSQL schema")?.to_string();
    let url = test_support::base_url().replacen("postgres://", "postgresql+psycopg2://", 1);
    // Storing a job through APScheduler takes about a millisecond here (a pickle, an INSERT
    // and a commit each): the burst's second comes well after them.
    let lead = TimeDelta::seconds(15) + TimeDelta::milliseconds(3 * due as i64);
    let due_at = (Utc::now() + lead).trunc_subsecs(0);
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .args([&url, &schema, &executor_url])
        .arg(due.to_string())
        .arg(due_at.timestamp().to_string())
        .kill_on_drop(true)
        .spawn()
        .context("starting the APScheduler script")?;
    let calls = tokio::select! {
        calls = received_by(&received, due, due_at) => calls?,
        status = child.wait() => bail!("the APScheduler script ended before its burst: {}", status?),
    };
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .context("the APScheduler script did not end after its burst")??;
    if !status.success() {
        bail!("the APScheduler script failed: {status}");
    }
    Ok(Figures::of(&calls, due_at))
}

/// The same burst through this scheduler with its default configuration.
async fn our_burst(binary: &Path, due: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let (executor_url, received) = stub_executor().await?;
    let db = fresh_db("postgres", dir.path(), "ours").await?;
    let database = migrated_by(binary, dir.path(), &db.url, &executor_url).await?;
    let due_at = (Utc::now() + TimeDelta::seconds(15)).trunc_subsecs(0);
    seed(&database, due, due_at).await?;
    let daemon = Daemon::start(binary, dir.path(), &db.url, &executor_url).await?;
    let calls = received_by(&received, due, due_at).await?;
    daemon.stop()?;
    database.close().await;
    Ok(Figures::of(&calls, due_at))
}
