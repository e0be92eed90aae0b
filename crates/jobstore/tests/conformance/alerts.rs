//! The alerts: one open incident per schedule and kind, its messages to each channel held
//! while sent, retried, a resolution sent after its opening, and resolved incidents pruned;
//! and what the ledger tells the checks of the schedules that ask for them.

use jobstore::{
    Alert, AlertFilter, AlertKind, AlertLog, AlertPolicy, AlertState, Delivery, Phase, RunFacts,
};

use super::*;

type WithAlerts = (Arc<dyn JobStore>, Arc<dyn AlertLog>);

async fn alerts_on(backend: Backend) -> Option<(WithAlerts, Box<dyn std::any::Any + Send>)> {
    let in_memory = |store: Arc<MemoryStore>| store as Arc<dyn AlertLog>;
    execution_and(backend, "alerts", jobstore::alert_log, in_memory).await
}

fn incident(id: &str, schedule_id: &str, owner: &str, kind: AlertKind, opened: &str) -> Alert {
    Alert {
        id: id.into(),
        kind,
        state: AlertState::Open,
        jobstore: "execution".into(),
        schedule_id: schedule_id.into(),
        schedule_name: format!("schedule {schedule_id}"),
        owner: owner.into(),
        opened_at: at(opened),
        resolved_at: None,
        summary: "3 runs in a row failed".into(),
        last_error: Some("HTTP 500".into()),
        resolution: None,
    }
}

fn sent(deliveries: &[Delivery]) -> Vec<(String, Phase, String)> {
    let mut sent: Vec<_> = deliveries
        .iter()
        .map(|d| (d.alert.id.clone(), d.phase, d.channel.clone()))
        .collect();
    sent.sort_by(|a, b| (&a.0, a.1.as_str(), &a.2).cmp(&(&b.0, b.1.as_str(), &b.2)));
    sent
}

