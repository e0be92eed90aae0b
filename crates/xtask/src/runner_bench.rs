//! The device-runner benchmark, run against the release binary over its real protocol, with
//! the small `bench-job` program (crate `bench-job`) as every job:
//!
//! 1. every device (default 50) is given a job that holds it until a gate file appears;
//! 2. `enqueue_job` calls per second from 32 concurrent clients, queueing `--queued` jobs
//!    (default 10,000) round-robin behind the held devices;
//! 3. the gate opens and the devices drain their queues, each job sleeping `--job-ms`
//!    (default 100 ms): the start latency from one job's exit to the next job's process running
//!    on the same device, from the stamps the jobs print;
//! 4. with the devices idle, `--samples` single enqueues (default 500), one every 20 ms: the
//!    start latency from the enqueue call to the job's process running;
//! 5. end to end with the release scheduler on the same backend: one `device_job` schedule per
//!    device, all due in the same second; from that second to each job's process running,
//!    over `--rounds` rounds (default 3) claiming ahead and as many claiming once due, with
//!    where the time went;
//! 6. a pool of `--pool-concurrency` (default 16) fed `--pool-jobs` short jobs (default
//!    10,000) from the concurrent clients: jobs per second from the first enqueue to the last
//!    job's end.
//!
//! `--against BINARY` measures another revision's device-runner first, side by side, and
//! `--against-scheduler BINARY` another revision's scheduler in that first run's end-to-end
//! rounds.

use device_runner_client::Enqueue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, JobStatus};
use serde_json::json;

use crate::daemon::{
    Daemon, against_binary, build_release, flag_pairs, fresh_db, from_callers, parse_backends,
    percentile, runner_builds,
};
use bench_job::{stamps, unix_nanos};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    devices: usize,
    queued: usize,
    job_ms: u64,
    samples: usize,
    clients: usize,
    pool_concurrency: usize,
    pool_jobs: usize,
    /// Rounds of the end-to-end measurement, their samples pooled.
    rounds: usize,
    /// Another revision's device-runner binary, measured first, side by side.
    against: Option<PathBuf>,
    /// Another revision's scheduler binary, for the end-to-end rounds of that first run.
    against_scheduler: Option<PathBuf>,
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
            pool_concurrency: 16,
            pool_jobs: 10_000,
            rounds: 3,
            against: None,
            against_scheduler: None,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--devices" => options.devices = value.parse()?,
                "--queued" => options.queued = value.parse()?,
                "--job-ms" => options.job_ms = value.parse()?,
                "--samples" => options.samples = value.parse()?,
                "--clients" => options.clients = value.parse()?,
                "--pool-concurrency" => options.pool_concurrency = value.parse()?,
                "--pool-jobs" => options.pool_jobs = value.parse()?,
                "--rounds" => options.rounds = value.parse()?,
                "--against" => options.against = Some(against_binary(value)?),
                "--against-scheduler" => options.against_scheduler = Some(against_binary(value)?),
                other => bail!("unknown option '{other}'"),
            }
        }
        if [
            options.devices,
            options.clients,
            options.pool_concurrency,
            options.rounds,
        ]
        .contains(&0)
        {
            bail!("--devices, --clients, --pool-concurrency and --rounds must be at least 1");
        }
        Ok(options)
    }
}

struct Figures {
    backend: &'static str,
    build: &'static str,
    enqueues_per_second: f64,
    drain: Duration,
    cpu_per_job_ms: f64,
    after_exit: Latencies,
    after_enqueue: Latencies,
    /// From a schedule's due second to its job's process running, through the scheduler:
    /// claiming only once due, and claiming ahead (`engine.lookahead = "2s"`).
    end_to_end: Latencies,
    end_to_end_ahead: Latencies,
    pool_jobs_per_second: f64,
    peak_rss_mib: f64,
}

