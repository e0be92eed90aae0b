//! Exclusion calendars (`[calendars.<name>]`, a trigger's `exclude`) against the real binary:
//! an occurrence on an excluded date is recorded `skipped` with the reason `calendar <name>`
//! and never reaches its target, while a schedule without the calendar runs; `next_fire_times`,
//! a schedule's upcoming fires and the preview leave the dates out; `list_calendars` shows the
//! calendars; a calendar that is not configured is refused by name.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler_client::{
    Error, FireTimesQuery, NewSchedule, PreviewQuery, RunQuery, RunStatus, SchedulerError,
    TriggerKind, TriggerSpec,
};
use test_support::wait_until;

use crate::helpers::{Backend, Daemon, StubBackend, TestDb, http_post};

fn every_second(exclude: &[&str]) -> TriggerSpec {
    TriggerSpec {
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        ..TriggerSpec::from(TriggerKind::Interval {
            every_secs: 1,
            anchor: None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_on_an_excluded_date_is_skipped_and_shown_so() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    // "closed" covers yesterday to tomorrow (UTC), so every occurrence of the test is on it.
    let today = Utc::now().date_naive();
    let (first, last) = (today - TimeDelta::days(1), today + TimeDelta::days(1));
    let config = db.dir.path().join("scheduler.toml");
    std::fs::write(
        &config,
        format!(
            "[endpoints.hooks]\nurl = \"{}\"\n\n\
             [calendars.closed]\ndates = [\"{first}..{last}\"]\n\n\
             [calendars.holidays]\nzone = \"Europe/Berlin\"\n\
             dates = [\"2030-12-24..2030-12-26\", \"2030-12-31\"]\nweekdays = [\"sun\"]\n",
            backend.url
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_config(&db, &config, &[]).await;
    let client = daemon.client();

    let mut closed = NewSchedule::new(
        "ops",
        every_second(&["closed"]),
        http_post("hooks", "/closed", serde_json::Value::Null),
    );
    closed.id = Some("closed".into());
    let shown = client.create_schedule(closed).await.unwrap();
    assert_eq!(shown.trigger.exclude, ["closed"]);
    assert!(
        !shown.next_fire_times.is_empty()
            && shown
                .next_fire_times
                .iter()
                .all(|at| at.with_timezone(&Utc).date_naive() > last),
        "what will run starts after the calendar's dates: {:?}",
        shown.next_fire_times
    );
    let mut open = NewSchedule::new(
        "ops",
        every_second(&[]),
        http_post("hooks", "/open", serde_json::Value::Null),
    );
    open.id = Some("open".into());
    client.create_schedule(open).await.unwrap();

    // The excluded schedule's occurrences are in the ledger, skipped, naming the calendar.
    let skipped = wait_until(
        "two occurrences skipped",
        Duration::from_secs(20),
        || async {
            let runs = client
                .list_runs("closed", "ops", RunQuery::default())
                .await
                .map_err(|e| e.to_string())?
                .runs;
            if runs.len() >= 2 {
                Ok(runs)
            } else {
                Err(format!("{runs:?}"))
            }
        },
    )
    .await;
    for run in &skipped {
        assert_eq!(run.status, RunStatus::Skipped, "{run:?}");
        assert_eq!(run.detail.as_deref(), Some("calendar closed"), "{run:?}");
    }
    backend.wait_for("/open", 2, Duration::from_secs(20)).await;
    assert!(
        backend.requests("/open").len() >= 2,
        "the schedule without it runs"
    );
    assert!(
        backend.requests("/closed").is_empty(),
        "an excluded occurrence never reaches its target"
    );

    // next_fire_times leaves the dates out, in the calendar's zone.
    let query = |exclude: Option<Vec<String>>| FireTimesQuery {
        timezone: Some("Europe/Berlin".into()),
        after: Some("2030-12-22T12:00:00Z".into()),
        count: Some(4),
        exclude,
        ..FireTimesQuery::default()
    };
    let times = client
        .next_fire_times("0 9 * * *", query(Some(vec!["holidays".into()])))
        .await
        .unwrap();
    // The 22nd and 29th are Sundays; the 24th to 26th and the 31st are holidays.
    assert_eq!(
        times,
        [
            "2030-12-23T08:00:00Z",
            "2030-12-27T08:00:00Z",
            "2030-12-28T08:00:00Z",
            "2030-12-30T08:00:00Z",
        ]
    );
    let every_day = client
        .next_fire_times("0 9 * * *", query(None))
        .await
        .unwrap();
    assert_eq!(
        every_day[1], "2030-12-24T08:00:00Z",
        "without it, every day"
    );

    // The preview holds the open schedule's occurrences and none of the closed one's.
    let from = Utc::now();
    let preview = client
        .preview_fires(from, from + TimeDelta::minutes(1), PreviewQuery::default())
        .await
        .unwrap();
    assert!(preview.fires.iter().any(|f| f.schedule_id == "open"));
    assert!(
        !preview.fires.iter().any(|f| f.schedule_id == "closed"),
        "{preview:?}"
    );

    // The calendars as configured.
    let calendars = client.list_calendars().await.unwrap();
    let holidays = calendars.iter().find(|c| c.name == "holidays").unwrap();
    assert_eq!(holidays.zone, "Europe/Berlin");
    assert_eq!(holidays.dates, ["2030-12-24..2030-12-26", "2030-12-31"]);
    assert_eq!(holidays.weekdays, ["sun"]);
    let closed = calendars.iter().find(|c| c.name == "closed").unwrap();
    assert_eq!(closed.zone, "UTC");
    assert_eq!(closed.dates, [format!("{first}..{last}")]);

    // A calendar that is not configured is refused, naming it and the configured ones.
    let mut unknown = NewSchedule::new(
        "ops",
        every_second(&["holydays"]),
        http_post("hooks", "/x", serde_json::Value::Null),
    );
    unknown.id = Some("unknown".into());
    match client.create_schedule(unknown).await {
        Err(Error::Scheduler(SchedulerError::Value(message))) => assert!(
            message.contains("'holydays'") && message.contains("closed, holidays"),
            "{message}"
        ),
        other => panic!("a schedule naming no configured calendar: {other:?}"),
    }
}

#[test]
fn a_bad_calendar_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scheduler.toml");
    std::fs::write(&config, "[calendars.holidays]\ndates = [\"24.12.2030\"]\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .current_dir(dir.path())
        .args(["--config", config.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("calendars.holidays") && stderr.contains("'24.12.2030'"),
        "{stderr}"
    );
}