async fn an_incident_opens_once_and_its_messages_go_in_order((_, log): WithAlerts) {
    let channels = ["hook".to_string(), "ops".to_string()];
    let t0 = at("2026-01-01T10:00:00Z");
    let first = incident(
        "a1",
        "s1",
        "agnt",
        AlertKind::Failing,
        "2026-01-01T10:00:00Z",
    );
    assert!(log.open_alert(&first, &channels).await.unwrap());
    let again = incident(
        "a2",
        "s1",
        "agnt",
        AlertKind::Failing,
        "2026-01-01T10:00:05Z",
    );
    assert!(
        !log.open_alert(&again, &channels).await.unwrap(),
        "one open incident per schedule and kind"
    );
    let other_kind = incident("a3", "s1", "agnt", AlertKind::Late, "2026-01-01T10:00:06Z");
    assert!(log.open_alert(&other_kind, &[]).await.unwrap());

    // Both channels' openings are due; taken, they are held from other senders.
    let hold = t0 + TimeDelta::seconds(60);
    let due = log.due_deliveries(t0, hold, 10).await.unwrap();
    let opened = |channel: &str| ("a1".to_string(), Phase::Opened, channel.to_string());
    assert_eq!(sent(&due), vec![opened("hook"), opened("ops")]);
    assert_eq!(due[0].alert.summary, "3 runs in a row failed");
    assert!(log.due_deliveries(t0, hold, 10).await.unwrap().is_empty());

    let hook = due.iter().find(|d| d.channel == "hook").unwrap();
    let ops = due.iter().find(|d| d.channel == "ops").unwrap();
    log.delivered(hook, t0).await.unwrap();
    let retry_at = t0 + TimeDelta::seconds(5);
    log.delivery_failed(ops, "HTTP 503", retry_at)
        .await
        .unwrap();

    let resolved_at = t0 + TimeDelta::seconds(2);
    assert!(
        log.resolve_alert("a1", resolved_at, "a run succeeded", &channels)
            .await
            .unwrap()
    );
    assert!(
        !log.resolve_alert("a1", resolved_at, "again", &channels)
            .await
            .unwrap()
    );
    // The resolution goes to the hook at once; to ops only after its opening, retried.
    let now = t0 + TimeDelta::seconds(3);
    let due = log
        .due_deliveries(now, now + TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    let resolved = |channel: &str| ("a1".to_string(), Phase::Resolved, channel.to_string());
    assert_eq!(sent(&due), vec![resolved("hook")]);
    assert_eq!(due[0].alert.state, AlertState::Resolved);
    assert_eq!(due[0].alert.resolution.as_deref(), Some("a run succeeded"));
    log.delivered(&due[0], now).await.unwrap();
    let now = t0 + TimeDelta::seconds(6);
    let due = log
        .due_deliveries(now, now + TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(sent(&due), vec![opened("ops")]);
    assert_eq!(due[0].attempts, 1, "the failed attempt counts");
    log.delivered(&due[0], now).await.unwrap();
    let due = log
        .due_deliveries(now, now + TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(sent(&due), vec![resolved("ops")]);
    log.delivered(&due[0], now).await.unwrap();
    assert!(
        log.due_deliveries(now + TimeDelta::hours(1), now, 10)
            .await
            .unwrap()
            .is_empty(),
        "every message delivered"
    );

    // A new incident of the same kind may open once the first resolved.
    let next = incident(
        "a4",
        "s1",
        "agnt",
        AlertKind::Failing,
        "2026-01-01T11:00:00Z",
    );
    assert!(log.open_alert(&next, &channels).await.unwrap());
    let open = log.alerts(&AlertFilter::open(10)).await.unwrap();
    let ids: Vec<&str> = open.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a4", "a3"], "open ones, newest first");

    // Pruning takes resolved incidents older than the cut, with their messages.
    let pruned = log
        .prune_alerts(t0 + TimeDelta::minutes(1), 100)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let all = AlertFilter {
        limit: 10,
        ..AlertFilter::default()
    };
    let ids: Vec<String> = log
        .alerts(&all)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a4", "a3"]);
}

async fn incidents_are_listed_by_state_owner_schedule_and_scope((_, log): WithAlerts) {
    for (id, schedule, owner, opened) in [
        ("b1", "s1", "agnt", "2026-01-01T10:00:00Z"),
        ("b2", "s2", "farm", "2026-01-01T10:01:00Z"),
        ("b3", "s3", "user-7", "2026-01-01T10:02:00Z"),
    ] {
        let alert = incident(id, schedule, owner, AlertKind::Missing, opened);
        assert!(log.open_alert(&alert, &[]).await.unwrap());
    }
    let at_resolve = at("2026-01-01T10:05:00Z");
    log.resolve_alert("b2", at_resolve, "a run succeeded", &[])
        .await
        .unwrap();
    let listed = |filter: AlertFilter| {
        let log = log.clone();
        async move {
            let found = log.alerts(&filter).await.unwrap();
            found.into_iter().map(|a| a.id).collect::<Vec<_>>()
        }
    };
    let base = AlertFilter {
        limit: 10,
        ..AlertFilter::default()
    };
    assert_eq!(listed(base.clone()).await, ["b3", "b2", "b1"]);
    let resolved = AlertFilter {
        state: Some(AlertState::Resolved),
        ..base.clone()
    };
    assert_eq!(listed(resolved).await, ["b2"]);
    let farm = AlertFilter {
        owner: Some("farm".into()),
        ..base.clone()
    };
    assert_eq!(listed(farm).await, ["b2"]);
    let one = AlertFilter {
        schedule_id: Some("s1".into()),
        ..base.clone()
    };
    assert_eq!(listed(one).await, ["b1"]);
    let scoped = AlertFilter {
        owners: Some(Owners::parse(&["agnt".into(), "user-*".into()]).unwrap()),
        ..base.clone()
    };
    assert_eq!(listed(scoped).await, ["b3", "b1"]);
    let first = AlertFilter {
        limit: 1,
        ..base.clone()
    };
    assert_eq!(listed(first).await, ["b3"]);
    let resolved = log.alerts(&base).await.unwrap();
    let b2 = resolved.iter().find(|a| a.id == "b2").unwrap();
    assert_eq!(b2.resolved_at, Some(at_resolve));
    assert_eq!(b2.resolution.as_deref(), Some("a run succeeded"));
}

async fn the_checks_read_what_each_schedules_runs_tell((store, _): WithAlerts) {
    let checked = AlertPolicy {
        failed_in_a_row: Some(2),
        ..AlertPolicy::default()
    };
    let mut s1 = schedule("s1", "agnt", "g1", Some("2026-01-01T10:10:00Z"));
    s1.policy.alerts = checked;
    let s2 = schedule("s2", "agnt", "g2", Some("2026-01-01T10:10:00Z"));
    let mut s3 = schedule("s3", "farm", "g3", Some("2026-01-01T10:10:00Z"));
    s3.policy.alerts = checked;
    for s in [&s1, &s2, &s3] {
        store.insert(s).await.unwrap();
    }
    let run = |minute: i64, status: RunStatus, detail: Option<&str>| {
        let at = at("2026-01-01T10:00:00Z") + TimeDelta::minutes(minute);
        let open = status.is_open();
        RunRecord {
            schedule_id: "s1".into(),
            scheduled_time: at,
            jobstore: store.jobstore(),
            owner: "agnt".into(),
            target: s1.target.clone(),
            policy: s1.policy,
            status,
            detail: detail.map(str::to_string),
            attempts: 1,
            claimed_at: at,
            lease_until: open.then_some(at),
            finished_at: (!open).then_some(at),
        }
    };
    for row in [
        run(0, RunStatus::Failed, Some("an old failure")),
        run(1, RunStatus::Dispatched, None),
        run(2, RunStatus::Failed, Some("boom")),
        run(3, RunStatus::Skipped, Some("overlap")),
        run(4, RunStatus::Failed, Some("bang")),
        run(5, RunStatus::Pending, None),
        run(6, RunStatus::Buffered, None),
        run(7, RunStatus::Buffered, None),
    ] {
        assert!(store.insert_run(&row).await.unwrap());
    }
    let ids = |page: &[jobstore::Watched]| {
        page.iter()
            .map(|w| w.schedule.id.clone())
            .collect::<Vec<_>>()
    };
    let asking = store.alerting(None, 10, false).await.unwrap();
    assert_eq!(ids(&asking), ["s1", "s3"], "only those that set alerts");
    assert_eq!(asking[0].schedule, s1);
    assert_eq!(
        asking[0].runs,
        RunFacts {
            last_success: Some(at("2026-01-01T10:01:00Z")),
            failed_since: 2,
            last_error: Some("bang".into()),
            oldest_waiting: Some(at("2026-01-01T10:06:00Z")),
        }
    );
    assert_eq!(asking[1].runs, RunFacts::default(), "no runs, nothing told");
    let every = store.alerting(None, 10, true).await.unwrap();
    assert_eq!(
        ids(&every),
        ["s1", "s2", "s3"],
        "every schedule under defaults"
    );
    let page = store.alerting(Some("s1"), 1, true).await.unwrap();
    assert_eq!(ids(&page), ["s2"], "paged by id");
}

test_support::backend_matrix!(fixture = alerts_on; [memory, sqlite, postgres] [
    an_incident_opens_once_and_its_messages_go_in_order,
    incidents_are_listed_by_state_owner_schedule_and_scope,
    the_checks_read_what_each_schedules_runs_tell,
]);
