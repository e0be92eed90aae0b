//! `start_at` and `end_at`: every kind of trigger fires only within its window, which is part
//! of the trigger's one flat JSON object.

use chrono::{DateTime, Utc};
use serde_json::json;
use triggers::{TriggerError, TriggerKind, TriggerSpec};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn hourly() -> TriggerKind {
    TriggerKind::Cron {
        expression: "0 * * * *".into(),
        timezone: "UTC".into(),
    }
}

fn windowed(kind: TriggerKind, start: Option<&str>, end: Option<&str>) -> TriggerSpec {
    TriggerSpec {
        kind,
        start_at: start.map(at),
        end_at: end.map(at),
        exclude: Vec::new(),
    }
}

#[test]
fn no_fire_before_the_start_and_the_start_itself_counts() {
    let trigger = windowed(hourly(), Some("2026-03-01T05:00:00Z"), None)
        .compile()
        .unwrap();
    assert_eq!(
        trigger.next_after(at("2026-01-01T00:00:00Z")),
        Some(at("2026-03-01T05:00:00Z")),
        "an occurrence exactly at start_at fires"
    );
    let trigger = windowed(hourly(), Some("2026-03-01T05:00:01Z"), None)
        .compile()
        .unwrap();
    assert_eq!(
        trigger.next_after(at("2026-01-01T00:00:00Z")),
        Some(at("2026-03-01T06:00:00Z"))
    );
    assert_eq!(
        trigger.next_after(at("2026-03-01T06:00:00Z")),
        Some(at("2026-03-01T07:00:00Z")),
        "past the start the rule alone decides"
    );
}

#[test]
fn no_fire_after_the_end_and_the_end_itself_counts() {
    let trigger = windowed(hourly(), None, Some("2026-03-01T07:00:00Z"))
        .compile()
        .unwrap();
    assert_eq!(
        trigger.next_after(at("2026-03-01T06:00:00Z")),
        Some(at("2026-03-01T07:00:00Z"))
    );
    assert_eq!(trigger.next_after(at("2026-03-01T07:00:00Z")), None);
    let interval = windowed(
        TriggerKind::Interval {
            every_secs: 60,
            anchor: Some(at("2026-03-01T00:00:00Z")),
        },
        None,
        Some("2026-03-01T00:02:30Z"),
    )
    .compile()
    .unwrap();
    assert_eq!(
        interval.next_after(at("2026-03-01T00:01:00Z")),
        Some(at("2026-03-01T00:02:00Z"))
    );
    assert_eq!(interval.next_after(at("2026-03-01T00:02:00Z")), None);
}

#[test]
fn coalescing_stops_at_the_end() {
    let trigger = windowed(hourly(), None, Some("2026-03-01T07:30:00Z"))
        .compile()
        .unwrap();
    // Down from 05:00 until the next day: the run is the last one inside the window.
    let folded = trigger.coalesce(at("2026-03-01T05:00:00Z"), at("2026-03-02T12:00:00Z"));
    assert_eq!(folded.latest, at("2026-03-01T07:00:00Z"));
    assert_eq!(folded.missed, 2);
}

#[test]
fn an_end_before_the_start_is_refused_naming_both() {
    let error = windowed(
        hourly(),
        Some("2026-03-02T00:00:00Z"),
        Some("2026-03-01T00:00:00Z"),
    )
    .compile()
    .unwrap_err();
    assert!(matches!(error, TriggerError::Window { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("end_at 2026-03-01") && text.contains("start_at 2026-03-02"),
        "{text}"
    );
}

#[test]
fn the_window_is_part_of_the_flat_json_object() {
    let spec = windowed(
        hourly(),
        Some("2026-03-01T00:00:00Z"),
        Some("2026-04-01T00:00:00Z"),
    );
    let text = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        text,
        json!({"type": "cron", "expression": "0 * * * *", "timezone": "UTC",
               "start_at": "2026-03-01T00:00:00Z", "end_at": "2026-04-01T00:00:00Z"})
    );
    assert_eq!(serde_json::from_value::<TriggerSpec>(text).unwrap(), spec);
    // Without a window the object is what it was before windows existed.
    let plain = serde_json::to_value(TriggerSpec::from(hourly())).unwrap();
    assert_eq!(
        plain,
        json!({"type": "cron", "expression": "0 * * * *", "timezone": "UTC"})
    );
    let null_window: TriggerSpec = serde_json::from_value(
        json!({"type": "once", "at": "2026-03-01T00:00:00Z", "end_at": null}),
    )
    .unwrap();
    assert_eq!(null_window.end_at, None);
}

#[test]
fn bad_window_values_and_unknown_fields_are_named() {
    for (value, expected) in [
        (
            json!({"type": "cron", "expression": "* * * * *", "start_at": "tomorrow"}),
            "trigger.start_at must be an RFC 3339 instant",
        ),
        (
            json!({"type": "cron", "expression": "* * * * *", "end_at": 5}),
            "trigger.end_at must be an RFC 3339 instant",
        ),
        (
            json!({"type": "cron", "expression": "* * * * *", "start": "x"}),
            "unknown field `start`",
        ),
        (json!({"type": "weekly"}), "unknown variant `weekly`"),
        (json!(["cron"]), "trigger must be an object"),
    ] {
        let error = serde_json::from_value::<TriggerSpec>(value.clone()).unwrap_err();
        assert!(error.to_string().contains(expected), "{value}: {error}");
    }
}

#[test]
fn an_interval_without_an_anchor_is_anchored_one_interval_after_its_creation() {
    let spec: TriggerSpec =
        serde_json::from_value(json!({"type": "interval", "every_secs": 300})).unwrap();
    assert!(matches!(spec.compile(), Err(TriggerError::Unanchored)));
    let anchored = spec.clone().anchored(at("2026-03-01T10:00:00.700Z"));
    let trigger = anchored.compile().unwrap();
    assert_eq!(
        trigger.next_after(at("2026-03-01T10:00:00Z")),
        Some(at("2026-03-01T10:05:00Z"))
    );
    // A later start_at moves the first fire there.
    let mut late = spec.clone();
    late.start_at = Some(at("2026-03-02T00:00:00Z"));
    let anchored = late.anchored(at("2026-03-01T10:00:00Z"));
    assert_eq!(
        anchored
            .compile()
            .unwrap()
            .next_after(at("2026-03-01T10:00:00Z")),
        Some(at("2026-03-02T00:00:00Z"))
    );
    // An anchor given is kept.
    let given: TriggerSpec = serde_json::from_value(
        json!({"type": "interval", "every_secs": 300, "anchor": "2026-01-01T00:00:01Z"}),
    )
    .unwrap();
    assert_eq!(given.clone().anchored(at("2026-03-01T10:00:00Z")), given);
}
