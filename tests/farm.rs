//! The phone farm end to end: the real scheduler and the real device runner, each on its own
//! SQLite file, talking over their real protocols. Schedules with `device_job` targets queue
//! jobs (shell scripts) on configured phones; the ledger and the runner's history are checked
//! against each other.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this test's executable.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, Job};
use scheduler_client::{
    ClientConfig, DeviceJobTarget, NewSchedule, RunQuery, RunStatus, ScheduleRun, SchedulerClient,
    Target, TriggerKind,
};
use serde_json::{Map, Value, json};
use test_support::{Daemon, Stack, wait_until};

const RUNNER_CONFIG: &str = r#"
kill_grace = "1s"

[[devices]]
serial = "P1"

[[devices]]
serial = "P2"

[[devices]]
serial = "L9AIB7603188953"

[job_types.crawl]
argv = ["sh", "-c", "echo crawl on $ANDROID_SERIAL with $JOB_PARAMS"]
max_duration = "15m"

[job_types.module]
argv = ["sh", "-c", "echo module run ${ANDROID_SERIAL:-without a phone}"]
max_duration = "1m"
runs_on = "pool:modules"

[[pools]]
name = "modules"
concurrency = 2

[job_types.resumable]
argv = ["sh", "-c", "if [ -n \"$JOB_CHECKPOINT\" ]; then echo resumed from $JOB_CHECKPOINT; exit 0; fi; echo '::checkpoint {\"step\": 1}'; exec sleep 60"]
max_duration = "2m"
requeue_on_preempt = true

[job_types.tick]
argv = ["sh", "-c", "echo ran on $ANDROID_SERIAL"]
max_duration = "1m"

[job_types.slow]
argv = ["sh", "-c", "echo working; sleep 3; echo done"]
max_duration = "1m"
"#;

struct Farm {
    stack: Stack,
}

impl Farm {
    async fn start() -> Farm {
        let stack = Stack::builder(RUNNER_CONFIG)
            .fake_phones(&["P1", "P2", "L9AIB7603188953"])
            .start()
            .await;
        Farm { stack }
    }

    fn client(&self) -> SchedulerClient {
        SchedulerClient::new(ClientConfig {
            host: "127.0.0.1".into(),
            port: self.stack.scheduler.port,
            timeout: Duration::from_secs(30),
            retries: 2,
            retry_delay: Duration::from_millis(50),
            token: None,
        })
        .unwrap()
    }

    fn runner(&self) -> DeviceRunnerClient {
        DeviceRunnerClient::new(&self.stack.runner.url()).unwrap()
    }

    /// A schedule queuing `job_type` on `place`: a phone's serial, or `pool:<name>`.
    async fn create(&self, id: &str, trigger: TriggerKind, place: &str, job_type: &str) {
        let (device, pool) = match place.strip_prefix("pool:") {
            Some(pool) => (None, Some(pool.to_string())),
            None => (Some(place.to_string()), None),
        };
        let target = Target::DeviceJob(DeviceJobTarget {
            runner: "farm".into(),
            device,
            pool,
            select: None,
            moves: 0,
            job_type: job_type.into(),
            params: Map::new(),
            priority: 5,
            max_duration: None,
        });
        let mut new = NewSchedule::new("farm", trigger.into(), target);
        new.id = Some(id.into());
        self.client().create_schedule(new).await.unwrap();
    }

    /// Waits until `id`'s ledger holds runs that satisfy `done`; returns them oldest first.
    async fn runs_until(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&[ScheduleRun]) -> bool,
    ) -> Vec<ScheduleRun> {
        let client = self.client();
        let done = &done;
        wait_until(&format!("the runs of {id}"), within, || {
            let client = client.clone();
            async move {
                let page = client
                    .list_runs(id, "farm", RunQuery::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut runs = page.runs;
                runs.reverse();
                if done(&runs) {
                    Ok(runs)
                } else {
                    Err(format!("{runs:#?}"))
                }
            }
        })
        .await
    }

    /// The runner's finished jobs queued by schedule `id`, oldest first.
    async fn jobs_of(&self, id: &str) -> Vec<Job> {
        let mut jobs = self
            .runner()
            .rpc()
            .list_runs(None, None, None, Some(1000), None, None)
            .await
            .unwrap();
        jobs.retain(|job| job.source.as_deref() == Some(format!("schedule {id}").as_str()));
        jobs.reverse();
        jobs
    }
}

