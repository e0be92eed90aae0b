//! The run ledger: outcomes, runs started by hand or queued, the overlap policy, listings
//! and annotations.

use super::*;

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

async fn pending_runs_can_be_annotated_together_and_an_ended_one_cannot(store: Arc<dyn JobStore>) {
    for id in ["a", "b"] {
        store
            .insert(&schedule(id, "u1", "g1", Some("2026-01-01T10:00:00Z")))
            .await
            .unwrap();
    }
    let mut runs = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    runs.sort_by(|x, y| x.schedule_id.cmp(&y.schedule_id));
    let note = |run: &RunRecord, detail: &str| RunNote {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        detail: detail.into(),
    };
    let (a, b) = (&runs[0], &runs[1]);
    store
        .annotate(&[note(a, "job j1 queued"), note(b, "job j2 queued")])
        .await
        .unwrap();
    let detail = |id: &'static str| {
        let store = store.clone();
        async move {
            let listed = store.runs(id, &RunFilter::latest(10)).await.unwrap();
            (listed[0].status, listed[0].detail.clone())
        }
    };
    assert_eq!(
        detail("a").await,
        (RunStatus::Pending, Some("job j1 queued".into()))
    );
    assert_eq!(
        detail("b").await,
        (RunStatus::Pending, Some("job j2 queued".into()))
    );
    store.finish_runs(&[ended(a)]).await.unwrap();
    store
        .annotate(&[note(a, "too late"), note(b, "job j2 running")])
        .await
        .unwrap();
    assert_eq!(
        detail("a").await,
        (RunStatus::Dispatched, None),
        "the outcome's detail stays"
    );
    assert_eq!(
        detail("b").await,
        (RunStatus::Pending, Some("job j2 running".into()))
    );
}

async fn runs_are_placed_once_together_and_their_rows_keep_where_they_went(
    store: Arc<dyn JobStore>,
) {
    let select = jobstore::DeviceSelector {
        tags: vec!["tiktok".into()],
        runner: None,
    };
    let chosen = |runner: &str, device: &str, moves: u32| {
        Target::DeviceJob(jobstore::DeviceJobTarget {
            runner: runner.into(),
            device: Some(device.into()),
            pool: None,
            select: Some(select.clone()),
            moves,
            job_type: "crawl".into(),
            params: Default::default(),
            priority: 5,
            max_duration: None,
        })
    };
    for id in ["d", "e"] {
        let mut s = schedule(id, "u1", "g1", Some("2026-01-01T10:00:00Z"));
        // The schedule's target selects; it names no runner or phone.
        s.target = chosen("", "", 0);
        if let Target::DeviceJob(job) = &mut s.target {
            job.device = None;
        }
        store.insert(&s).await.unwrap();
    }
    let mut runs = store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    runs.sort_by(|x, y| x.schedule_id.cmp(&y.schedule_id));
    assert_eq!(runs[0].target.placement(), None);
    let placement = |run: &RunRecord, target: Target| RunPlacement {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        expected: run.target.placement(),
        detail: format!("placed as {}", target.placement().unwrap()),
        target,
    };
    let (d, e) = (&runs[0], &runs[1]);
    let written = store
        .place(&[
            placement(d, chosen("r1", "P1", 0)),
            placement(e, chosen("r2", "P2", 0)),
        ])
        .await
        .unwrap();
    assert_eq!(written, [true, true]);
    // A second delivery that read the rows before the placements cannot place them elsewhere.
    let again = store
        .place(&[placement(d, chosen("r2", "P9", 0))])
        .await
        .unwrap();
    assert_eq!(again, [false]);
    let stored = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .runs(id, &RunFilter::latest(1))
                .await
                .unwrap()
                .remove(0)
        }
    };
    let d_row = stored("d").await;
    assert_eq!(
        d_row.target,
        chosen("r1", "P1", 0),
        "the row keeps the first placement"
    );
    assert_eq!(d_row.target.placement().as_deref(), Some("r1/P1#0"));
    assert_eq!(d_row.detail.as_deref(), Some("placed as r1/P1#0"));
    // Moved from the row as it is now: it goes; in the same batch, a stale one does not.
    let written = store
        .place(&[
            placement(&d_row, chosen("r2", "P9", 1)),
            placement(e, chosen("r3", "P3", 0)),
        ])
        .await
        .unwrap();
    assert_eq!(written, [true, false]);
    assert_eq!(stored("d").await.target, chosen("r2", "P9", 1));
    assert_eq!(stored("e").await.target, chosen("r2", "P2", 0));
    // An ended run is not placed.
    let e_row = stored("e").await;
    store.finish_runs(&[ended(&e_row)]).await.unwrap();
    let late = store
        .place(&[placement(&e_row, chosen("r3", "P3", 1))])
        .await
        .unwrap();
    assert_eq!(late, [false]);
    assert!(store.place(&[]).await.unwrap().is_empty());
}

test_support::backend_matrix!(fixture = store_on; [memory, sqlite, postgres] [
    outcomes_are_recorded_once,
    hand_started_runs_are_recorded_once,
    runs_are_listed_newest_first_up_to_the_limit,
    overlap_skips_buffers_or_allows_by_policy,
    an_occurrence_meeting_only_a_run_taken_over_waits_for_it,
    graph_executions_are_never_skipped_for_overlap,
    runs_are_filtered_by_status_and_time,
    runs_started_by_hand_follow_the_overlap_policy,
    queued_runs_start_one_after_another,
    pending_runs_can_be_annotated_together_and_an_ended_one_cannot,
    runs_are_placed_once_together_and_their_rows_keep_where_they_went,
]);
