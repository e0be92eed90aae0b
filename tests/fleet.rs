//! A phone farm over several hosts, end to end: three real device runners, each with fake
//! phones behind a fake `adb` whose batteries and temperatures the tests change, and the real
//! scheduler following all three (with their tokens), placing occurrences of schedules that
//! select phones by tags.

use device_runner_client::Enqueue;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, Job, JobStatus};
use scheduler_client::{
    ClientConfig, DeviceJobTarget, DeviceSelector, FleetPhone, FleetQuery, NewSchedule, PhoneState,
    RunQuery, RunStatus, SchedulePolicy, ScheduleRun, SchedulerClient, Target, TriggerKind,
};
use serde_json::Map;
use test_support::fleet::{FleetStack, Host, RUNNER_ADMIN};
use test_support::wait_until;

const SOON: Duration = Duration::from_secs(30);

/// Every runner's gates and quarantine, and the job types the tests run.
const RUNNER_CONFIG: &str = r#"
[health]
poll = "100ms"
min_battery = 20
max_temperature = 42.0
quarantine_after = 3
recovery = "reboot"
recovery_timeout = "30s"

[job_types.quick]
argv = ["sh", "-c", "echo ran on $ANDROID_SERIAL"]
max_duration = "1m"

[job_types.long]
argv = ["sh", "-c", "echo working on $ANDROID_SERIAL; exec sleep 120"]
max_duration = "10m"

[job_types.failing]
argv = ["sh", "-c", "echo failing; exit 3"]
max_duration = "1m"
"#;

/// A phone: its serial and tags.
type Phone<'a> = (&'a str, &'a [&'a str]);

/// A host's runner, with its admin token.
fn runner(host: &Host) -> DeviceRunnerClient {
    DeviceRunnerClient::with_options(&host.url(), Duration::from_secs(30), Some(RUNNER_ADMIN))
        .unwrap()
}

/// A long job queued on a phone directly, not by the scheduler.
async fn long_job(host: &Host, serial: &str) -> Job {
    let rpc = runner(host);
    let queued = rpc.rpc().enqueue(device_runner_client::EnqueueJob {
        device: Some(serial.into()),
        job_type: "long".into(),
        ..Default::default()
    });
    queued.await.unwrap()
}

/// Every job of a host's runner (queued, running or ended).
async fn jobs_on(host: &Host) -> Vec<Job> {
    let rpc = runner(host);
    let mut jobs = rpc.rpc().list_queue(None).await.unwrap();
    let status = rpc.rpc().get_status().await.unwrap();
    jobs.extend(status.running_jobs);
    let ended = rpc
        .rpc()
        .list_runs(None, None, None, Some(1000), None, None);
    jobs.extend(ended.await.unwrap());
    jobs
}

/// The hosts and the scheduler that follows them.
struct Farm {
    stack: FleetStack,
}

