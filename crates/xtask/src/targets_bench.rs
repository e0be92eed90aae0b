//! The general-schedules benchmark, against the release binary over its real protocols:
//!
//! 1. D occurrences (default 10,000) due in the same second, side by side for graph executions
//!    sent one request each, graph executions sent as JSON-RPC batches (`executor.batch`), and
//!    `http` targets on an endpoint, each with the engine claiming only once due and claiming
//!    ahead (`engine.lookahead`): when the last reached the stub, and the p50/p99 lag of each
//!    dispatch behind its scheduled time;
//! 2. the p99 dispatch lag of S schedules firing every second (default 500), side by side
//!    without and with the retention pruning R old ledger rows (default 1,000,000), and how
//!    long the pruning took.

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use jobstore::{Database, HttpTarget, Policy, Schedule, StoreName, Target};
use triggers::{TriggerKind, TriggerSpec};

use crate::bench::{graph_execution, seed_targets};
use crate::daemon::{
    Daemon, Received, against_binary, build_release, builds, flag_pairs, fresh_db, migrated_by,
    parse_backends, percentile, received_by, stub_executor,
};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    due: usize,
    batch: usize,
    /// The bursts to run, in order.
    bursts: Vec<Burst>,
    /// The `engine.lookahead` values each burst runs with, in seconds.
    lookaheads: Vec<u64>,
    firing: usize,
    old_rows: usize,
    /// A scheduler binary of another revision, whose bursts run beside this tree's, in turn.
    against: Option<std::path::PathBuf>,
    /// How many times each burst runs (with each binary).
    runs: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            backends: vec!["sqlite", "postgres"],
            due: 10_000,
            batch: 100,
            bursts: vec![Burst::Graph, Burst::GraphBatched, Burst::Http],
            lookaheads: vec![0, 2],
            firing: 500,
            old_rows: 1_000_000,
            against: None,
            runs: 1,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--due" => options.due = value.parse()?,
                "--batch" => options.batch = value.parse()?,
                "--bursts" => {
                    options.bursts = value
                        .split(',')
                        .map(|name| Burst::parse(name.trim()))
                        .collect::<Result<_, _>>()?;
                }
                "--lookahead" => {
                    options.lookaheads = value
                        .split(',')
                        .map(|secs| secs.trim().parse())
                        .collect::<Result<_, _>>()?;
                }
                "--firing" => options.firing = value.parse()?,
                "--old-rows" => options.old_rows = value.parse()?,
                "--against" => options.against = Some(against_binary(value)?),
                "--runs" => {
                    options.runs = value.parse()?;
                    if options.runs == 0 {
                        bail!("--runs must be at least 1");
                    }
                }
                other => bail!("unknown option '{other}'"),
            }
        }
        Ok(options)
    }
}

/// How a burst of due occurrences is sent.
#[derive(Clone, Copy, PartialEq)]
enum Burst {
    Graph,
    GraphBatched,
    Http,
}

impl Burst {
    fn parse(name: &str) -> anyhow::Result<Burst> {
        Ok(match name {
            "graph" => Burst::Graph,
            "batched" => Burst::GraphBatched,
            "http" => Burst::Http,
            other => bail!("unknown burst '{other}' (graph, batched or http)"),
        })
    }

    fn label(self, batch: usize) -> String {
        match self {
            Burst::Graph => "graph_execution, one request each".into(),
            Burst::GraphBatched => format!("graph_execution, executor.batch = {batch}"),
            Burst::Http => "http target on an endpoint".into(),
        }
    }
}

struct BurstFigures {
    last: Duration,
    p50: Duration,
    p99: Duration,
    /// Time the engine spent in `claim_due` and in recording outcomes (`finish_runs`), from
    /// its own metrics.
    claiming: Duration,
    recording: Duration,
}

