//! The fleet benchmark: `--runners` release device runners (default 4) of `--phones` phones
//! each (default 50, configured, every one tagged `bench`), and the release scheduler
//! following all of them on `--backend`. Each of `--rounds` rounds (default 3):
//!
//! 1. `--schedules` schedules (default 200) due in the same second, each selecting a phone by
//!    its tag (`select = {tags = ["bench"]}`): from that second to each job's process running
//!    (the stamp `bench-job` prints), with where the time went, and how the jobs spread;
//! 2. the same number naming their phones round-robin, the baseline without a placement.
//!
//! The placement's cost per occurrence is `scheduler_placement_seconds` (choosing the phone and
//! writing the choice to the ledger), and the scheduler's CPU per occurrence in each burst.
//!
//! `--against BINARY` (a device runner) and `--against-scheduler BINARY` measure another
//! revision beside this tree: both stacks run side by side, their rounds in turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, Job};
use scheduler_client::{
    DeviceJobTarget, DeviceSelector, FleetQuery, NewSchedule, SchedulerClient, Target, TriggerKind,
};
use serde_json::json;

use crate::daemon::{
    BenchDb, Daemon, RunnerBuild, against_binary, build_release, flag_pairs, fresh_db,
    parse_backends, runner_builds,
};
use crate::runner_bench::{Latencies, Through};

pub(crate) struct Options {
    backends: Vec<&'static str>,
    runners: usize,
    phones: usize,
    schedules: usize,
    rounds: usize,
    /// `[device_runners.<name>] poll`: how often the scheduler asks each runner about its
    /// jobs and phones.
    poll: String,
    /// Another revision's device runner, measured beside this tree's.
    against: Option<PathBuf>,
    /// Another revision's scheduler, measured beside this tree's.
    against_scheduler: Option<PathBuf>,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            backends: vec!["sqlite", "postgres"],
            runners: 4,
            phones: 50,
            schedules: 200,
            rounds: 3,
            poll: "2s".into(),
            against: None,
            against_scheduler: None,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--backend" => options.backends = parse_backends(value)?,
                "--runners" => options.runners = value.parse()?,
                "--phones" => options.phones = value.parse()?,
                "--schedules" => options.schedules = value.parse()?,
                "--rounds" => options.rounds = value.parse()?,
                "--poll" => options.poll = value.to_string(),
                "--against" => options.against = Some(against_binary(value)?),
                "--against-scheduler" => options.against_scheduler = Some(against_binary(value)?),
                other => bail!("unknown option '{other}'"),
            }
        }
        if [
            options.runners,
            options.phones,
            options.schedules,
            options.rounds,
        ]
        .contains(&0)
        {
            bail!("--runners, --phones, --schedules and --rounds must be at least 1");
        }
        Ok(options)
    }
}

/// One burst's figures.
struct Burst {
    latency: Latencies,
    /// The scheduler's CPU per occurrence, in milliseconds.
    cpu_ms: f64,
    /// The most jobs one phone got in a round.
    most_on_a_phone: usize,
}

