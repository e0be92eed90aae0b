//! The watches benchmark, against the release binary over its real protocols: W active watches
//! (default 10,000), each polling a stub module on loopback every second (`interval_seconds =
//! 1`); the module always answers "running", so every watch keeps checking. Measured over a
//! window after a warm-up: attempts per second sustained, the p50/p99 lag of each check behind
//! its attempt's due time, and the scheduler's CPU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use scheduler_client::{Check, NewWatch, SchedulerClient};
use serde_json::{Value, json};

use crate::daemon::{
    Daemon, against_binary, build_release, builds, flag_pairs, fresh_db, parse_backends, percentile,
};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    watches: usize,
    warmup: u64,
    window: u64,
    /// Another revision's binary, measured first, side by side.
    against: Option<std::path::PathBuf>,
    /// The module's `batch` settings to measure (`modules.bench.batch`); the default (100) is
    /// left unset, so that a binary without the setting runs too.
    module_batches: Vec<u32>,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            backends: vec!["sqlite", "postgres"],
            watches: 10_000,
            warmup: 5,
            window: 20,
            against: None,
            module_batches: vec![DEFAULT_MODULE_BATCH],
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--watches" => options.watches = value.parse()?,
                "--warmup" => options.warmup = value.parse()?,
                "--window" => options.window = value.parse()?,
                "--against" => options.against = Some(against_binary(value)?),
                "--module-batch" => {
                    options.module_batches = value
                        .split(',')
                        .map(|size| size.trim().parse())
                        .collect::<Result<_, _>>()?
                }
                other => bail!("unknown option '{other}'"),
            }
        }
        if options.window == 0 {
            bail!("--window must be at least 1 (seconds)");
        }
        Ok(options)
    }
}

/// The scheduler's default `modules.<name>.batch`.
const DEFAULT_MODULE_BATCH: u32 = 100;

struct Figures {
    attempts_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu_percent: f64,
    added_per_sec: f64,
}

/// Every check the module received: the watch's index and when it arrived.
type Calls = Arc<Mutex<Vec<(usize, DateTime<Utc>)>>>;

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let binary = build_release("scheduler")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for backend in &options.backends {
        for (build, binary) in builds(options.against.as_deref(), &binary) {
            for &batch in &options.module_batches {
                // Another revision may not know the setting: it runs as it is configured
                // by default.
                if build == "against" && batch != DEFAULT_MODULE_BATCH {
                    continue;
                }
                eprintln!(
                    "== {backend}, {build}, module batch {batch}: {} watches every second",
                    options.watches
                );
                let figures = runtime.block_on(bench(backend, binary, batch, &options))?;
                rows.push((*backend, build, batch, figures));
            }
        }
    }
    println!();
    println!(
        "| backend | build | module batch | {} watches, interval 1 s: attempts/s | lag p50 | lag p99 | lag max | scheduler CPU | add_watch/s |",
        options.watches
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (backend, build, batch, f) in rows {
        println!(
            "| {backend} | {build} | {batch} | {:.0} | {} ms | {} ms | {} ms | {:.0} % | {:.0} |",
            f.attempts_per_sec,
            f.p50.as_millis(),
            f.p99.as_millis(),
            f.max.as_millis(),
            f.cpu_percent,
            f.added_per_sec
        );
    }
    Ok(())
}