impl Farm {
    /// Starts `hosts` (name, phones with their tags) and a scheduler following them; the
    /// scheduler reaches those named in `relayed` through a relay a test can hold.
    async fn start(hosts: &[(&str, &[Phone<'_>])], relayed: &[&str]) -> Farm {
        let mut builder = FleetStack::builder().runner_config(RUNNER_CONFIG);
        for (name, phones) in hosts {
            builder = builder.host(name, phones);
        }
        for name in relayed {
            builder = builder.relayed(name);
        }
        Farm {
            stack: builder.start().await,
        }
    }

    fn host(&self, name: &str) -> &Host {
        self.stack.host(name)
    }

    fn client(&self) -> SchedulerClient {
        SchedulerClient::new(ClientConfig {
            host: "127.0.0.1".into(),
            port: self.stack.scheduler_port(),
            timeout: Duration::from_secs(30),
            retries: 2,
            retry_delay: Duration::from_millis(50),
            token: None,
        })
        .unwrap()
    }

    fn log(&self) -> String {
        self.stack.scheduler_log()
    }

    /// A schedule whose one occurrence at `at` runs `job_type` on a phone with `tags` (of
    /// `runner` only, when given).
    async fn create(
        &self,
        id: &str,
        at: DateTime<Utc>,
        tags: &[&str],
        runner: Option<&str>,
        job_type: &str,
    ) {
        let target = Target::DeviceJob(DeviceJobTarget {
            runner: String::new(),
            device: None,
            pool: None,
            select: Some(DeviceSelector {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                runner: runner.map(str::to_string),
            }),
            moves: 0,
            job_type: job_type.into(),
            params: Map::new(),
            priority: 5,
            max_duration: None,
        });
        let mut new = NewSchedule::new("farm", TriggerKind::Once { at }.into(), target);
        new.id = Some(id.into());
        self.client().create_schedule(new).await.unwrap();
    }

    /// The one run of schedule `id`, once it satisfies `done`.
    async fn run_of(&self, id: &str, done: impl Fn(&ScheduleRun) -> bool) -> ScheduleRun {
        let client = self.client();
        let done = &done;
        wait_until(&format!("the run of {id}\n{}", self.log()), SOON, || {
            let client = client.clone();
            async move {
                let page = client
                    .list_runs(id, "farm", RunQuery::default())
                    .await
                    .map_err(|e| e.to_string())?;
                match page.runs.first() {
                    Some(run) if done(run) => Ok(run.clone()),
                    other => Err(format!("{other:#?}")),
                }
            }
        })
        .await
    }

    /// A phone as `list_fleet` shows it, once it satisfies `done`.
    async fn phone(
        &self,
        runner: &str,
        serial: &str,
        done: impl Fn(&FleetPhone) -> bool,
    ) -> FleetPhone {
        let client = self.client();
        let done = &done;
        wait_until(&format!("phone {runner}/{serial}"), SOON, || {
            let client = client.clone();
            async move {
                let fleet = client
                    .list_fleet(FleetQuery::default())
                    .await
                    .map_err(|e| e.to_string())?;
                match fleet
                    .phones
                    .iter()
                    .find(|p| p.runner == runner && p.serial == serial)
                {
                    Some(phone) if done(phone) => Ok(phone.clone()),
                    other => Err(format!("{other:#?}")),
                }
            }
        })
        .await
    }

    /// The jobs schedule `id` queued, on every host: (host, job).
    async fn jobs_of(&self, id: &str) -> Vec<(String, Job)> {
        let source = format!("schedule {id}");
        let mut found = Vec::new();
        for (name, host) in &self.stack.hosts {
            if host.daemon.is_none() {
                continue;
            }
            for job in jobs_on(host).await {
                if job.source.as_deref() == Some(source.as_str()) {
                    found.push((name.clone(), job));
                }
            }
        }
        found
    }
}

fn soon() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0) + TimeDelta::seconds(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_schedules_spread_over_the_matching_phones_and_wait_out_their_gates() {
    let farm = Farm::start(
        &[
            ("r1", &[("A1", &["tiktok"]), ("A2", &["tiktok", "sim"])]),
            ("r2", &[("B1", &["tiktok"]), ("B2", &["insta"])]),
            ("r3", &[("C1", &["tiktok"])]),
        ],
        &[],
    )
    .await;
    // One view of every host's phones, with their health.
    let phone = farm
        .phone("r3", "C1", |p| {
            p.state == PhoneState::Idle && p.health.is_some()
        })
        .await;
    assert_eq!(phone.tags, ["tiktok"]);
    assert_eq!(phone.health.unwrap().battery_percent, Some(80));
    let fleet = farm
        .client()
        .list_fleet(FleetQuery::default())
        .await
        .unwrap();
    assert_eq!(fleet.runners.len(), 3);
    assert!(
        fleet
            .runners
            .iter()
            .all(|r| r.reachable && r.last_seen.is_some())
    );
    assert_eq!(fleet.runners[0].reports_as.as_deref(), Some("host-r1"));
    let tagged = farm
        .client()
        .list_fleet(FleetQuery {
            tags: vec!["tiktok".into(), "sim".into()],
            ..FleetQuery::default()
        })
        .await
        .unwrap();
    let serials: Vec<&str> = tagged.phones.iter().map(|p| p.serial.as_str()).collect();
    assert_eq!(serials, ["A2"]);

    // Eight occurrences due together over the four tiktok phones: two each (a running job
    // and one queued), never on B2.
    let at = soon();
    for i in 0..8 {
        farm.create(&format!("spread{i}"), at, &["tiktok"], None, "long")
            .await;
    }
    let mut per_phone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..8 {
        let id = format!("spread{i}");
        let run = farm
            .run_of(&id, |r| {
                r.placement.is_some() && r.detail.as_deref().is_some_and(|d| d.contains("queued"))
            })
            .await;
        let placement = run.placement.unwrap();
        let jobs = farm.jobs_of(&id).await;
        assert_eq!(jobs.len(), 1, "{id}: one job: {jobs:#?}");
        assert_eq!(jobs[0].0, placement.runner);
        assert_eq!(jobs[0].1.device, placement.device);
        *per_phone
            .entry(format!("{}/{}", placement.runner, placement.device))
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = ["r1/A1", "r1/A2", "r2/B1", "r3/C1"]
        .into_iter()
        .map(|p| (p.to_string(), 2))
        .collect();
    assert_eq!(per_phone, expected);

    // A hot phone and one low on battery get nothing until they are back inside their gates.
    farm.host("r1").facts("A2", 80, 45.0);
    farm.host("r2").facts("B2", 10, 30.0);
    let hot = farm
        .phone("r1", "A2", |p| p.state == PhoneState::Held)
        .await;
    assert_eq!(hot.held.as_deref(), Some("temperature 45.0 °C > 42.0 °C"));
    farm.phone("r2", "B2", |p| p.state == PhoneState::Held)
        .await;
    let at = soon();
    farm.create("hot", at, &["sim"], None, "quick").await;
    farm.create("flat", at, &["insta"], None, "quick").await;
    for id in ["hot", "flat"] {
        let run = farm
            .run_of(id, |r| {
                r.status == RunStatus::Pending
                    && r.detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with("waiting for a phone"))
            })
            .await;
        assert_eq!(run.scheduled_time, at);
        assert!(run.placement.is_none());
    }
    let hot = farm.run_of("hot", |r| r.detail.is_some()).await;
    assert_eq!(
        hot.detail.as_deref(),
        Some("waiting for a phone: no phone with tags [sim] is available: 1 above 42.0 °C")
    );
    // It waits: no job anywhere until the phones recover.
    assert!(farm.jobs_of("hot").await.is_empty());
    assert!(farm.jobs_of("flat").await.is_empty());
    farm.host("r1").facts("A2", 80, 30.0);
    farm.host("r2").facts("B2", 90, 30.0);
    let flat = farm
        .run_of("flat", |r| r.status == RunStatus::Dispatched)
        .await;
    assert_eq!(flat.placement.unwrap().device, "B2");
    // A2 runs its two long jobs first; the placed one waits in its queue.
    let hot = farm.run_of("hot", |r| r.placement.is_some()).await;
    assert_eq!(hot.placement.unwrap().device, "A2");

    // No phone for it: it waits its placement timeout, then fails saying why.
    let nowhere = Target::DeviceJob(DeviceJobTarget {
        runner: String::new(),
        device: None,
        pool: None,
        select: Some(DeviceSelector {
            tags: vec!["ios".into()],
            runner: None,
        }),
        moves: 0,
        job_type: "quick".into(),
        params: Map::new(),
        priority: 5,
        max_duration: None,
    });
    let mut new = NewSchedule::new("farm", TriggerKind::Once { at: soon() }.into(), nowhere);
    new.id = Some("nowhere".into());
    new.policy = Some(SchedulePolicy {
        placement_timeout_secs: Some(1),
        ..SchedulePolicy::default()
    });
    farm.client().create_schedule(new).await.unwrap();
    let failed = farm
        .run_of("nowhere", |r| r.status == RunStatus::Failed)
        .await;
    assert_eq!(
        failed.detail.as_deref(),
        Some("no phone carries tags [ios]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_quarantine_a_phone_a_reboot_brings_it_back_and_placed_jobs_move_off_it() {
    let farm = Farm::start(
        &[
            ("r1", &[("Q1", &["q"]), ("F1", &["flaky"])]),
            ("r2", &[("Q2", &["q"])]),
        ],
        &[],
    )
    .await;
    // Three failures in a row on F1: quarantined, rebooted, released once it is back.
    for i in 0..3 {
        let id = format!("fail{i}");
        farm.create(&id, soon(), &["flaky"], None, "failing").await;
        farm.run_of(&id, |r| r.status == RunStatus::Failed).await;
    }
    let history = wait_until("F1's recovery", SOON, || async {
        let history = runner(farm.host("r1"))
            .rpc()
            .get_device_history("F1".into(), None)
            .await
            .map_err(|e| e.to_string())?;
        let kinds: Vec<String> = history.iter().rev().map(|e| e.kind.clone()).collect();
        if kinds.last().is_some_and(|k| k == "released") {
            Ok(kinds)
        } else {
            Err(format!("{kinds:?}"))
        }
    })
    .await;
    assert_eq!(history, ["quarantined", "reboot", "online", "released"]);
    let reboots = std::fs::read_to_string(farm.host("r1").dir.join("reboots.txt")).unwrap();
    assert_eq!(reboots.trim(), "F1");
    farm.phone("r1", "F1", |p| p.state == PhoneState::Idle)
        .await;

    // A job placed on Q1 waits behind another; Q2 is too hot to take it then.
    farm.host("r2").facts("Q2", 80, 44.0);
    farm.phone("r2", "Q2", |p| p.state == PhoneState::Held)
        .await;
    let blocker = long_job(farm.host("r1"), "Q1").await;
    farm.phone("r1", "Q1", |p| {
        p.running.as_ref().is_some_and(|j| j.id == blocker.id)
    })
    .await;
    farm.create("move", soon(), &["q"], None, "quick").await;
    let placed = farm
        .run_of("move", |r| {
            r.placement.is_some() && r.detail.as_deref().is_some_and(|d| d.contains("queued"))
        })
        .await;
    assert_eq!(placed.placement.as_ref().unwrap().device, "Q1");
    // Q2 cools down; Q1 is quarantined through the scheduler: the job moves to Q2.
    farm.host("r2").facts("Q2", 80, 30.0);
    farm.phone("r2", "Q2", |p| p.state == PhoneState::Idle)
        .await;
    let quarantined = farm
        .client()
        .quarantine_device("r1", "Q1", Some("cracked screen"))
        .await
        .unwrap();
    assert_eq!(quarantined.state, PhoneState::Quarantined);
    assert_eq!(quarantined.quarantine.unwrap().reason, "cracked screen");
    let moved = farm
        .run_of("move", |r| r.status == RunStatus::Dispatched)
        .await;
    let placement = moved.placement.unwrap();
    assert_eq!(
        (
            placement.runner.as_str(),
            placement.device.as_str(),
            placement.moves
        ),
        ("r2", "Q2", 1)
    );
    let detail = moved.detail.unwrap();
    assert!(
        detail.starts_with("moved from phone Q1 of device runner 'r1' (quarantined)"),
        "{detail}"
    );
    let jobs = farm.jobs_of("move").await;
    let statuses: BTreeMap<String, JobStatus> = jobs
        .iter()
        .map(|(host, job)| (format!("{host}/{}", job.device), job.status))
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("r1/Q1".to_string(), JobStatus::Cancelled),
            ("r2/Q2".to_string(), JobStatus::Completed)
        ])
    );
    // The blocker, not placed by the scheduler, keeps running on the quarantined phone.
    let still = runner(farm.host("r1"))
        .rpc()
        .get_run(blocker.id.clone())
        .await
        .unwrap();
    assert_eq!(still.status, JobStatus::Running);
    let released = farm.client().release_device("r1", "Q1").await.unwrap();
    assert!(released.quarantine.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_between_placement_and_enqueue_runs_the_occurrence_once_on_the_first_phone()
 {
    let mut farm = Farm::start(
        &[("r1", &[("X1", &["pin"])]), ("r2", &[("Y1", &["pin"])])],
        &["r1"],
    )
    .await;
    // Y1 is too hot: the occurrence can only be placed on X1.
    farm.host("r2").facts("Y1", 80, 45.0);
    farm.phone("r2", "Y1", |p| p.state == PhoneState::Held)
        .await;
    farm.phone("r1", "X1", |p| p.state == PhoneState::Idle)
        .await;
    // From now on r1 takes the scheduler's calls and does not answer them.
    farm.stack.proxies["r1"].hold();
    let at = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(1);
    farm.create("pinned", at, &["pin"], None, "quick").await;
    let placed = farm
        .run_of("pinned", |r| {
            r.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("placed on phone X1"))
        })
        .await;
    assert_eq!(placed.status, RunStatus::Pending);
    farm.stack.scheduler.as_mut().unwrap().kill9();

    // Now Y1 is free and X1 busy: a new choice would be Y1.
    farm.host("r2").facts("Y1", 80, 30.0);
    let busy = long_job(farm.host("r1"), "X1").await;
    farm.stack.proxies["r1"].restore();
    farm.stack.start_scheduler().await;
    // The restarted scheduler delivers it to X1, with the same key: it waits there.
    let queued = wait_until("the pinned job queued on X1", SOON, || async {
        let jobs = farm.jobs_of("pinned").await;
        match jobs.as_slice() {
            [(host, job)] if host == "r1" && job.device == "X1" => Ok(job.clone()),
            other => Err(format!("{other:#?}")),
        }
    })
    .await;
    assert_eq!(
        queued.idempotency_key.as_deref(),
        Some(placed.idempotency_key.as_str())
    );
    runner(farm.host("r1"))
        .rpc()
        .kill_job(busy.id)
        .await
        .unwrap();
    let run = farm
        .run_of("pinned", |r| r.status == RunStatus::Dispatched)
        .await;
    assert_eq!(run.placement.unwrap().device, "X1");
    let jobs = farm.jobs_of("pinned").await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].1.status, JobStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_shows_unreachable_gets_no_placements_and_runs_its_queue_once_back() {
    let mut farm = Farm::start(&[("r1", &[("K1", &["k"])]), ("r3", &[("K3", &["k"])])], &[]).await;
    farm.phone("r3", "K3", |p| p.state == PhoneState::Idle)
        .await;
    // On r3: a long job running, and a placed one queued behind it.
    let at = soon();
    farm.create("busy", at, &["k"], Some("r3"), "long").await;
    farm.run_of("busy", |r| {
        r.placement.is_some() && r.detail.as_deref().is_some_and(|d| d.contains("queued"))
    })
    .await;
    farm.phone("r3", "K3", |p| p.state == PhoneState::Busy)
        .await;
    farm.create("behind", soon(), &["k"], Some("r3"), "quick")
        .await;
    let behind = farm
        .run_of("behind", |r| {
            r.detail.as_deref().is_some_and(|d| d.contains("queued"))
        })
        .await;
    assert_eq!(behind.placement.unwrap().device, "K3");
    farm.phone("r3", "K3", |p| p.queued == 1).await;

    let r3 = farm.stack.hosts.get_mut("r3").unwrap();
    r3.daemon.as_mut().unwrap().kill9();
    let gone = farm
        .phone("r3", "K3", |p| p.state == PhoneState::Unreachable)
        .await;
    assert_eq!(gone.queued, 1, "as it was last seen");
    let fleet = farm
        .client()
        .list_fleet(FleetQuery::default())
        .await
        .unwrap();
    let runner = fleet.runners.iter().find(|r| r.name == "r3").unwrap();
    assert!(
        !runner.reachable && runner.last_seen.is_some() && runner.error.is_some(),
        "{runner:?}"
    );

    // A new occurrence goes to the phone that answers.
    farm.create("elsewhere", soon(), &["k"], None, "quick")
        .await;
    let elsewhere = farm
        .run_of("elsewhere", |r| r.status == RunStatus::Dispatched)
        .await;
    assert_eq!(elsewhere.placement.unwrap().runner, "r1");

    // Back, r3 runs what was queued on it, once.
    farm.stack.hosts.get_mut("r3").unwrap().start().await;
    let run = farm
        .run_of("behind", |r| r.status == RunStatus::Dispatched)
        .await;
    assert_eq!(run.placement.unwrap().device, "K3");
    let jobs = farm.jobs_of("behind").await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(
        (jobs[0].0.as_str(), jobs[0].1.status),
        ("r3", JobStatus::Completed)
    );
}

/// A JSON request to the scheduler's farm routes: its status and body.
async fn farm_call(
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farm_rest_api_places_any_phone_and_covers_every_runner() {
    use reqwest::Method;
    use serde_json::json;
    let farm = Farm::start(
        &[
            ("r1", &[("A1", &["tiktok"])]),
            ("r2", &[("B1", &["tiktok", "sim"]), ("B2", &["insta"])]),
        ],
        &[],
    )
    .await;
    farm.phone("r2", "B2", |p| p.state == PhoneState::Idle)
        .await;
    let base = format!("http://127.0.0.1:{}", farm.stack.scheduler_port());

    // "any" with tags: placed per run; a named phone goes to the runner that has it.
    let (status, created) = farm_call(
        Method::POST,
        format!("{base}/api/schedules"),
        Some(
            json!({"name": "any sim", "job_type": "quick", "device": "any", "tags": ["sim"],
                    "interval_minutes": 60}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["device"].clone(), created["tags"].clone()),
        (json!("any"), json!(["sim"]))
    );
    let (status, named) = farm_call(
        Method::POST,
        format!("{base}/api/schedules"),
        Some(json!({"name": "on B2", "job_type": "quick", "device": "B2", "interval_minutes": 60})),
    )
    .await;
    assert_eq!(status, 201, "{named}");
    for (body, field) in [
        (
            json!({"job_type": "quick", "device": "any", "interval_minutes": 5}),
            "tags",
        ),
        (
            json!({"job_type": "quick", "device": "A1", "tags": ["x"], "interval_minutes": 5}),
            "tags",
        ),
        (
            json!({"job_type": "quick", "device": "Z9", "interval_minutes": 5}),
            "Z9",
        ),
    ] {
        let (status, refused) =
            farm_call(Method::POST, format!("{base}/api/schedules"), Some(body)).await;
        assert_eq!(status, 400, "{refused}");
        assert!(
            refused["error"].as_str().unwrap().contains(field),
            "{refused}"
        );
    }
    let id = created["id"].as_str().unwrap().to_string();
    let (status, _) = farm_call(
        Method::POST,
        format!("{base}/api/schedules/{id}/run-now"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let named_id = named["id"].as_str().unwrap().to_string();
    let (status, _) = farm_call(
        Method::POST,
        format!("{base}/api/schedules/{named_id}/run-now"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let placed = farm
        .run_of(&id, |r| r.status == RunStatus::Dispatched)
        .await;
    assert_eq!(placed.placement.unwrap().device, "B1");
    farm.run_of(&named_id, |r| r.status == RunStatus::Dispatched)
        .await;
    let on_b2 = farm.jobs_of(&named_id).await;
    assert_eq!(
        (on_b2[0].0.as_str(), on_b2[0].1.device.as_str()),
        ("r2", "B2")
    );

    // The runner routes cover every runner, each device and job with its runner.
    let (status, merged) =
        farm_call(Method::GET, format!("{base}/api/scheduler/status"), None).await;
    assert_eq!(status, 200, "{merged}");
    let devices: Vec<(String, String)> = merged["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["runner"].as_str().unwrap().into(),
                d["serial"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            ("r1".into(), "A1".into()),
            ("r2".into(), "B1".into()),
            ("r2".into(), "B2".into())
        ]
    );
    assert_eq!(merged["runners"].as_array().unwrap().len(), 2);
    let (_, history) = farm_call(
        Method::GET,
        format!("{base}/api/scheduler/history?limit=10"),
        None,
    )
    .await;
    let ran: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["device"].as_str().unwrap())
        .collect();
    assert_eq!(ran.len(), 2, "{history}");
    assert!(ran.contains(&"B1") && ran.contains(&"B2"), "{history}");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["runner"] == "r2")
    );
    // A job's log, found on the runner that has it; paging on from it reaches the other run.
    let first = history[0]["id"].as_str().unwrap();
    let (status, log) = farm_call(
        Method::GET,
        format!("{base}/api/scheduler/history/{first}/logs"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert!(log["data"].as_str().unwrap().contains("ran on B"), "{log}");
    let (_, older) = farm_call(
        Method::GET,
        format!("{base}/api/scheduler/history?limit=10&before={first}"),
        None,
    )
    .await;
    assert_eq!(older.as_array().unwrap().len(), 1, "{older}");
    assert_eq!(older[0]["id"], history[1]["id"]);
    let (status, _) = farm_call(
        Method::GET,
        format!("{base}/api/scheduler/history/nope/logs"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, timeline) =
        farm_call(Method::GET, format!("{base}/api/scheduler/timeline"), None).await;
    let lanes: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["runner"].as_str().unwrap())
        .collect();
    assert_eq!(lanes, ["r1", "r2", "r2"]);
}
