//! One conformance suite for both store backends.

use chrono::{TimeDelta, Utc};
use device_runner::process::ProcessIdentity;
use device_runner::store::{Ending, NewJob, RunFilter, Store};
use device_runner_client::{JobStatus, Progress};
use serde_json::json;

use crate::helpers::TestDb;

fn new_job(id: &str, device: &str, priority: u8) -> NewJob {
    NewJob {
        id: id.into(),
        device: device.into(),
        job_type: "crawl".into(),
        params: json!({"id": id}),
        priority,
        max_duration_secs: 900,
        source: None,
        checkpoint: None,
        requeued_from: None,
        enqueued_at: Utc::now(),
        idempotency_key: None,
        traceparent: None,
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn ending(status: JobStatus) -> Ending {
    Ending {
        status,
        ended_at: Utc::now(),
        exit_code: Some(0),
        signal: None,
        error: None,
        preempted_by: None,
    }
}

async fn conformance(store: Store) {
    for (id, priority) in [("a", 5), ("b", 3), ("c", 3), ("d", 1)] {
        store.insert(&new_job(id, "P1", priority)).await.unwrap();
    }
    store.insert(&new_job("other", "P2", 5)).await.unwrap();
    assert!(
        store.insert(&new_job("a", "P1", 5)).await.is_err(),
        "ids are unique"
    );

    let queue: Vec<_> = store
        .queue(Some("P1"))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(queue, ["d", "b", "c", "a"], "priority, then first in");
    assert_eq!(store.next_pending("P1").await.unwrap().unwrap().id, "d");
    let mut counts = store.pending_counts().await.unwrap();
    counts.sort();
    assert_eq!(counts, [("P1".to_string(), 4), ("P2".to_string(), 1)]);

    assert!(store.start("d", Utc::now(), "/tmp/d.log").await.unwrap());
    assert!(
        !store.start("d", Utc::now(), "/tmp/d.log").await.unwrap(),
        "only once"
    );
    let identity = ProcessIdentity {
        pid: 4242,
        pgid: 4242,
        start_ticks: 99,
        boot_id: "boot".into(),
    };
    store.record_process("d", &identity).await.unwrap();
    store
        .set_checkpoint("d", &json!({"page": 1}))
        .await
        .unwrap();
    store
        .set_checkpoint("d", &json!({"page": 2}))
        .await
        .unwrap();
    store.add_result("d", &json!({"n": 1})).await.unwrap();
    store.add_result("d", &json!("two")).await.unwrap();
    store
        .set_progress(
            "d",
            &Progress {
                percent: 40,
                message: Some("half".into()),
            },
        )
        .await
        .unwrap();
    let running = store.running().await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].1.as_ref(), Some(&identity));
    let d = &running[0].0;
    assert_eq!(d.checkpoint, Some(json!({"page": 2})));
    assert_eq!(d.results, [json!({"n": 1}), json!("two")]);
    assert_eq!(d.progress.as_ref().unwrap().percent, 40);
    assert_eq!(d.log_path.as_deref(), Some("/tmp/d.log"));

    assert!(store.cancel("b", Utc::now()).await.unwrap());
    assert!(
        !store.cancel("d", Utc::now()).await.unwrap(),
        "a running job is not cancelled"
    );
    let mut failed = ending(JobStatus::Preempted);
    failed.preempted_by = Some("x".into());
    failed.signal = Some(15);
    failed.exit_code = None;
    assert!(store.finish("d", &failed).await.unwrap());
    assert!(
        !store
            .finish("d", &ending(JobStatus::Completed))
            .await
            .unwrap(),
        "ends once"
    );
    let d = store.get("d").await.unwrap().unwrap();
    assert_eq!(d.status, JobStatus::Preempted);
    assert_eq!(d.preempted_by.as_deref(), Some("x"));
    assert_eq!(d.signal, Some(15));
    assert!(d.duration_secs.is_some());

    store.start("c", Utc::now(), "/tmp/c.log").await.unwrap();
    store
        .finish("c", &ending(JobStatus::Completed))
        .await
        .unwrap();
    let all = store
        .runs(&RunFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["c", "d", "b"], "newest first");
    let preempted = store
        .runs(&RunFilter {
            status: Some(JobStatus::Preempted),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(preempted.len(), 1);
    let older = store
        .runs(&RunFilter {
            before: Some("c".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["d", "b"]
    );
    let ended_before = |at| {
        let store = store.clone();
        async move {
            let filter = RunFilter {
                ended_before: Some(at),
                limit: 50,
                ..Default::default()
            };
            store.runs(&filter).await.unwrap().len()
        }
    };
    let latest = all.iter().filter_map(|j| j.ended_at).max().unwrap();
    let earliest = all.iter().filter_map(|j| j.ended_at).min().unwrap();
    assert_eq!(ended_before(latest + TimeDelta::milliseconds(1)).await, 3);
    assert_eq!(ended_before(earliest).await, 0, "strictly before");
    let other_device = store
        .runs(&RunFilter {
            device: Some("P2".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other_device.is_empty());
    let timeline = store
        .timeline(Utc::now() - TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(
        timeline.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["d", "c"]
    );
    assert!(
        store
            .timeline(Utc::now() + TimeDelta::hours(1))
            .await
            .unwrap()
            .is_empty()
    );

    // A preempted job ends and is queued again with its checkpoint in one step, once; the
    // job that carries it on continues its trace.
    let traced = NewJob {
        traceparent: Some(TRACEPARENT.into()),
        ..new_job("e", "P3", 4)
    };
    let (stored, _) = store.insert(&traced).await.unwrap();
    assert_eq!(stored.traceparent.as_deref(), Some(TRACEPARENT));
    store.start("e", Utc::now(), "/tmp/e.log").await.unwrap();
    store
        .set_checkpoint("e", &json!({"page": 9}))
        .await
        .unwrap();
    let again = store
        .finish_and_requeue("e", &ending(JobStatus::Preempted), "e2")
        .await
        .unwrap()
        .expect("queued again");
    assert_eq!(again.id, "e2");
    assert_eq!(again.status, JobStatus::Pending);
    assert_eq!(again.requeued_from.as_deref(), Some("e"));
    assert_eq!(again.checkpoint, Some(json!({"page": 9})));
    assert_eq!(again.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!((again.priority, again.params), (4, json!({"id": "e"})));
    assert_eq!(
        store.get("e").await.unwrap().unwrap().status,
        JobStatus::Preempted
    );
    assert!(
        store
            .finish_and_requeue("e", &ending(JobStatus::Preempted), "e3")
            .await
            .unwrap()
            .is_none(),
        "an ended job is not ended or queued again"
    );
    assert!(store.get("e3").await.unwrap().is_none());

    // Concurrent writes (committed together on SQLite): one that fails fails alone.
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..100 {
        let store = store.clone();
        let id = if i == 50 {
            "e2".to_string()
        } else {
            format!("many{i}")
        };
        writes.spawn(async move { store.insert(&new_job(&id, "P4", 5)).await.is_ok() });
    }
    let mut stored = 0;
    while let Some(ok) = writes.join_next().await {
        stored += usize::from(ok.unwrap());
    }
    assert_eq!(stored, 99, "all but the duplicate id");
    assert_eq!(store.queue(Some("P4")).await.unwrap().len(), 99);

    // Why a phone's pending jobs wait: written on each, and cleared.
    let waits = |reason: Option<&'static str>| {
        let store = store.clone();
        async move {
            let queue = store.queue(Some("P4")).await.unwrap();
            queue.iter().all(|j| j.waiting.as_deref() == reason)
        }
    };
    store
        .set_waiting("P4", Some("battery 12 % < 20 %"))
        .await
        .unwrap();
    assert!(waits(Some("battery 12 % < 20 %")).await);
    store.set_waiting("P4", None).await.unwrap();
    assert!(waits(None).await);

    // Failures in a row: a completed job breaks the run, a killed one tells nothing.
    for (id, status) in [
        ("f1", JobStatus::Failed),
        ("f2", JobStatus::Completed),
        ("f3", JobStatus::Timeout),
        ("f4", JobStatus::DeviceLost),
        ("f5", JobStatus::Killed),
    ] {
        store.insert(&new_job(id, "P5", 5)).await.unwrap();
        assert!(store.finish(id, &ending(status)).await.unwrap());
    }
    assert!(store.failed_in_a_row("P5", 2).await.unwrap());
    assert!(!store.failed_in_a_row("P5", 3).await.unwrap());
    assert!(
        !store.failed_in_a_row("P6", 1).await.unwrap(),
        "no jobs, no failures"
    );

    // Quarantine and release, kept with their history.
    let quarantine = device_runner_client::Quarantine {
        since: Utc::now() - TimeDelta::minutes(5),
        reason: "2 jobs in a row failed".into(),
        by: "failures".into(),
    };
    store.quarantine("P5", &quarantine).await.unwrap();
    let again = device_runner_client::Quarantine {
        since: Utc::now(),
        reason: "cracked screen".into(),
        by: "operator".into(),
    };
    store.quarantine("P5", &again).await.unwrap();
    let stored = store.quarantines().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "P5");
    assert_eq!(stored[0].1.reason, "cracked screen");
    assert_eq!(
        stored[0].1.since.timestamp_millis(),
        quarantine.since.timestamp_millis(),
        "a quarantine keeps its start"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        store
            .release("P5", Utc::now(), "released by an operator")
            .await
            .unwrap()
    );
    assert!(
        !store.release("P5", Utc::now(), "again").await.unwrap(),
        "not quarantined"
    );
    assert!(store.quarantines().await.unwrap().is_empty());
    assert!(
        !store.failed_in_a_row("P5", 1).await.unwrap(),
        "failures are counted afresh from the release"
    );
    let history = store.device_history("P5", 10).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["released", "quarantined", "quarantined"]);
    assert_eq!(history[0].message, "released by an operator");
    assert_eq!(history[2].message, "2 jobs in a row failed (by failures)");
    assert_eq!(store.device_history("P5", 1).await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn the_sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = service_kit::DatabaseUrl::parse(&TestDb::sqlite(dir.path()).url).unwrap();
    conformance(Store::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn the_postgres_store_conforms() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = service_kit::DatabaseUrl::parse(&db.url).unwrap();
    conformance(Store::connect(&url, 2).await.unwrap()).await;
}
