//! The general schedule API against the real binary: each target kind against a real server on
//! loopback (and a real Redis SUBSCRIBE for `redis_publish`), failures, overlap, jitter, run
//! now, backfill, update in place, paging and bad input.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Timelike, Utc};
use futures::StreamExt;
use scheduler_client::{
    Error, FireTimesQuery, NewSchedule, Overlap, RunQuery, RunStatus, SchedulePolicy,
    ScheduleQuery, ScheduleUpdate, SchedulerClient, SchedulerError, Target, TriggerKind,
    TriggerSpec,
};
use scheduler_client::{HttpTarget, RedisPublishTarget, RpcTarget};
use serde_json::{Value, json};

use crate::helpers::{Backend, Daemon, StubBackend, TestDb, http_post, raw_call};

const TOKEN: &str = "backend-secret";

/// The scheduler with `backend` configured as endpoint `backend` (and its `/rpc` as endpoint
/// `jobs`), and Redis as `redis.url`.
async fn daemon_for(db: &TestDb, backend: &StubBackend) -> Daemon {
    // The JSON-RPC service of `rpc` targets: the backend's `/rpc`.
    let rpc_url = format!("{}/rpc", backend.url);
    let env = [
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__ENDPOINTS__BACKEND__TOKEN", TOKEN),
        ("SCHEDULER__ENDPOINTS__BACKEND__TIMEOUT", "20s"),
        ("SCHEDULER__ENDPOINTS__JOBS__URL", rpc_url.as_str()),
        ("SCHEDULER__ENDPOINTS__JOBS__TOKEN", TOKEN),
        ("SCHEDULER__REDIS__URL", "redis://127.0.0.1:6379"),
    ];
    Daemon::start_with(db, "http://127.0.0.1:9/", &env).await
}

fn once(at: DateTime<Utc>) -> TriggerSpec {
    TriggerKind::Once { at }.into()
}

fn http(path: &str) -> Target {
    http_post("backend", path, Value::Null)
}

/// A whole second a little ahead, so the schedule is stored before it falls due.
fn soon(secs: i64) -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0) + TimeDelta::seconds(secs)
}

