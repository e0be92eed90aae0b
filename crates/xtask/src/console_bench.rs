//! The console benchmark, in Debian's Chromium through chromedriver against the release
//! scheduler: how long the schedules page takes from navigation to its first page of rows with
//! S schedules stored (100 and 10,000 side by side: the page lists 100 at a time), and how long
//! the timeline takes to draw P phones × 24 h of runs (a stub device runner on loopback answers
//! `get_timeline` with one run every 10 minutes per phone). Median of `--loads` page loads.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Json;
use axum::routing::post;
use chrono::{TimeDelta, Utc};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::daemon::{Daemon, build_release, flag_pairs, percentile};

pub(crate) struct Options {
    schedules: Vec<usize>,
    phones: Vec<usize>,
    loads: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            schedules: vec![100, 10_000],
            phones: vec![5, 50],
            loads: 5,
        };
        let list = |value: &str| -> anyhow::Result<Vec<usize>> {
            value
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .context("a comma-separated list of numbers")
                })
                .collect()
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--schedules" => options.schedules = list(value)?,
                "--phones" => options.phones = list(value)?,
                "--loads" => options.loads = value.parse()?,
                other => bail!("unknown option '{other}'"),
            }
        }
        if options.loads == 0 {
            bail!("--loads must be at least 1");
        }
        Ok(options)
    }
}

/// One run every 10 minutes over the last 24 h on each of `phones` phones, 8 job types.
fn timeline(phones: usize) -> Value {
    let now = Utc::now();
    let types = [
        "post",
        "engage",
        "crawl",
        "warmup",
        "scroll",
        "publish_draft",
        "dm",
        "audit",
    ];
    let phones: Vec<Value> = (0..phones)
        .map(|p| {
            let runs: Vec<Value> = (0..144)
                .map(|i| {
                    let start =
                        now - TimeDelta::minutes(10 * (144 - i)) + TimeDelta::seconds(p as i64);
                    json!({
                        "job_id": format!("job-{p}-{i}"),
                        "job_type": types[(p + i as usize) % types.len()],
                        "status": if i % 17 == 0 { "failed" } else { "completed" },
                        "started_at": start,
                        "ended_at": start + TimeDelta::minutes(6),
                    })
                })
                .collect();
            json!({"serial": format!("PHONE{p:03}"), "label": null, "runs": runs})
        })
        .collect();
    Value::Array(phones)
}

/// A device runner that answers `get_timeline` with `phones` phones.
async fn stub_runner(phones: usize) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let answer = timeline(phones);
    let app = axum::Router::new().route(
        "/",
        post(move |Json(request): Json<Value>| {
            let answer = answer.clone();
            async move {
                let result = match request["method"].as_str() {
                    Some("get_timeline") => answer,
                    Some("health_check") => json!("OK"),
                    _ => Value::Null,
                };
                Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser() -> anyhow::Result<(Driver, Client)> {
    let port = test_support::free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("chromedriver (apt-get install -y chromium chromium-driver)")?;
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("chromedriver did not answer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium",
               "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    Ok((driver, client))
}

/// Loads `url` `loads` times; each time, the milliseconds from navigation until `ready` holds.
async fn page_loads(
    browser: &Client,
    url: &str,
    ready: &str,
    loads: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..loads {
        browser.goto("about:blank").await?;
        browser.goto(url).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let elapsed = loop {
            let value = browser
                .execute(
                    &format!("return ({ready}) ? performance.now() : null;"),
                    vec![],
                )
                .await?;
            if let Some(ms) = value.as_f64() {
                break ms;
            }
            if Instant::now() > deadline {
                bail!("{url}: '{ready}' never held");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        times.push(Duration::from_secs_f64(elapsed / 1000.0));
    }
    times.sort();
    Ok(times)
}

/// Stores `count` cron schedules through `create_schedule`, 200 to a JSON-RPC batch.
async fn fill(url: &str, count: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for start in (0..count).step_by(200) {
        let batch: Vec<Value> = (start..(start + 200).min(count))
            .map(|i| {
                json!({"jsonrpc": "2.0", "id": i, "method": "create_schedule", "params": {
                    "id": format!("s{i:05}"), "name": format!("Nightly report {i}"),
                    "owner": format!("user{}", i % 50),
                    "trigger": {"type": "cron", "expression": format!("{} {} * * 1-5", i % 60, i % 24),
                                "timezone": "Europe/Paris"},
                    "target": {"type": "device_job", "runner": "farm", "device": "PHONE000",
                               "job_type": "post"},
                    "tags": ["bench"]}})
            })
            .collect();
        let answers: Vec<Value> = http.post(url).json(&batch).send().await?.json().await?;
        if let Some(error) = answers.iter().find(|a| a.get("error").is_some()) {
            bail!("create_schedule failed: {error}");
        }
    }
    Ok(())
}

/// The scheduler on a fresh SQLite file, its farm runner a stub with `phones` phones.
async fn start(
    binary: &std::path::Path,
    phones: usize,
) -> anyhow::Result<(Daemon, tokio::task::JoinHandle<()>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let (runner, stub) = stub_runner(phones).await?;
    let db = format!("sqlite://{}", dir.path().join("scheduler.db").display());
    let daemon = Daemon::start_with(
        binary,
        dir.path(),
        &db,
        "http://127.0.0.1:9/",
        &[("SCHEDULER__DEVICE_RUNNERS__FARM__URL", runner.as_str())],
    )
    .await?;
    Ok((daemon, stub, dir))
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let binary = build_release("scheduler")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (_driver, browser) = browser().await?;
        let mut rows = Vec::new();
        for &schedules in &options.schedules {
            let (daemon, stub, _dir) = start(&binary, 1).await?;
            fill(&daemon.url(), schedules).await?;
            let shown = schedules.min(100);
            let times = page_loads(
                &browser,
                &format!("{}/ui/#/schedules", daemon.url()),
                &format!("document.querySelectorAll('tr[data-id]').length === {shown}"),
                options.loads,
            )
            .await?;
            eprintln!("schedules page, {schedules} stored: {times:?}");
            rows.push((
                format!("schedules page, {schedules} schedules stored ({shown} shown)"),
                times,
            ));
            drop(daemon);
            stub.abort();
        }
        for &phones in &options.phones {
            let (daemon, stub, _dir) = start(&binary, phones).await?;
            let bars = phones * 144;
            let times = page_loads(
                &browser,
                &format!("{}/ui/#/timeline", daemon.url()),
                &format!("document.querySelectorAll('.tl-bar').length === {bars}"),
                options.loads,
            )
            .await?;
            eprintln!("timeline, {phones} phones: {times:?}");
            rows.push((
                format!("timeline, {phones} phones × 24 h ({bars} runs)"),
                times,
            ));
            drop(daemon);
            stub.abort();
        }
        browser.close().await?;
        println!();
        println!("| page, navigation to data drawn | median | max | loads |");
        println!("|---|---|---|---|");
        for (what, times) in rows {
            println!(
                "| {what} | {:.0} ms | {:.0} ms | {} |",
                percentile(&times, 0.5).as_secs_f64() * 1000.0,
                times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
                times.len()
            );
        }
        Ok(())
    })
}
