//! The scheduler benchmark, run against the release binary over its real protocol:
//!
//! 1. `add_graph_execution_schedule` calls per second from 32 concurrent clients;
//! 2. with N stored schedules (default 100,000), D of them (default 10,000) due in the same
//!    second: the time from that second until the last reaches a stub executor on loopback, and
//!    the p50/p99 lag of each dispatch behind its scheduled time. They are seeded through the
//!    API from 32 concurrent callers (`--seed api`, the default), or straight into the store in
//!    batches (`--seed store`, faster, for a quick look);
//! 3. CPU used while idle (10 s with nothing due) and the peak RSS;
//! 4. on PostgreSQL, with 1, 2 and 3 replicas (`--replicas`) on one database: D occurrences due
//!    in the same second, dispatched occurrences per second from that second until the last one
//!    reaches the stub, and a check that the ledger holds each exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Datelike, SubsecRound, TimeDelta, Timelike, Utc};
use jobstore::{Database, GraphExecutionTarget, Policy, Schedule, StoreName, Target};
use scheduler_client::{NewGraphSchedule, NewSchedule, ScheduleQuery, SchedulerClient};
use serde_json::json;
use triggers::{TriggerKind, TriggerSpec};

use crate::daemon::{
    Daemon, against_binary, build_release, builds, flag_pairs, fresh_db, from_callers, migrated_by,
    parse_backends, percentile, received_by, stub_executor,
};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    schedules: usize,
    due: usize,
    adds: usize,
    replicas: Vec<usize>,
    /// Another revision's binary, measured first with its own defaults, side by side.
    against: Option<std::path::PathBuf>,
    seed: Seed,
    /// Also run this tree's binary with traces on (`--traces on`), exporting to a sink on
    /// loopback: what traces cost.
    traces: bool,
}

/// How the burst's stored schedules are seeded.
#[derive(Clone, Copy, PartialEq)]
enum Seed {
    /// Through the API, as a user adds them.
    Api,
    /// Straight into the store, in batches.
    Store,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            backends: vec!["sqlite", "postgres"],
            schedules: 100_000,
            due: 10_000,
            adds: 3_000,
            replicas: vec![1, 2, 3],
            against: None,
            seed: Seed::Api,
            traces: false,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--schedules" => options.schedules = value.parse()?,
                "--due" => options.due = value.parse()?,
                "--adds" => options.adds = value.parse()?,
                "--against" => options.against = Some(against_binary(value)?),
                "--traces" => {
                    options.traces = match value {
                        "on" => true,
                        "off" => false,
                        other => bail!("--traces must be on or off, got '{other}'"),
                    }
                }
                "--seed" => {
                    options.seed = match value {
                        "api" => Seed::Api,
                        "store" => Seed::Store,
                        other => bail!("--seed must be api or store, got '{other}'"),
                    }
                }
                "--replicas" => {
                    options.replicas = value
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                }
                other => bail!("unknown option '{other}'"),
            }
        }
        if options.due > options.schedules {
            bail!("--due must not exceed --schedules");
        }
        Ok(options)
    }
}

/// Settings of one run of the scheduler, as environment variables.
type Settings<'a> = Vec<(&'a str, &'a str)>;

/// The concurrent callers that add schedules.
const CALLERS: usize = 32;

struct Figures {
    backend: &'static str,
    build: &'static str,
    adds_per_second: f64,
    last_dispatch_after: Duration,
    dispatched: usize,
    lag_p50: Duration,
    lag_p99: Duration,
    idle_cpu_percent: f64,
    /// The resident set with the schedules stored, before the burst is claimed.
    stored_rss_mib: f64,
    /// The resident set at the end of the idle window, after the burst.
    idle_rss_mib: f64,
    peak_rss_mib: f64,
    reads: Reads,
}

