//! Watches: attempts, cancellations and the delivery of completions.

use super::*;

/// A watch of `user` in `workflow` polling a URL every minute from 10:00, and its schedule.
pub(crate) fn watch(
    id: &str,
    user: &str,
    workflow: Option<&str>,
    max_attempts: u32,
) -> (Watch, Schedule) {
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

pub(crate) fn checked(
    run: &RunRecord,
    success: bool,
    value: Option<serde_json::Value>,
) -> CheckResult {
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
async fn watch_attempts_are_counted_once_and_a_success_completes((store, watches): WithWatches) {
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
async fn a_batch_of_attempts_is_recorded_in_one_go((store, watches): WithWatches) {
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
async fn a_watch_out_of_attempts_fails((store, watches): WithWatches) {
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
async fn watches_are_cancelled_one_by_one_or_by_workflow((store, watches): WithWatches) {
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
    let scope = |patterns: &[&str]| {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Some(Owners::parse(&patterns).unwrap())
    };
    let of_u2s = WatchFilter {
        users: scope(&["u2*"]),
        ..all.clone()
    };
    assert_eq!(listed(of_u2s).await, ["w6", "w5"], "a prefix");
    let of_named = WatchFilter {
        users: scope(&["u1", "u9"]),
        ..all.clone()
    };
    assert_eq!(listed(of_named).await, ["w4", "w3"], "names");
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
async fn completions_are_claimed_retried_and_delivered_once((store, watches): WithWatches) {
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

test_support::backend_matrix!(fixture = watches_on; [memory, sqlite, postgres] [
    watch_attempts_are_counted_once_and_a_success_completes,
    a_batch_of_attempts_is_recorded_in_one_go,
    a_watch_out_of_attempts_fails,
    watches_are_cancelled_one_by_one_or_by_workflow,
    completions_are_claimed_retried_and_delivered_once,
]);
