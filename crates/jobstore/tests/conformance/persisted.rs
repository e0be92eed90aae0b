//! What only a persisted store does: keeping its data across a reopen, and PostgreSQL's row
//! locks.

use super::watches::{checked, watch};
use super::*;

/// A SQLite file in a new directory and, when PostgreSQL is reachable, a new schema named after
/// `name`, with what must live as long as they.
async fn persisted_urls(name: &str) -> (Vec<DatabaseUrl>, (tempfile::TempDir, Option<PgSchema>)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = DatabaseUrl::parse(&format!("sqlite://{}/s.db", dir.path().display())).unwrap();
    let schema = PgSchema::create(name).await;
    let mut urls = vec![sqlite];
    urls.extend(
        schema
            .as_ref()
            .map(|s| DatabaseUrl::parse(&s.url()).unwrap()),
    );
    (urls, (dir, schema))
}

#[tokio::test]
async fn persisted_stores_keep_schedules_and_ledger_across_reopen() {
    let (urls, _kept) = persisted_urls("reopen").await;
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

/// Writes what a user's database holds after a while: schedules with tags, a paused one with
/// a backfill waiting, ledger rows ended, pending, annotated and buffered, schedules in a second
/// jobstore, and watches with attempts and a completion to deliver.
/// `tests/fixtures/sqlite-5d6402f.db` is what this wrote at commit 5d6402f, the last before the
/// SQL store was one for both databases.
async fn write_fixture(db: &jobstore::Database) {
    let store = jobstore::persisted(db, StoreName::Execution);
    let mut graph = schedule("graph-1", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    graph.tags = vec!["nightly".into()];
    store.insert(&graph).await.unwrap();
    let first = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    store.finish_runs(&[ended(&first[0])]).await.unwrap();
    let second = store
        .claim_due(at("2026-01-01T10:01:00Z"), 10, LEASE)
        .await
        .unwrap();
    let note = RunNote {
        schedule_id: "graph-1".into(),
        scheduled_time: second[0].scheduled_time,
        detail: "queued as job 7".into(),
    };
    store.annotate(&[note]).await.unwrap();

    let http = http_schedule("http-1", Overlap::BufferOne, "2026-01-01T09:00:00Z");
    store.insert(&http).await.unwrap();
    let backfill: Vec<RunRecord> = ["2026-01-01T08:00:00Z", "2026-01-01T08:30:00Z"]
        .iter()
        .map(|t| RunRecord {
            schedule_id: "http-1".into(),
            scheduled_time: at(t),
            jobstore: StoreName::Execution,
            owner: http.owner.clone(),
            target: http.target.clone(),
            policy: http.policy,
            status: RunStatus::Buffered,
            detail: None,
            attempts: 0,
            claimed_at: at("2026-01-01T09:00:00Z"),
            lease_until: None,
            finished_at: None,
        })
        .collect();
    store
        .queue_runs(&backfill, at("2026-01-01T09:00:00Z"))
        .await
        .unwrap();
    store
        .set_paused("http-1", true, Some("paused for the fixture"), None)
        .await
        .unwrap();

    let batched = jobstore::persisted(db, StoreName::BatchedNotifications);
    batched
        .insert(&schedule("b-1", "u2", "g2", Some("2026-01-02T00:00:00Z")))
        .await
        .unwrap();

    let watches = jobstore::watches(db);
    for (id, max) in [("w1", 5), ("w2", 5)] {
        let (w, s) = watch(id, "u1", Some("wf"), max);
        watches.add_watch(&w, &s).await.unwrap();
    }
    let runs = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let attempts: Vec<_> = runs
        .iter()
        .filter(|r| r.schedule_id.starts_with('w'))
        .map(|r| {
            let success = r.schedule_id == "w2";
            let value = success.then(|| json!("v1"));
            (ended(r), checked(r, success, value))
        })
        .collect();
    watches.record_attempts(&attempts).await.unwrap();
}

/// Reads back what [`write_fixture`] wrote, and goes on from it.
async fn reads_back_and_goes_on(db: &jobstore::Database) {
    let store = jobstore::persisted(db, StoreName::Execution);
    let watches = jobstore::watches(db);

    let mut graph = schedule("graph-1", "u1", "g1", Some("2026-01-01T10:02:00Z"));
    graph.tags = vec!["nightly".into()];
    assert_eq!(store.get("graph-1").await.unwrap(), Some(graph.clone()));
    let tagged = store
        .list(&ListFilter {
            tag: Some("nightly".into()),
            include_inactive: true,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged, [graph.clone()]);
    let runs = store.runs("graph-1", &RunFilter::latest(10)).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RunStatus::Pending, RunStatus::Dispatched]
    );
    assert_eq!(runs[0].scheduled_time, at("2026-01-01T10:01:00Z"));
    assert_eq!(runs[0].detail.as_deref(), Some("queued as job 7"));
    assert_eq!(runs[0].lease_until, Some(at("2026-01-01T10:01:30Z")));
    assert_eq!(runs[1].target, graph.target);
    assert_eq!(runs[1].finished_at, Some(at("2026-01-01T10:00:00Z")));

    let http = store.get("http-1").await.unwrap().unwrap();
    assert!(http.paused);
    assert_eq!(
        http.paused_reason.as_deref(),
        Some("paused for the fixture")
    );
    assert_eq!(http.policy.overlap, Overlap::BufferOne);
    assert_eq!(
        statuses(&store, "http-1").await,
        [RunStatus::Pending, RunStatus::Buffered],
        "the older of the backfill was promoted, the newer waits"
    );
    let batched = jobstore::persisted(db, StoreName::BatchedNotifications);
    assert_eq!(
        batched.get("b-1").await.unwrap(),
        Some(schedule("b-1", "u2", "g2", Some("2026-01-02T00:00:00Z")))
    );

    let w1 = watches.watch("w1").await.unwrap().unwrap();
    assert_eq!((w1.status, w1.attempts), (WatchStatus::Active, 1));
    assert_eq!(w1.next_run_at, Some(at("2026-01-01T10:01:00Z")));
    let w2 = watches.watch("w2").await.unwrap().unwrap();
    assert_eq!(w2.status, WatchStatus::Completed);
    assert_eq!(w2.message.as_deref(), Some("deployed: v1"));
    let claimed = watches
        .claim_deliveries(Utc::now(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w2"]
    );

    // And it goes on: the next occurrence is claimed and recorded, and the watch's next
    // attempt is counted.
    let due = store
        .claim_due(at("2026-01-01T10:02:00Z"), 10, LEASE)
        .await
        .unwrap();
    let fired = due.iter().find(|r| r.schedule_id == "graph-1").unwrap();
    store.finish_runs(&[ended(fired)]).await.unwrap();
    assert_eq!(
        statuses(&store, "graph-1").await,
        [
            RunStatus::Dispatched,
            RunStatus::Pending,
            RunStatus::Dispatched
        ]
    );
    let attempt = due.iter().find(|r| r.schedule_id == "w1").unwrap();
    let counted = watches
        .record_attempt(&ended(attempt), &checked(attempt, false, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.attempts, 2);
    store
        .insert(&schedule("new", "u1", "g1", None))
        .await
        .unwrap();
    let all = store
        .list(&ListFilter {
            include_inactive: true,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["graph-1", "http-1", "w1", "new"],
        "a new schedule comes after those stored before"
    );
}

/// A SQLite database as the store wrote it before it was one store for both databases: every
/// row reads back as it was written, and the store goes on from it. (On PostgreSQL the columns
/// are typed by the database, so how a row was sent does not change what is stored.)
#[tokio::test]
async fn a_sqlite_database_of_the_previous_store_reads_back_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sqlite-5d6402f.db"
    );
    std::fs::copy(fixture, &path).unwrap();
    let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    let db = jobstore::connect(&url, 2).await.unwrap();
    reads_back_and_goes_on(&db).await;
    db.close().await;
}

/// The same written and read by this revision, on both databases.
#[tokio::test]
async fn what_is_written_now_reads_back_the_same() {
    let (urls, _kept) = persisted_urls("fixture").await;
    for url in urls {
        let db = jobstore::connect(&url, 2).await.unwrap();
        write_fixture(&db).await;
        reads_back_and_goes_on(&db).await;
        db.close().await;
    }
}
