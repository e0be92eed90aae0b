//! One conformance suite, run against every backend: memory, SQLite and PostgreSQL.
//! Each PostgreSQL test works in a schema of its own and drops it afterwards.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{
    DatabaseUrl, JobStore, ListFilter, MemoryStore, Overlap, Page, Policy, RunFilter, RunOutcome,
    RunRecord, RunStatus, Schedule, StoreError, StoreName, Target,
};
use jobstore::{GraphExecutionTarget, HttpTarget, WatchTarget};
use jobstore::{Sent, WatchFilter};
use scheduler_api::{Check, CheckResult, DeliveryState, OnComplete, Watch, WatchStatus};
use serde_json::json;
use test_support::{Backend, PgSchema};
use triggers::{TriggerKind, TriggerSpec};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const LEASE: TimeDelta = TimeDelta::seconds(30);

fn every_minute() -> TriggerSpec {
    TriggerSpec::from(TriggerKind::Cron {
        expression: "* * * * *".into(),
        timezone: "UTC".into(),
    })
}

fn schedule(id: &str, owner: &str, graph: &str, next: Option<&str>) -> Schedule {
    Schedule {
        id: id.into(),
        name: format!("schedule {id}"),
        owner: owner.into(),
        trigger: every_minute(),
        target: Target::GraphExecution(GraphExecutionTarget {
            graph_id: graph.into(),
            graph_version: 3,
            input_data: json!({"text": "héllo", "n": 1}),
            input_credentials: json!({}),
        }),
        policy: Policy::default(),
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at: next.map(at),
        created_at: at("2026-01-01T00:00:00Z"),
    }
}

async fn insert_get_and_conflict(store: Arc<dyn JobStore>) {
    let s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    store.insert(&s).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s.clone()));
    assert!(matches!(store.insert(&s).await, Err(StoreError::Conflict(id)) if id == "a"));
    assert_eq!(store.get("missing").await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 1);
}

async fn insert_many_is_all_or_nothing(store: Arc<dyn JobStore>) {
    let batch: Vec<_> = (0..3)
        .map(|i| schedule(&format!("b{i}"), "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .collect();
    store.insert_many(&batch).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3);
    let clashing = vec![
        schedule("new", "u1", "g1", None),
        schedule("b1", "u1", "g1", None),
    ];
    assert!(matches!(
        store.insert_many(&clashing).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get("new").await.unwrap(),
        None,
        "nothing of a failed batch is stored"
    );
    assert_eq!(store.count().await.unwrap(), 3);
    let ids: Vec<_> = store
        .list(&ListFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["b0", "b1", "b2"]);
}

async fn list_filters_by_owner_graph_and_activity(store: Arc<dyn JobStore>) {
    let mut paused = schedule("p", "u1", "g1", None);
    paused.paused = true;
    let rows = [
        schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")),
        schedule("b", "u2", "g1", Some("2026-01-01T10:00:00Z")),
        schedule("c", "u1", "g2", Some("2026-01-01T10:00:00Z")),
        paused,
    ];
    for row in &rows {
        store.insert(row).await.unwrap();
    }
    let ids = |found: Vec<Schedule>| found.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let by_owner = ListFilter {
        owner: Some("u1".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&by_owner).await.unwrap()), ["a", "c"]);
    let by_graph = ListFilter {
        graph_id: Some("g1".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&by_graph).await.unwrap()), ["a", "b"]);
    let everything = ListFilter {
        include_inactive: true,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list(&everything).await.unwrap()),
        ["a", "b", "c", "p"]
    );
    let nobody = ListFilter {
        owner: Some("u3".into()),
        ..Default::default()
    };
    assert!(store.list(&nobody).await.unwrap().is_empty());
}

async fn claim_advances_from_the_scheduled_instant(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let now = at("2026-01-01T10:00:10Z");
    let claimed = store.claim_due(now, 100, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let run = &claimed[0];
    assert_eq!(
        (run.schedule_id.as_str(), run.scheduled_time),
        ("a", at("2026-01-01T10:00:00Z"))
    );
    assert_eq!((run.status, run.owner.as_str()), (RunStatus::Pending, "u1"));
    assert_eq!(run.lease_until, Some(now + LEASE));
    assert_eq!(run.idempotency_key(), "a@2026-01-01T10:00:00Z");
    // Next run follows the scheduled 10:00, not the 10:00:10 at which it was claimed.
    let next = store.get("a").await.unwrap().unwrap().next_run_at;
    assert_eq!(next, Some(at("2026-01-01T10:01:00Z")));
    assert!(store.claim_due(now, 100, LEASE).await.unwrap().is_empty());
    let ledger = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, RunStatus::Pending);
}

async fn claim_takes_the_earliest_first_up_to_the_limit(store: Arc<dyn JobStore>) {
    for (id, next) in [
        ("c", "10:03"),
        ("a", "10:01"),
        ("e", "10:09"),
        ("b", "10:02"),
        ("d", "10:04"),
    ] {
        let when = format!("2026-01-01T{next}:00Z");
        store
            .insert(&schedule(id, "u1", "g1", Some(&when)))
            .await
            .unwrap();
    }
    let now = at("2026-01-01T10:05:00Z");
    let first: Vec<_> = store
        .claim_due(now, 2, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.schedule_id)
        .collect();
    assert_eq!(first, ["a", "b"]);
    let second: Vec<_> = store
        .claim_due(now, 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.schedule_id)
        .collect();
    assert_eq!(second, ["c", "d"]);
}

async fn coalesces_missed_occurrences_after_downtime(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let claimed = store
        .claim_due(at("2026-01-01T10:05:30Z"), 100, LEASE)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "one late run, not one per missed occurrence"
    );
    assert_eq!(claimed[0].scheduled_time, at("2026-01-01T10:05:00Z"));
    let ledger = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    let statuses: Vec<_> = ledger
        .iter()
        .map(|r| (r.scheduled_time, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (at("2026-01-01T10:05:00Z"), RunStatus::Pending),
            (at("2026-01-01T10:00:00Z"), RunStatus::Coalesced)
        ]
    );
    assert!(
        ledger[1]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("5 missed occurrence"),
        "{:?}",
        ledger[1].detail
    );
    assert_eq!(
        store.get("a").await.unwrap().unwrap().next_run_at,
        Some(at("2026-01-01T10:06:00Z"))
    );
}

async fn without_coalescing_each_missed_occurrence_runs(store: Arc<dyn JobStore>) {
    let mut s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    s.policy = Policy {
        coalesce: false,
        misfire_grace_secs: None,
        ..Policy::default()
    };
    store.insert(&s).await.unwrap();
    let now = at("2026-01-01T10:02:30Z");
    let mut times = Vec::new();
    for _ in 0..5 {
        times.extend(
            store
                .claim_due(now, 100, LEASE)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.scheduled_time),
        );
    }
    assert_eq!(
        times,
        [
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T10:01:00Z"),
            at("2026-01-01T10:02:00Z")
        ]
    );
}

