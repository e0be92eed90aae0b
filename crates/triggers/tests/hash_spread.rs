//! `H` in cron fields (Jenkins' hash spread): a value chosen by a hash of the schedule's id,
//! the same wherever and whenever it is computed, and spread over the range it may take.

use std::collections::BTreeSet;

use chrono::{DateTime, Timelike, Utc};
use triggers::{CronExpr, CronSchedule, TriggerKind, TriggerSpec, parse_timezone};

fn first_fires(expression: &str, key: &str, count: usize) -> Vec<DateTime<Utc>> {
    let schedule = CronSchedule::parse_keyed(expression, parse_timezone("UTC").unwrap(), Some(key))
        .unwrap_or_else(|e| panic!("{expression} for {key}: {e}"));
    let mut cursor = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut fires = Vec::new();
    for _ in 0..count {
        cursor = schedule.next_after(cursor).unwrap();
        fires.push(cursor);
    }
    fires
}

#[test]
fn an_h_is_one_value_of_its_range_chosen_by_the_key() {
    let mut minutes = BTreeSet::new();
    let mut hours = BTreeSet::new();
    for i in 0..1000 {
        let key = format!("nightly-{i}");
        let fires = first_fires("H H(0-7) * * *", &key, 3);
        let (minute, hour) = (fires[0].minute(), fires[0].hour());
        assert!(hour <= 7, "{key}: {}", fires[0]);
        for fire in &fires[1..] {
            assert_eq!((fire.minute(), fire.hour()), (minute, hour), "{key}: daily");
        }
        assert_eq!(
            first_fires("H H(0-7) * * *", &key, 3),
            fires,
            "{key}: the same again"
        );
        minutes.insert(minute);
        hours.insert(hour);
    }
    // A thousand schedules written alike do not all start at once.
    assert!(minutes.len() >= 55, "minutes used: {}", minutes.len());
    assert_eq!(hours.len(), 8, "every hour of 0-7 is used");
}

#[test]
fn the_value_is_pinned_across_releases() {
    // A change of the hash would move every stored schedule that uses H: this pins it. The
    // value was worked out apart from this crate (Python's hashlib: the first 8 bytes of
    // SHA-256 over "nightly-report", a zero byte and the field's name, big-endian, modulo
    // the range): minute 4, hour 23.
    let fires = first_fires("H H * * *", "nightly-report", 1);
    let again = first_fires("H H * * *", "nightly-report", 1);
    assert_eq!(fires, again);
    assert_eq!(fires[0].to_rfc3339(), PINNED);
}

const PINNED: &str = "2026-01-01T23:04:00+00:00";

#[test]
fn an_h_with_a_step_is_an_offset_then_every_step() {
    for key in ["a", "b", "report-7", "farm:warmup"] {
        let fires = first_fires("H/15 * * * *", key, 4);
        let offset = fires[0].minute();
        assert!(offset < 15, "{key}: {offset}");
        let minutes: Vec<u32> = fires.iter().map(Timelike::minute).collect();
        assert_eq!(
            minutes,
            [offset, offset + 15, offset + 30, offset + 45],
            "{key}"
        );
        let ranged = first_fires("H(10-40)/10 * * * *", key, 3);
        let start = ranged[0].minute();
        assert!((10..20).contains(&start), "{key}: {start}");
        let minutes: Vec<u32> = ranged.iter().map(Timelike::minute).collect();
        assert_eq!(minutes, [start, start + 10, start + 20], "{key}");
    }
}

#[test]
fn a_day_of_the_month_chosen_by_h_is_one_every_month_has() {
    for i in 0..200 {
        let fires = first_fires("0 0 H * *", &format!("monthly-{i}"), 13);
        let day = fires[0].format("%d").to_string().parse::<u32>().unwrap();
        assert!((1..=28).contains(&day), "{day}");
        assert!(
            fires
                .iter()
                .all(|f| f.format("%d").to_string() == fires[0].format("%d").to_string())
        );
    }
}

#[test]
fn h_without_a_key_or_written_wrong_is_refused_naming_the_field() {
    let error = CronExpr::parse("H * * * *").unwrap_err().to_string();
    assert!(error.starts_with("minute: "), "{error}");
    assert!(error.contains("hash_key"), "{error}");
    let spec = TriggerSpec::from(TriggerKind::Cron {
        expression: "0 H * * *".into(),
        timezone: "UTC".into(),
    });
    assert!(spec.compile().is_err(), "no schedule id, no H");
    assert!(spec.compile_for("backup").is_ok());
    for (expression, expected) in [
        (
            "H(7-3) * * * *",
            "minute: the range of 'H(7-3)' ends before it starts",
        ),
        (
            "H(3) * * * *",
            "minute: 'H(3)' is neither H nor H(first-last)",
        ),
        ("HH * * * *", "minute: 'HH' is neither H nor H(first-last)"),
        ("0 H(0-30) * * *", "hour: value 30 is out of range 0-23"),
        ("H/0 * * * *", "minute: a step of 0 never advances"),
    ] {
        let error = CronExpr::parse_keyed(expression, Some("k"))
            .unwrap_err()
            .to_string();
        assert_eq!(error, expected, "{expression}");
    }
}
