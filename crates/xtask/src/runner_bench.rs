//! The device-runner benchmark, run against the release binary over its real protocol, with
//! `xtask bench-job` as every job (see `bench_job.rs`):
//!
//! 1. every device (default 50) is given a job that holds it until a gate file appears;
//! 2. `enqueue_job` calls per second from 32 concurrent clients, queueing `--queued` jobs
//!    (default 10,000) round-robin behind the held devices;
//! 3. the gate opens and the devices drain their queues, each job sleeping `--job-ms`
//!    (default 100 ms): the start latency from one job's exit to the next job's process running
//!    on the same device, from the stamps the jobs print;
//! 4. with the devices idle, `--samples` single enqueues (default 500), one every 20 ms: the
//!    start latency from the enqueue call to the job's process running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, JobStatus};
use serde_json::json;

use crate::bench_job::{stamps, unix_nanos};
use crate::daemon::{Daemon, build_release, flag_pairs, fresh_db, parse_backends, percentile};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    devices: usize,
    queued: usize,
    job_ms: u64,
    samples: usize,
    clients: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            backends: vec!["sqlite", "postgres"],
            devices: 50,
            queued: 10_000,
            job_ms: 100,
            samples: 500,
            clients: 32,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--devices" => options.devices = value.parse()?,
                "--queued" => options.queued = value.parse()?,
                "--job-ms" => options.job_ms = value.parse()?,
                "--samples" => options.samples = value.parse()?,
                "--clients" => options.clients = value.parse()?,
                other => bail!("unknown option '{other}'"),
            }
        }
        if options.devices == 0 || options.clients == 0 {
            bail!("--devices and --clients must be at least 1");
        }
        Ok(options)
    }
}

struct Figures {
    backend: &'static str,
    enqueues_per_second: f64,
    drain: Duration,
    cpu_per_job_ms: f64,
    after_exit: Latencies,
    after_enqueue: Latencies,
    peak_rss_mib: f64,
}

