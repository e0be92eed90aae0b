//! Exclusion calendars in triggers: an occurrence on an excluded local date is still an
//! occurrence (`next_after`), named by the calendar that excludes it (`excluded_by`), and left
//! out of what will run (`next_included_after`).

use chrono::{DateTime, Utc};
use serde_json::json;
use triggers::{Calendar, Calendars, TriggerError, TriggerKind, TriggerSpec};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn texts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn holidays() -> Calendars {
    let dates = texts(&["2026-12-25", "2026-12-31..2027-01-01"]);
    let holidays = Calendar::new("holidays", "Europe/Berlin", &dates, &[]).unwrap();
    let weekends = Calendar::new("weekends", "UTC", &[], &texts(&["sat", "sun"])).unwrap();
    Calendars::new([holidays, weekends])
}

fn daily_nine(exclude: &[&str]) -> TriggerSpec {
    let mut spec = TriggerSpec::from(TriggerKind::DailyTimes {
        times: texts(&["09:00"]),
        timezone: "Europe/Berlin".into(),
    });
    spec.exclude = texts(exclude);
    spec
}

#[test]
fn excluded_dates_are_occurrences_that_do_not_run() {
    let trigger = daily_nine(&["holidays", "weekends"])
        .compile_with(None, &holidays())
        .unwrap();
    // Thursday the 24th runs; the 25th is a holiday, the 26th and 27th a weekend.
    let christmas_eve = at("2026-12-24T08:00:00Z");
    assert_eq!(trigger.excluded_by(christmas_eve), None);
    let christmas = trigger.next_after(christmas_eve).unwrap();
    assert_eq!(christmas, at("2026-12-25T08:00:00Z"), "still an occurrence");
    assert_eq!(trigger.excluded_by(christmas), Some("holidays"));
    assert_eq!(
        trigger.excluded_by(at("2026-12-26T08:00:00Z")),
        Some("weekends")
    );
    let mut runs = Vec::new();
    let mut cursor = christmas_eve;
    while runs.len() < 4 {
        cursor = trigger.next_included_after(cursor).unwrap();
        runs.push(cursor);
    }
    assert_eq!(
        runs,
        [
            at("2026-12-28T08:00:00Z"),
            at("2026-12-29T08:00:00Z"),
            at("2026-12-30T08:00:00Z"),
            at("2027-01-04T08:00:00Z"),
        ],
        "the holidays, the range's days and the weekend are left out"
    );
}

#[test]
fn a_long_exclusion_is_passed_a_day_at_a_time_and_an_endless_one_ends() {
    let years = Calendar::new("closed", "UTC", &texts(&["2027-01-01..2029-12-31"]), &[]).unwrap();
    let calendars = Calendars::new([years]);
    let mut every_minute = TriggerSpec::from(TriggerKind::Interval {
        every_secs: 60,
        anchor: Some(at("2026-12-31T23:58:00Z")),
    });
    every_minute.exclude = texts(&["closed"]);
    let trigger = every_minute.compile_with(None, &calendars).unwrap();
    assert_eq!(
        trigger.next_included_after(at("2026-12-31T23:59:00Z")),
        Some(at("2030-01-01T00:00:00Z"))
    );
    let mut once = TriggerSpec::from(TriggerKind::Once {
        at: at("2028-06-01T12:00:00Z"),
    });
    once.exclude = texts(&["closed"]);
    let trigger = once.compile_with(None, &calendars).unwrap();
    assert_eq!(
        trigger.next_included_after(at("2026-01-01T00:00:00Z")),
        None
    );
}

#[test]
fn a_calendar_not_configured_is_refused_by_name() {
    let error = daily_nine(&["holydays"])
        .compile_with(None, &holidays())
        .unwrap_err();
    assert!(matches!(error, TriggerError::UnknownCalendar { .. }));
    let message = error.to_string();
    assert!(
        message.contains("'holydays'") && message.contains("holidays, weekends"),
        "{message}"
    );
    let none = daily_nine(&["holidays"])
        .compile_with(None, &Calendars::default())
        .unwrap_err();
    assert!(none.to_string().contains("none is configured"), "{none}");
}

#[test]
fn exclude_is_written_only_when_given() {
    let spec = daily_nine(&["holidays"]);
    let written = serde_json::to_value(&spec).unwrap();
    assert_eq!(written["exclude"], json!(["holidays"]));
    assert_eq!(
        serde_json::from_value::<TriggerSpec>(written).unwrap(),
        spec
    );
    let plain = serde_json::to_value(daily_nine(&[])).unwrap();
    assert!(plain.get("exclude").is_none(), "{plain}");
    let bad = json!({"type": "once", "at": "2026-01-01T00:00:00Z", "exclude": "holidays"});
    let error = serde_json::from_value::<TriggerSpec>(bad).unwrap_err();
    assert!(error.to_string().contains("trigger.exclude"), "{error}");
}