struct PruneFigures {
    baseline_p99: Duration,
    pruning_p99: Duration,
    pruning_max: Duration,
    samples: usize,
    pruned_in: Duration,
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let binary = build_release("scheduler")?;
    // With `--against`, that binary's bursts run first in each turn, then this tree's.
    let builds = builds(options.against.as_deref(), &binary);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut burst_rows = Vec::new();
    let mut prune_rows = Vec::new();
    for backend in &options.backends {
        for &burst in &options.bursts {
            for &lookahead in &options.lookaheads {
                for turn in 1..=options.runs {
                    for &(build, binary) in &builds {
                        eprintln!(
                            "== {backend}: {}, lookahead {lookahead}s, {build}, run {turn}",
                            burst.label(options.batch)
                        );
                        let run = bench_burst(backend, binary, burst, lookahead, &options);
                        let figures = runtime.block_on(run)?;
                        burst_rows.push((*backend, burst, lookahead, build, figures));
                    }
                }
            }
        }
        if options.old_rows > 0 {
            eprintln!(
                "== {backend}: firing while pruning {} old rows",
                options.old_rows
            );
            let figures = runtime.block_on(bench_prune(backend, &binary, &options))?;
            prune_rows.push((*backend, figures));
        }
    }
    println!();
    println!(
        "| backend | {} due in one second, sent as | engine.lookahead | build | last dispatched after | lag p50 | lag p99 | in claim_due | in finish_runs |",
        options.due
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (backend, burst, lookahead, build, f) in &burst_rows {
        println!(
            "| {backend} | {} | {lookahead} s | {build} | {:.2} s | {} ms | {} ms | {:.2} s | {:.2} s |",
            burst.label(options.batch),
            f.last.as_secs_f64(),
            f.p50.as_millis(),
            f.p99.as_millis(),
            f.claiming.as_secs_f64(),
            f.recording.as_secs_f64()
        );
    }
    if options.runs > 1 {
        print_medians(&options, &builds, &burst_rows);
    }
    if prune_rows.is_empty() {
        return Ok(());
    }
    println!();
    println!(
        "| backend | {} schedules every second: lag p99, ledger idle | while pruning {} old rows | max while pruning | dispatches measured | pruning took |",
        options.firing, options.old_rows
    );
    println!("|---|---|---|---|---|---|");
    for (backend, f) in prune_rows {
        println!(
            "| {backend} | {} ms | {} ms | {} ms | {} | {:.1} s |",
            f.baseline_p99.as_millis(),
            f.pruning_p99.as_millis(),
            f.pruning_max.as_millis(),
            f.samples,
            f.pruned_in.as_secs_f64()
        );
    }
    Ok(())
}

/// The median "last dispatched after" of each burst and build, side by side.
fn print_medians(
    options: &Options,
    builds: &[(&str, &std::path::Path)],
    rows: &[(&str, Burst, u64, &str, BurstFigures)],
) {
    println!();
    let names: Vec<&str> = builds.iter().map(|(build, _)| *build).collect();
    println!(
        "| backend | sent as | engine.lookahead | {} |",
        names
            .iter()
            .map(|build| format!(
                "{build}: median last dispatched after ({} runs)",
                options.runs
            ))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|---|{}", "---|".repeat(names.len()));
    for backend in &options.backends {
        for &burst in &options.bursts {
            for &lookahead in &options.lookaheads {
                let cells: Vec<String> = names
                    .iter()
                    .map(|name| {
                        let mut lasts: Vec<Duration> = rows
                            .iter()
                            .filter(|(b, r, l, n, _)| {
                                b == backend && *r == burst && *l == lookahead && n == name
                            })
                            .map(|(.., f)| f.last)
                            .collect();
                        lasts.sort();
                        format!("{:.2} s", percentile(&lasts, 0.5).as_secs_f64())
                    })
                    .collect();
                println!(
                    "| {backend} | {} | {lookahead} s | {} |",
                    burst.label(options.batch),
                    cells.join(" | ")
                );
            }
        }
    }
}

async fn bench_burst(
    backend: &'static str,
    binary: &std::path::Path,
    burst: Burst,
    lookahead: u64,
    options: &Options,
) -> anyhow::Result<BurstFigures> {
    let dir = tempfile::tempdir()?;
    let (executor_url, received) = stub_executor().await?;
    let db = fresh_db(backend, dir.path(), "burst").await?;
    let database = migrated_by(binary, dir.path(), &db.url, &executor_url).await?;
    let due_at = (Utc::now() + TimeDelta::seconds(15)).trunc_subsecs(0);
    let http = |_: usize| {
        Target::Http(HttpTarget {
            endpoint: Some("bench".into()),
            url: None,
            method: "POST".into(),
            path: "/job".into(),
            headers: Default::default(),
            body: serde_json::Value::Null,
            expected_status: "2xx".into(),
        })
    };
    let target: &dyn Fn(usize) -> Target = match burst {
        Burst::Http => &http,
        _ => &graph_execution,
    };
    seed_targets(&database, options.due, due_at, target).await?;
    let batch = options.batch.to_string();
    let endpoint = executor_url.trim_end_matches('/').to_string();
    let lookahead = format!("{lookahead}s");
    let mut env: Vec<(&str, &str)> = match burst {
        Burst::Graph => vec![("SCHEDULER__EXECUTOR__BATCH", "1")],
        Burst::GraphBatched => vec![("SCHEDULER__EXECUTOR__BATCH", batch.as_str())],
        Burst::Http => vec![("SCHEDULER__ENDPOINTS__BENCH__URL", endpoint.as_str())],
    };
    env.push(("SCHEDULER__ENGINE__LOOKAHEAD", lookahead.as_str()));
    let daemon = Daemon::start_with(binary, dir.path(), &db.url, &executor_url, &env).await?;
    if Utc::now() + TimeDelta::seconds(2) > due_at {
        bail!("seeding and starting took too long for the 15 s lead");
    }
    let calls = received_by(&received, options.due, due_at).await?;
    let scrape = reqwest::get(format!("{}/metrics", daemon.url()))
        .await?
        .text()
        .await?;
    let spent = |operation: &str| {
        let series = format!("scheduler_store_operation_seconds_sum{{operation=\"{operation}\"}}");
        let seconds = scrape
            .lines()
            .find_map(|line| {
                line.strip_prefix(series.as_str())?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_default();
        Duration::from_secs_f64(seconds)
    };
    let (claiming, recording) = (spent("claim_due"), spent("finish_runs"));
    daemon.stop()?;
    database.close().await;
    let last = calls.iter().map(|(_, at)| *at).max().unwrap_or(due_at);
    let mut lags: Vec<TimeDelta> = calls.iter().map(|(s, at)| *at - *s).collect();
    lags.sort();
    let lag = |p: f64| percentile(&lags, p).to_std().unwrap_or_default();
    Ok(BurstFigures {
        last: (last - due_at).to_std().unwrap_or_default(),
        p50: lag(0.5),
        p99: lag(0.99),
        claiming,
        recording,
    })
}

/// `firing` schedules every second, measured for a while with a small ledger, then with
/// `old_rows` aged-out rows that the retention deletes meanwhile.
async fn bench_prune(
    backend: &'static str,
    binary: &std::path::Path,
    options: &Options,
) -> anyhow::Result<PruneFigures> {
    let dir = tempfile::tempdir()?;
    let (executor_url, received) = stub_executor().await?;
    let db = fresh_db(backend, dir.path(), "prune").await?;
    let database = migrated_by(binary, dir.path(), &db.url, &executor_url).await?;
    let start = (Utc::now() + TimeDelta::seconds(5)).trunc_subsecs(0);
    seed_firing(&database, options.firing, start).await?;
    let env = [
        ("SCHEDULER__LEDGER__PRUNE_EVERY", "1s"),
        // Each schedule keeps its runs: only the age rule works here.
        ("SCHEDULER__LEDGER__KEEP_PER_SCHEDULE", "1000000"),
    ];
    let daemon = Daemon::start_with(binary, dir.path(), &db.url, &executor_url, &env).await?;
    // The baseline: 10 seconds of firing with nothing to prune.
    tokio::time::sleep((start - Utc::now()).to_std().unwrap_or_default()).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let baseline = lags_since(&received, start);
    // Then the old rows: a burst of inserts, which the next prune pass starts deleting.
    let seeded = Instant::now();
    seed_old_rows(&database, options.old_rows).await?;
    eprintln!(
        "seeded {} old rows in {:.1} s",
        options.old_rows,
        seeded.elapsed().as_secs_f64()
    );
    let pruning_from = Utc::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while count_old(&database).await? > 0 {
        if Instant::now() > deadline {
            bail!("the old rows were not pruned within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pruned_in = (Utc::now() - pruning_from).to_std().unwrap_or_default();
    // At least 5 seconds of dispatches measured, however quick the pruning.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(pruned_in)).await;
    let pruning = lags_since(&received, pruning_from);
    daemon.stop()?;
    database.close().await;
    if baseline.is_empty() || pruning.is_empty() {
        bail!("no dispatches measured");
    }
    let p99 = |lags: &[TimeDelta]| percentile(lags, 0.99).to_std().unwrap_or_default();
    Ok(PruneFigures {
        baseline_p99: p99(&baseline),
        pruning_p99: p99(&pruning),
        pruning_max: pruning
            .last()
            .and_then(|l| l.to_std().ok())
            .unwrap_or_default(),
        samples: pruning.len(),
        pruned_in,
    })
}

/// The sorted lags of the dispatches of occurrences scheduled at or after `since`.
fn lags_since(received: &Received, since: DateTime<Utc>) -> Vec<TimeDelta> {
    let mut lags: Vec<TimeDelta> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(scheduled, _)| *scheduled >= since)
        .map(|(scheduled, at)| *at - *scheduled)
        .collect();
    lags.sort();
    lags
}

/// `count` graph-execution schedules firing every second from `start`.
async fn seed_firing(
    database: &Database,
    count: usize,
    start: DateTime<Utc>,
) -> anyhow::Result<()> {
    let store = jobstore::persisted(database, StoreName::Execution);
    let schedules: Vec<Schedule> = (0..count)
        .map(|i| Schedule {
            id: format!("tick{i:05}"),
            name: "tick".into(),
            owner: "bench".into(),
            trigger: TriggerSpec::from(TriggerKind::Interval {
                every_secs: 1,
                anchor: Some(start),
            }),
            target: graph_execution(i),
            policy: Policy::default(),
            tags: Vec::new(),
            paused: false,
            paused_reason: None,
            next_run_at: Some(start),
            created_at: Utc::now(),
        })
        .collect();
    store.insert_many(&schedules).await?;
    Ok(())
}

/// `rows` finished ledger rows of deleted schedules, finished 40 days ago.
async fn seed_old_rows(database: &Database, rows: usize) -> anyhow::Result<()> {
    let old = Utc::now() - TimeDelta::days(40);
    match database {
        Database::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO schedule_runs (schedule_id, scheduled_time, jobstore, owner, target, \
                 status, detail, attempts, claimed_at, lease_until, finished_at) \
                 SELECT 'old' || (n % 1000), $1 - make_interval(secs => n), 'execution', 'bench', \
                 '{\"type\": \"system_task\", \"task\": \"x\"}', 'dispatched', NULL, 1, $1, NULL, $1 \
                 FROM generate_series(1, $2) AS n",
            )
            .bind(old)
            .bind(rows as i64)
            .execute(pool)
            .await?;
        }
        Database::Sqlite(pool) => {
            let millis = old.timestamp_millis();
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
                 INSERT INTO schedule_runs (schedule_id, scheduled_time, jobstore, owner, target, \
                 status, detail, attempts, claimed_at, lease_until, finished_at) \
                 SELECT 'old' || (i % 1000), ?1 - i * 1000, 'execution', 'bench', \
                 '{\"type\": \"system_task\", \"task\": \"x\"}', 'dispatched', NULL, 1, ?1, NULL, ?1 \
                 FROM n",
            )
            .bind(millis)
            .bind(rows as i64)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

async fn count_old(database: &Database) -> anyhow::Result<i64> {
    let sql =
        "SELECT count(*) FROM schedule_runs WHERE owner = 'bench' AND schedule_id LIKE 'old%'";
    Ok(match database {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
    })
}