struct Figures {
    backend: &'static str,
    build: &'static str,
    placed: Burst,
    named: Burst,
    /// Mean of `scheduler_placement_seconds`, in milliseconds.
    placement_ms: f64,
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let runner = build_release("device-runner")?;
    let scheduler = build_release("scheduler")?;
    let job = build_release("bench-job")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Another revision's stack, when given, runs beside this tree's, their rounds in turn.
    let builds = runner_builds(
        options.against.as_deref(),
        options.against_scheduler.as_deref(),
        &runner,
        &scheduler,
    );
    let mut results = Vec::new();
    for backend in &options.backends {
        eprintln!("== {backend}");
        results.extend(runtime.block_on(bench_backend(backend, &builds, &job, &options))?);
    }
    println!();
    println!(
        "| backend | build | {} schedules due in one second, over {} runners × {} phones | due → process running p50 / p99 / max | scheduler CPU per occurrence | most jobs on one phone |",
        options.schedules, options.runners, options.phones
    );
    println!("|---|---|---|---|---|---|");
    for f in &results {
        for (what, burst) in [
            (
                format!("placed by tags ({:.2} ms each to place)", f.placement_ms),
                &f.placed,
            ),
            ("naming their phones".to_string(), &f.named),
        ] {
            let l = &burst.latency;
            println!(
                "| {} | {} | {what} | {:.1} / {:.1} / {:.1} ms (n={}) | {:.2} ms | {} |",
                f.backend,
                f.build,
                l.p50,
                l.p99,
                l.max,
                l.count,
                burst.cpu_ms,
                burst.most_on_a_phone
            );
        }
    }
    println!(
        "\n({} rounds of each burst, the samples pooled; each runner asked every {})",
        options.rounds, options.poll
    );
    Ok(())
}

fn serial(runner: usize, phone: usize) -> String {
    format!("r{runner}-p{phone:02}")
}

fn runner_name(runner: usize) -> String {
    format!("r{runner}")
}

