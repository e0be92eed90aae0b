//! One conformance suite, run against every backend: memory, SQLite and PostgreSQL.
//! Each PostgreSQL test works in a schema of its own and drops it afterwards.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{
    DatabaseUrl, JobStore, ListFilter, MemoryStore, Policy, RunOutcome, RunRecord, RunStatus,
    Schedule, StoreError, StoreName, Target,
};
use serde_json::json;
use test_support::PgSchema;
use triggers::TriggerSpec;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const LEASE: TimeDelta = TimeDelta::seconds(30);

fn every_minute() -> TriggerSpec {
    TriggerSpec::Cron {
        expression: "* * * * *".into(),
        timezone: "UTC".into(),
    }
}

fn schedule(id: &str, owner: &str, graph: &str, next: Option<&str>) -> Schedule {
    Schedule {
        id: id.into(),
        name: format!("schedule {id}"),
        owner: owner.into(),
        trigger: every_minute(),
        target: Target::GraphExecution {
            graph_id: graph.into(),
            graph_version: 3,
            input_data: json!({"text": "héllo", "n": 1}),
            input_credentials: json!({}),
        },
        policy: Policy::default(),
        paused: false,
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
    let ledger = store.runs("a", 10).await.unwrap();
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
    let ledger = store.runs("a", 10).await.unwrap();
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
    let ledger = store.runs("a", 10).await.unwrap();
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
    s.trigger = TriggerSpec::Once {
        at: at("2026-01-01T10:00:00Z"),
    };
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
    broken.trigger = TriggerSpec::Cron {
        expression: "* * * * *".into(),
        timezone: "Atlantis/Capital".into(),
    };
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
    let ledger = store.runs("broken", 10).await.unwrap();
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
    assert_eq!(store.runs("broken", 10).await.unwrap().len(), 1);
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
    assert_eq!(store.runs("a", 10).await.unwrap().len(), 1);
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
    let ledger = store.runs("a", 10).await.unwrap();
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
    assert_eq!(store.runs("report", 10).await.unwrap(), vec![run]);
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
        }])
        .await
        .unwrap();
    store
        .set_leases(&[("a".to_string(), now)], later + LEASE * 3)
        .await
        .unwrap();
    let run = store.runs("a", 1).await.unwrap().remove(0);
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
        .runs("a", 3)
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
    s.trigger = TriggerSpec::Once { at: exact };
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
    };
    store.finish_runs(&[outcome]).await.unwrap();
    let ledger = store.runs("a", 10).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, RunStatus::Dispatched);
    assert_eq!(ledger[0].idempotency_key(), runs[0].idempotency_key());
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case(super::memory_store().await).await
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _dir) = super::sqlite_store().await;
                super::$case(store).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _schema)) = super::postgres_store().await else { return };
                super::$case(store).await
            })*
        }
    };
}

conformance!(
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
);

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
        assert_eq!(store.runs("a", 10).await.unwrap().len(), 1);
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
        async move { store.runs(id, 1).await.unwrap()[0].lease_until }
    };
    assert_eq!(lease("free").await, Some(until));
    assert_eq!(
        lease("held").await,
        Some(now + LEASE),
        "the held row was skipped"
    );
}
