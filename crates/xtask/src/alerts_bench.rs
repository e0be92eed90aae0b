//! The alerts benchmark: `--schedules` stored schedules (default 100,000) on `--backend`, each
//! with three ledger rows (failed, dispatched, failed: no check in trouble, so the passes only
//! read), and the release scheduler checking them every second. Two cases:
//!
//! 1. `[alerts]` sets defaults (`late_after_secs`, `failed_in_a_row`, `missing_after_secs`):
//!    every schedule is checked at every pass;
//! 2. no defaults, and 1 % of the schedules set `policy.alerts`: the others are passed over by
//!    a partial index.
//!
//! The tables are analysed after the load, as autovacuum soon does.
//!
//! For each: how long the leader's pass takes (`scheduler_alerts_pass_seconds`, the median of
//! `--passes` passes, default 5), schedules checked per second, and the scheduler's CPU over
//! those passes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{AlertPolicy, Database};
use triggers::{TriggerKind, TriggerSpec};

use crate::bench::{graph_execution, insert_in_batches, seeded};
use crate::daemon::{Daemon, build_release, flag_pairs, fresh_db, migrated_by, parse_backends};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    schedules: usize,
    passes: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            backends: vec!["sqlite", "postgres"],
            schedules: 100_000,
            passes: 5,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--schedules" => options.schedules = value.parse()?,
                "--passes" => options.passes = value.parse()?,
                other => bail!("unknown flag {other}"),
            }
        }
        if options.schedules < 100 || options.passes == 0 {
            bail!("--schedules must be at least 100 and --passes at least 1");
        }
        Ok(options)
    }
}

/// One measured case.
struct Figures {
    backend: &'static str,
    case: &'static str,
    checked: usize,
    pass_p50: f64,
    cpu_percent: f64,
}

/// The two cases: their names, and whether `[alerts]` sets defaults.
const CASES: [(&str, bool); 2] = [
    ("[alerts] defaults: every schedule checked", true),
    ("no defaults, 1 % set policy.alerts", false),
];

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let binary = build_release("scheduler")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for backend in &options.backends {
        for (case, defaults) in CASES {
            eprintln!("== {backend}, {case}");
            let figures = runtime.block_on(bench_case(&binary, backend, &options, defaults))?;
            results.push(Figures { case, ..figures });
        }
    }
    println!();
    println!(
        "| backend | case | schedules checked per pass | pass p50 | schedules checked/s | CPU during the passes |"
    );
    println!("|---|---|---|---|---|---|");
    for f in results {
        println!(
            "| {} | {} | {} | {:.3} s | {:.0} | {:.1} % |",
            f.backend,
            f.case,
            f.checked,
            f.pass_p50,
            f.checked as f64 / f.pass_p50.max(1e-6),
            f.cpu_percent,
        );
    }
    println!(
        "\n({} stored schedules, 3 ledger rows each; alerts.every = 1s)",
        options.schedules
    );
    Ok(())
}

async fn bench_case(
    binary: &Path,
    backend: &'static str,
    options: &Options,
    defaults: bool,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let nowhere = "http://127.0.0.1:9/";
    let db = fresh_db(backend, dir.path(), "alerts").await?;
    let database = migrated_by(binary, dir.path(), &db.url, nowhere).await?;
    let asking = seed(&database, options.schedules, defaults).await?;
    database.close().await;
    let mut env = vec![("SCHEDULER__ALERTS__EVERY", "1s")];
    if defaults {
        env.extend([
            ("SCHEDULER__ALERTS__LATE_AFTER_SECS", "300"),
            ("SCHEDULER__ALERTS__FAILED_IN_A_ROW", "3"),
            ("SCHEDULER__ALERTS__MISSING_AFTER_SECS", "86400"),
        ]);
    }
    let daemon = Daemon::start_with(binary, dir.path(), &db.url, nowhere, &env).await?;
    // The first pass that read every schedule asking, then `passes` more.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, checked) = last_pass(&daemon).await?;
        if checked == asking {
            break;
        }
        if Instant::now() > deadline {
            bail!("no pass read the {asking} schedules asking within 10 min (last: {checked})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_before = daemon.cpu_seconds()?;
    let started = Instant::now();
    let mut passes = Vec::new();
    let mut last = None;
    while passes.len() < options.passes {
        let (seconds, checked) = last_pass(&daemon).await?;
        if checked != asking {
            bail!("a pass read {checked} schedules, expected {asking}");
        }
        if last != Some(seconds) {
            passes.push(seconds);
            last = Some(seconds);
        }
        if started.elapsed() > Duration::from_secs(1200) {
            bail!("{} passes took over 20 min", options.passes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_percent =
        (daemon.cpu_seconds()? - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    daemon.stop()?;
    passes.sort_by(f64::total_cmp);
    Ok(Figures {
        backend,
        case: "",
        checked: asking,
        pass_p50: passes[passes.len() / 2],
        cpu_percent,
    })
}

/// Stores `count` schedules due next new year with three ledger rows each; with `defaults`
/// none sets `policy.alerts`, without them every hundredth does. Returns how many schedules
/// a pass checks.
async fn seed(database: &Database, count: usize, defaults: bool) -> anyhow::Result<usize> {
    let new_year = TriggerSpec::from(TriggerKind::Cron {
        expression: "0 0 1 1 *".into(),
        timezone: "UTC".into(),
    });
    let next = new_year.compile()?.next_after(Utc::now());
    let own = AlertPolicy {
        failed_in_a_row: Some(3),
        ..AlertPolicy::default()
    };
    let schedules = (0..count).map(|i| {
        let mut schedule = seeded(i, new_year.clone(), next, graph_execution(i));
        if !defaults && i % 100 == 0 {
            schedule.policy.alerts = own;
        }
        schedule
    });
    insert_in_batches(database, schedules).await?;
    let now = Utc::now();
    for (minutes, status) in [(3, "failed"), (2, "dispatched"), (1, "failed")] {
        runs_of_every_schedule(database, now - TimeDelta::minutes(minutes), status).await?;
    }
    // As autovacuum would soon after such a load: the planner's statistics.
    match database {
        Database::Postgres(pool) => {
            sqlx::query("ANALYZE").execute(pool).await?;
        }
        Database::Sqlite(pool) => {
            sqlx::query("ANALYZE").execute(pool).await?;
        }
    }
    Ok(if defaults { count } else { count.div_ceil(100) })
}

/// One ledger row at `at` with `status` for every stored schedule, in one statement.
async fn runs_of_every_schedule(
    database: &Database,
    at: DateTime<Utc>,
    status: &str,
) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO schedule_runs (schedule_id, scheduled_time, jobstore, owner, target, \
         status, detail, attempts, claimed_at, finished_at, policy) \
         SELECT id, $1, 'execution', owner, target, '{status}', NULL, 1, $1, $1, policy \
         FROM schedules_execution"
    );
    match database {
        Database::Postgres(pool) => {
            sqlx::query(&sql).bind(at).execute(pool).await?;
        }
        Database::Sqlite(pool) => {
            let sql = sql.replace("$1", "?1");
            sqlx::query(&sql)
                .bind(at.timestamp_millis())
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// The leader's last pass over the checks: how long it took, how many schedules it read.
async fn last_pass(daemon: &Daemon) -> anyhow::Result<(f64, usize)> {
    let text = reqwest::get(format!("{}/metrics", daemon.url()))
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_default()
    };
    Ok((
        value("scheduler_alerts_pass_seconds"),
        value("scheduler_alerts_checked") as usize,
    ))
}