async fn bench(
    backend: &'static str,
    binary: &std::path::Path,
    module_batch: u32,
    options: &Options,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let calls: Calls = Arc::default();
    let module_url = stub_module(calls.clone()).await?;
    let db = fresh_db(backend, dir.path(), "watches").await?;
    let batch = module_batch.to_string();
    let mut env = vec![
        ("SCHEDULER__MODULES__BENCH__URL", module_url.as_str()),
        ("SCHEDULER__REDIS__URL", "redis://127.0.0.1:6379"),
    ];
    if module_batch != DEFAULT_MODULE_BATCH {
        env.push(("SCHEDULER__MODULES__BENCH__BATCH", batch.as_str()));
    }
    let daemon =
        Daemon::start_with(binary, dir.path(), &db.url, "http://127.0.0.1:9/", &env).await?;
    let client = SchedulerClient::new(daemon.client_config())?;

    let started = Instant::now();
    let anchors = add_watches(&client, options.watches).await?;
    let added_per_sec = options.watches as f64 / started.elapsed().as_secs_f64();

    tokio::time::sleep(Duration::from_secs(options.warmup)).await;
    let from = Utc::now();
    let cpu_before = daemon.cpu_seconds()?;
    tokio::time::sleep(Duration::from_secs(options.window)).await;
    let until = Utc::now();
    let cpu = daemon.cpu_seconds()? - cpu_before;
    daemon.stop()?;

    let window: Vec<(usize, DateTime<Utc>)> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at >= from && *at < until)
        .copied()
        .collect();
    let lags = lags(&window, &anchors);
    let seconds = (until - from).num_milliseconds() as f64 / 1000.0;
    let lag = |p: f64| percentile(&lags, p).to_std().unwrap_or_default();
    Ok(Figures {
        attempts_per_sec: window.len() as f64 / seconds,
        p50: lag(0.5),
        p99: lag(0.99),
        max: lags
            .last()
            .and_then(|l| l.to_std().ok())
            .unwrap_or_default(),
        cpu_percent: 100.0 * cpu / seconds,
        added_per_sec,
    })
}

/// Adds `count` watches from 16 callers, each polling the stub module every second with its
/// index as `n`; returns when each one's checks are due from (its first check, a second after
/// it was added).
async fn add_watches(
    client: &SchedulerClient,
    count: usize,
) -> anyhow::Result<HashMap<usize, DateTime<Utc>>> {
    let anchors = Arc::new(Mutex::new(HashMap::new()));
    let callers = 16.min(count.max(1));
    let mut adders = Vec::new();
    for caller in 0..callers {
        let client = client.clone();
        let anchors = anchors.clone();
        adders.push(tokio::spawn(async move {
            for n in (caller..count).step_by(callers) {
                let check = Check::PollModule {
                    module: "bench".into(),
                    tool: "status".into(),
                    args: json!({"n": n}).as_object().cloned().unwrap_or_default(),
                    success_field: "state".into(),
                    success_values: vec![json!("done")],
                };
                let watch = NewWatch {
                    interval_seconds: Some(1),
                    max_attempts: Some(100_000),
                    platform: Some("bench".into()),
                    ..NewWatch::new("bench", check, "done")
                };
                let added = client.add_watch(watch).await?;
                let anchor = added.next_run_at.unwrap_or(added.created_at);
                anchors.lock().unwrap().insert(n, anchor);
            }
            anyhow::Ok(())
        }));
    }
    for adder in adders {
        adder.await??;
    }
    let anchors = anchors.lock().unwrap().clone();
    Ok(anchors)
}

/// Each check's lag behind the latest due time of its watch at or before it (anchor + k s),
/// sorted.
fn lags(
    window: &[(usize, DateTime<Utc>)],
    anchors: &HashMap<usize, DateTime<Utc>>,
) -> Vec<TimeDelta> {
    let mut lags: Vec<TimeDelta> = window
        .iter()
        .filter_map(|(n, at)| {
            let anchor = anchors.get(n)?;
            let since = (*at - *anchor).num_milliseconds();
            (since >= 0).then(|| TimeDelta::milliseconds(since % 1000))
        })
        .collect();
    lags.sort();
    lags
}

/// A JSON-RPC module on loopback whose every answer is `{"state": "running"}`; it notes each
/// call's `n` and arrival. It answers JSON-RPC batch requests, as a module may.
async fn stub_module(calls: Calls) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/", post(answer))
        .with_state(calls);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// Answers a call, or each call of a JSON-RPC batch request.
async fn answer(State(calls): State<Calls>, Json(request): Json<Value>) -> Json<Value> {
    let now = Utc::now();
    let mut noted = calls.lock().unwrap();
    let mut answer = |call: &Value| {
        if let Some(n) = call["params"]["n"].as_u64() {
            noted.push((n as usize, now));
        }
        json!({"jsonrpc": "2.0", "id": call["id"], "result": {"state": "running"}})
    };
    Json(match &request {
        Value::Array(batch) => Value::Array(batch.iter().map(&mut answer).collect()),
        call => answer(call),
    })
}