/// Medians of single calls among the stored schedules.
struct Reads {
    /// `list_schedules {owner, limit: 100}`, an owner holding one in 1,000 of them.
    list_owner: Duration,
    /// `get_scheduler_status`.
    status: Duration,
    /// One `add_graph_execution_schedule`.
    add: Duration,
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let binary = build_release("scheduler")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    let sink = match options.traces {
        true => Some(runtime.block_on(trace_sink())?),
        false => None,
    };
    for backend in &options.backends {
        // With `--against`, that binary first, then this tree's, each with its defaults; with
        // `--traces on`, this tree's again exporting its spans.
        let mut runs: Vec<(&'static str, &std::path::Path, Settings<'_>)> =
            builds(options.against.as_deref(), &binary)
                .into_iter()
                .map(|(build, binary)| (build, binary, Vec::new()))
                .collect();
        if let Some((url, _)) = &sink {
            let env = vec![("SCHEDULER__TELEMETRY__OTLP_ENDPOINT", url.as_str())];
            runs.push(("this tree, traces on", binary.as_path(), env));
        }
        for (build, binary, env) in runs {
            eprintln!("== {backend}, {build}");
            let run = bench_backend(backend, binary, &options, &env);
            let mut figures = runtime.block_on(run)?;
            figures.build = build;
            results.push(figures);
        }
    }
    if let Some((_, exported)) = &sink {
        let bytes = exported.load(Ordering::Relaxed);
        eprintln!(
            "traces on: {:.1} MiB of spans exported",
            bytes as f64 / 1048576.0
        );
    }
    print_figures(results, &options);
    if options.backends.contains(&"postgres") && !options.replicas.is_empty() {
        let mut rates = Vec::new();
        for &replicas in &options.replicas {
            eprintln!("== postgres, {replicas} replica(s)");
            let rate = runtime.block_on(bench_replicas(&binary, replicas, options.due))?;
            rates.push((replicas, rate));
        }
        println!(
            "\n| replicas on one PostgreSQL | {} due in one second: dispatched/s | last dispatched after |",
            options.due
        );
        println!("|---|---|---|");
        for (replicas, (rate, last)) in rates {
            println!("| {replicas} | {rate:.0} | {:.2} s |", last.as_secs_f64());
        }
    }
    Ok(())
}