async fn occurrences_beyond_the_grace_are_skipped(store: Arc<dyn JobStore>) {
    let mut s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    s.policy = Policy {
        coalesce: true,
        misfire_grace_secs: Some(20),
        ..Policy::default()
    };
    store.insert(&s).await.unwrap();
    // 10:05 is the latest occurrence; at 10:05:30 it is 30 s late, beyond a 20 s grace.
    assert!(
        store
            .claim_due(at("2026-01-01T10:05:30Z"), 100, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let ledger = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(ledger[0].status, RunStatus::Skipped);
    assert!(
        ledger[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("beyond the misfire grace of 20s")
    );
    // Within the grace it runs.
    let claimed = store
        .claim_due(at("2026-01-01T10:06:10Z"), 100, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

async fn a_once_trigger_is_exhausted_after_its_fire(store: Arc<dyn JobStore>) {
    let mut s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    s.trigger = TriggerSpec::from(TriggerKind::Once {
        at: at("2026-01-01T10:00:00Z"),
    });
    store.insert(&s).await.unwrap();
    assert_eq!(
        store
            .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    let after = store.get("a").await.unwrap().unwrap();
    assert_eq!(after.next_run_at, None);
    assert!(store.list(&ListFilter::default()).await.unwrap().is_empty());
}

async fn paused_schedules_are_not_claimed_until_resumed(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let paused = store
        .set_paused("a", true, Some("maintenance window"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(paused.paused && paused.next_run_at.is_none());
    assert_eq!(paused.paused_reason.as_deref(), Some("maintenance window"));
    assert_eq!(store.get("a").await.unwrap(), Some(paused));
    assert_eq!(store.next_wakeup().await.unwrap(), None);
    assert!(
        store
            .claim_due(at("2026-01-02T00:00:00Z"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let resumed = store
        .set_paused(
            "a",
            false,
            Some("ignored"),
            Some(at("2026-01-02T00:01:00Z")),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.paused_reason, None, "resuming clears the reason");
    assert_eq!(
        store.next_wakeup().await.unwrap(),
        Some(at("2026-01-02T00:01:00Z"))
    );
    assert_eq!(
        store
            .claim_due(at("2026-01-02T00:01:00Z"), 10, LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.set_paused("missing", true, None, None).await.unwrap(),
        None
    );
}

async fn a_schedule_that_cannot_be_planned_is_parked_and_the_rest_still_fire(
    store: Arc<dyn JobStore>,
) {
    // Stored before its zone left the tz database, say: it passed validation then.
    let mut broken = schedule("broken", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    broken.trigger = TriggerSpec::from(TriggerKind::Cron {
        expression: "* * * * *".into(),
        timezone: "Atlantis/Capital".into(),
    });
    store.insert(&broken).await.unwrap();
    store
        .insert(&schedule("fine", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let claimed = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let ids: Vec<_> = claimed.iter().map(|r| r.schedule_id.as_str()).collect();
    assert_eq!(ids, ["fine"]);

    let parked = store.get("broken").await.unwrap().unwrap();
    assert!(parked.paused, "{parked:?}");
    assert_eq!(parked.next_run_at, None);
    let reason = parked.paused_reason.clone().expect("a reason");
    assert!(reason.contains("Atlantis/Capital"), "{reason}");
    let ledger = store.runs("broken", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, RunStatus::Failed);
    assert_eq!(ledger[0].detail.as_deref(), Some(reason.as_str()));

    // Parked schedules show among the inactive ones, and are never claimed again.
    let inactive = ListFilter {
        include_inactive: true,
        ..Default::default()
    };
    let listed = store.list(&inactive).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s.id == "broken" && s.paused_reason.is_some())
    );
    assert!(
        !store
            .list(&ListFilter::default())
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == "broken")
    );
    let later = store
        .claim_due(at("2026-01-01T10:05:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert!(later.iter().all(|r| r.schedule_id == "fine"), "{later:?}");
    assert_eq!(
        store
            .runs("broken", &RunFilter::latest(10))
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn delete_returns_the_schedule_and_keeps_its_history(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let deleted = store.delete("a").await.unwrap().unwrap();
    assert_eq!(deleted.id, "a");
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.delete("a").await.unwrap(), None);
    assert_eq!(
        store.runs("a", &RunFilter::latest(10)).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.next_wakeup().await.unwrap(),
        Some(at("2026-01-01T10:00:30Z")),
        "the pending run's lease"
    );
}

async fn outcomes_are_recorded_once(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let run = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    let outcome = |status, detail: &str| RunOutcome {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        status,
        detail: Some(detail.into()),
        attempts: 2,
        finished_at: at("2026-01-01T10:00:01Z"),
        may_release: false,
    };
    store
        .finish_runs(&[outcome(RunStatus::Dispatched, "ok")])
        .await
        .unwrap();
    // A late second outcome (say, from a replica whose lease had expired) changes nothing.
    store
        .finish_runs(&[outcome(RunStatus::Failed, "boom")])
        .await
        .unwrap();
    let ledger = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(
        (
            ledger[0].status,
            ledger[0].detail.as_deref(),
            ledger[0].attempts
        ),
        (RunStatus::Dispatched, Some("ok"), 2)
    );
    assert_eq!(ledger[0].finished_at, Some(at("2026-01-01T10:00:01Z")));
    assert_eq!(ledger[0].lease_until, None);
}

async fn expired_leases_are_reclaimed(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let now = at("2026-01-01T10:00:00Z");
    store.claim_due(now, 10, LEASE).await.unwrap();
    assert_eq!(
        store.next_wakeup().await.unwrap(),
        Some(now + LEASE),
        "lease expiry precedes 10:01"
    );
    assert!(
        store
            .reclaim_expired(now + TimeDelta::seconds(10), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + TimeDelta::seconds(31);
    let reclaimed = store.reclaim_expired(later, 10, LEASE).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].scheduled_time, now);
    assert_eq!(reclaimed[0].lease_until, Some(later + LEASE));
    assert!(
        store
            .reclaim_expired(later, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "taken once"
    );
}

async fn hand_started_runs_are_recorded_once(store: Arc<dyn JobStore>) {
    let now = at("2026-01-01T10:00:00Z");
    let run = RunRecord {
        schedule_id: "report".into(),
        scheduled_time: now,
        jobstore: store.jobstore(),
        owner: "system".into(),
        target: schedule("x", "u1", "g1", None).target,
        policy: Policy::default(),
        status: RunStatus::Pending,
        detail: None,
        attempts: 0,
        claimed_at: now,
        lease_until: Some(now + LEASE),
        finished_at: None,
    };
    assert!(store.insert_run(&run).await.unwrap());
    assert!(
        !store.insert_run(&run).await.unwrap(),
        "the same occurrence is refused"
    );
    assert_eq!(
        store.runs("report", &RunFilter::latest(10)).await.unwrap(),
        vec![run]
    );
    assert_eq!(store.next_wakeup().await.unwrap(), Some(now + LEASE));
}

async fn released_runs_are_reclaimed_at_once(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let now = at("2026-01-01T10:00:00Z");
    let claimed = store.claim_due(now, 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let soon = now + TimeDelta::seconds(2);
    assert!(
        store
            .reclaim_expired(soon, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    store
        .set_leases(
            &[("a".to_string(), now), ("unknown".to_string(), now)],
            soon,
        )
        .await
        .unwrap();
    let reclaimed = store.reclaim_expired(soon, 10, LEASE).await.unwrap();
    assert_eq!(reclaimed.len(), 1, "released runs are taken over at once");
    assert_eq!(reclaimed[0].lease_until, Some(soon + LEASE));
}

async fn renewed_leases_keep_runs_from_being_taken_over(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let now = at("2026-01-01T10:00:00Z");
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap().len(), 1);
    // Still dispatching when the first lease would end: renewed for another lease.
    let later = now + LEASE - TimeDelta::seconds(5);
    store
        .set_leases(&[("a".to_string(), now)], later + LEASE)
        .await
        .unwrap();
    let past_first_lease = now + LEASE + TimeDelta::seconds(1);
    assert!(
        store
            .reclaim_expired(past_first_lease, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a renewed lease is not taken over"
    );
    assert_eq!(store.next_wakeup().await.unwrap(), Some(later + LEASE));
    let reclaimed = store
        .reclaim_expired(later + LEASE, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1, "taken over once the renewed lease ends");
    // A finished run is not pending any more: a late renewal leaves it alone.
    store
        .finish_runs(&[RunOutcome {
            schedule_id: "a".into(),
            scheduled_time: now,
            status: RunStatus::Dispatched,
            detail: None,
            attempts: 1,
            finished_at: later,
            may_release: false,
        }])
        .await
        .unwrap();
    store
        .set_leases(&[("a".to_string(), now)], later + LEASE * 3)
        .await
        .unwrap();
    let run = store
        .runs("a", &RunFilter::latest(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(run.status, RunStatus::Dispatched);
    assert_eq!(run.lease_until, None);
}

async fn runs_are_listed_newest_first_up_to_the_limit(store: Arc<dyn JobStore>) {
    let mut s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    s.policy.coalesce = false;
    store.insert(&s).await.unwrap();
    for _ in 0..4 {
        store
            .claim_due(at("2026-01-01T10:03:00Z"), 10, LEASE)
            .await
            .unwrap();
    }
    let times: Vec<_> = store
        .runs("a", &RunFilter::latest(3))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.scheduled_time)
        .collect();
    assert_eq!(
        times,
        [
            at("2026-01-01T10:03:00Z"),
            at("2026-01-01T10:02:00Z"),
            at("2026-01-01T10:01:00Z")
        ]
    );
}

async fn concurrent_claims_take_each_occurrence_once(store: Arc<dyn JobStore>) {
    for i in 0..60 {
        store
            .insert(&schedule(
                &format!("s{i:02}"),
                "u1",
                "g1",
                Some("2026-01-01T10:00:00Z"),
            ))
            .await
            .unwrap();
    }
    let now = at("2026-01-01T10:00:00Z");
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(now, 7, LEASE).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|r| r.schedule_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (60, 60),
        "every occurrence claimed exactly once"
    );
}

async fn memory_store() -> Arc<dyn JobStore> {
    Arc::new(MemoryStore::new(StoreName::Execution))
}

async fn sqlite_store() -> (Arc<dyn JobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url =
        DatabaseUrl::parse(&format!("sqlite://{}/nested/s.db", dir.path().display())).unwrap();
    let db = jobstore::connect(&url, 4).await.unwrap();
    (jobstore::persisted(&db, StoreName::Execution), dir)
}

async fn postgres_store() -> Option<(Arc<dyn JobStore>, PgSchema)> {
    let schema = PgSchema::create("jobstore").await?;
    let url = DatabaseUrl::parse(&schema.url()).unwrap();
    let db = jobstore::connect(&url, 8).await.unwrap();
    Some((jobstore::persisted(&db, StoreName::Execution), schema))
}

async fn sub_millisecond_instants_are_claimed_and_recorded_at_milliseconds(
    store: Arc<dyn JobStore>,
) {
    let exact = at("2026-01-01T10:00:00.123456789Z");
    let mut s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00.123456789Z"));
    s.trigger = TriggerSpec::from(TriggerKind::Once { at: exact });
    store.insert(&s).await.unwrap();
    let runs = store
        .claim_due(at("2026-01-01T10:00:01Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "the claimed run is returned for dispatch");
    assert_eq!(runs[0].scheduled_time, at("2026-01-01T10:00:00.123Z"));
    assert_eq!(store.get("a").await.unwrap().unwrap().next_run_at, None);
    let outcome = RunOutcome {
        schedule_id: "a".into(),
        scheduled_time: runs[0].scheduled_time,
        status: RunStatus::Dispatched,
        detail: None,
        attempts: 1,
        finished_at: at("2026-01-01T10:00:01Z"),
        may_release: false,
    };
    store.finish_runs(&[outcome]).await.unwrap();
    let ledger = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, RunStatus::Dispatched);
    assert_eq!(ledger[0].idempotency_key(), runs[0].idempotency_key());
}

fn http_schedule(id: &str, overlap: Overlap, next: &str) -> Schedule {
    let mut s = schedule(id, "u1", "g1", Some(next));
    s.target = Target::Http(HttpTarget {
        endpoint: Some("backend".into()),
        url: None,
        method: "POST".into(),
        path: "/jobs".into(),
        headers: Default::default(),
        body: serde_json::Value::Null,
        expected_status: "2xx".into(),
    });
    s.policy.overlap = overlap;
    s
}

/// The statuses of a schedule's ledger rows, oldest first.
async fn statuses(store: &Arc<dyn JobStore>, id: &str) -> Vec<RunStatus> {
    let mut runs = store.runs(id, &RunFilter::latest(100)).await.unwrap();
    runs.reverse();
    runs.into_iter().map(|r| r.status).collect()
}

fn ended(run: &RunRecord) -> RunOutcome {
    RunOutcome {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        status: RunStatus::Dispatched,
        detail: None,
        attempts: 1,
        finished_at: run.scheduled_time,
        may_release: true,
    }
}

async fn overlap_skips_buffers_or_allows_by_policy(store: Arc<dyn JobStore>) {
    use RunStatus::*;
    for (id, overlap) in [
        ("skip", Overlap::Skip),
        ("buffer", Overlap::BufferOne),
        ("allow", Overlap::AllowAll),
    ] {
        store
            .insert(&http_schedule(id, overlap, "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
    }
    let first = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    // Two more occurrences fall due while every first run is still in progress.
    let second = store
        .claim_due(at("2026-01-01T10:01:00Z"), 10, LEASE)
        .await
        .unwrap();
    let third = store
        .claim_due(at("2026-01-01T10:02:00Z"), 10, LEASE)
        .await
        .unwrap();
    let ids = |runs: &[RunRecord]| {
        let mut ids: Vec<_> = runs.iter().map(|r| r.schedule_id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&second), ["allow"], "only allow_all starts another run");
    assert_eq!(ids(&third), ["allow"]);
    assert_eq!(statuses(&store, "skip").await, [Pending, Skipped, Skipped]);
    assert_eq!(
        statuses(&store, "buffer").await,
        [Pending, Buffered, Skipped],
        "buffer_one keeps one waiting and skips the rest"
    );
    assert_eq!(statuses(&store, "allow").await, [Pending, Pending, Pending]);
    let skipped = store
        .runs("skip", &RunFilter::latest(1))
        .await
        .unwrap()
        .remove(0);
    let reason = skipped.detail.unwrap();
    assert!(reason.starts_with("overlap:"), "{reason}");
    assert!(skipped.finished_at.is_some());

    // The buffered run starts when the running one ends: pending, its lease already expired.
    let running = first.iter().find(|r| r.schedule_id == "buffer").unwrap();
    store.finish_runs(&[ended(running)]).await.unwrap();
    assert_eq!(
        statuses(&store, "buffer").await,
        [Dispatched, Pending, Skipped]
    );
    let promoted = store
        .reclaim_expired(Utc::now() + TimeDelta::seconds(1), 10, LEASE)
        .await
        .unwrap();
    let promoted: Vec<_> = promoted
        .iter()
        .filter(|r| r.schedule_id == "buffer")
        .collect();
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0].scheduled_time, at("2026-01-01T10:01:00Z"));
    // With nothing in progress any more, the next occurrence runs again.
    store.finish_runs(&[ended(promoted[0])]).await.unwrap();
    let running = first.iter().find(|r| r.schedule_id == "skip").unwrap();
    store.finish_runs(&[ended(running)]).await.unwrap();
    let fourth = store
        .claim_due(at("2026-01-01T10:03:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&fourth), ["allow", "buffer", "skip"]);
}

async fn an_occurrence_meeting_only_a_run_taken_over_waits_for_it(store: Arc<dyn JobStore>) {
    use RunStatus::*;
    store
        .insert(&http_schedule("t", Overlap::Skip, "2026-01-01T10:00:00Z"))
        .await
        .unwrap();
    let first = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // Its holder died: another engine takes it over once its lease has run out.
    let expired = first[0].lease_until.unwrap();
    let taken = store.reclaim_expired(expired, 10, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1);
    // The next occurrence meets only that redelivery: it waits instead of being skipped.
    store
        .claim_due(at("2026-01-01T10:01:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(statuses(&store, "t").await, [Pending, Buffered]);
    // When the redelivery ends, the waiting occurrence goes, as a first delivery of its own.
    store.finish_runs(&[ended(&taken[0])]).await.unwrap();
    assert_eq!(statuses(&store, "t").await, [Dispatched, Pending]);
    let promoted = store
        .reclaim_expired(Utc::now() + TimeDelta::seconds(1), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0].scheduled_time, at("2026-01-01T10:01:00Z"));
    // Not a redelivery: an occurrence due while it runs is skipped, as the policy says.
    store
        .claim_due(at("2026-01-01T10:02:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(statuses(&store, "t").await, [Dispatched, Pending, Skipped]);
}

async fn graph_executions_are_never_skipped_for_overlap(store: Arc<dyn JobStore>) {
    // AutoGPT hands a graph execution over and forgets it: no run of it lasts.
    store
        .insert(&schedule("g", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    for minute in ["10:00", "10:01"] {
        let claimed = store
            .claim_due(at(&format!("2026-01-01T{minute}:00Z")), 10, LEASE)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{minute}");
    }
    assert_eq!(
        statuses(&store, "g").await,
        [RunStatus::Pending, RunStatus::Pending]
    );
}

async fn replace_changes_in_place_and_keeps_the_ledger(store: Arc<dyn JobStore>) {
    let original = http_schedule("r", Overlap::Skip, "2026-01-01T10:00:00Z");
    store.insert(&original).await.unwrap();
    store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let mut changed = original.clone();
    changed.name = "renamed".into();
    changed.tags = vec!["nightly".into()];
    changed.policy.jitter_secs = 5;
    changed.next_run_at = Some(at("2026-02-01T00:00:00Z"));
    changed.created_at = at("2030-01-01T00:00:00Z");
    let stored = store.replace(&changed).await.unwrap().unwrap();
    assert_eq!(stored.created_at, original.created_at, "creation time kept");
    assert_eq!(
        (
            stored.name.as_str(),
            stored.tags.clone(),
            stored.policy.jitter_secs
        ),
        ("renamed", vec!["nightly".to_string()], 5)
    );
    assert_eq!(store.get("r").await.unwrap(), Some(stored));
    assert_eq!(statuses(&store, "r").await, [RunStatus::Pending]);
    // The due index follows the new next run.
    assert!(
        store
            .claim_due(at("2026-01-31T00:00:00Z"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .next_wakeup()
            .await
            .unwrap()
            .map(|w| w.min(at("2026-02-01T00:00:00Z"))),
        Some(at("2026-01-01T10:00:30Z")),
        "the run in flight's lease comes first"
    );
    let mut missing = changed.clone();
    missing.id = "nope".into();
    assert_eq!(store.replace(&missing).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 1);
}

async fn listing_pages_by_id_with_filters(store: Arc<dyn JobStore>) {
    for (id, tags, paused) in [
        ("c", vec!["a"], false),
        ("a", vec!["a", "b"], true),
        ("d", vec![], false),
        ("b", vec!["b"], false),
    ] {
        let mut s = http_schedule(id, Overlap::Skip, "2026-01-01T10:00:00Z");
        s.tags = tags.into_iter().map(String::from).collect();
        s.paused = paused;
        store.insert(&s).await.unwrap();
    }
    store
        .insert(&schedule("e", "u2", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let page = |after: Option<&str>, limit| ListFilter {
        include_inactive: true,
        page: Some(Page {
            after_id: after.map(String::from),
            limit,
        }),
        ..ListFilter::default()
    };
    let ids = |found: Vec<Schedule>| found.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list(&page(None, 2)).await.unwrap()), ["a", "b"]);
    assert_eq!(
        ids(store.list(&page(Some("b"), 2)).await.unwrap()),
        ["c", "d"]
    );
    assert_eq!(ids(store.list(&page(Some("d"), 2)).await.unwrap()), ["e"]);
    assert!(store.list(&page(Some("e"), 2)).await.unwrap().is_empty());
    let filtered = |f: ListFilter| {
        let store = store.clone();
        async move { ids(store.list(&f).await.unwrap()) }
    };
    assert_eq!(
        filtered(ListFilter {
            tag: Some("b".into()),
            ..page(None, 10)
        })
        .await,
        ["a", "b"]
    );
    assert_eq!(
        filtered(ListFilter {
            target_type: Some("graph_execution".into()),
            ..page(None, 10)
        })
        .await,
        ["e"]
    );
    assert_eq!(
        filtered(ListFilter {
            paused: Some(true),
            ..page(None, 10)
        })
        .await,
        ["a"]
    );
    assert_eq!(
        filtered(ListFilter {
            owner: Some("u1".into()),
            paused: Some(false),
            target_type: Some("http".into()),
            ..page(None, 10)
        })
        .await,
        ["b", "c", "d"]
    );
}

async fn runs_are_filtered_by_status_and_time(store: Arc<dyn JobStore>) {
    let mut s = http_schedule("f", Overlap::AllowAll, "2026-01-01T10:00:00Z");
    s.policy.coalesce = false;
    store.insert(&s).await.unwrap();
    let mut claimed = Vec::new();
    for minute in 0..4 {
        let now = at("2026-01-01T10:00:00Z") + TimeDelta::minutes(minute);
        claimed.extend(store.claim_due(now, 10, LEASE).await.unwrap());
    }
    store
        .finish_runs(&[ended(&claimed[0]), ended(&claimed[2])])
        .await
        .unwrap();
    let times = |runs: Vec<RunRecord>| {
        runs.into_iter()
            .map(|r| r.scheduled_time.format("%M").to_string())
            .collect::<Vec<_>>()
    };
    let filter = |status, since: Option<&str>, before: Option<&str>, limit| RunFilter {
        status,
        since: since.map(at),
        before: before.map(at),
        limit,
    };
    let runs = |f: RunFilter| {
        let store = store.clone();
        async move { times(store.runs("f", &f).await.unwrap()) }
    };
    assert_eq!(
        runs(filter(None, None, None, 10)).await,
        ["03", "02", "01", "00"]
    );
    assert_eq!(
        runs(filter(Some(RunStatus::Dispatched), None, None, 10)).await,
        ["02", "00"]
    );
    assert_eq!(
        runs(filter(None, Some("2026-01-01T10:01:00Z"), None, 10)).await,
        ["03", "02", "01"]
    );
    assert_eq!(
        runs(filter(None, None, Some("2026-01-01T10:02:00Z"), 1)).await,
        ["01"],
        "the next page starts before the last row seen"
    );
}

async fn runs_started_by_hand_follow_the_overlap_policy(store: Arc<dyn JobStore>) {
    let s = http_schedule("h", Overlap::BufferOne, "2026-01-01T10:00:00Z");
    store.insert(&s).await.unwrap();
    let by_hand = |minute: i64| RunRecord {
        schedule_id: "h".into(),
        scheduled_time: at("2026-01-01T09:00:00Z") + TimeDelta::minutes(minute),
        jobstore: store.jobstore(),
        owner: "u1".into(),
        target: s.target.clone(),
        policy: s.policy,
        status: RunStatus::Pending,
        detail: None,
        attempts: 0,
        claimed_at: at("2026-01-01T09:30:00Z"),
        lease_until: Some(at("2026-01-01T09:30:00Z")),
        finished_at: None,
    };
    let first = store
        .start_run(&by_hand(0), Overlap::BufferOne)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, RunStatus::Pending);
    assert_eq!(
        store
            .start_run(&by_hand(0), Overlap::BufferOne)
            .await
            .unwrap(),
        None,
        "the same occurrence is written once"
    );
    let second = store
        .start_run(&by_hand(1), Overlap::BufferOne)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.status, RunStatus::Buffered);
    let third = store
        .start_run(&by_hand(2), Overlap::BufferOne)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.status, RunStatus::Skipped);
    assert!(third.detail.unwrap().starts_with("overlap:"));
    // A hand-started pending run is taken over by an engine at once.
    let taken = store
        .reclaim_expired(at("2026-01-01T09:30:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].scheduled_time, first.scheduled_time);
}

async fn queued_runs_start_one_after_another(store: Arc<dyn JobStore>) {
    let s = http_schedule("q", Overlap::Skip, "2030-01-01T00:00:00Z");
    store.insert(&s).await.unwrap();
    let queued = |minute: i64| RunRecord {
        schedule_id: "q".into(),
        scheduled_time: at("2026-01-01T09:00:00Z") + TimeDelta::minutes(minute),
        jobstore: store.jobstore(),
        owner: "u1".into(),
        target: s.target.clone(),
        policy: s.policy,
        status: RunStatus::Buffered,
        detail: None,
        attempts: 0,
        claimed_at: at("2026-01-01T09:30:00Z"),
        lease_until: None,
        finished_at: None,
    };
    let now = at("2026-01-01T09:30:00Z");
    let runs: Vec<_> = (0..3).map(queued).collect();
    assert_eq!(store.queue_runs(&runs, now).await.unwrap(), 3);
    assert_eq!(
        store.queue_runs(&runs, now).await.unwrap(),
        0,
        "queueing again writes nothing"
    );
    use RunStatus::*;
    assert_eq!(statuses(&store, "q").await, [Pending, Buffered, Buffered]);
    for (step, expected) in runs.iter().enumerate() {
        let taken = store
            .reclaim_expired(Utc::now() + TimeDelta::seconds(1), 10, LEASE)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "step {step}: one at a time");
        assert_eq!(
            taken[0].scheduled_time, expected.scheduled_time,
            "oldest first"
        );
        store.finish_runs(&[ended(&taken[0])]).await.unwrap();
    }
    assert_eq!(
        statuses(&store, "q").await,
        [Dispatched, Dispatched, Dispatched]
    );
}

async fn retention_deletes_old_and_excess_finished_runs_only(store: Arc<dyn JobStore>) {
    let s = http_schedule("kept", Overlap::AllowAll, "2030-01-01T00:00:00Z");
    store.insert(&s).await.unwrap();
    let gone = http_schedule("gone", Overlap::AllowAll, "2030-01-01T00:00:00Z");
    store.insert(&gone).await.unwrap();
    let row = |id: &str, minute: i64, status: RunStatus| {
        let at = at("2026-01-01T00:00:00Z") + TimeDelta::minutes(minute);
        let open = matches!(status, RunStatus::Pending | RunStatus::Buffered);
        RunRecord {
            schedule_id: id.into(),
            scheduled_time: at,
            jobstore: store.jobstore(),
            owner: "u1".into(),
            target: s.target.clone(),
            policy: s.policy,
            status,
            detail: None,
            attempts: 1,
            claimed_at: at,
            lease_until: open.then_some(at),
            finished_at: (!open).then_some(at),
        }
    };
    // Ten finished runs a minute apart, and an old one still pending.
    for minute in 0..10 {
        assert!(
            store
                .insert_run(&row("kept", minute, RunStatus::Dispatched))
                .await
                .unwrap()
        );
        assert!(
            store
                .insert_run(&row("gone", minute, RunStatus::Failed))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .insert_run(&row("kept", -100, RunStatus::Pending))
            .await
            .unwrap()
    );
    store.delete("gone").await.unwrap();

    // Age: rows finished before 00:03, in batches of at most 2.
    let before = at("2026-01-01T00:03:00Z");
    let mut deleted = 0;
    loop {
        let batch = store.prune_finished(before, 2).await.unwrap();
        assert!(batch <= 2, "a batch is small: {batch}");
        if batch == 0 {
            break;
        }
        deleted += batch;
    }
    assert_eq!(deleted, 6, "three of each schedule");
    let left = |id: &'static str| {
        let store = store.clone();
        async move { store.runs(id, &RunFilter::latest(100)).await.unwrap() }
    };
    assert_eq!(
        left("kept").await.len(),
        8,
        "7 finished and the pending one"
    );
    assert!(
        left("kept")
            .await
            .iter()
            .any(|r| r.status == RunStatus::Pending),
        "a run in progress is never pruned"
    );

    // Count: only live schedules are trimmed; a deleted one's runs wait to age out.
    assert_eq!(store.over_keep(3, 10).await.unwrap(), ["kept"]);
    let mut trimmed = 0;
    loop {
        let batch = store.trim_runs("kept", 3, 2).await.unwrap();
        if batch == 0 {
            break;
        }
        trimmed += batch;
    }
    assert_eq!(trimmed, 4, "the newest 3 are kept, and the pending one");
    let kept = left("kept").await;
    let minutes: Vec<_> = kept
        .iter()
        .filter(|r| r.status != RunStatus::Pending)
        .map(|r| r.scheduled_time.format("%M").to_string())
        .collect();
    assert_eq!(minutes, ["09", "08", "07"]);
    assert!(store.over_keep(3, 10).await.unwrap().is_empty());
    assert_eq!(left("gone").await.len(), 7);
}

/// Claiming ahead takes what no run in progress can stop, and only that; pausing or deleting a
/// schedule takes back what was claimed ahead of it and is not yet due.
async fn claims_ahead_only_what_overlap_cannot_stop(store: Arc<dyn JobStore>) {
    use chrono::{DurationRound, SubsecRound};
    // Instants an hour ahead of the real clock (pausing takes back runs not yet due by it), ten
    // seconds and some milliseconds past a minute: the every-minute triggers' next fires, on the
    // following minute, stay beyond every instant this test looks at, whatever the clock says.
    let now = Utc::now().trunc_subsecs(3);
    let base = now.duration_trunc(TimeDelta::minutes(1)).unwrap()
        + TimeDelta::hours(1)
        + TimeDelta::milliseconds(10_000 + i64::from(now.timestamp_subsec_millis()));
    let ahead = TimeDelta::seconds(5);
    let in_secs = |secs: i64| (base + TimeDelta::seconds(secs)).to_rfc3339();
    let mut graph = schedule("graph", "u1", "g1", Some(&in_secs(2)));
    graph.trigger = TriggerSpec::from(TriggerKind::Interval {
        every_secs: 3600,
        anchor: Some(base + TimeDelta::seconds(2)),
    });
    let rows = [
        graph,
        http_schedule("skip", Overlap::Skip, &in_secs(2)),
        http_schedule("allow", Overlap::AllowAll, &in_secs(2)),
        schedule("later", "u1", "g1", Some(&in_secs(7))),
        schedule("changed", "u1", "g1", Some(&in_secs(3))),
    ];
    for row in &rows {
        store.insert(row).await.unwrap();
    }
    // A replacement that makes overlap apply keeps it from being claimed ahead.
    let changed = http_schedule("changed", Overlap::BufferOne, &in_secs(3));
    store.replace(&changed).await.unwrap().unwrap();

    // "graph" and "allow" may go ahead (5 s before their due instant); "skip" only once due.
    assert_eq!(
        store.wakeup(base, ahead).await.unwrap(),
        Some(base - TimeDelta::seconds(3))
    );
    let claimed = store.claim(base, ahead, 100, LEASE).await.unwrap();
    let mut ids: Vec<_> = claimed.iter().map(|r| r.schedule_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["allow", "graph"]);
    for run in &claimed {
        assert_eq!(run.scheduled_time, base + TimeDelta::seconds(2));
        assert_eq!(run.claimed_at, base, "claimed ahead of its time");
    }
    assert_eq!(
        store.get("graph").await.unwrap().unwrap().next_run_at,
        Some(base + TimeDelta::seconds(3602))
    );
    // Next: "skip" once due, before "later" comes within the horizon.
    assert_eq!(
        store.wakeup(base, ahead).await.unwrap(),
        Some(base + TimeDelta::seconds(2))
    );
    assert!(
        store
            .claim(base, ahead, 100, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let due = base + TimeDelta::seconds(3);
    let mut ids: Vec<_> = store
        .claim(due, ahead, 100, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.schedule_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["changed", "later", "skip"]);

    let keys: Vec<_> = claimed
        .iter()
        .map(|r| (r.schedule_id.clone(), r.scheduled_time))
        .collect();
    assert_eq!(store.still_pending(&keys).await.unwrap().len(), 2);
    store.set_paused("graph", true, None, None).await.unwrap();
    store.delete("allow").await.unwrap();
    assert_eq!(store.still_pending(&keys).await.unwrap(), Vec::new());
    assert_eq!(statuses(&store, "graph").await, Vec::new());
    assert_eq!(statuses(&store, "allow").await, Vec::new());

    // A run that is due is not taken back by a pause: it may already be on its way.
    let mut now_due = schedule("now", "u1", "g1", None);
    now_due.next_run_at = Some(Utc::now().trunc_subsecs(3) - TimeDelta::seconds(1));
    store.insert(&now_due).await.unwrap();
    let run = store
        .claim_due(Utc::now(), 100, LEASE)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.schedule_id == "now")
        .expect("the due schedule is claimed");
    store.set_paused("now", true, None, None).await.unwrap();
    let key = (run.schedule_id.clone(), run.scheduled_time);
    assert_eq!(
        store
            .still_pending(std::slice::from_ref(&key))
            .await
            .unwrap(),
        vec![key]
    );
}

async fn a_pending_run_can_be_annotated_and_an_ended_one_cannot(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let runs = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let run = &runs[0];
    store
        .annotate(&run.schedule_id, run.scheduled_time, "job j1 queued")
        .await
        .unwrap();
    let listed = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(listed[0].detail.as_deref(), Some("job j1 queued"));
    store.finish_runs(&[ended(run)]).await.unwrap();
    store
        .annotate(&run.schedule_id, run.scheduled_time, "too late")
        .await
        .unwrap();
    let listed = store.runs("a", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(listed[0].status, RunStatus::Dispatched);
    assert_eq!(listed[0].detail, None, "the outcome's detail stays");
}

/// A watch of `user` in `workflow` polling a URL every minute from 10:00, and its schedule.
fn watch(id: &str, user: &str, workflow: Option<&str>, max_attempts: u32) -> (Watch, Schedule) {
    let check_config = json!({"url": "http://deploys.test/status"});
    let check = Check::parse("poll_url", &check_config).unwrap();
    let base = at("2026-01-01T10:00:00Z");
    let watch = Watch {
        id: id.into(),
        user_id: user.into(),
        conversation_id: Some("conv-1".into()),
        platform: Some("slack".into()),
        platform_channel_id: Some("C1".into()),
        platform_thread_id: None,
        workflow_id: workflow.map(str::to_string),
        job_type: "poll_url".into(),
        check_config,
        interval_seconds: 60,
        max_attempts,
        attempts: 0,
        on_success_message: "deployed: {result}".into(),
        on_failure_message: None,
        on_complete: OnComplete::Notify,
        status: WatchStatus::Active,
        next_run_at: Some(base),
        created_at: base - TimeDelta::minutes(1),
        completed_at: None,
        last_result: None,
        message: None,
        delivery: None,
    };
    let mut schedule = schedule(id, user, "-", Some("2026-01-01T10:00:00Z"));
    schedule.trigger = TriggerSpec::from(TriggerKind::Interval {
        every_secs: 60,
        anchor: Some(base),
    });
    schedule.target = Target::Watch(WatchTarget { check });
    (watch, schedule)
}

fn checked(run: &RunRecord, success: bool, value: Option<serde_json::Value>) -> CheckResult {
    CheckResult {
        attempt: 0,
        scheduled_time: run.scheduled_time,
        checked_at: run.scheduled_time,
        success,
        value,
        error: (!success).then(|| "status 503".to_string()),
    }
}

/// Claims the one due attempt of watch `id` at `now`.
async fn attempt_of(store: &Arc<dyn JobStore>, id: &str, now: &str) -> RunRecord {
    let runs = store.claim_due(at(now), 100, LEASE).await.unwrap();
    runs.into_iter()
        .find(|run| run.schedule_id == id)
        .expect("the watch's attempt is due")
}

/// Attempts are counted once each, a success completes the watch with its message and a
/// pending delivery, and the watch's schedule goes with its end.
async fn watch_attempts_are_counted_once_and_a_success_completes(store: Arc<dyn JobStore>) {
    let watches = store
        .clone()
        .watch_store()
        .expect("execution keeps watches");
    let (w, s) = watch("w1", "u1", Some("wf"), 5);
    watches.add_watch(&w, &s).await.unwrap();
    assert!(matches!(
        watches.add_watch(&w, &s).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(watches.watch("w1").await.unwrap(), Some(w.clone()));

    let run = attempt_of(&store, "w1", "2026-01-01T10:00:00Z").await;
    let outcome = ended(&run);
    let first = watches
        .record_attempt(&outcome, &checked(&run, false, None))
        .await
        .unwrap()
        .expect("the attempt is recorded");
    assert_eq!((first.attempts, first.status), (1, WatchStatus::Active));
    assert_eq!(first.last_result.as_ref().unwrap().attempt, 1);
    assert_eq!(first.next_run_at, Some(at("2026-01-01T10:01:00Z")));
    assert_eq!(
        watches
            .record_attempt(&outcome, &checked(&run, false, None))
            .await
            .unwrap(),
        None,
        "a second record of the same attempt changes nothing"
    );

    let run = attempt_of(&store, "w1", "2026-01-01T10:01:00Z").await;
    let done = watches
        .record_attempt(&ended(&run), &checked(&run, true, Some(json!("v42"))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, WatchStatus::Completed);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.message.as_deref(), Some("deployed: v42"));
    assert!(done.completed_at.is_some());
    assert_eq!(done.next_run_at, None);
    let delivery = done.delivery.as_ref().unwrap();
    assert_eq!(delivery.state, DeliveryState::Pending);
    assert_eq!(store.get("w1").await.unwrap(), None, "its schedule is gone");
    assert_eq!(
        statuses(&store, "w1").await,
        [RunStatus::Dispatched, RunStatus::Dispatched],
        "each attempt is an occurrence in the ledger"
    );
    assert_eq!(watches.watch("w1").await.unwrap(), Some(done));
}

/// A batch records each attempt once, several of one watch in order, and skips what was
/// recorded before.
async fn a_batch_of_attempts_is_recorded_in_one_go(store: Arc<dyn JobStore>) {
    let watches = store.clone().watch_store().unwrap();
    for id in ["wa", "wb"] {
        let (w, s) = watch(id, "u1", None, 5);
        watches.add_watch(&w, &s).await.unwrap();
    }
    let claimed = store
        .claim_due(at("2026-01-01T10:00:00Z"), 100, LEASE)
        .await
        .unwrap();
    let run = |id: &str| {
        claimed
            .iter()
            .find(|r| r.schedule_id == id)
            .unwrap()
            .clone()
    };
    let (a, b) = (run("wa"), run("wb"));
    let first = watches
        .record_attempt(&ended(&a), &checked(&a, false, None))
        .await
        .unwrap();
    assert_eq!(first.unwrap().attempts, 1);
    let batch = [
        (ended(&a), checked(&a, true, Some(json!("late")))),
        (ended(&b), checked(&b, false, None)),
        (ended(&b), checked(&b, false, None)),
    ];
    let recorded = watches.record_attempts(&batch).await.unwrap();
    assert_eq!(recorded.len(), 1, "wa's attempt was recorded before");
    assert_eq!((recorded[0].id.as_str(), recorded[0].attempts), ("wb", 1));
    let a_now = watches.watch("wa").await.unwrap().unwrap();
    assert_eq!((a_now.attempts, a_now.status), (1, WatchStatus::Active));
}

/// The last attempt that does not succeed fails the watch with a message naming the check.
async fn a_watch_out_of_attempts_fails(store: Arc<dyn JobStore>) {
    let watches = store.clone().watch_store().unwrap();
    let (w, s) = watch("w2", "u1", None, 1);
    watches.add_watch(&w, &s).await.unwrap();
    let run = attempt_of(&store, "w2", "2026-01-01T10:00:00Z").await;
    let failed = watches
        .record_attempt(&ended(&run), &checked(&run, false, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, WatchStatus::Failed);
    let message = failed.message.unwrap();
    assert!(
        message.contains("poll_url GET http://deploys.test/status") && message.contains("503"),
        "{message}"
    );
    assert_eq!(store.get("w2").await.unwrap(), None);
}

/// Cancelling ends an active watch without a delivery and leaves an ended one as it is; an
/// attempt in flight when the watch was cancelled is recorded in the ledger, not counted.
async fn watches_are_cancelled_one_by_one_or_by_workflow(store: Arc<dyn JobStore>) {
    let watches = store.clone().watch_store().unwrap();
    for (id, user, workflow) in [
        ("w3", "u1", None),
        ("w4", "u1", Some("wf")),
        ("w5", "u2", Some("wf")),
        ("w6", "u2", Some("other")),
    ] {
        let (w, s) = watch(id, user, workflow, 5);
        watches.add_watch(&w, &s).await.unwrap();
    }
    let now = at("2026-01-01T10:00:00Z");
    let run = attempt_of(&store, "w3", "2026-01-01T10:00:00Z").await;
    let cancelled = watches.cancel_watch("w3", now).await.unwrap().unwrap();
    assert_eq!(cancelled.status, WatchStatus::Cancelled);
    assert_eq!((cancelled.delivery, cancelled.next_run_at), (None, None));
    assert_eq!(store.get("w3").await.unwrap(), None);
    let later = now + TimeDelta::minutes(5);
    let again = watches.cancel_watch("w3", later).await.unwrap().unwrap();
    assert_eq!(
        again.completed_at,
        Some(now),
        "an ended watch is left as it is"
    );
    assert_eq!(watches.cancel_watch("nope", now).await.unwrap(), None);
    let in_flight = watches
        .record_attempt(&ended(&run), &checked(&run, true, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (in_flight.status, in_flight.attempts),
        (WatchStatus::Cancelled, 0)
    );
    assert_eq!(statuses(&store, "w3").await, [RunStatus::Dispatched]);

    assert_eq!(watches.cancel_workflow("wf", now).await.unwrap(), 2);
    assert_eq!(watches.cancel_workflow("wf", now).await.unwrap(), 0);
    let listed = |filter: WatchFilter| {
        let watches = watches.clone();
        async move {
            let found = watches.watches(&filter).await.unwrap();
            found.into_iter().map(|w| w.id).collect::<Vec<_>>()
        }
    };
    let all = WatchFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(listed(all.clone()).await, ["w6", "w5", "w4", "w3"]);
    let active = WatchFilter {
        status: Some(WatchStatus::Active),
        ..all.clone()
    };
    assert_eq!(listed(active).await, ["w6"]);
    let of_u1 = WatchFilter {
        user_id: Some("u1".into()),
        ..all.clone()
    };
    assert_eq!(listed(of_u1).await, ["w4", "w3"]);
    let of_wf = WatchFilter {
        workflow_id: Some("wf".into()),
        status: Some(WatchStatus::Cancelled),
        ..all.clone()
    };
    assert_eq!(listed(of_wf).await, ["w5", "w4"]);
    let page = WatchFilter {
        before_id: Some("w5".into()),
        limit: 1,
        ..all
    };
    assert_eq!(listed(page).await, ["w4"]);
}

/// A completion is leased to one sender at a time, retried when a send failed, and never
/// sent again once delivered.
async fn completions_are_claimed_retried_and_delivered_once(store: Arc<dyn JobStore>) {
    let watches = store.clone().watch_store().unwrap();
    let (w, s) = watch("w7", "u1", None, 5);
    watches.add_watch(&w, &s).await.unwrap();
    assert_eq!(watches.next_delivery().await.unwrap(), None);
    let run = attempt_of(&store, "w7", "2026-01-01T10:00:00Z").await;
    let done = watches
        .record_attempt(&ended(&run), &checked(&run, true, Some(json!(200))))
        .await
        .unwrap()
        .unwrap();
    let due = done.delivery.as_ref().unwrap().next_at.unwrap();
    assert_eq!(watches.next_delivery().await.unwrap(), Some(due));
    let now = due + TimeDelta::seconds(1);
    let claimed = watches.claim_deliveries(now, 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.as_deref(), Some("deployed: 200"));
    assert!(
        watches
            .claim_deliveries(now, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "leased to its sender"
    );
    assert_eq!(watches.next_delivery().await.unwrap(), Some(now + LEASE));

    let retry_at = now + TimeDelta::seconds(2);
    let failed = Sent::Failed {
        error: "redis: connection refused".into(),
        retry_at,
    };
    let pending = watches
        .record_delivery("w7", &failed)
        .await
        .unwrap()
        .unwrap();
    let delivery = pending.delivery.unwrap();
    assert_eq!(
        (delivery.state, delivery.attempts),
        (DeliveryState::Pending, 1)
    );
    assert_eq!(
        delivery.detail.as_deref(),
        Some("redis: connection refused")
    );
    assert_eq!(watches.next_delivery().await.unwrap(), Some(retry_at));
    assert!(
        watches
            .claim_deliveries(now, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        watches
            .claim_deliveries(retry_at, 10, LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    let delivered = Sent::Delivered {
        via: OnComplete::Notify,
        detail: None,
        at: retry_at,
    };
    let stored = watches
        .record_delivery("w7", &delivered)
        .await
        .unwrap()
        .unwrap();
    let delivery = stored.delivery.unwrap();
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(
        (delivery.attempts, delivery.delivered_at),
        (2, Some(retry_at))
    );
    assert_eq!(watches.next_delivery().await.unwrap(), None);
    let far = retry_at + TimeDelta::hours(1);
    assert!(
        watches
            .claim_deliveries(far, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // A late second report of a send changes nothing.
    let again = watches
        .record_delivery("w7", &failed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery.unwrap().state, DeliveryState::Delivered);
}

/// A fresh store on `backend`, with what must live as long as it (its directory or schema).
async fn store_on(backend: Backend) -> Option<(Arc<dyn JobStore>, Box<dyn std::any::Any + Send>)> {
    match backend {
        Backend::Memory => Some((memory_store().await, Box::new(()))),
        Backend::Sqlite => {
            let (store, dir) = sqlite_store().await;
            Some((store, Box::new(dir)))
        }
        Backend::Postgres => {
            let (store, schema) = postgres_store().await?;
            Some((store, Box::new(schema)))
        }
    }
}

test_support::backend_matrix!(fixture = store_on; [memory, sqlite, postgres] [
    insert_get_and_conflict,
    insert_many_is_all_or_nothing,
    list_filters_by_owner_graph_and_activity,
    claim_advances_from_the_scheduled_instant,
    claim_takes_the_earliest_first_up_to_the_limit,
    coalesces_missed_occurrences_after_downtime,
    without_coalescing_each_missed_occurrence_runs,
    occurrences_beyond_the_grace_are_skipped,
    a_once_trigger_is_exhausted_after_its_fire,
    paused_schedules_are_not_claimed_until_resumed,
    a_schedule_that_cannot_be_planned_is_parked_and_the_rest_still_fire,
    delete_returns_the_schedule_and_keeps_its_history,
    outcomes_are_recorded_once,
    expired_leases_are_reclaimed,
    runs_are_listed_newest_first_up_to_the_limit,
    hand_started_runs_are_recorded_once,
    released_runs_are_reclaimed_at_once,
    renewed_leases_keep_runs_from_being_taken_over,
    concurrent_claims_take_each_occurrence_once,
    sub_millisecond_instants_are_claimed_and_recorded_at_milliseconds,
    overlap_skips_buffers_or_allows_by_policy,
    an_occurrence_meeting_only_a_run_taken_over_waits_for_it,
    graph_executions_are_never_skipped_for_overlap,
    replace_changes_in_place_and_keeps_the_ledger,
    listing_pages_by_id_with_filters,
    runs_are_filtered_by_status_and_time,
    runs_started_by_hand_follow_the_overlap_policy,
    queued_runs_start_one_after_another,
    retention_deletes_old_and_excess_finished_runs_only,
    claims_ahead_only_what_overlap_cannot_stop,
    a_pending_run_can_be_annotated_and_an_ended_one_cannot,
    watch_attempts_are_counted_once_and_a_success_completes,
    a_watch_out_of_attempts_fails,
    a_batch_of_attempts_is_recorded_in_one_go,
    watches_are_cancelled_one_by_one_or_by_workflow,
    completions_are_claimed_retried_and_delivered_once,
]);

#[tokio::test]
async fn persisted_stores_keep_schedules_and_ledger_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = DatabaseUrl::parse(&format!("sqlite://{}/s.db", dir.path().display())).unwrap();
    let schema = PgSchema::create("reopen").await;
    let mut urls = vec![sqlite];
    urls.extend(
        schema
            .as_ref()
            .map(|s| DatabaseUrl::parse(&s.url()).unwrap()),
    );
    for url in urls {
        let db = jobstore::connect(&url, 2).await.unwrap();
        let store = jobstore::persisted(&db, StoreName::BatchedNotifications);
        store
            .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
            .await
            .unwrap();
        store
            .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
            .await
            .unwrap();
        db.close().await;

        let db = jobstore::connect(&url, 2).await.unwrap();
        let store = jobstore::persisted(&db, StoreName::BatchedNotifications);
        let kept = store.get("a").await.unwrap().unwrap();
        assert_eq!(
            kept.next_run_at,
            Some(at("2026-01-01T10:01:00Z")),
            "{}",
            url.redacted()
        );
        assert_eq!(
            store.runs("a", &RunFilter::latest(10)).await.unwrap().len(),
            1
        );
        // Jobstores are separate tables.
        assert_eq!(
            jobstore::persisted(&db, StoreName::Execution)
                .get("a")
                .await
                .unwrap(),
            None
        );
        db.close().await;
    }
}

/// A renewal on PostgreSQL skips a row whose outcome another transaction is recording instead
/// of waiting for it, so renewals and the recording of outcomes never deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_renewal_skips_rows_being_finished() {
    let Some((store, schema)) = postgres_store().await else {
        return;
    };
    for id in ["held", "free"] {
        store
            .insert(&schedule(id, "u1", "g1", Some("2026-01-01T10:00:00Z")))
            .await
            .unwrap();
    }
    let now = at("2026-01-01T10:00:00Z");
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap().len(), 2);
    let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(&test_support::base_url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query(&format!(
        "SELECT 1 FROM \"{}\".schedule_runs WHERE schedule_id = 'held' FOR UPDATE",
        schema.name()
    ))
    .execute(&mut holder)
    .await
    .unwrap();
    let until = now + LEASE * 2;
    let keys = [("held".to_string(), now), ("free".to_string(), now)];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.set_leases(&keys, until),
    )
    .await
    .expect("the renewal does not wait for the held row")
    .unwrap();
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let lease = |id: &'static str| {
        let store = store.clone();
        async move { store.runs(id, &RunFilter::latest(1)).await.unwrap()[0].lease_until }
    };
    assert_eq!(lease("free").await, Some(until));
    assert_eq!(
        lease("held").await,
        Some(now + LEASE),
        "the held row was skipped"
    );
}

/// A schedule row whose stored target no longer reads as a target (written by hand, or by a
/// version that knew another kind) is parked with the reason by the claim on PostgreSQL; the
/// other due schedules are claimed, and their ledger rows carry their own targets and policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_parks_an_unreadable_schedule_row_and_claims_the_rest() {
    let Some((store, schema)) = postgres_store().await else {
        return;
    };
    let mut fine = schedule("fine", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    fine.policy = Policy {
        attempts: Some(3),
        ..Policy::default()
    };
    for s in [
        fine.clone(),
        schedule("unreadable", "u1", "g2", Some("2026-01-01T10:00:00Z")),
    ] {
        store.insert(&s).await.unwrap();
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&test_support::base_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        "UPDATE \"{}\".schedules_execution SET target = '{{\"type\": \"carrier_pigeon\"}}' \
         WHERE id = 'unreadable'",
        schema.name()
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let claimed = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .expect("one unreadable row does not fail the claim");
    let ids: Vec<_> = claimed.iter().map(|r| r.schedule_id.as_str()).collect();
    assert_eq!(ids, ["fine"]);
    let ledger = store.runs("fine", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].owner, fine.owner, "the ledger row's owner");
    assert_eq!(ledger[0].target, fine.target, "the ledger row's target");
    assert_eq!(ledger[0].policy, fine.policy, "the ledger row's policy");

    let (paused, reason): (bool, Option<String>) = sqlx::query_as(&format!(
        "SELECT paused, paused_reason FROM \"{}\".schedules_execution WHERE id = 'unreadable'",
        schema.name()
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let reason = reason.expect("a reason");
    assert!(paused);
    assert!(
        reason.contains("cannot be read") && reason.contains("target"),
        "{reason}"
    );
    assert!(
        store
            .runs("unreadable", &RunFilter::latest(10))
            .await
            .unwrap()
            .is_empty(),
        "no ledger row without a readable target"
    );
    let later = store
        .claim_due(at("2026-01-01T10:05:00Z"), 10, LEASE)
        .await
        .unwrap();
    assert!(later.iter().all(|r| r.schedule_id == "fine"), "{later:?}");
}
