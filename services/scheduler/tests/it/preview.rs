//! `preview_fires`: what the active schedules will fire in a window, and where the bursts are.

use chrono::{DurationRound, TimeDelta, Utc};
use scheduler_client::{Error, NewSchedule, PreviewQuery, SchedulerError, TriggerKind};
use serde_json::Value;

use crate::helpers::{Backend, Daemon, TestDb, http_post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_lists_every_occurrence_of_the_window_and_counts_each_minute() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start_with(
        &db,
        "http://127.0.0.1:9/",
        &[("SCHEDULER__ENDPOINTS__BACKEND__URL", "http://127.0.0.1:9/")],
    )
    .await;
    let client = daemon.client();
    // A window of one hour, starting two whole hours ahead: nothing in it has fired yet.
    let from = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() + TimeDelta::hours(2);
    let to = from + TimeDelta::hours(1) - TimeDelta::seconds(1);
    let cron = |expression: &str| TriggerKind::Cron {
        expression: expression.into(),
        timezone: "UTC".into(),
    };
    let schedules = [
        (
            "every-minute",
            "alice",
            cron("* * * * *"),
            vec!["burst".to_string()],
        ),
        ("hourly", "bob", cron("0 * * * *"), vec![]),
        // H of "spread-h" in the minute field is 35 (SHA-256, as the triggers' test pins H).
        ("spread-h", "carol", cron("H * * * *"), vec![]),
        ("paused", "alice", cron("* * * * *"), vec![]),
        (
            "once",
            "alice",
            TriggerKind::Once {
                at: from + TimeDelta::seconds(90),
            },
            vec![],
        ),
    ];
    for (id, owner, trigger, tags) in schedules {
        let mut new = NewSchedule::new(
            owner,
            trigger.into(),
            http_post("backend", "/", Value::Null),
        );
        new.id = Some(id.into());
        new.tags = tags;
        client.create_schedule(new).await.unwrap();
    }
    client
        .pause_schedule("paused", "alice", None)
        .await
        .unwrap();

    let all = client
        .preview_fires(from, to, PreviewQuery::default())
        .await
        .unwrap();
    // 60 minutes, one hour, one H minute and one instant; nothing of the paused schedule.
    assert_eq!(all.total, 63);
    assert_eq!(all.fires.len(), 63);
    assert!(!all.truncated);
    let first: Vec<&str> = all.fires[..2]
        .iter()
        .map(|f| f.schedule_id.as_str())
        .collect();
    assert_eq!(first, ["every-minute", "hourly"]);
    assert!(all.fires.iter().all(|f| f.at >= from && f.at <= to));
    assert!(
        all.fires.windows(2).all(|w| w[0].at <= w[1].at),
        "in time order"
    );
    assert!(all.fires.iter().all(|f| f.schedule_id != "paused"));
    let spread: Vec<_> = all
        .fires
        .iter()
        .filter(|f| f.schedule_id == "spread-h")
        .collect();
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0].at, from + TimeDelta::minutes(35));
    assert_eq!(all.per_minute.len(), 60);
    assert_eq!(all.per_minute.iter().map(|m| m.count).sum::<u64>(), 63);
    let busiest: Vec<(i64, u64)> = all.busiest[..4]
        .iter()
        .map(|m| ((m.minute - from).num_minutes(), m.count))
        .collect();
    assert_eq!(busiest, [(0, 2), (1, 2), (35, 2), (2, 1)]);
    assert_eq!(all.busiest.len(), 10);

    let query = |owner: Option<&str>, tag: Option<&str>, limit: Option<u32>| PreviewQuery {
        owner: owner.map(str::to_string),
        tag: tag.map(str::to_string),
        jobstore: None,
        limit,
    };
    let alice = client
        .preview_fires(from, to, query(Some("alice"), None, None))
        .await
        .unwrap();
    assert_eq!(alice.total, 61);
    let burst = client
        .preview_fires(from, to, query(None, Some("burst"), None))
        .await
        .unwrap();
    assert_eq!(burst.total, 60);
    let five = client
        .preview_fires(from, to, query(None, None, Some(5)))
        .await
        .unwrap();
    assert_eq!(
        (five.fires.len(), five.total, five.truncated),
        (5, 63, true)
    );
    assert_eq!(five.fires[..], all.fires[..5]);

    for (from, to, limit, expected) in [
        (from, from + TimeDelta::days(8), None, "at most 7 days"),
        (to, from, None, "is before from"),
        (from, to, Some(0), "limit must be between 1 and 10000"),
    ] {
        let refused = client
            .preview_fires(from, to, query(None, None, limit))
            .await;
        assert!(
            matches!(&refused, Err(Error::Scheduler(SchedulerError::Value(m))) if m.contains(expected)),
            "{expected}: {refused:?}"
        );
    }
}