fn key(id: &str, at: DateTime<Utc>) -> String {
    format!("{id}@{}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Waits until the schedule's ledger has `count` rows none of which is pending or buffered.
async fn settled_runs(
    client: &SchedulerClient,
    id: &str,
    owner: &str,
    count: usize,
    within: Duration,
) -> Vec<scheduler_client::ScheduleRun> {
    let mut runs =
        test_support::wait_until(&format!("{count} settled runs of {id}"), within, || {
            let client = client.clone();
            async move {
                let page = client
                    .list_runs(id, owner, RunQuery::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let open = page
                    .runs
                    .iter()
                    .any(|r| matches!(r.status, RunStatus::Pending | RunStatus::Buffered));
                if page.runs.len() >= count && !open {
                    Ok(page.runs)
                } else {
                    Err(format!("{:?}", page.runs))
                }
            }
        })
        .await;
    runs.reverse();
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_kind_is_delivered_once_with_the_ledger_key() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let channel = format!("scheduler-it-{}", std::process::id());
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    // Under CI Redis must be there (.ci/run starts it); elsewhere its part is left out.
    let mut subscriber = match redis.get_async_pubsub().await {
        Ok(subscriber) => Some(subscriber),
        Err(error) => {
            let message = format!("Redis at 127.0.0.1:6379 is not reachable: {error}");
            assert!(
                !test_support::under_ci(),
                "{message} (CI=true: it must run)"
            );
            eprintln!("{message}; the redis_publish part of this test not run");
            None
        }
    };
    if let Some(subscriber) = &mut subscriber {
        subscriber.subscribe(&channel).await.unwrap();
    }

    let at = soon(2);
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("X-Job".to_string(), "cleanup".to_string());
    let targets = [
        (
            "t-http",
            Target::Http(HttpTarget {
                endpoint: Some("backend".into()),
                url: None,
                method: "PUT".into(),
                path: "/internal/jobs/cleanup".into(),
                headers,
                body: json!({"dry_run": false}),
                expected_status: "2xx".into(),
            }),
        ),
        (
            "t-rpc",
            Target::Rpc(RpcTarget {
                endpoint: Some("jobs".into()),
                url: None,
                method: "cleanup.run".into(),
                params: json!({"batch": 10}).as_object().cloned().unwrap(),
            }),
        ),
        (
            "t-redis",
            Target::RedisPublish(RedisPublishTarget {
                channel: channel.clone(),
                message: json!({"hello": "world"}),
            }),
        ),
    ];
    for (id, target) in targets {
        if id == "t-redis" && subscriber.is_none() {
            continue;
        }
        let mut new = NewSchedule::new("alice", once(at), target);
        new.id = Some(id.into());
        let created = client.create_schedule(new).await.unwrap();
        assert_eq!(created.next_run_time.map(|t| t.to_utc()), Some(at));
        assert_eq!(
            created.next_fire_times.len(),
            1,
            "a once trigger fires once"
        );
    }

    let http = backend
        .wait_for("/internal/jobs/cleanup", 1, Duration::from_secs(30))
        .await;
    assert_eq!(http.len(), 1, "the http target was called");
    let request = &http[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(
        request.header("idempotency-key"),
        Some(key("t-http", at).as_str())
    );
    assert_eq!(
        request.header("x-scheduled-time"),
        Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_str())
    );
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(request.header("x-job"), Some("cleanup"));
    assert_eq!(request.body, json!({"dry_run": false}));

    let rpc = backend.wait_for("/rpc", 1, Duration::from_secs(30)).await;
    let call = &rpc.first().expect("the rpc target was called").body;
    assert_eq!(call["jsonrpc"], "2.0");
    assert_eq!(call["method"], "cleanup.run");
    assert_eq!(call["params"]["batch"], 10);
    assert_eq!(call["params"]["idempotency_key"], key("t-rpc", at));
    assert_eq!(
        call["params"]["scheduled_time"],
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    assert_eq!(
        rpc[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    let mut checked = vec![("t-http", "\"status\":200"), ("t-rpc", "\"ok\":true")];
    if let Some(subscriber) = &mut subscriber {
        let message = tokio::time::timeout(Duration::from_secs(30), subscriber.on_message().next())
            .await
            .expect("a message on the channel")
            .unwrap();
        let payload: Value =
            serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({
                "schedule_id": "t-redis",
                "scheduled_time": at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "idempotency_key": key("t-redis", at),
                "message": {"hello": "world"},
            })
        );
        checked.push(("t-redis", "\"receivers\":1"));
    }

    for (id, expected) in checked {
        let runs = settled_runs(&client, id, "alice", 1, Duration::from_secs(30)).await;
        assert_eq!(runs.len(), 1, "{id}: one occurrence");
        assert_eq!(runs[0].status, RunStatus::Dispatched, "{id}: {:?}", runs[0]);
        assert_eq!(runs[0].idempotency_key, key(id, at));
        let detail = runs[0].detail.clone().unwrap_or_default();
        assert!(detail.contains(expected), "{id}: {detail}");
    }
    // Nothing is delivered twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backend.requests("/internal/jobs/cleanup").len(), 1);
    assert_eq!(backend.requests("/rpc").len(), 1);
    // AutoGPT's listing shows graph schedules only.
    let autogpt = client
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, Some(true)))
        .await
        .unwrap();
    assert!(autogpt.is_empty(), "{autogpt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_status_fails_the_run_with_the_status_and_the_body() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    backend.answer("/missing", 404, Duration::ZERO);
    backend.answer("/busy", 503, Duration::ZERO);
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let at = soon(2);
    let mut missing = NewSchedule::new("alice", once(at), http("/missing"));
    missing.id = Some("missing".into());
    client.create_schedule(missing).await.unwrap();
    let mut busy = NewSchedule::new("alice", once(at), http("/busy"));
    busy.id = Some("busy".into());
    busy.policy = Some(SchedulePolicy {
        attempts: Some(3),
        backoff_ms: Some(50),
        ..SchedulePolicy::default()
    });
    client.create_schedule(busy).await.unwrap();

    let runs = settled_runs(&client, "missing", "alice", 1, Duration::from_secs(30)).await;
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].attempts, 1, "a refusal is not retried");
    let detail = runs[0].detail.clone().unwrap();
    assert!(
        detail.contains("HTTP 404") && detail.contains("expected 2xx"),
        "{detail}"
    );
    assert!(
        detail.contains("answered 404 for /missing"),
        "the body: {detail}"
    );

    let runs = settled_runs(&client, "busy", "alice", 1, Duration::from_secs(30)).await;
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(
        runs[0].attempts, 3,
        "the schedule's attempts: {:?}",
        runs[0]
    );
    assert!(runs[0].detail.as_deref().unwrap().contains("HTTP 503"));
    assert_eq!(backend.requests("/busy").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skips_buffers_one_or_allows_all_with_a_slow_target() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    // Four occurrences a second apart; each call takes 4 s, so every later occurrence falls
    // due while the first run is still in progress.
    let first = soon(2);
    for (policy, overlap) in [
        ("skip", Overlap::Skip),
        ("buffer", Overlap::BufferOne),
        ("allow", Overlap::AllowAll),
    ] {
        let path = format!("/slow/{policy}");
        backend.answer(&path, 200, Duration::from_secs(4));
        let trigger = TriggerSpec {
            kind: TriggerKind::Interval {
                every_secs: 1,
                anchor: Some(first),
            },
            start_at: None,
            end_at: Some(first + TimeDelta::seconds(3)),
            exclude: Vec::new(),
        };
        let mut new = NewSchedule::new("alice", trigger, http(&path));
        new.id = Some(policy.into());
        new.policy = Some(SchedulePolicy {
            overlap: Some(overlap),
            coalesce: Some(false),
            ..SchedulePolicy::default()
        });
        client.create_schedule(new).await.unwrap();
    }
    let statuses =
        |runs: &[scheduler_client::ScheduleRun]| runs.iter().map(|r| r.status).collect::<Vec<_>>();
    use RunStatus::{Dispatched, Skipped};
    let within = Duration::from_secs(60);
    let skip = settled_runs(&client, "skip", "alice", 4, within).await;
    assert_eq!(statuses(&skip), [Dispatched, Skipped, Skipped, Skipped]);
    assert!(
        skip[1].detail.as_deref().unwrap().starts_with("overlap:"),
        "{:?}",
        skip[1]
    );
    let buffer = settled_runs(&client, "buffer", "alice", 4, within).await;
    assert_eq!(
        statuses(&buffer),
        [Dispatched, Dispatched, Skipped, Skipped],
        "exactly one extra run, the one buffered"
    );
    let allow = settled_runs(&client, "allow", "alice", 4, within).await;
    assert_eq!(statuses(&allow), [Dispatched; 4]);
    assert_eq!(backend.most_at_once("/slow/skip"), 1);
    assert_eq!(backend.most_at_once("/slow/buffer"), 1, "never two at once");
    assert!(
        backend.most_at_once("/slow/allow") >= 2,
        "allow_all overlaps"
    );
    // The buffered run started only when the first one ended.
    let calls = backend.requests("/slow/buffer");
    assert_eq!(calls.len(), 2);
    assert!(calls[1].received_at - calls[0].received_at >= TimeDelta::milliseconds(3900));
    assert_eq!(
        calls[1].header("idempotency-key"),
        Some(key("buffer", first + TimeDelta::seconds(1)).as_str())
    );
    // Every ended status is counted: the five skipped rows too, not only the dispatches.
    let skipped = r#"scheduler_occurrences_total{jobstore="execution",status="skipped"}"#;
    test_support::wait_until("5 skipped runs counted", within, || async {
        let seen = counter(&daemon, skipped).await;
        if seen >= 5.0 {
            Ok(())
        } else {
            Err(format!("{seen}"))
        }
    })
    .await;
    assert_eq!(counter(&daemon, skipped).await, 5.0, "each counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_each_occurrence_by_its_own_key() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let at = soon(2);
    let policy = jobstore::Policy {
        jitter_secs: 3,
        ..jobstore::Policy::default()
    };
    let mut delays = Vec::new();
    for i in 0..3 {
        let id = format!("jitter-{i}");
        let path = format!("/jitter/{i}");
        let mut new = NewSchedule::new("alice", once(at), http(&path));
        new.id = Some(id.clone());
        new.policy = Some(SchedulePolicy {
            jitter_secs: Some(3),
            ..SchedulePolicy::default()
        });
        client.create_schedule(new).await.unwrap();
        // What every replica computes for this occurrence.
        delays.push((path, policy.jitter_for(&key(&id, at))));
    }
    assert!(
        delays.iter().all(|(_, d)| *d < Duration::from_secs(3)),
        "{delays:?}"
    );
    assert!(
        delays.windows(2).any(|w| w[0].1 != w[1].1),
        "occurrences get different delays: {delays:?}"
    );
    for (path, delay) in delays {
        let calls = backend.wait_for(&path, 1, Duration::from_secs(30)).await;
        let waited = (calls[0].received_at - at).to_std().unwrap_or_default();
        assert!(
            waited >= delay,
            "{path} was sent {waited:?} after its time, before its jitter of {delay:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_claimed_ahead_go_at_their_time_unless_paused_meanwhile_and_as_updated_meanwhile() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let backend = StubBackend::start().await;
    let env = [
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__ENGINE__LOOKAHEAD", "10s"),
    ];
    let daemon = Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await;
    let client = daemon.client();
    let at = soon(12);
    let allow_all = SchedulePolicy {
        overlap: Some(Overlap::AllowAll),
        ..SchedulePolicy::default()
    };
    // "go", "stop" and "move" may be claimed ahead; "skip" (overlap skip) only once due.
    for (id, policy) in [
        ("go", Some(allow_all)),
        ("stop", Some(allow_all)),
        ("move", Some(allow_all)),
        ("skip", None),
    ] {
        let mut new = NewSchedule::new("alice", once(at), http(&format!("/{id}")));
        new.id = Some(id.to_string());
        new.policy = policy;
        client.create_schedule(new).await.unwrap();
    }
    // "stop" and "move" are claimed about 10 s before their time; while they wait, "stop" is
    // paused and "move" gets another target.
    for id in ["stop", "move"] {
        test_support::wait_until("claimed ahead", Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                let page = client
                    .list_runs(id, "alice", RunQuery::default())
                    .await
                    .map_err(|e| e.to_string())?;
                match page.runs.first() {
                    Some(run) if run.status == RunStatus::Pending => Ok(()),
                    other => Err(format!("{id}: {other:?}")),
                }
            }
        })
        .await;
    }
    assert!(Utc::now() < at, "claimed ahead of its time");
    client
        .pause_schedule("stop", "alice", Some("not today".into()))
        .await
        .unwrap();
    let update = ScheduleUpdate {
        target: Some(http("/moved")),
        ..ScheduleUpdate::default()
    };
    let moved = client
        .update_schedule("move", "alice", update)
        .await
        .unwrap();
    assert_eq!(
        moved.next_run_time.map(|next| next.with_timezone(&Utc)),
        Some(at),
        "the run claimed ahead is given back: the occurrence is the next run again"
    );

    for path in ["/go", "/skip", "/moved"] {
        let calls = backend.wait_for(path, 1, Duration::from_secs(30)).await;
        assert!(
            calls[0].received_at >= at,
            "{path} sent at {} before its time {at}",
            calls[0].received_at
        );
        let id = if path == "/moved" { "move" } else { &path[1..] };
        assert_eq!(
            calls[0].header("idempotency-key"),
            Some(key(id, at).as_str())
        );
    }
    for id in ["go", "skip", "move"] {
        let runs = settled_runs(&client, id, "alice", 1, Duration::from_secs(10)).await;
        assert_eq!(runs[0].status, RunStatus::Dispatched, "{id}: {runs:?}");
    }
    // "go" went at its time, so the engine looked at "stop" then too: it let it be.
    assert!(backend.requests("/stop").is_empty());
    assert!(
        backend.requests("/move").is_empty(),
        "the run claimed ahead went as the schedule is now"
    );
    let stopped = client
        .list_runs("stop", "alice", RunQuery::default())
        .await
        .unwrap();
    assert!(stopped.runs.is_empty(), "{:?}", stopped.runs);
    let log = daemon.log_text();
    assert!(
        log.contains("paused or deleted after the run was claimed ahead"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_and_backfill_run_each_occurrence_once() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let anchor = Utc::now().trunc_subsecs(0) - TimeDelta::minutes(10);
    let trigger = TriggerSpec::from(TriggerKind::Interval {
        every_secs: 60,
        anchor: Some(anchor),
    });
    let mut new = NewSchedule::new("alice", trigger, http("/report"));
    new.id = Some("report".into());
    client.create_schedule(new).await.unwrap();

    let run = client.trigger_schedule("report", "alice").await.unwrap();
    assert_eq!(run.status, RunStatus::Pending);
    let calls = backend
        .wait_for("/report", 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        calls[0].header("idempotency-key"),
        Some(run.idempotency_key.as_str()),
        "the run by hand is an occurrence of its own"
    );

    // Five minutes of past occurrences: 5 of them.
    let start = anchor + TimeDelta::minutes(4) + TimeDelta::seconds(1);
    let end = anchor + TimeDelta::minutes(9);
    let first = client
        .backfill_schedule("report", "alice", start, end, None)
        .await
        .unwrap();
    assert_eq!((first.queued, first.already_in_ledger), (5, 0));
    let again = client
        .backfill_schedule("report", "alice", start, end, None)
        .await
        .unwrap();
    assert_eq!(
        (again.queued, again.already_in_ledger),
        (0, 5),
        "nothing twice"
    );
    let calls = backend
        .wait_for("/report", 6, Duration::from_secs(30))
        .await;
    let keys: Vec<_> = calls[1..]
        .iter()
        .map(|c| c.header("idempotency-key").unwrap().to_string())
        .collect();
    let expected: Vec<_> = (5..=9)
        .map(|m| key("report", anchor + TimeDelta::minutes(m)))
        .collect();
    assert_eq!(keys, expected, "each once, oldest first");
    assert_eq!(backend.most_at_once("/report"), 1, "one after another");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backend.requests("/report").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_by_hand_within_one_second_each_carry_a_key_of_their_own() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let trigger = TriggerSpec::from(TriggerKind::Interval {
        every_secs: 3600,
        anchor: None,
    });
    let mut new = NewSchedule::new("alice", trigger, http("/by-hand"));
    new.id = Some("by-hand".into());
    new.policy = Some(SchedulePolicy {
        overlap: Some(Overlap::AllowAll),
        ..SchedulePolicy::default()
    });
    client.create_schedule(new).await.unwrap();

    // Back to back: at least two of the three fall within one second.
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(client.trigger_schedule("by-hand", "alice").await.unwrap());
    }
    let same_second = runs
        .windows(2)
        .any(|pair| pair[0].scheduled_time.timestamp() == pair[1].scheduled_time.timestamp());
    assert!(
        same_second,
        "three runs by hand spread over three seconds: {runs:?}"
    );
    for run in &runs {
        let exact = run
            .scheduled_time
            .to_rfc3339_opts(SecondsFormat::AutoSi, true);
        assert_eq!(run.idempotency_key, format!("by-hand@{exact}"));
    }
    let calls = backend
        .wait_for("/by-hand", 3, Duration::from_secs(30))
        .await;
    let mut sent: Vec<_> = calls
        .iter()
        .map(|c| c.header("idempotency-key").unwrap().to_string())
        .collect();
    sent.sort();
    sent.dedup();
    let mut expected: Vec<_> = runs.iter().map(|r| r.idempotency_key.clone()).collect();
    expected.sort();
    assert_eq!(sent, expected, "three runs, three keys, each sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_change_in_place_page_by_cursor_and_answer_to_their_owner() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let daily = TriggerSpec::from(TriggerKind::DailyTimes {
        times: vec!["09:00".into(), "18:30".into()],
        timezone: "Europe/Paris".into(),
    });
    let mut new = NewSchedule::new("alice", daily, http("/digest"));
    new.id = Some("digest".into());
    new.tags = vec!["mail".into()];
    let created = client.create_schedule(new.clone()).await.unwrap();
    assert_eq!(created.timezone, "Europe/Paris");
    assert_eq!(created.next_fire_times.len(), 5);
    let times: Vec<String> = created
        .next_fire_times
        .iter()
        .map(|t| t.format("%H:%M").to_string())
        .collect();
    assert!(
        times.iter().all(|t| t == "09:00" || t == "18:30"),
        "shown in the schedule's zone: {times:?}"
    );

    match client.create_schedule(new.clone()).await {
        Err(Error::Scheduler(SchedulerError::AlreadyExists(message))) => {
            assert!(message.contains("digest"), "{message}")
        }
        other => panic!("a second create is AlreadyExistsError: {other:?}"),
    }
    client.trigger_schedule("digest", "alice").await.unwrap();
    settled_runs(&client, "digest", "alice", 1, Duration::from_secs(30)).await;

    let hourly = TriggerSpec::from(TriggerKind::Cron {
        expression: "0 * * * *".into(),
        timezone: "UTC".into(),
    });
    let updated = client
        .update_schedule(
            "digest",
            "alice",
            ScheduleUpdate {
                name: Some("hourly digest".into()),
                trigger: Some(hourly.clone()),
                ..ScheduleUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "hourly digest");
    assert_eq!(updated.trigger, hourly);
    assert_eq!(updated.tags, ["mail"], "what was not given stays");
    let next = updated.next_run_time.unwrap().to_utc();
    assert!(next > Utc::now() && next <= Utc::now() + TimeDelta::hours(1));
    let got = client.get_schedule("digest", "alice").await.unwrap();
    assert_eq!(got.created_at, created.created_at);
    assert_eq!(
        got.last_run.map(|r| r.status),
        Some(RunStatus::Dispatched),
        "the ledger is kept"
    );

    // Replacing keeps the ledger too.
    new.replace_existing = true;
    new.name = Some("replaced".into());
    let replaced = client.create_schedule(new).await.unwrap();
    assert_eq!(replaced.name, "replaced");
    let runs = client
        .list_runs("digest", "alice", RunQuery::default())
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 1);

    // Another owner may not touch it; the admin may (auth is off here: nobody is admin).
    for refused in [
        client.get_schedule("digest", "mallory").await.map(drop),
        client
            .pause_schedule("digest", "mallory", None)
            .await
            .map(drop),
        client.delete_schedule("digest", "mallory").await.map(drop),
        client.trigger_schedule("digest", "mallory").await.map(drop),
    ] {
        assert!(
            matches!(
                refused,
                Err(Error::Scheduler(SchedulerError::NotAuthorized(_)))
            ),
            "{refused:?}"
        );
    }
    let paused = client
        .pause_schedule("digest", "alice", Some("holidays".into()))
        .await
        .unwrap();
    assert!(paused.paused && paused.next_run_time.is_none());
    assert_eq!(paused.paused_reason.as_deref(), Some("holidays"));
    let resumed = client.resume_schedule("digest", "alice").await.unwrap();
    assert!(!resumed.paused && resumed.next_run_time.is_some());

    for i in 0..4 {
        let mut other = NewSchedule::new("bob", once(soon(3600)), http("/x"));
        other.id = Some(format!("page-{i}"));
        other.tags = vec!["paged".into()];
        client.create_schedule(other).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_schedules(ScheduleQuery {
                tag: Some("paged".into()),
                limit: Some(3),
                cursor: cursor.clone(),
                ..ScheduleQuery::default()
            })
            .await
            .unwrap();
        seen.extend(page.schedules.iter().map(|s| s.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["page-0", "page-1", "page-2", "page-3"]);
    let http_of_alice = client
        .list_schedules(ScheduleQuery {
            owner: Some("alice".into()),
            target_type: Some("http".into()),
            ..ScheduleQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(http_of_alice.schedules.len(), 1);

    let deleted = client.delete_schedule("digest", "alice").await.unwrap();
    assert_eq!(deleted.id, "digest");
    assert!(matches!(
        client.get_schedule("digest", "alice").await,
        Err(Error::Scheduler(SchedulerError::NotFound(_)))
    ));
    // Its runs stay in the ledger, readable by its former owner only.
    let kept = client
        .list_runs("digest", "alice", RunQuery::default())
        .await
        .unwrap();
    assert_eq!(kept.runs.len(), 1, "{kept:?}");
    assert_eq!(kept.runs[0].status, RunStatus::Dispatched);
    let other = client
        .list_runs("digest", "mallory", RunQuery::default())
        .await;
    assert!(
        matches!(
            other,
            Err(Error::Scheduler(SchedulerError::NotAuthorized(_)))
        ),
        "{other:?}"
    );
    let never = client
        .list_runs("never-was", "alice", RunQuery::default())
        .await;
    assert!(
        matches!(never, Err(Error::Scheduler(SchedulerError::NotFound(_)))),
        "{never:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let mut keep = NewSchedule::new("alice", once(soon(3600)), http("/keep"));
    keep.id = Some("keep".into());
    let kept = client.create_schedule(keep).await.unwrap();

    let good_target = json!({"type": "http", "endpoint": "backend", "path": "/x"});
    let good_trigger = json!({"type": "cron", "expression": "0 9 * * *"});
    let cases = [
        (
            json!({"owner": "alice", "trigger": {"type": "weekly"}, "target": good_target}),
            "unknown variant `weekly`",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger, "target": {"type": "ftp"}}),
            "unknown variant `ftp`",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger,
                   "target": {"type": "http", "endpoint": "nope", "path": "/x"}}),
            "target.endpoint 'nope' is not configured: configured endpoints are backend, jobs",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger,
                   "target": {"type": "http", "url": "http://169.254.169.254/latest"}}),
            "target.url is accepted only in schedules declared in the configuration",
        ),
        (
            json!({"owner": "alice", "trigger": {"type": "daily_times", "times": ["25:00"]},
                   "target": good_target}),
            "'25:00' is not a time of day",
        ),
        (
            json!({"owner": "alice", "target": good_target,
                   "trigger": {"type": "cron", "expression": "* * * * *",
                               "start_at": "2030-02-01T00:00:00Z",
                               "end_at": "2030-01-01T00:00:00Z"}}),
            "end_at 2030-01-01T00:00:00+00:00 is before start_at",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger, "target": good_target,
                   "policy": {"jitter_secs": -5}}),
            "jitter_secs",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger, "target": good_target,
                   "policy": {"overlap": "sometimes"}}),
            "unknown variant `sometimes`",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger,
                   "target": {"type": "device_job", "runner": "farm", "device": "P1",
                              "job_type": "crawl"}}),
            "target.runner 'farm' is not configured: the scheduler has no [device_runners]",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger,
                   "target": {"type": "device_job", "runner": "farm", "device": "P1",
                              "job_type": "crawl", "priority": 9}}),
            "target.priority must be from 1 (highest) to 5, got 9",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger,
                   "target": {"type": "device_job", "runner": "farm", "device": "P1",
                              "job_type": "crawl", "max_duration": "soon"}}),
            "target.max_duration must be seconds or a duration",
        ),
        (
            json!({"owner": "system", "trigger": good_trigger, "target": good_target}),
            "reserved for schedules declared in the configuration",
        ),
        (
            json!({"owner": "alice", "trigger": good_trigger,
                   "target": {"type": "system_task", "task": "report_late_executions"}}),
            "system_task targets are declared in the configuration",
        ),
        (
            json!({"owner": "alice", "id": "keep", "trigger": good_trigger,
                   "target": good_target, "replace_existing": true,
                   "policy": {"attempts": 0}}),
            "policy.attempts must be 1 to 20",
        ),
    ];
    for (params, expected) in cases {
        let reply = raw_call(&daemon, "create_schedule", params.clone()).await;
        let error = &reply["error"];
        assert_eq!(error["code"], 4000, "{params}: {reply}");
        assert_eq!(error["data"]["type"], "ValueError", "{params}: {reply}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(expected), "{params}: {message}");
    }
    let now = Utc::now().trunc_subsecs(0);
    for (start, end, max, expected) in [
        (
            now - TimeDelta::days(1),
            now + TimeDelta::hours(1),
            None,
            "in the future",
        ),
        (now, now - TimeDelta::days(1), None, "is before start"),
    ] {
        let error = client
            .backfill_schedule("keep", "alice", start, end, max)
            .await
            .unwrap_err();
        match error {
            Error::Scheduler(SchedulerError::Value(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("backfill {start}..{end}: {other:?}"),
        }
    }
    // A once trigger has one occurrence at most: make "keep" dense enough to overflow.
    let dense = TriggerSpec::from(TriggerKind::Cron {
        expression: "* * * * *".into(),
        timezone: "UTC".into(),
    });
    client
        .update_schedule(
            "keep",
            "alice",
            ScheduleUpdate {
                trigger: Some(dense),
                ..ScheduleUpdate::default()
            },
        )
        .await
        .unwrap();
    // Paused, so that it does not fire while the test looks at its ledger.
    client.pause_schedule("keep", "alice", None).await.unwrap();
    let error = client
        .backfill_schedule("keep", "alice", now - TimeDelta::days(3), now, Some(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Scheduler(SchedulerError::Value(m)) if m.contains("max = 10")),
        "{error:?}"
    );
    let unknown = client.update_schedule(
        "keep",
        "alice",
        ScheduleUpdate {
            target: Some(Target::Rpc(RpcTarget {
                endpoint: Some("elsewhere".into()),
                url: None,
                method: "x".into(),
                params: Default::default(),
            })),
            name: Some("must not stick".into()),
            ..ScheduleUpdate::default()
        },
    );
    assert!(matches!(
        unknown.await,
        Err(Error::Scheduler(SchedulerError::Value(_)))
    ));
    assert!(matches!(
        client.get_schedule("missing", "alice").await,
        Err(Error::Scheduler(SchedulerError::NotFound(_)))
    ));

    let page = client
        .list_schedules(ScheduleQuery::default())
        .await
        .unwrap();
    assert_eq!(page.schedules.len(), 1, "nothing else was stored");
    let after = &page.schedules[0];
    assert_eq!(after.name, kept.name, "a refused update changed nothing");
    assert_eq!(after.target, kept.target);
    let runs = client
        .list_runs("keep", "alice", RunQuery::default())
        .await
        .unwrap();
    assert!(
        runs.runs.is_empty(),
        "no backfill was queued: {:?}",
        runs.runs
    );
}

/// The value of a counter in the daemon's `/metrics`, 0 when it is absent.
async fn counter(daemon: &Daemon, series: &str) -> f64 {
    let scrape = reqwest::get(format!("{}/metrics", daemon.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_pruned_by_count_and_by_age_while_firing_goes_on() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let every_second = || {
        TriggerSpec::from(TriggerKind::Interval {
            every_secs: 1,
            anchor: Some(soon(1)),
        })
    };
    let finished = |client: SchedulerClient| async move {
        let page = client
            .list_runs("tick", "alice", RunQuery::default())
            .await
            .unwrap();
        page.runs
            .into_iter()
            .filter(|r| r.finished_at.is_some())
            .collect::<Vec<_>>()
    };

    // By count: at most 3 finished runs kept.
    let env = [
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__LEDGER__KEEP_PER_SCHEDULE", "3"),
        ("SCHEDULER__LEDGER__PRUNE_EVERY", "200ms"),
    ];
    let mut daemon = Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await;
    let client = daemon.client();
    let mut new = NewSchedule::new("alice", every_second(), http("/tick"));
    new.id = Some("tick".into());
    client.create_schedule(new).await.unwrap();
    backend.wait_for("/tick", 8, Duration::from_secs(60)).await;
    test_support::wait_until("the ledger trimmed to 3", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let runs = finished(client).await;
            (runs.len() <= 3)
                .then_some(())
                .ok_or(format!("{} finished runs", runs.len()))
        }
    })
    .await;
    // The ledger may look trimmed before the last of the first 8 outcomes is recorded; the
    // rows beyond the newest 3 of those 8 are deleted by count soon after.
    test_support::wait_until("5 rows deleted by count", Duration::from_secs(30), || {
        let daemon = &daemon;
        async move {
            let deleted = counter(
                daemon,
                "scheduler_ledger_rows_deleted_total{rule=\"count\"}",
            )
            .await;
            (deleted >= 5.0)
                .then_some(())
                .ok_or(format!("{deleted} deleted by count"))
        }
    })
    .await;
    let calls = backend.requests("/tick").len();
    backend
        .wait_for("/tick", calls + 2, Duration::from_secs(30))
        .await;
    assert!(
        backend.requests("/tick").len() >= calls + 2,
        "firing goes on"
    );
    daemon.terminate();

    // By age: nothing finished more than 2 s ago is kept.
    let env = [
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__LEDGER__RETENTION", "2s"),
        ("SCHEDULER__LEDGER__PRUNE_EVERY", "200ms"),
    ];
    let daemon = Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await;
    let client = daemon.client();
    let calls = backend.requests("/tick").len();
    backend
        .wait_for("/tick", calls + 4, Duration::from_secs(60))
        .await;
    test_support::wait_until("old runs aged out", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let runs = finished(client).await;
            let horizon = Utc::now() - TimeDelta::milliseconds(2600);
            let old = runs
                .iter()
                .filter(|r| r.finished_at.is_some_and(|at| at < horizon))
                .count();
            (old == 0 && !runs.is_empty())
                .then_some(())
                .ok_or(format!("{old} old of {} finished", runs.len()))
        }
    })
    .await;
    assert!(counter(&daemon, "scheduler_ledger_rows_deleted_total{rule=\"age\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurrences_due_together_go_as_json_rpc_batches_and_a_failed_call_goes_again_alone() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let rpc = format!("{}/rpc", backend.url);
    let env = [
        ("SCHEDULER__ENDPOINTS__JOBS__URL", rpc.as_str()),
        ("SCHEDULER__ENDPOINTS__JOBS__BATCH", "8"),
    ];
    let daemon = Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await;
    let client = daemon.client();
    let at = soon(3);
    for i in 0..20 {
        let params = json!({"n": i, "fail_in_batch": i == 5});
        let target = Target::Rpc(RpcTarget {
            endpoint: Some("jobs".into()),
            url: None,
            method: "jobs.run".into(),
            params: params.as_object().cloned().unwrap(),
        });
        let mut new = NewSchedule::new("alice", once(at), target);
        new.id = Some(format!("b{i:02}"));
        client.create_schedule(new).await.unwrap();
    }
    for i in 0..20 {
        let runs = settled_runs(
            &client,
            &format!("b{i:02}"),
            "alice",
            1,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            runs[0].status,
            RunStatus::Dispatched,
            "b{i:02}: {:?}",
            runs[0]
        );
    }
    let requests = backend.requests("/rpc");
    let batches: Vec<&Vec<Value>> = requests.iter().filter_map(|r| r.body.as_array()).collect();
    // The batches go concurrently: sizes in any order.
    let mut sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [4, 8, 8], "twenty calls in batches of at most 8");
    let mut keys: Vec<String> = batches
        .iter()
        .flat_map(|b| b.iter())
        .map(|call| {
            call["params"]["idempotency_key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20, "each call carries its own key");
    let alone: Vec<&Value> = requests
        .iter()
        .map(|r| &r.body)
        .filter(|body| body.is_object())
        .collect();
    assert_eq!(
        alone.len(),
        1,
        "only the call refused in its batch goes again, alone"
    );
    assert_eq!(alone[0]["params"]["idempotency_key"], key("b05", at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_fields_are_chosen_by_the_schedule_id_and_stay_across_a_restart() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let mut daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    let expression = "H H(0-7) * * *";
    let cron = |id: Option<&str>| {
        let trigger = TriggerKind::Cron {
            expression: expression.into(),
            timezone: "UTC".into(),
        };
        let mut new = NewSchedule::new("alice", trigger.into(), http("/nightly"));
        new.id = id.map(str::to_string);
        new
    };
    let mut created = Vec::new();
    for id in [Some("nightly-a"), Some("nightly-b"), None] {
        created.push(client.create_schedule(cron(id)).await.unwrap());
    }
    for schedule in &created {
        // What next_fire_times says the expression becomes for this id is what it does.
        let first = schedule.next_fire_times[0];
        let shown = client
            .next_fire_times(
                expression,
                FireTimesQuery {
                    after: Some((first - TimeDelta::seconds(1)).to_rfc3339()),
                    count: Some(5),
                    hash_key: Some(schedule.id.clone()),
                    ..FireTimesQuery::default()
                },
            )
            .await
            .unwrap();
        let fires: Vec<String> = schedule
            .next_fire_times
            .iter()
            .map(|at| {
                at.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Secs, true)
            })
            .collect();
        assert_eq!(shown, fires, "{}", schedule.id);
        let first = first.with_timezone(&Utc);
        assert!(first.hour() <= 7, "{}: {first}", schedule.id);
        assert_eq!(first.second(), 0);
    }
    let without_key = client
        .next_fire_times(
            expression,
            FireTimesQuery {
                count: Some(1),
                ..FireTimesQuery::default()
            },
        )
        .await;
    assert!(
        matches!(&without_key, Err(Error::Scheduler(SchedulerError::Value(m))) if m.contains("minute") && m.contains("hash_key")),
        "{without_key:?}"
    );

    daemon.terminate();
    let daemon = daemon_for(&db, &backend).await;
    let client = daemon.client();
    for schedule in &created {
        let again = client.get_schedule(&schedule.id, "alice").await.unwrap();
        assert_eq!(
            again.next_run_time, schedule.next_run_time,
            "{}",
            schedule.id
        );
        assert_eq!(
            again.next_fire_times, schedule.next_fire_times,
            "{}",
            schedule.id
        );
    }
}
