//! Claiming what is due: planning (coalescing, grace, parking), leases, claims ahead and
//! concurrent claimers.

use super::*;

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
    store.replace(&changed, false).await.unwrap().unwrap();

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

/// A replacement gives back what was claimed ahead of the schedule and is not yet due: with
/// the same trigger, the occurrence is the next run again and is claimed anew as the schedule
/// now is; with another trigger, the next run is the one the replacement gives.
async fn a_replacement_gives_back_runs_claimed_ahead(store: Arc<dyn JobStore>) {
    use chrono::SubsecRound;
    // An hour ahead of the real clock: the runs claimed ahead are not yet due by it.
    let base = Utc::now().trunc_subsecs(3) + TimeDelta::hours(1);
    let due_at = base + TimeDelta::seconds(2);
    let ahead = TimeDelta::seconds(5);
    for id in ["kept", "retimed"] {
        let mut row = schedule(id, "u1", "g1", None);
        row.next_run_at = Some(due_at);
        store.insert(&row).await.unwrap();
    }
    assert_eq!(store.claim(base, ahead, 100, LEASE).await.unwrap().len(), 2);
    let claimed_next = store.get("kept").await.unwrap().unwrap().next_run_at;
    assert!(
        claimed_next.is_some_and(|next| next > due_at),
        "{claimed_next:?}"
    );

    let mut kept = store.get("kept").await.unwrap().unwrap();
    kept.target = schedule("kept", "u1", "g2", None).target;
    let stored = store.replace(&kept, true).await.unwrap().unwrap();
    assert_eq!(
        stored.next_run_at,
        Some(due_at),
        "given back and planned again"
    );
    let mut retimed = store.get("retimed").await.unwrap().unwrap();
    let later = due_at + TimeDelta::hours(3);
    retimed.next_run_at = Some(later);
    let stored = store.replace(&retimed, false).await.unwrap().unwrap();
    assert_eq!(
        stored.next_run_at,
        Some(later),
        "the replacement's own next run"
    );
    assert_eq!(statuses(&store, "kept").await, Vec::new());
    assert_eq!(statuses(&store, "retimed").await, Vec::new());

    let again = store.claim(base, ahead, 100, LEASE).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (again[0].schedule_id.as_str(), again[0].scheduled_time),
        ("kept", due_at)
    );
    match &again[0].target {
        Target::GraphExecution(graph) => assert_eq!(graph.graph_id, "g2"),
        other => panic!("{other:?}"),
    }
}

test_support::backend_matrix!(fixture = store_on; [memory, sqlite, postgres] [
    claim_advances_from_the_scheduled_instant,
    claim_takes_the_earliest_first_up_to_the_limit,
    coalesces_missed_occurrences_after_downtime,
    without_coalescing_each_missed_occurrence_runs,
    occurrences_beyond_the_grace_are_skipped,
    a_once_trigger_is_exhausted_after_its_fire,
    paused_schedules_are_not_claimed_until_resumed,
    a_schedule_that_cannot_be_planned_is_parked_and_the_rest_still_fire,
    expired_leases_are_reclaimed,
    released_runs_are_reclaimed_at_once,
    renewed_leases_keep_runs_from_being_taken_over,
    concurrent_claims_take_each_occurrence_once,
    sub_millisecond_instants_are_claimed_and_recorded_at_milliseconds,
    claims_ahead_only_what_overlap_cannot_stop,
    a_replacement_gives_back_runs_claimed_ahead,
]);