fn key(id: &str, at: DateTime<Utc>) -> String {
    format!("{id}@{}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn dispatched(runs: &[ScheduleRun]) -> usize {
    runs.iter()
        .filter(|r| r.status == RunStatus::Dispatched)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_daily_times_schedules_queue_each_job_once_on_its_phone() {
    let farm = Farm::start().await;
    farm.create(
        "every-2s",
        TriggerKind::Interval {
            every_secs: 2,
            anchor: None,
        },
        "P1",
        "tick",
    )
    .await;
    // Two wall-clock times a few seconds ahead, at second resolution.
    let first = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(3);
    let second = first + TimeDelta::seconds(2);
    let times = [first, second].map(|at| at.format("%H:%M:%S").to_string());
    farm.create(
        "twice-a-day",
        TriggerKind::DailyTimes {
            times: times.to_vec(),
            timezone: "UTC".into(),
        },
        "P2",
        "tick",
    )
    .await;

    farm.create(
        "module-every-2s",
        TriggerKind::Interval {
            every_secs: 2,
            anchor: None,
        },
        "pool:modules",
        "module",
    )
    .await;

    let within = Duration::from_secs(30);
    let interval = farm
        .runs_until("every-2s", within, |r| dispatched(r) >= 3)
        .await;
    let pooled = farm
        .runs_until("module-every-2s", within, |r| dispatched(r) >= 2)
        .await;
    let daily = farm
        .runs_until("twice-a-day", within, |r| dispatched(r) >= 2)
        .await;
    assert_eq!(daily[0].scheduled_time, first);
    assert_eq!(daily[1].scheduled_time, second);

    for (id, runs, device) in [
        ("every-2s", &interval, "P1"),
        ("twice-a-day", &daily, "P2"),
        ("module-every-2s", &pooled, "pool:modules"),
    ] {
        let jobs = farm.jobs_of(id).await;
        for run in runs.iter().filter(|r| r.status == RunStatus::Dispatched) {
            // One job per occurrence, carrying the occurrence's key, on the schedule's phone,
            // started no earlier than the occurrence.
            let with_key: Vec<&Job> = jobs
                .iter()
                .filter(|job| job.idempotency_key.as_deref() == Some(run.idempotency_key.as_str()))
                .collect();
            assert_eq!(with_key.len(), 1, "{id} {run:?}: {jobs:#?}");
            let job = with_key[0];
            assert_eq!(job.device, device);
            assert!(job.started_at.unwrap() >= run.scheduled_time, "{job:?}");
            let detail = run.detail.as_deref().unwrap_or_default();
            assert!(
                detail.contains(&format!("job {} on {device}: completed", job.id))
                    && detail.contains("exit code 0"),
                "{detail}"
            );
        }
        // No job without a run: every job's key is in the ledger (read after the jobs, so an
        // occurrence that fired meanwhile is there too), and no key has two jobs.
        let ledger = farm.runs_until(id, within, |_| true).await;
        let written: Vec<&str> = ledger.iter().map(|r| r.idempotency_key.as_str()).collect();
        let keys = job_keys(&jobs);
        for key in &keys {
            assert!(
                written.contains(&key.as_str()),
                "{id}: job {key} has no run: {written:?}"
            );
        }
        let mut distinct = keys.clone();
        distinct.dedup();
        assert_eq!(distinct, keys, "{id}: one job per occurrence");
    }
    assert_eq!(daily[0].idempotency_key, key("twice-a-day", first));
}

fn job_keys(jobs: &[Job]) -> Vec<String> {
    let mut keys: Vec<String> = jobs
        .iter()
        .filter_map(|job| job.idempotency_key.clone())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_due_while_the_previous_job_runs_is_skipped() {
    let farm = Farm::start().await;
    farm.create(
        "busy",
        TriggerKind::Interval {
            every_secs: 1,
            anchor: None,
        },
        "P1",
        "slow",
    )
    .await;
    let runs = farm
        .runs_until("busy", Duration::from_secs(30), |runs| {
            dispatched(runs) >= 2
                && runs
                    .iter()
                    .filter(|r| r.status == RunStatus::Skipped)
                    .count()
                    >= 2
        })
        .await;
    for run in runs.iter().filter(|r| r.status == RunStatus::Skipped) {
        let detail = run.detail.as_deref().unwrap_or_default();
        assert!(detail.starts_with("overlap:"), "{detail}");
    }
    // On the phone, one job of the schedule at a time.
    let jobs = farm.jobs_of("busy").await;
    assert!(jobs.len() >= 2, "{jobs:#?}");
    for pair in jobs.windows(2) {
        assert!(
            pair[1].enqueued_at >= pair[0].ended_at.unwrap(),
            "a job was queued while the one before it ran: {pair:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_after_a_fire_queues_the_job_once_after_its_restart() {
    let mut farm = Farm::start().await;
    let at = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(2);
    farm.create("once", TriggerKind::Once { at }, "P1", "slow")
        .await;
    // Killed while its job runs: the run is in the ledger, pending, its job on the phone.
    let runner = farm.runner();
    wait_until("the job running", Duration::from_secs(20), || {
        let runner = runner.clone();
        async move {
            let status = runner.rpc().get_status().await.map_err(|e| e.to_string())?;
            let running = status
                .devices
                .iter()
                .any(|d| d.device.serial == "P1" && d.running.is_some());
            if running {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        }
    })
    .await;
    // While the job runs, the ledger's run names it.
    farm.runs_until("once", Duration::from_secs(10), |runs| {
        runs.iter().any(|r| {
            r.status == RunStatus::Pending
                && r.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("queued on device runner 'farm'"))
        })
    })
    .await;
    farm.stack.scheduler.kill9();
    farm.stack.scheduler = farm.stack.start_scheduler().await;

    let runs = farm
        .runs_until("once", Duration::from_secs(30), |r| dispatched(r) == 1)
        .await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let jobs = farm.jobs_of("once").await;
    assert_eq!(
        jobs.len(),
        1,
        "the redelivery found the first job: {jobs:#?}"
    );
    assert_eq!(
        jobs[0].idempotency_key.as_deref(),
        Some(key("once", at).as_str())
    );
    let detail = runs[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains(&format!("job {} on P1: completed", jobs[0].id)),
        "{detail}"
    );
}

/// The farm's REST API, with the seed's `curl` examples as they are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farm_rest_api_answers_the_seed_examples() {
    let farm = Farm::start().await;
    let base = farm.stack.scheduler.url();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/api/schedules"))
        .header("Content-Type", "application/json")
        .body(
            r##"{ "name": "Daily cat crawl", "job_type": "crawl", "device": "L9AIB7603188953",
                 "interval_minutes": 1440, "params": {"query": "#Cat", "tab": "top", "passes": 5},
                 "max_duration_minutes": 30, "priority": 5 }"##,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    // The audit log names the route: the farm's REST API, by a caller without a token here.
    let history: Value = http
        .post(format!("{base}/"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "list_changes",
                      "params": {"schedule_id": id}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logged = &history["result"]["changes"];
    assert_eq!(logged.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(
        (
            &logged[0]["action"],
            &logged[0]["actor"],
            &logged[0]["route"]
        ),
        (&json!("create"), &json!("anonymous"), &json!("farm")),
        "{history}"
    );
    assert_eq!(logged[0]["changes"]["name"]["after"], "Daily cat crawl");
    for (field, expected) in [
        ("name", json!("Daily cat crawl")),
        ("job_type", json!("crawl")),
        ("device", json!("L9AIB7603188953")),
        ("interval_minutes", json!(1440)),
        ("daily_times", Value::Null),
        (
            "params",
            json!({"query": "#Cat", "tab": "top", "passes": 5}),
        ),
        ("max_duration_minutes", json!(30)),
        ("priority", json!(5)),
        ("enabled", json!(true)),
    ] {
        assert_eq!(created[field], expected, "{field}: {created}");
    }
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http.get(path).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let post = |path: String, body: Option<Value>| {
        let http = http.clone();
        async move {
            let mut request = http.post(path);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, listed) = get(format!("{base}/api/schedules")).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], created["id"]);

    // Run now: the job goes to the phone with the schedule's params, and history shows it.
    let (status, run) = post(format!("{base}/api/schedules/{id}/run-now"), None).await;
    assert_eq!(status, 202, "{run}");
    let runs = farm
        .runs_until(&id, Duration::from_secs(30), |r| dispatched(r) == 1)
        .await;
    assert_eq!(
        runs[0].idempotency_key,
        run["idempotency_key"].as_str().unwrap()
    );
    let (status, history) = get(format!("{base}/api/scheduler/history?limit=20")).await;
    assert_eq!(status, 200);
    let job = history
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["job_type"] == "crawl")
        .unwrap_or_else(|| panic!("{history}"))
        .clone();
    assert_eq!(job["device"], "L9AIB7603188953");
    assert_eq!(job["status"], "completed");
    assert_eq!(job["max_duration_secs"], 1800);
    let job_id = job["id"].as_str().unwrap();
    let (status, log) = get(format!("{base}/api/scheduler/history/{job_id}/logs")).await;
    assert_eq!(status, 200);
    let text = log["data"].as_str().unwrap();
    assert!(text.contains("crawl on L9AIB7603188953 with {"), "{text}");
    assert!(text.contains("#Cat"), "{text}");

    // The runner's views, forwarded.
    let (status, phones) = get(format!("{base}/api/scheduler/status")).await;
    assert_eq!(status, 200);
    assert!(
        phones["devices"].to_string().contains("L9AIB7603188953"),
        "{phones}"
    );
    for phone in phones["devices"].as_array().unwrap() {
        assert_eq!(phone["state"], "device", "listed by the fake adb: {phone}");
    }
    let (status, queue) = get(format!("{base}/api/scheduler/queue")).await;
    assert_eq!((status.as_u16(), queue), (200, json!([])));
    let (status, timeline) = get(format!("{base}/api/scheduler/timeline")).await;
    assert_eq!(status, 200);
    assert!(timeline.to_string().contains(job_id), "{timeline}");
    let (status, refused) = post(format!("{base}/api/scheduler/queue/{job_id}/kill"), None).await;
    assert_eq!(status, 409, "an ended job cannot be killed: {refused}");
    let (status, again) = post(format!("{base}/api/scheduler/runs/{job_id}/restart"), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["requeued_from"], job_id);
    let (status, missing) = get(format!("{base}/api/scheduler/queue/nope/logs")).await;
    assert_eq!(status, 404, "{missing}");

    // Toggle off and on; update in place.
    let (status, off) = post(format!("{base}/api/schedules/{id}/toggle"), None).await;
    assert_eq!(
        (status.as_u16(), &off["enabled"]),
        (200, &json!(false)),
        "{off}"
    );
    assert_eq!(off["next_run"], Value::Null);
    let (_, on) = post(format!("{base}/api/schedules/{id}/toggle"), None).await;
    assert_eq!(on["enabled"], true, "{on}");
    let updated: Value = http
        .put(format!("{base}/api/schedules/{id}"))
        .json(&json!({"priority": 2, "daily_times": ["09:00", "18:00"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["priority"], 2, "{updated}");
    assert_eq!(updated["daily_times"], json!(["09:00", "18:00"]));
    assert_eq!(updated["interval_minutes"], Value::Null);
    assert_eq!(
        updated["params"], created["params"],
        "unchanged fields stay"
    );
    let next = updated["next_run"].as_str().unwrap();
    assert!(
        next.contains("T09:00:00") || next.contains("T18:00:00"),
        "{next}"
    );

    // Bad input is a 400 naming what is wrong, and stores nothing.
    for (body, expected) in [
        (
            json!({"job_type": "crawl", "device": "L9AIB7603188953"}),
            "interval_minutes or daily_times",
        ),
        (
            json!({"device": "L9AIB7603188953", "interval_minutes": 5}),
            "job_type is required",
        ),
        (
            json!({"job_type": "crawl", "device": "L9AIB7603188953", "interval_minutes": 5,
                "priority": 7}),
            "priority must be a whole number from 1 to 5, got 7",
        ),
        (
            json!({"job_type": "crawl", "device": "L9AIB7603188953", "interval_minutes": -5}),
            "interval_minutes must be a whole number from 1 to 52704000, got -5",
        ),
        (
            json!({"job_type": "crawl", "device": "L9AIB7603188953", "interval_minutes": 5,
                "max_duration_minutes": 1.5}),
            "max_duration_minutes must be a whole number from 1 to 43200, got 1.5",
        ),
        // Checked against the runner, which names what it has.
        (
            json!({"job_type": "crawl", "device": "NO-SUCH-PHONE", "interval_minutes": 5}),
            "unknown device 'NO-SUCH-PHONE' (devices: L9AIB7603188953, P1, P2)",
        ),
        (
            json!({"job_type": "scrape", "device": "P1", "interval_minutes": 5}),
            "unknown job type 'scrape' (one of app_explore, content_gen, crawl,",
        ),
        (
            json!({"job_type": "module", "device": "P1", "interval_minutes": 5}),
            "job type 'module' runs on pool 'modules', not on a device",
        ),
        (
            json!({"job_type": "crawl", "device": "L9AIB7603188953", "every": 5}),
            "unknown field `every`",
        ),
    ] {
        let (status, answer) = post(format!("{base}/api/schedules"), Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    let moved = http
        .put(format!("{base}/api/schedules/{id}"))
        .json(&json!({"device": "NO-SUCH-PHONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 400);
    let moved: Value = moved.json().await.unwrap();
    assert!(
        moved["error"]
            .as_str()
            .unwrap()
            .contains("unknown device 'NO-SUCH-PHONE'"),
        "{moved}"
    );
    let (_, kept) = get(format!("{base}/api/schedules")).await;
    assert_eq!(kept[0]["device"], "L9AIB7603188953", "unchanged: {kept}");
    // The general API checks a device job the same way.
    let target = Target::DeviceJob(DeviceJobTarget {
        runner: "farm".into(),
        device: Some("NO-SUCH-PHONE".into()),
        pool: None,
        select: None,
        moves: 0,
        job_type: "crawl".into(),
        params: Map::new(),
        priority: 5,
        max_duration: None,
    });
    let trigger = TriggerKind::Interval {
        every_secs: 60,
        anchor: None,
    };
    let refused = farm
        .client()
        .create_schedule(NewSchedule::new("farm", trigger.into(), target))
        .await;
    match refused {
        Err(scheduler_client::Error::Scheduler(scheduler_client::SchedulerError::Value(m))) => {
            assert!(m.contains("unknown device 'NO-SUCH-PHONE'"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let response = http
        .delete(format!("{base}/api/schedules/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, listed) = get(format!("{base}/api/schedules")).await;
    assert_eq!(listed, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_restarted_mid_job_resumes_it_and_the_run_follows_it_to_its_end() {
    let mut farm = Farm::start().await;
    let at = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(2);
    farm.create("resume", TriggerKind::Once { at }, "P1", "resumable")
        .await;
    let runner = farm.runner();
    let first = wait_until(
        "the job running with a checkpoint",
        Duration::from_secs(20),
        || {
            let runner = runner.clone();
            async move {
                let queue = runner.rpc().get_status().await.map_err(|e| e.to_string())?;
                let job = queue
                    .devices
                    .iter()
                    .find_map(|d| d.running.clone())
                    .ok_or_else(|| format!("{queue:?}"))?;
                if job.checkpoint.is_some() {
                    Ok(job)
                } else {
                    Err(format!("{job:?}"))
                }
            }
        },
    )
    .await;
    // SIGKILL, and a new runner on the same file and port: it resumes the job from its
    // checkpoint as a new job, which the scheduler follows to its end.
    let port = farm.stack.runner.port;
    farm.stack.runner.kill9();
    farm.stack.runner = farm.stack.start_runner(Some(port)).await;

    let runs = farm
        .runs_until("resume", Duration::from_secs(30), |r| dispatched(r) == 1)
        .await;
    let interrupted = farm.runner().rpc().get_run(first.id.clone()).await.unwrap();
    assert_eq!(
        interrupted.status,
        device_runner_client::JobStatus::Interrupted
    );
    let next = interrupted.continued_by.expect("continued");
    let detail = runs[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains(&format!("job {next} on P1: completed")),
        "the run ends with the job that carried on: {detail}"
    );
    let log = farm
        .runner()
        .rpc()
        .get_logs(next, None, None)
        .await
        .unwrap();
    assert!(
        log.data.contains(r#"resumed from {"step":1}"#),
        "{}",
        log.data
    );
}

/// `GET /metrics` of a daemon, and what `promtool check metrics` says of it.
async fn checked_metrics(daemon: &Daemon) -> String {
    let page = reqwest::get(format!("{}/metrics", daemon.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs: apt-get install -y prometheus (.ci/run does)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_metrics_pages_pass_promtool_with_every_known_series_from_the_first_scrape() {
    let farm = Farm::start().await;
    let runner = checked_metrics(&farm.stack.runner).await;
    for series in [
        r#"device_runner_jobs_started_total{job_type="crawl"} 0"#,
        r#"device_runner_jobs_finished_total{job_type="module",status="timeout"} 0"#,
        r#"device_runner_jobs_finished_total{job_type="tick",status="device_lost"} 0"#,
        r#"device_runner_queue_depth{device="P2"} 0"#,
        r#"device_runner_running_jobs{device="pool:modules"} 0"#,
        r#"device_runner_process_kills_total{signal="SIGKILL"} 0"#,
        r#"device_runner_job_start_latency_seconds_count{job_type="slow"} 0"#,
    ] {
        assert!(
            runner.lines().any(|line| line == series),
            "{series} in:\n{runner}"
        );
    }
    let scheduler = checked_metrics(&farm.stack.scheduler).await;
    for series in [
        r#"scheduler_occurrences_total{jobstore="execution",status="skipped"} 0"#,
        r#"scheduler_occurrences_total{jobstore="execution",status="coalesced"} 0"#,
        r#"scheduler_ledger_rows_deleted_total{rule="age"} 0"#,
        r#"scheduler_store_operation_seconds_count{operation="finish_runs"} 0"#,
    ] {
        assert!(
            scheduler.lines().any(|line| line == series),
            "{series} in:\n{scheduler}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_job_is_stored_unchecked_while_its_runner_cannot_be_asked() {
    let mut farm = Farm::start().await;
    let port = farm.stack.runner.port;
    farm.stack.runner.kill9();
    // The runner is down: the schedule is stored, its job checked when it is queued.
    let at = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(4);
    farm.create("unchecked", TriggerKind::Once { at }, "P1", "tick")
        .await;
    farm.stack.runner = farm.stack.start_runner(Some(port)).await;
    let runs = farm
        .runs_until("unchecked", Duration::from_secs(30), |r| dispatched(r) == 1)
        .await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_due_while_the_scheduler_was_down_runs_once_its_last_job_is_settled() {
    let mut farm = Farm::start().await;
    // Every 5 s a job of 3 s: none overlaps the next while the scheduler lives.
    let anchor = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(2);
    let trigger = TriggerKind::Interval {
        every_secs: 5,
        anchor: Some(anchor),
    };
    farm.create("every5", trigger, "P1", "slow").await;
    // Killed while the first job runs; still down when the second occurrence falls due, by
    // which time the first job has ended on the runner.
    farm.runs_until("every5", Duration::from_secs(20), |runs| {
        runs.iter().any(|r| {
            r.status == RunStatus::Pending
                && r.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("queued on device runner 'farm'"))
        })
    })
    .await;
    farm.stack.scheduler.kill9();
    let second = anchor + TimeDelta::seconds(5);
    let back = second + TimeDelta::milliseconds(1500);
    tokio::time::sleep((back - Utc::now()).to_std().unwrap_or_default()).await;
    farm.stack.scheduler = farm.stack.start_scheduler().await;

    // The recovered run is settled from the runner first; the missed occurrence then runs,
    // neither skipped for overlap with a job that had already ended nor lost.
    let runs = farm
        .runs_until("every5", Duration::from_secs(30), |runs| {
            runs.iter().any(|r| {
                r.scheduled_time == second
                    && r.status != RunStatus::Pending
                    && r.status != RunStatus::Buffered
            })
        })
        .await;
    let missed = runs.iter().find(|r| r.scheduled_time == second).unwrap();
    assert_eq!(missed.status, RunStatus::Dispatched, "{runs:#?}");
    let first = runs.iter().find(|r| r.scheduled_time == anchor).unwrap();
    assert_eq!(first.status, RunStatus::Dispatched, "{runs:#?}");
    let jobs = farm.jobs_of("every5").await;
    let keys: Vec<_> = jobs
        .iter()
        .filter_map(|job| job.idempotency_key.clone())
        .collect();
    assert!(keys.contains(&key("every5", anchor)), "{keys:?}");
    assert!(keys.contains(&key("every5", second)), "{keys:?}");
    assert_eq!(
        keys.iter().filter(|k| **k == key("every5", anchor)).count(),
        1,
        "the first job ran once"
    );
}
