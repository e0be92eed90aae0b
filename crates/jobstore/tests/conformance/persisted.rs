//! What only a persisted store does: keeping its data across a reopen, and PostgreSQL's row
//! locks.

use super::*;

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
