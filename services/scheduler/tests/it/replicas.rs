//! Several processes on one database: exactly-once dispatch across replicas, leader election,
//! and the single process a SQLite store allows.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{
    DatabaseUrl, GraphExecutionTarget, HttpTarget, Policy, RpcTarget, Schedule, StoreName, Target,
};
use serde_json::json;
use triggers::{TriggerKind, TriggerSpec};

use crate::helpers::{
    Answer, Backend, Daemon, StubBackend, StubExecutor, TestDb, free_port, http_post,
};

/// Engine settings that make a takeover quick enough for a test.
const FAST: &[(&str, &str)] = &[
    ("SCHEDULER__ENGINE__LEASE", "2s"),
    ("SCHEDULER__ENGINE__LEADER_POLL", "200ms"),
    ("SCHEDULER__ENGINE__BATCH_SIZE", "50"),
    ("SCHEDULER__ENGINE__DISPATCH_CONCURRENCY", "16"),
];

/// What the replicas fire at, and what it received.
enum Receiver {
    Executor(StubExecutor),
    Backend(StubBackend, &'static str),
}

impl Receiver {
    /// Every delivery so far: its idempotency key and when it arrived.
    fn deliveries(&self) -> Vec<(String, DateTime<Utc>)> {
        match self {
            Receiver::Executor(stub) => stub
                .calls()
                .into_iter()
                .map(|c| (text(&c.params["idempotency_key"]), c.received_at))
                .collect(),
            Receiver::Backend(backend, path) => backend
                .requests(path)
                .into_iter()
                .map(|r| {
                    let key = match r.header("idempotency-key") {
                        Some(key) => key.to_string(),
                        None => text(&r.body["params"]["idempotency_key"]),
                    };
                    (key, r.received_at)
                })
                .collect(),
        }
    }
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().expect("an idempotency key").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_dispatch_each_occurrence_once_while_one_is_killed() {
    // A busy executor (20 ms a call) keeps dispatches in flight when the replica dies.
    let stub = StubExecutor::start(Answer::AcceptAfter(20)).await;
    let url = stub.url.clone();
    let target = |i: usize| {
        Target::GraphExecution(GraphExecutionTarget {
            graph_id: format!("g{i}"),
            graph_version: 1,
            input_data: json!({}),
            input_credentials: json!({}),
            ..Default::default()
        })
    };
    deliver_once_across_a_kill(Receiver::Executor(stub), &url, &[], 2_000, target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_targets_are_delivered_once_across_replicas_while_one_is_killed() {
    let backend = StubBackend::start().await;
    backend.answer("/job", 200, Duration::from_millis(20));
    let url = backend.url.clone();
    let env = [("SCHEDULER__ENDPOINTS__BACKEND__URL", url.as_str())];
    let target = |i: usize| http_post("backend", "/job", json!({"n": i}));
    let receiver = Receiver::Backend(backend, "/job");
    deliver_once_across_a_kill(receiver, "http://127.0.0.1:9/", &env, 1_000, target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_targets_are_delivered_once_across_replicas_while_one_is_killed() {
    let backend = StubBackend::start().await;
    backend.answer("/rpc", 200, Duration::from_millis(20));
    let rpc = format!("{}/rpc", backend.url);
    let env = [("SCHEDULER__ENDPOINTS__JOBS__URL", rpc.as_str())];
    let target = |i: usize| {
        Target::Rpc(RpcTarget {
            endpoint: Some("jobs".into()),
            url: None,
            method: "jobs.run".into(),
            params: json!({"n": i}).as_object().cloned().unwrap(),
        })
    };
    let receiver = Receiver::Backend(backend, "/rpc");
    deliver_once_across_a_kill(receiver, "http://127.0.0.1:9/", &env, 1_000, target).await;
}

/// Three replicas on one PostgreSQL fire `occurrences` one-shot schedules 3 ms apart; one is
/// SIGKILLed midway. Every occurrence is delivered, once, except what the killed replica had
/// sent and not recorded, which is sent again with the same key.
async fn deliver_once_across_a_kill(
    receiver: Receiver,
    executor_url: &str,
    env: &[(&str, &str)],
    occurrences: usize,
    target: impl Fn(usize) -> Target,
) {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let database = jobstore::connect(&DatabaseUrl::parse(&db.url).unwrap(), 2)
        .await
        .unwrap();
    let store = jobstore::persisted(&database, StoreName::Execution);
    // One-shot schedules 3 ms apart, starting once the replicas are up.
    let first = Utc::now() + TimeDelta::seconds(4);
    let schedules: Vec<Schedule> = (0..occurrences)
        .map(|i| {
            let at = first + TimeDelta::milliseconds(3 * i as i64);
            Schedule {
                id: format!("s{i:04}"),
                name: format!("s{i:04}"),
                owner: "u1".into(),
                trigger: TriggerSpec::from(TriggerKind::Once { at }),
                target: target(i),
                policy: Policy::default(),
                paused: false,
                tags: Vec::new(),
                paused_reason: None,
                next_run_at: Some(at),
                created_at: Utc::now(),
            }
        })
        .collect();
    store.insert_many(&schedules).await.unwrap();
    let mut settings: Vec<(&str, &str)> = FAST.to_vec();
    settings.extend_from_slice(env);

    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Daemon::start_with(&db, executor_url, &settings).await);
    }
    // Kill one replica in the middle of the firing.
    let midway = first + TimeDelta::milliseconds(3 * occurrences as i64 / 2);
    tokio::time::sleep((midway - Utc::now()).to_std().unwrap_or_default()).await;
    // On a busy machine the replicas may start late: make sure the firing has begun.
    let started = Instant::now();
    while receiver.deliveries().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "nothing fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = receiver.deliveries().len();
    replicas[1].kill9();
    let killed_at = Utc::now();
    assert!(
        before > 0 && before < occurrences,
        "the kill came midway ({before} calls so far)"
    );

    // Every occurrence is delivered; the dead replica's claims are taken over when their
    // 2 s leases expire.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (per_key, dispatched) = loop {
        let mut per_key: HashMap<String, usize> = HashMap::new();
        for (key, _) in receiver.deliveries() {
            *per_key.entry(key).or_default() += 1;
        }
        let dispatched = count_runs(&database, "dispatched").await;
        let done = per_key.len() >= occurrences && dispatched >= occurrences as i64;
        if done || Instant::now() > deadline {
            break (per_key, dispatched);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(per_key.len(), occurrences, "every occurrence was delivered");
    assert_eq!(
        dispatched, occurrences as i64,
        "the ledger shows each occurrence dispatched"
    );
    assert_eq!(
        count_runs(&database, "%").await,
        occurrences as i64,
        "one ledger row each"
    );
    // A second delivery can only be of a run the killed replica had sent (its outcome not yet
    // recorded), sent again with the same idempotency key: live replicas renew the leases of
    // what they dispatch, however slow the machine, so nothing of theirs is taken over.
    let deliveries = receiver.deliveries();
    let late_firsts: Vec<&String> = per_key
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, _)| key)
        .filter(|key| {
            let first = deliveries
                .iter()
                .filter(|(k, _)| k == *key)
                .map(|(_, at)| *at)
                .min()
                .unwrap();
            // A request the killed replica sent may arrive a moment after the kill.
            first > killed_at + TimeDelta::seconds(1)
        })
        .collect();
    assert!(
        late_firsts.is_empty(),
        "delivered twice though first sent after the kill: {late_firsts:?}"
    );
    for (i, replica) in replicas.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(
            !replica.log_text().contains("ERROR"),
            "replica {i} logged an error:\n{}",
            replica.log_text()
        );
    }
    database.close().await;
}

async fn count_runs(database: &jobstore::Database, status: &str) -> i64 {
    let jobstore::Database::Postgres(pool) = database else {
        unreachable!("the replica test runs on PostgreSQL")
    };
    sqlx::query_scalar("SELECT count(*) FROM schedule_runs WHERE status LIKE $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_dies() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let stub = StubExecutor::start(Answer::Accept).await;
    let mut replicas = vec![
        Daemon::start_with(&db, &stub.url, FAST).await,
        Daemon::start_with(&db, &stub.url, FAST).await,
    ];
    let leaders = |statuses: &[bool]| statuses.iter().filter(|l| **l).count();
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        statuses.clear();
        for replica in &replicas {
            let status = replica.client().get_scheduler_status().await.unwrap();
            statuses.push(status.leader);
        }
        if leaders(&statuses) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leaders(&statuses), 1, "exactly one leader: {statuses:?}");
    let leader = statuses.iter().position(|l| *l).unwrap();
    let status = replicas[leader]
        .client()
        .get_scheduler_status()
        .await
        .unwrap();
    assert_eq!(status.database, "postgres");
    let weekly = status
        .jobstores
        .iter()
        .find(|j| j.name == "weekly_notifications")
        .unwrap();
    assert!(weekly.active, "the leader fires the in-memory store");

    replicas[leader].kill9();
    let survivor = &replicas[1 - leader];
    let started = Instant::now();
    loop {
        let status = survivor.client().get_scheduler_status().await.unwrap();
        if status.leader {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no new leader after 10 s:\n{}",
            survivor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(survivor.log_text().contains("this replica now leads"));
    replicas.remove(leader);
}

#[tokio::test]
async fn a_second_process_on_one_sqlite_file_refuses_to_start() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let stub = StubExecutor::start(Answer::Accept).await;
    let first = Daemon::start(&db, &stub.url).await;
    let status = first.client().get_scheduler_status().await.unwrap();
    assert!(status.leader, "a sole process always leads");
    assert_eq!(status.database, "sqlite");

    let output = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args([
            "--port",
            &free_port().to_string(),
            "--database-url",
            &db.url,
        ])
        .current_dir(db.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the second process must not run");
    assert!(
        stderr.contains("another scheduler process")
            && stderr.contains(&format!("pid {}", first.pid())),
        "a clear message naming the holder: {stderr}"
    );
    // The first one is untouched.
    assert_eq!(first.client().health_check().await.unwrap(), "OK");
}

/// When the first call reached `backend`'s `/slow`.
async fn stub_wait(backend: &StubBackend) -> DateTime<Utc> {
    backend
        .wait_for("/slow", 1, Duration::from_secs(30))
        .await
        .first()
        .map(|request| request.received_at)
        .expect("a first call")
}

/// The replica ids the processes announced, in the order of `replicas`.
fn replica_ids(replicas: &[Daemon]) -> Vec<String> {
    replicas
        .iter()
        .map(|replica| {
            let log = replica.log_text();
            let at = log
                .find("replica present")
                .expect("the replica announced itself");
            let line = &log[at..log[at..].find('\n').map_or(log.len(), |end| at + end)];
            let id = line.split("replica=").nth(1).expect("its id");
            id.split_whitespace()
                .next()
                .unwrap()
                .trim_matches('"')
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_runs_are_taken_over_at_once_and_the_next_occurrence_waits_for_them() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    // Calls last 1.5 s, schedules fire every 2 s: a run is in flight most of the time, and
    // none overlaps the next while every replica lives.
    let backend = StubBackend::start().await;
    backend.answer("/slow", 200, Duration::from_millis(1500));
    let env = [
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__ENGINE__LEADER_POLL", "200ms"),
        // The default lease: what a dead replica's runs cost without the takeover.
        ("SCHEDULER__ENGINE__LEASE", "30s"),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await);
    }
    let ids = replica_ids(&replicas);
    let database = jobstore::connect(&DatabaseUrl::parse(&db.url).unwrap(), 2)
        .await
        .unwrap();
    let store = jobstore::persisted(&database, StoreName::Execution);
    let anchor = Utc::now() + TimeDelta::seconds(2);
    let schedules: Vec<Schedule> = (0..30)
        .map(|i| Schedule {
            id: format!("every2s-{i:02}"),
            name: format!("every2s-{i:02}"),
            owner: "u1".into(),
            trigger: TriggerSpec::from(TriggerKind::Interval {
                every_secs: 2,
                anchor: Some(anchor),
            }),
            target: Target::Http(HttpTarget {
                endpoint: Some("backend".into()),
                url: None,
                method: "POST".into(),
                path: "/slow".into(),
                headers: Default::default(),
                body: json!({"n": i}),
                expected_status: "2xx".into(),
            }),
            policy: Policy::default(),
            paused: false,
            tags: Vec::new(),
            paused_reason: None,
            next_run_at: Some(anchor),
            created_at: Utc::now(),
        })
        .collect();
    store.insert_many(&schedules).await.unwrap();
    let jobstore::Database::Postgres(pool) = &database else {
        unreachable!("the replica test runs on PostgreSQL")
    };

    // Kill the replica holding the most runs in flight, 1.2 s into a round of calls: a run
    // delivered again from then on lasts past the next occurrence, which then meets it.
    let first = stub_wait(&backend).await;
    let rounds = ((first - anchor).num_milliseconds() / 2000 + 1) as i32;
    let kill_at = anchor + TimeDelta::seconds(2 * rounds as i64) + TimeDelta::milliseconds(1200);
    tokio::time::sleep((kill_at - Utc::now()).to_std().unwrap_or_default()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (victim, held) = loop {
        let holders: Vec<(String, i64)> = sqlx::query_as(
            "SELECT claimed_by, count(*) FROM schedule_runs WHERE status = 'pending' \
             AND claimed_by IS NOT NULL GROUP BY claimed_by ORDER BY count(*) DESC",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let found = holders
            .first()
            .and_then(|(id, n)| Some((ids.iter().position(|x| x == id)?, *n)));
        match found {
            Some((victim, held)) if held >= 3 => break (victim, held),
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "no replica holds runs: {holders:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let victim_id = ids[victim].clone();
    let orphans: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT schedule_id, scheduled_time FROM schedule_runs WHERE status = 'pending' \
         AND claimed_by = $1",
    )
    .bind(&victim_id)
    .fetch_all(pool)
    .await
    .unwrap();
    replicas[victim].kill9();
    let killed_at = Utc::now();

    // Its runs are taken over within a few polls, not when their 30 s leases run out.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let still: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM schedule_runs WHERE status = 'pending' AND claimed_by = $1",
        )
        .bind(&victim_id)
        .fetch_one(pool)
        .await
        .unwrap();
        if still == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{still} of the dead replica's {held} runs not taken over after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken_after = Utc::now() - killed_at;
    // Six more occurrences of every schedule.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let skipped: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT schedule_id, scheduled_time FROM schedule_runs WHERE status = 'skipped'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    eprintln!(
        "a replica holding {} runs was killed: taken over after {} ms; {} occurrences \
         skipped in the 12 s after",
        orphans.len(),
        taken_after.num_milliseconds(),
        skipped.len()
    );
    // The occurrence after each dead replica's run met its redelivery: it waited for it, as
    // `buffer_one` would, and ran. (The one after that may still meet that late run, a live
    // one, and be skipped as the policy says.)
    for (schedule, at) in &orphans {
        let next = *at + TimeDelta::seconds(2);
        let status: String = sqlx::query_scalar(
            "SELECT status FROM schedule_runs WHERE schedule_id = $1 AND scheduled_time = $2",
        )
        .bind(schedule)
        .bind(next)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(status, "dispatched", "{schedule} at {next}");
    }
    assert!(
        skipped.len() <= orphans.len(),
        "at most one occurrence skipped per schedule the dead replica held: {skipped:#?}"
    );
    let taken_over = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .any(|(_, replica)| replica.log_text().contains("took over the pending runs"));
    assert!(taken_over, "a survivor says it took the runs over");
    database.close().await;
}