/// One build's device runners and the scheduler following them, on `backend`.
struct Stack {
    build: &'static str,
    runners: Vec<Daemon>,
    daemon: Daemon,
    client: SchedulerClient,
    clients: Vec<DeviceRunnerClient>,
    placed: (Collecting, Through),
    named: (Collecting, Through),
    _db: BenchDb,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(
        backend: &'static str,
        build: &RunnerBuild<'_>,
        job: &Path,
        options: &Options,
    ) -> anyhow::Result<Stack> {
        let dir = tempfile::tempdir()?;
        let runners = start_runners(build.runner, job, dir.path(), options).await?;
        let db = fresh_db(backend, dir.path(), "scheduler").await?;
        let urls: Vec<String> = runners.iter().map(Daemon::url).collect();
        let mut env = Vec::new();
        for (r, url) in urls.iter().enumerate() {
            let key = |field: &str| format!("SCHEDULER__DEVICE_RUNNERS__R{r}__{field}");
            env.push((key("URL"), url.clone()));
            env.push((key("POLL"), options.poll.clone()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let daemon = Daemon::start_with(
            build.scheduler,
            &dir.path().join("scheduler"),
            &db.url,
            "http://127.0.0.1:9/",
            &env,
        )
        .await?;
        let client = SchedulerClient::new(daemon.client_config())?;
        // The fleet is followed from its first use on.
        let fleet = client.list_fleet(FleetQuery::default()).await?;
        let phones = fleet.phones.len();
        if phones != options.runners * options.phones {
            bail!("the fleet shows {phones} phones");
        }
        let clients = urls
            .iter()
            .map(|url| DeviceRunnerClient::new(url))
            .collect::<Result<_, _>>()?;
        Ok(Stack {
            build: build.name,
            runners,
            daemon,
            client,
            clients,
            placed: Default::default(),
            named: Default::default(),
            _db: db,
            _dir: dir,
        })
    }

    /// One round: a burst placed by tags, then one naming its phones.
    async fn round(&mut self, round: usize, options: &Options) -> anyhow::Result<()> {
        for by_tags in [true, false] {
            let kind = if by_tags { "placed" } else { "named" };
            let prefix = format!("{kind}{round}");
            let due = create_burst(&self.client, options, &prefix, by_tags).await?;
            // The scheduler's CPU from the schedules stored to the jobs ended.
            let cpu = self.daemon.cpu_seconds()?;
            let (most, jobs) = burst_ended(&self.clients, options, &prefix, due).await?;
            let spent = self.daemon.cpu_seconds()? - cpu;
            let (burst, through) = if by_tags {
                &mut self.placed
            } else {
                &mut self.named
            };
            burst.cpu.push(spent * 1000.0 / options.schedules as f64);
            burst.most_on_a_phone = burst.most_on_a_phone.max(most);
            for (due, job) in jobs {
                through.add(due, &job)?;
            }
        }
        Ok(())
    }

    /// The figures of its rounds; stops it.
    async fn figures(self, backend: &'static str) -> anyhow::Result<Figures> {
        let label = |what: &str| format!("{what}, {}", self.build);
        let placed = self
            .placed
            .0
            .into_burst(self.placed.1.figures(&label("placed by tags")));
        let named = self
            .named
            .0
            .into_burst(self.named.1.figures(&label("naming their phones")));
        let metrics = reqwest::get(format!("{}/metrics", self.daemon.url()))
            .await?
            .text()
            .await?;
        let sample = |name: &str| {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or_default()
        };
        let count = sample("scheduler_placement_seconds_count");
        let placement_ms = if count > 0.0 {
            sample("scheduler_placement_seconds_sum") / count * 1000.0
        } else {
            0.0
        };
        eprintln!(
            "placement ({}): {placement_ms:.2} ms per occurrence over {count} placements",
            self.build
        );
        self.daemon.stop()?;
        for runner in self.runners {
            runner.stop()?;
        }
        Ok(Figures {
            backend,
            build: self.build,
            placed,
            named,
            placement_ms,
        })
    }
}

/// Every build's stack started side by side, their rounds taken in turn so that each build
/// meets the machine as it is at the same moments.
async fn bench_backend(
    backend: &'static str,
    builds: &[RunnerBuild<'_>],
    job: &Path,
    options: &Options,
) -> anyhow::Result<Vec<Figures>> {
    let mut stacks = Vec::new();
    for build in builds {
        stacks.push(Stack::start(backend, build, job, options).await?);
    }
    for round in 0..options.rounds {
        for stack in &mut stacks {
            stack.round(round, options).await?;
        }
    }
    let mut figures = Vec::new();
    for stack in stacks {
        figures.push(stack.figures(backend).await?);
    }
    Ok(figures)
}

/// Starts `--runners` release device runners, each on a SQLite file of its own.
async fn start_runners(
    binary: &Path,
    job: &Path,
    dir: &Path,
    options: &Options,
) -> anyhow::Result<Vec<Daemon>> {
    let mut runners = Vec::new();
    for r in 0..options.runners {
        let home = dir.join(runner_name(r));
        std::fs::create_dir_all(&home)?;
        let config = home.join("device-runner.toml");
        std::fs::write(&config, runner_config(&home.join("logs"), job, r, options))?;
        let db = format!("sqlite://{}/runner.db", home.display());
        runners.push(Daemon::start_runner(binary, &home, &config, &db).await?);
    }
    Ok(runners)
}

/// The runner's configuration: `bench` jobs on its phones, every one tagged `bench`, no adb.
fn runner_config(logs: &Path, job: &Path, runner: usize, options: &Options) -> String {
    let mut toml = format!(
        "name = \"bench-{runner}\"\nlog_dir = {logs:?}\n\n[adb]\nenabled = false\n\n\
         [job_types.bench]\nargv = [{job:?}]\nmax_duration = \"10m\"\n"
    );
    for phone in 0..options.phones {
        toml.push_str(&format!(
            "\n[[devices]]\nserial = \"{}\"\ntags = [\"bench\"]\n",
            serial(runner, phone)
        ));
    }
    toml
}

/// Creates a burst: `--schedules` schedules due in the same second (returned), placed by tags
/// or naming their phones round-robin.
async fn create_burst(
    client: &SchedulerClient,
    options: &Options,
    prefix: &str,
    by_tags: bool,
) -> anyhow::Result<DateTime<Utc>> {
    let due = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(5);
    for i in 0..options.schedules {
        let (runner, device, select) = if by_tags {
            let select = DeviceSelector {
                tags: vec!["bench".into()],
                runner: None,
            };
            (String::new(), None, Some(select))
        } else {
            let phone = i % (options.runners * options.phones);
            let (r, p) = (phone % options.runners, phone / options.runners);
            (runner_name(r), Some(serial(r, p)), None)
        };
        let target = Target::DeviceJob(DeviceJobTarget {
            runner,
            device,
            pool: None,
            select,
            moves: 0,
            job_type: "bench".into(),
            params: json!({"sleep_ms": 0})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            priority: 5,
            max_duration: None,
        });
        let mut new = NewSchedule::new("bench", TriggerKind::Once { at: due }.into(), target);
        new.id = Some(format!("{prefix}-{i}"));
        client.create_schedule(new).await?;
    }
    if Utc::now() + TimeDelta::seconds(1) > due {
        bail!("creating the schedules took too long for the 5 s lead");
    }
    Ok(due)
}

/// Waits until every job of a burst has completed; returns the most jobs one phone got, and
/// each job with its due second.
async fn burst_ended(
    runners: &[DeviceRunnerClient],
    options: &Options,
    prefix: &str,
    due: DateTime<Utc>,
) -> anyhow::Result<(usize, Vec<(DateTime<Utc>, Job)>)> {
    let source = format!("schedule {prefix}-");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Nothing is asked of the runners while the burst starts, so that the measurement does
    // not share their time; then only whether they are idle, until they are.
    let settle = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    tokio::time::sleep(settle).await;
    loop {
        let mut busy = false;
        for runner in runners {
            let status = runner.rpc().get_status().await?;
            busy |= status
                .devices
                .iter()
                .any(|d| d.running.is_some() || d.pending > 0);
        }
        if busy && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let mut jobs = Vec::new();
        for runner in runners {
            let runs = runner
                .rpc()
                .list_runs(None, Some("completed".into()), None, Some(1000), None, None)
                .await?;
            jobs.extend(runs.into_iter().filter(|job| {
                job.source
                    .as_deref()
                    .is_some_and(|s| s.starts_with(&source))
            }));
        }
        if jobs.len() >= options.schedules {
            if jobs.len() > options.schedules {
                bail!(
                    "{} jobs ran for {} occurrences",
                    jobs.len(),
                    options.schedules
                );
            }
            let mut per_phone: BTreeMap<&str, usize> = BTreeMap::new();
            for job in &jobs {
                *per_phone.entry(job.device.as_str()).or_default() += 1;
            }
            let most = per_phone.values().copied().max().unwrap_or_default();
            return Ok((most, jobs.into_iter().map(|job| (due, job)).collect()));
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} jobs of {prefix} completed within two minutes",
                jobs.len(),
                options.schedules
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A burst's figures as they are collected over the rounds.
#[derive(Default)]
struct Collecting {
    cpu: Vec<f64>,
    most_on_a_phone: usize,
}

impl Collecting {
    fn into_burst(self, latency: Latencies) -> Burst {
        let cpu_ms = self.cpu.iter().sum::<f64>() / self.cpu.len().max(1) as f64;
        Burst {
            latency,
            cpu_ms,
            most_on_a_phone: self.most_on_a_phone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn another_build_is_taken_only_when_its_binary_exists() {
        let options = parse(&[]).unwrap();
        assert!(options.against.is_none() && options.against_scheduler.is_none());
        let here = std::env::current_exe().unwrap();
        let options = parse(&["--against", here.to_str().unwrap(), "--rounds", "2"]).unwrap();
        assert_eq!(options.against.as_deref(), Some(here.as_path()));
        assert_eq!(options.rounds, 2);
        let error = parse(&["--against-scheduler", "/no/such/scheduler"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/no/such/scheduler"), "{error}");
        let error = parse(&["--rounds", "0"]).err().unwrap().to_string();
        assert!(error.contains("at least 1"), "{error}");
        let error = parse(&["--speed", "9"]).err().unwrap().to_string();
        assert!(error.contains("--speed"), "{error}");
    }
}