/// Start latencies in milliseconds.
pub(crate) struct Latencies {
    pub(crate) count: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Latencies {
    pub(crate) fn of(mut nanos: Vec<i64>) -> Latencies {
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
    let scheduler = build_release("scheduler")?;
    let job = build_release("bench-job")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    let builds = runner_builds(
        options.against.as_deref(),
        options.against_scheduler.as_deref(),
        &binary,
        &scheduler,
    );
    for backend in &options.backends {
        for build in &builds {
            eprintln!("== {backend}, {}", build.name);
            let run = bench_backend(backend, build.runner, build.scheduler, &job, &options);
            results.push(Figures {
                build: build.name,
                ..runtime.block_on(run)?
            });
        }
    }
    println!();
    println!(
        "| backend | build | enqueue calls/s | {} jobs drained in | runner CPU per job | start after exit p50 / p99 / max | start after enqueue p50 / p99 / max | peak RSS |",
        options.queued
    );
    println!("|---|---|---|---|---|---|---|---|");
    for f in &results {
        println!(
            "| {} | {} | {:.0} | {:.1} s | {:.2} ms | {:.1} / {:.1} / {:.1} ms (n={}) | {:.1} / {:.1} / {:.1} ms (n={}) | {:.1} MiB |",
            f.backend,
            f.build,
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
    println!();
    println!(
        "| backend | build | {} schedules due in one second: due → process running p50 / p99 / max | the same with engine.lookahead = 2s | pool of {}: {} jobs, jobs/s |",
        options.devices, options.pool_concurrency, options.pool_jobs
    );
    println!("|---|---|---|---|---|");
    for f in &results {
        let cell = |l: &Latencies| {
            format!(
                "{:.1} / {:.1} / {:.1} ms (n={})",
                l.p50, l.p99, l.max, l.count
            )
        };
        println!(
            "| {} | {} | {} | {} | {:.0} |",
            f.backend,
            f.build,
            cell(&f.end_to_end),
            cell(&f.end_to_end_ahead),
            f.pool_jobs_per_second
        );
    }
    println!(
        "\n({} devices; {} enqueue calls from {} concurrent clients; jobs of {} ms; {} end-to-end rounds)",
        options.devices, options.queued, options.clients, options.job_ms, options.rounds
    );
    Ok(())
}

fn serial(device: usize) -> String {
    format!("BENCH{device:03}")
}

async fn bench_backend(
    backend: &'static str,
    binary: &Path,
    scheduler: &Path,
    job: &Path,
    options: &Options,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let db = fresh_db(backend, dir.path(), "runner").await?;
    let logs = dir.path().join("logs");
    let config = dir.path().join("device-runner.toml");
    std::fs::write(&config, runner_config(&logs, job, options))?;
    let daemon = Daemon::start_runner(binary, dir.path(), &config, &db.url).await?;
    let client = DeviceRunnerClient::new(&daemon.url())?;

    // 1 and 2: every device held, then the queues filled behind them.
    let gate = dir.path().join("gate");
    hold_devices(&client, &gate, options).await?;
    let started = Instant::now();
    let (devices, job_ms) = (options.devices, options.job_ms);
    from_callers(
        &client,
        options.clients,
        options.queued,
        move |client, i| async move {
            let params = json!({"sleep_ms": job_ms});
            enqueue(&client, serial(i % devices), params).await
        },
    )
    .await?;
    let enqueues_per_second = options.queued as f64 / started.elapsed().as_secs_f64();
    eprintln!("enqueue: {enqueues_per_second:.0} calls/s");

    // 3 and 4: the queues drained; then single jobs on idle devices.
    let (drain, cpu_per_job_ms) = drain(&client, &daemon, &gate, options).await?;
    let after_exit = between_jobs(&logs, options.devices)?;
    let after_enqueue = after_enqueue(&client, options).await?;

    // 5. Through the scheduler: one schedule per device, all due in the same second, in
    // rounds claiming ahead and claiming once due.
    let (mut ahead, mut once_due) = (Through::default(), Through::default());
    for round in 0..options.rounds {
        let place = Place {
            backend,
            scheduler,
            dir: dir.path(),
            runner: &daemon,
            options,
        };
        end_to_end(&place, "2s", round, &mut ahead).await?;
        end_to_end(&place, "0s", round, &mut once_due).await?;
    }
    let end_to_end_ahead = ahead.figures("lookahead 2s");
    let end_to_end = once_due.figures("lookahead 0s");

    // 6. A pool fed from the concurrent clients.
    let started = Instant::now();
    from_callers(&client, options.clients, options.pool_jobs, |client, _| async move {
        enqueue_to(&client, None, "module", json!({"sleep_ms": 0})).await
    })
    .await?;
    wait_until(&client, Duration::from_secs(600), |r, p| r == 0 && p == 0)
        .await
        .context("waiting for the pool to drain")?;
    let pool_jobs_per_second = options.pool_jobs as f64 / started.elapsed().as_secs_f64();
    eprintln!("pool: {pool_jobs_per_second:.0} jobs/s");

    check_all_completed(
        &client,
        options.devices * (1 + 2 * options.rounds)
            + options.queued
            + options.samples
            + options.pool_jobs,
    )
    .await?;
    let peak_rss_mib = daemon.peak_rss_mib()?;
    daemon.stop()?;
    drop(db);
    Ok(Figures {
        backend,
        build: "",
        enqueues_per_second,
        drain,
        cpu_per_job_ms,
        after_exit,
        after_enqueue,
        end_to_end,
        end_to_end_ahead,
        pool_jobs_per_second,
        peak_rss_mib,
    })
}

/// The runner's configuration: `bench` jobs on the devices, `module` jobs in a pool, no adb.
fn runner_config(logs: &Path, job: &Path, options: &Options) -> String {
    let mut toml = format!(
        "log_dir = {logs:?}\n\n[adb]\nenabled = false\n\n[job_types.bench]\nargv = [{job:?}]\nmax_duration = \"10m\"\n\n[job_types.module]\nargv = [{job:?}]\nmax_duration = \"10m\"\nruns_on = \"pool:modules\"\n\n[[pools]]\nname = \"modules\"\nconcurrency = {}\n",
        options.pool_concurrency
    );
    for device in 0..options.devices {
        toml.push_str(&format!("\n[[devices]]\nserial = \"{}\"\n", serial(device)));
    }
    toml
}

/// Gives every device a job that runs until `gate` exists.
async fn hold_devices(
    client: &DeviceRunnerClient,
    gate: &Path,
    options: &Options,
) -> anyhow::Result<()> {
    for device in 0..options.devices {
        enqueue(client, serial(device), json!({"gate": gate})).await?;
    }
    wait_until(client, Duration::from_secs(60), |running, _| {
        running == options.devices
    })
    .await
    .context("waiting for every device to run its holding job")
}

/// Opens the gate and waits for the queues to drain: how long it took, and the runner's CPU
/// per job in milliseconds.
async fn drain(
    client: &DeviceRunnerClient,
    daemon: &Daemon,
    gate: &Path,
    options: &Options,
) -> anyhow::Result<(Duration, f64)> {
    let cpu_before = daemon.cpu_seconds()?;
    std::fs::write(gate, "")?;
    let opened = Instant::now();
    let expected_drain =
        Duration::from_millis(options.job_ms * (options.queued / options.devices + 1) as u64);
    wait_until(
        client,
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
    Ok((drain, cpu_per_job_ms))
}

/// With the devices idle, `options.samples` single jobs, one every 20 ms: from the enqueue call
/// to the job's process running.
async fn after_enqueue(
    client: &DeviceRunnerClient,
    options: &Options,
) -> anyhow::Result<Latencies> {
    let mut enqueued_at = Vec::new();
    for i in 0..options.samples {
        let before = unix_nanos();
        let id = enqueue(client, serial(i % options.devices), json!({"sleep_ms": 0})).await?;
        enqueued_at.push((id, before));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until(client, Duration::from_secs(60), |r, p| r == 0 && p == 0)
        .await
        .context("waiting for the sampled jobs")?;
    let mut latencies = Vec::new();
    for (id, before) in enqueued_at {
        let run = client.rpc().get_run(id).await?;
        latencies.push(started(&run)? - before);
    }
    Ok(Latencies::of(latencies))
}

/// When a job's process started, from the stamp it printed.
fn started(run: &device_runner_client::Job) -> anyhow::Result<i64> {
    let log = std::fs::read_to_string(run.log_path.as_deref().unwrap_or_default())
        .with_context(|| format!("reading the log of job {}", run.id))?;
    match stamps(&log) {
        (Some(started), _) => Ok(started),
        _ => bail!("job {} printed no start stamp: {log}", run.id),
    }
}

/// Queues a `bench` job on `device`.
async fn enqueue(
    client: &DeviceRunnerClient,
    device: String,
    params: serde_json::Value,
) -> anyhow::Result<String> {
    enqueue_to(client, Some(device), "bench", params).await
}

/// Queues a job of `job_type` on `device`, or (without one) in its type's pool.
async fn enqueue_to(
    client: &DeviceRunnerClient,
    device: Option<String>,
    job_type: &str,
    params: serde_json::Value,
) -> anyhow::Result<String> {
    let job = client
        .rpc()
        .enqueue(device_runner_client::EnqueueJob {
            device,
            job_type: job_type.into(),
            params: Some(params),
            ..Default::default()
        })
        .await?;
    Ok(job.id)
}

/// Where an end-to-end round runs: the release scheduler on `backend`, in `dir`, with the
/// runner under test as `[device_runners.farm]`.
struct Place<'a> {
    backend: &'static str,
    scheduler: &'a Path,
    dir: &'a Path,
    runner: &'a Daemon,
    options: &'a Options,
}

/// End-to-end samples pooled over rounds, in nanoseconds: each job's due → process running,
/// and where the time went: due → queued (the scheduler and its call), queued → marked
/// started (the device's queue), marked started → the process's own stamp (the start's write
/// and the spawn).
#[derive(Default)]
pub(crate) struct Through {
    total: Vec<i64>,
    legs: [Vec<i64>; 3],
}

impl Through {
    /// Adds the sample of a job due at `due`, from its record and the stamp it printed.
    pub(crate) fn add(
        &mut self,
        due: chrono::DateTime<chrono::Utc>,
        job: &device_runner_client::Job,
    ) -> anyhow::Result<()> {
        let nanos =
            |at: chrono::DateTime<chrono::Utc>| at.timestamp_nanos_opt().unwrap_or_default();
        let stamp = started(job)?;
        let marked = nanos(job.started_at.unwrap_or(job.enqueued_at));
        self.total.push(stamp - nanos(due));
        self.legs[0].push(nanos(job.enqueued_at) - nanos(due));
        self.legs[1].push(marked - nanos(job.enqueued_at));
        self.legs[2].push(stamp - marked);
        Ok(())
    }

    /// The figures, with the legs printed.
    pub(crate) fn figures(self, lookahead: &str) -> Latencies {
        let figures = Latencies::of(self.total);
        let [queued, picked, spawned] = self.legs.map(Latencies::of);
        eprintln!(
            "end to end ({lookahead}): due → running p50 {:.1} ms, p99 {:.1} ms \
             (due → queued p50 {:.1} / p99 {:.1}; queued → marked started {:.1} / {:.1}; \
             marked started → process {:.1} / {:.1})",
            figures.p50,
            figures.p99,
            queued.p50,
            queued.p99,
            picked.p50,
            picked.p99,
            spawned.p50,
            spawned.p99
        );
        figures
    }
}

/// One round from the due second of one `device_job` schedule per device to each job's
/// `started` stamp, through the release scheduler with `engine.lookahead = lookahead`.
async fn end_to_end(
    place: &Place<'_>,
    lookahead: &str,
    round: usize,
    samples: &mut Through,
) -> anyhow::Result<()> {
    use chrono::{SubsecRound, TimeDelta, Utc};
    let name = format!("scheduler-{}-{round}", lookahead.trim_end_matches('s'));
    let db = fresh_db(place.backend, place.dir, &name).await?;
    let runner_url = place.runner.url();
    let env = [
        ("SCHEDULER__DEVICE_RUNNERS__FARM__URL", runner_url.as_str()),
        ("SCHEDULER__DEVICE_RUNNERS__FARM__POLL", "200ms"),
        ("SCHEDULER__ENGINE__LOOKAHEAD", lookahead),
    ];
    let daemon = Daemon::start_with(
        place.scheduler,
        &place.dir.join(&name),
        &db.url,
        "http://127.0.0.1:9/",
        &env,
    )
    .await?;
    let schedules = scheduler_client::SchedulerClient::new(daemon.client_config())?;
    let due = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(5);
    let id = |device: usize| format!("e2e-{lookahead}-{round}-{device}");
    let devices = place.options.devices;
    for device in 0..devices {
        let mut new = device_schedule(device, due);
        new.id = Some(id(device));
        schedules.create_schedule(new).await?;
    }
    if Utc::now() + TimeDelta::seconds(1) > due {
        bail!("creating the schedules took too long for the 5 s lead");
    }
    let client = DeviceRunnerClient::new(&runner_url)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let at = due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for device in 0..devices {
        let key = format!("{}@{at}", id(device));
        let job = completed(&client, device, &key, deadline).await?;
        samples.add(due, &job)?;
    }
    daemon.stop()?;
    drop(db);
    Ok(())
}

/// A schedule that runs a `bench` job on `device` once, at `due`.
fn device_schedule(
    device: usize,
    due: chrono::DateTime<chrono::Utc>,
) -> scheduler_client::NewSchedule {
    let target = scheduler_client::Target::DeviceJob(scheduler_client::DeviceJobTarget {
        runner: "farm".into(),
        device: Some(serial(device)),
        pool: None,
        select: None,
        moves: 0,
        job_type: "bench".into(),
        params: json!({"sleep_ms": 0})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        priority: 5,
        max_duration: None,
    });
    let trigger = scheduler_client::TriggerKind::Once { at: due }.into();
    scheduler_client::NewSchedule::new("bench", trigger, target)
}

/// Polls `device`'s completed runs until the one with idempotency key `key` is among them.
async fn completed(
    client: &DeviceRunnerClient,
    device: usize,
    key: &str,
    deadline: Instant,
) -> anyhow::Result<device_runner_client::Job> {
    loop {
        let runs = client
            .rpc()
            .list_runs(
                Some(serial(device)),
                Some("completed".into()),
                None,
                Some(20),
                None,
                None,
            )
            .await?;
        if let Some(job) = runs
            .into_iter()
            .find(|j| j.idempotency_key.as_deref() == Some(key))
        {
            return Ok(job);
        }
        if Instant::now() > deadline {
            bail!("the job of {key} did not complete within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        // Pools count too.
        let running = status.running_jobs.len();
        let pending = status.devices.iter().map(|d| d.pending).sum::<u64>()
            + status.pools.iter().map(|p| p.pending).sum::<u64>();
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
            .list_runs(None, None, None, Some(1000), before.clone(), None)
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
