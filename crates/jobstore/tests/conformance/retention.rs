//! Pruning the ledger's finished rows.

use super::*;

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

test_support::backend_matrix!(fixture = store_on; [memory, sqlite, postgres] [
    retention_deletes_old_and_excess_finished_runs_only,
]);