/// Start latencies in milliseconds.
struct Latencies {
    count: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latencies {
    fn of(mut nanos: Vec<i64>) -> Latencies {
        nanos.sort_unstable();
        let ms = |n: i64| n as f64 / 1e6;
        Latencies {
            count: nanos.len(),
            p50: ms(percentile(&nanos, 0.50)),
            p99: ms(percentile(&nanos, 0.99)),
            max: ms(nanos.last().copied().unwrap_or_default()),
        }
    }
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let binary = build_release("device-runner")?;
    let job = std::env::current_exe().context("locating the xtask binary for the jobs")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for backend in &options.backends {
        eprintln!("== {backend}");
        results.push(runtime.block_on(bench_backend(backend, &binary, &job, &options))?);
    }
    println!();
    println!(
        "| backend | enqueue calls/s | {} jobs drained in | runner CPU per job | start after exit p50 / p99 / max | start after enqueue p50 / p99 / max | peak RSS |",
        options.queued
    );
    println!("|---|---|---|---|---|---|---|");
    for f in results {
        println!(
            "| {} | {:.0} | {:.1} s | {:.2} ms | {:.1} / {:.1} / {:.1} ms (n={}) | {:.1} / {:.1} / {:.1} ms (n={}) | {:.1} MiB |",
            f.backend,
            f.enqueues_per_second,
            f.drain.as_secs_f64(),
            f.cpu_per_job_ms,
            f.after_exit.p50,
            f.after_exit.p99,
            f.after_exit.max,
            f.after_exit.count,
            f.after_enqueue.p50,
            f.after_enqueue.p99,
            f.after_enqueue.max,
            f.after_enqueue.count,
            f.peak_rss_mib
        );
    }
    println!(
        "\n({} devices; {} enqueue calls from {} concurrent clients; jobs of {} ms)",
        options.devices, options.queued, options.clients, options.job_ms
    );
    Ok(())
}

fn serial(device: usize) -> String {
    format!("BENCH{device:03}")
}

async fn bench_backend(
    backend: &'static str,
    binary: &Path,
    job: &Path,
    options: &Options,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let db = fresh_db(backend, dir.path(), "runner").await?;
    let logs = dir.path().join("logs");
    let config = dir.path().join("device-runner.toml");
    let mut toml = format!(
        "log_dir = {logs:?}\n\n[adb]\nenabled = false\n\n[job_types.bench]\nargv = [{job:?}, \"bench-job\"]\nmax_duration = \"10m\"\n"
    );
    for device in 0..options.devices {
        toml.push_str(&format!("\n[[devices]]\nserial = \"{}\"\n", serial(device)));
    }
    std::fs::write(&config, toml)?;
    let daemon = Daemon::start_runner(binary, dir.path(), &config, &db.url).await?;
    let client = DeviceRunnerClient::new(&daemon.url())?;

    // 1. Hold every device.
    let gate = dir.path().join("gate");
    for device in 0..options.devices {
        enqueue(&client, serial(device), json!({"gate": gate})).await?;
    }
    wait_until(&client, Duration::from_secs(60), |running, _| {
        running == options.devices
    })
    .await
    .context("waiting for every device to run its holding job")?;

    // 2. Enqueue calls per second, filling the queues.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..options.clients {
        let client = client.clone();
        let (clients, devices, job_ms) = (options.clients, options.devices, options.job_ms);
        let count = options.queued / clients + usize::from(worker < options.queued % clients);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                let device = (i * clients + worker) % devices;
                enqueue(&client, serial(device), json!({"sleep_ms": job_ms})).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let enqueues_per_second = options.queued as f64 / started.elapsed().as_secs_f64();
    eprintln!("enqueue: {enqueues_per_second:.0} calls/s");

    // 3. Open the gate; the queues drain.
    let cpu_before = daemon.cpu_seconds()?;
    std::fs::write(&gate, "")?;
    let opened = Instant::now();
    let expected_drain =
        Duration::from_millis(options.job_ms * (options.queued / options.devices + 1) as u64);
    wait_until(
        &client,
        expected_drain * 3 + Duration::from_secs(60),
        |r, p| r == 0 && p == 0,
    )
    .await
    .context("waiting for the queues to drain")?;
    let drain = opened.elapsed();
    let cpu_per_job_ms = (daemon.cpu_seconds()? - cpu_before) * 1000.0 / options.queued as f64;
    eprintln!(
        "drained in {:.1} s; runner CPU {cpu_per_job_ms:.2} ms per job",
        drain.as_secs_f64()
    );
    let after_exit = between_jobs(&logs, options.devices)?;

    // 4. Idle devices: from the enqueue call to the process running.
    let mut enqueued_at = Vec::new();
    for i in 0..options.samples {
        let before = unix_nanos();
        let id = enqueue(&client, serial(i % options.devices), json!({"sleep_ms": 0})).await?;
        enqueued_at.push((id, before));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until(&client, Duration::from_secs(60), |r, p| r == 0 && p == 0)
        .await
        .context("waiting for the sampled jobs")?;
    let mut after_enqueue = Vec::new();
    for (id, before) in enqueued_at {
        let run = client.rpc().get_run(id.clone()).await?;
        let log = std::fs::read_to_string(run.log_path.as_deref().unwrap_or_default())
            .with_context(|| format!("reading the log of job {id}"))?;
        let (Some(started), _) = stamps(&log) else {
            bail!("job {id} printed no start stamp: {log}");
        };
        after_enqueue.push(started - before);
    }
    check_all_completed(&client, options.devices + options.queued + options.samples).await?;
    let peak_rss_mib = daemon.peak_rss_mib()?;
    daemon.stop()?;
    drop(db);
    Ok(Figures {
        backend,
        enqueues_per_second,
        drain,
        cpu_per_job_ms,
        after_exit,
        after_enqueue: Latencies::of(after_enqueue),
        peak_rss_mib,
    })
}

async fn enqueue(
    client: &DeviceRunnerClient,
    device: String,
    params: serde_json::Value,
) -> anyhow::Result<String> {
    let job = client
        .rpc()
        .enqueue_job(
            Some(device),
            "bench".into(),
            Some(params),
            None,
            None,
            None,
            None,
            None,
            None,
        )
        .await?;
    Ok(job.id)
}

/// Polls `get_status` until `done(running, pending)` holds.
async fn wait_until(
    client: &DeviceRunnerClient,
    within: Duration,
    done: impl Fn(usize, u64) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let status = client.rpc().get_status().await?;
        let running = status
            .devices
            .iter()
            .filter(|d| d.running.is_some())
            .count();
        let pending = status.devices.iter().map(|d| d.pending).sum();
        if done(running, pending) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("gave up after {within:?}: {running} running, {pending} pending");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From each job's exit stamp to the next job's start stamp on the same device, read from the
/// job logs (one directory per device).
fn between_jobs(logs: &Path, devices: usize) -> anyhow::Result<Latencies> {
    let mut gaps = Vec::new();
    for device in 0..devices {
        let dir: PathBuf = logs.join(serial(device));
        let mut runs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            let log = std::fs::read_to_string(&path)?;
            match stamps(&log) {
                (Some(started), Some(exiting)) => {
                    runs.insert(started, exiting);
                }
                _ => bail!("{} lacks its stamps: {log}", path.display()),
            }
        }
        let runs: Vec<(i64, i64)> = runs.into_iter().collect();
        gaps.extend(runs.windows(2).map(|pair| pair[1].0 - pair[0].1));
    }
    Ok(Latencies::of(gaps))
}

/// Every job of the run completed, as the run history says.
async fn check_all_completed(client: &DeviceRunnerClient, expected: usize) -> anyhow::Result<()> {
    let mut completed = 0;
    let mut before = None;
    loop {
        let page = client
            .rpc()
            .list_runs(None, None, None, Some(1000), before.clone())
            .await?;
        if let Some(other) = page.iter().find(|run| run.status != JobStatus::Completed) {
            bail!("run {} ended {}: {:?}", other.id, other.status, other.error);
        }
        completed += page.len();
        match page.last() {
            Some(last) => before = Some(last.id.clone()),
            None => break,
        }
    }
    if completed != expected {
        bail!("{completed} runs completed, expected {expected}");
    }
    Ok(())
}