/// The figures of each backend and build, as a table for the benchmark page.
fn print_figures(results: Vec<Figures>, options: &Options) {
    println!();
    println!(
        "| backend | build | adds/s | {} due: last dispatched after | dispatched | lag p50 | lag p99 | idle CPU | RSS stored, before the burst | RSS idle, after it | peak RSS | list_schedules by owner p50 | get_scheduler_status p50 | one add p50 |",
        options.due
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in results {
        println!(
            "| {} | {} | {:.0} | {:.2} s | {} | {} ms | {} ms | {:.2} % | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} ms |",
            f.backend,
            f.build,
            f.adds_per_second,
            f.last_dispatch_after.as_secs_f64(),
            f.dispatched,
            f.lag_p50.as_millis(),
            f.lag_p99.as_millis(),
            f.idle_cpu_percent,
            f.stored_rss_mib,
            f.idle_rss_mib,
            f.peak_rss_mib,
            f.reads.list_owner.as_secs_f64() * 1000.0,
            f.reads.status.as_secs_f64() * 1000.0,
            f.reads.add.as_secs_f64() * 1000.0,
        );
    }
    println!(
        "\n({} stored schedules; {} adds from 32 concurrent clients; idle CPU over 10 s)",
        options.schedules, options.adds
    );
}

/// `replicas` schedulers on one fresh PostgreSQL schema, `due` occurrences due in the same
/// second: the dispatch rate from that second to the last arrival, and how long that took.
async fn bench_replicas(
    binary: &std::path::Path,
    replicas: usize,
    due: usize,
) -> anyhow::Result<(f64, Duration)> {
    let dir = tempfile::tempdir()?;
    let (executor_url, received) = stub_executor().await?;
    let db = fresh_db("postgres", dir.path(), "replicas").await?;
    let database = migrated_by(binary, dir.path(), &db.url, &executor_url).await?;
    let due_at = (Utc::now() + TimeDelta::seconds(15)).trunc_subsecs(0);
    seed(&database, due, due_at).await?;
    let mut daemons = Vec::new();
    for _ in 0..replicas {
        daemons.push(Daemon::start(binary, dir.path(), &db.url, &executor_url).await?);
    }
    if Utc::now() + TimeDelta::seconds(2) > due_at {
        bail!("starting {replicas} replicas took too long for the 15 s lead");
    }
    let calls = received_by(&received, due, due_at).await?;
    let last = calls.iter().map(|(_, at)| *at).max().unwrap_or(due_at);
    let took = (last - due_at).to_std().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for daemon in daemons {
        daemon.stop()?;
    }
    let recorded = count_dispatched(&database).await?;
    if recorded != due as i64 || calls.len() != due {
        bail!(
            "{recorded} ledger rows and {} deliveries for {due} occurrences",
            calls.len()
        );
    }
    database.close().await;
    Ok((due as f64 / took.as_secs_f64().max(0.001), took))
}

async fn bench_backend(
    backend: &'static str,
    binary: &std::path::Path,
    options: &Options,
    env: &[(&str, &str)],
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let (executor_url, received) = stub_executor().await?;

    // 1. Adds per second through the API.
    let db = fresh_db(backend, dir.path(), "adds").await?;
    let daemon = Daemon::start_with(binary, dir.path(), &db.url, &executor_url, env).await?;
    let adds_per_second = measure_adds(&daemon, options.adds).await?;
    eprintln!("adds: {adds_per_second:.0}/s");
    daemon.stop()?;
    drop(db);

    // 2. A burst: `due` of `schedules` in the same second.
    let db = fresh_db(backend, dir.path(), "burst").await?;
    let (daemon, database, due_at) = match options.seed {
        Seed::Store => {
            let database = migrated_by(binary, dir.path(), &db.url, &executor_url).await?;
            let due_at = seed_burst(&database, options).await?;
            let daemon =
                Daemon::start_with(binary, dir.path(), &db.url, &executor_url, env).await?;
            (daemon, database, due_at)
        }
        Seed::Api => {
            let daemon =
                Daemon::start_with(binary, dir.path(), &db.url, &executor_url, env).await?;
            let due_at = seed_through_api(&daemon, options).await?;
            let url = jobstore::DatabaseUrl::parse(&db.url)?;
            (daemon, service_kit::database::open(&url, 4).await?, due_at)
        }
    };
    // The resident set with the schedules stored, 4 s before the burst's second (its runs
    // are claimed 2 s ahead).
    let before = (due_at - TimeDelta::seconds(4) - Utc::now()).to_std();
    tokio::time::sleep(before.unwrap_or_default()).await;
    let stored_rss_mib = daemon.rss_mib()?;
    let calls = received_by(&received, options.due, due_at).await?;
    let last = calls.iter().map(|(_, at)| *at).max().unwrap_or(due_at);
    let mut lags: Vec<TimeDelta> = calls
        .iter()
        .map(|(scheduled, at)| *at - *scheduled)
        .collect();
    lags.sort();
    let lag = |p: f64| percentile(&lags, p).to_std().unwrap_or_default();

    // 3. Idle: everything dispatched, nothing due for a year.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = daemon.cpu_seconds()?;
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let idle_cpu_percent = (daemon.cpu_seconds()? - cpu_before) / idle.as_secs_f64() * 100.0;
    let idle_rss_mib = daemon.rss_mib()?;
    let reads = measure_reads(&daemon).await?;
    let peak_rss_mib = daemon.peak_rss_mib()?;
    daemon.stop()?;
    let recorded = count_dispatched(&database).await?;
    if recorded != options.due as i64 {
        bail!(
            "the ledger shows {recorded} dispatched runs, expected {}",
            options.due
        );
    }
    database.close().await;

    Ok(Figures {
        backend,
        build: "this tree",
        adds_per_second,
        last_dispatch_after: (last - due_at).to_std().unwrap_or_default(),
        dispatched: calls.len(),
        lag_p50: lag(0.50),
        lag_p99: lag(0.99),
        idle_cpu_percent,
        stored_rss_mib,
        idle_rss_mib,
        peak_rss_mib,
        reads,
    })
}

/// Seeds `options.schedules` schedules: first those not due, then `options.due` due in the
/// same second 20 s from then; returns that second.
async fn seed_burst(database: &Database, options: &Options) -> anyhow::Result<DateTime<Utc>> {
    let seed_started = Instant::now();
    let due = options.due;
    seed_idle(database, due, options.schedules - due).await?;
    let lead = TimeDelta::seconds(20);
    let due_at = (Utc::now() + lead).trunc_subsecs(0);
    seed(database, due, due_at).await?;
    eprintln!(
        "seeded {} schedules in {:.1} s; {due} due at {due_at}",
        options.schedules,
        seed_started.elapsed().as_secs_f64(),
    );
    if Utc::now() + TimeDelta::seconds(5) > due_at {
        bail!("seeding the {due} due schedules took too long for the {lead} lead");
    }
    Ok(due_at)
}

/// Seeds through the API, as users add schedules: the crowd from 32 concurrent callers, then
/// the `due` ones due in the same second, far enough ahead for the rate the crowd was added
/// at; returns that second.
async fn seed_through_api(daemon: &Daemon, options: &Options) -> anyhow::Result<DateTime<Utc>> {
    let client = SchedulerClient::new(daemon.client_config())?;
    let due = options.due;
    let crowd = options.schedules - due;
    let new_year = TriggerSpec::from(TriggerKind::Cron {
        expression: "0 0 1 1 *".into(),
        timezone: "UTC".into(),
    });
    let took = from_callers(&client, CALLERS, crowd, move |client, i| {
        let trigger = new_year.clone();
        async move {
            let new = NewSchedule::new(owner(due + i), trigger, graph_execution(due + i));
            client.create_schedule(new).await?;
            Ok(())
        }
    })
    .await?;
    let rate = if crowd > 0 {
        crowd as f64 / took.as_secs_f64()
    } else {
        500.0
    };
    // Twice the time the due ones take at that rate, and 5 s more.
    let lead = TimeDelta::seconds((2.0 * due as f64 / rate.max(100.0)).ceil() as i64 + 5);
    let due_at = (Utc::now() + lead).trunc_subsecs(0);
    let trigger = fires_at(due_at)?;
    from_callers(&client, CALLERS, due, move |client, i| {
        let trigger = trigger.clone();
        async move {
            let new = NewSchedule::new(owner(i), trigger, graph_execution(i));
            client.create_schedule(new).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!(
        "seeded {crowd} schedules through the API in {:.1} s ({rate:.0}/s); {due} due at {due_at}",
        took.as_secs_f64()
    );
    if Utc::now() + TimeDelta::seconds(1) > due_at {
        bail!("adding the {due} due schedules took too long for the {lead} lead");
    }
    Ok(due_at)
}

/// Single calls one after another, each kind 50 times: the medians.
async fn measure_reads(daemon: &Daemon) -> anyhow::Result<Reads> {
    let client = SchedulerClient::new(daemon.client_config())?;
    let mut list = Vec::new();
    let mut status = Vec::new();
    let mut add = Vec::new();
    for i in 0..50 {
        let query = ScheduleQuery {
            owner: Some(format!("user{}", i * 17 % 1000)),
            limit: Some(100),
            ..ScheduleQuery::default()
        };
        let started = Instant::now();
        let page = client.list_schedules(query).await?;
        list.push(started.elapsed());
        if page.schedules.is_empty() {
            bail!("user{} has no schedules to list", i * 17 % 1000);
        }
        let started = Instant::now();
        client.get_scheduler_status().await?;
        status.push(started.elapsed());
        let started = Instant::now();
        client
            .add_graph_execution_schedule(new_graph_schedule(1_000_000 + i))
            .await?;
        add.push(started.elapsed());
    }
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        percentile(&samples, 0.5)
    };
    Ok(Reads {
        list_owner: median(list),
        status: median(status),
        add: median(add),
    })
}

async fn measure_adds(daemon: &Daemon, total: usize) -> anyhow::Result<f64> {
    let client = SchedulerClient::new(daemon.client_config())?;
    let took = from_callers(&client, CALLERS, total, |client, i| async move {
        let mut new = new_graph_schedule(i);
        new.user_id = format!("user{}", i % 32);
        client.add_graph_execution_schedule(new).await?;
        Ok(())
    })
    .await?;
    Ok(total as f64 / took.as_secs_f64())
}

/// AutoGPT's add of graph `i`, every Monday at 09:00, by `user0`.
fn new_graph_schedule(i: usize) -> NewGraphSchedule {
    NewGraphSchedule {
        user_id: "user0".into(),
        graph_id: format!("graph{i}"),
        graph_version: 1,
        cron: "0 9 * * 1".into(),
        input_data: json!({"text": "benchmark"}),
        ..Default::default()
    }
}

/// Stores `due` schedules of graph executions with a yearly cron whose next fire is `due_at`.
pub(crate) async fn seed(
    database: &Database,
    due: usize,
    due_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    seed_targets(database, due, due_at, &graph_execution).await
}

/// A graph execution target, the `i`th.
pub(crate) fn graph_execution(i: usize) -> Target {
    Target::GraphExecution(GraphExecutionTarget {
        graph_id: format!("graph{i}"),
        graph_version: 1,
        input_data: json!({"text": "benchmark"}),
        input_credentials: json!({}),
        ..Default::default()
    })
}

/// Stores `due` schedules that fire at `due_at` (a cron expression of that second), the
/// `i`th with the target `target(i)`.
pub(crate) async fn seed_targets(
    database: &Database,
    due: usize,
    due_at: DateTime<Utc>,
    target: &dyn Fn(usize) -> Target,
) -> anyhow::Result<()> {
    let due_trigger = fires_at(due_at)?;
    let schedules = (0..due).map(|i| seeded(i, due_trigger.clone(), Some(due_at), target(i)));
    insert_in_batches(database, schedules).await
}

/// A yearly cron expression of the second `due_at`, checked to fire next at it.
fn fires_at(due_at: DateTime<Utc>) -> anyhow::Result<TriggerSpec> {
    let trigger = TriggerSpec::from(TriggerKind::Cron {
        expression: format!(
            "{} {} {} {} {} *",
            due_at.second(),
            due_at.minute(),
            due_at.hour(),
            due_at.day(),
            due_at.month()
        ),
        timezone: "UTC".into(),
    });
    let check = trigger.compile()?.next_after(Utc::now());
    if check != Some(due_at) {
        bail!("seeding cron does not fire at {due_at}: {check:?}");
    }
    Ok(trigger)
}

/// The owner of the `i`th seeded schedule: one of 1,000 users.
fn owner(i: usize) -> String {
    format!("user{}", i % 1000)
}

/// Stores `count` schedules that fire next new year, numbered from `from`: the stored crowd a
/// burst is due among.
async fn seed_idle(database: &Database, from: usize, count: usize) -> anyhow::Result<()> {
    let new_year = TriggerSpec::from(TriggerKind::Cron {
        expression: "0 0 1 1 *".into(),
        timezone: "UTC".into(),
    });
    let next = new_year.compile()?.next_after(Utc::now());
    let schedules =
        (from..from + count).map(|i| seeded(i, new_year.clone(), next, graph_execution(i)));
    insert_in_batches(database, schedules).await
}

/// The `i`th seeded schedule, owned by one of 1,000 users.
pub(crate) fn seeded(
    i: usize,
    trigger: TriggerSpec,
    next_run_at: Option<DateTime<Utc>>,
    target: Target,
) -> Schedule {
    Schedule {
        id: uuid::Uuid::new_v4().to_string(),
        name: "execute_graph".into(),
        owner: owner(i),
        trigger,
        target,
        policy: Policy::default(),
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at,
        created_at: Utc::now().trunc_subsecs(0),
    }
}

pub(crate) async fn insert_in_batches(
    database: &Database,
    schedules: impl Iterator<Item = Schedule>,
) -> anyhow::Result<()> {
    let store = jobstore::persisted(database, StoreName::Execution);
    let mut batch = Vec::with_capacity(10_000);
    for schedule in schedules {
        batch.push(schedule);
        if batch.len() == batch.capacity() {
            store.insert_many(&batch).await?;
            batch.clear();
        }
    }
    store.insert_many(&batch).await?;
    Ok(())
}

async fn count_dispatched(database: &Database) -> anyhow::Result<i64> {
    let sql = "SELECT count(*) FROM schedule_runs WHERE status = 'dispatched'";
    Ok(match database {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
    })
}

/// An OTLP/HTTP collector on loopback that takes every export and counts its bytes.
async fn trace_sink() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let exported = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let counted = exported.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(body.len() as u64, Ordering::Relaxed);
                ""
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, exported))
}
