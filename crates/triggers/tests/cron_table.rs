//! Tables of cron cases: parsing, field semantics, cronie's day rule and its DST policy.
//! Expected instants for DST cases were derived from the tz database independently
//! (transition instants, not this crate's output).

use chrono::{DateTime, Utc};
use triggers::{CronError, CronSchedule, Trigger, TriggerKind, TriggerSpec, parse_timezone};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
        .with_timezone(&Utc)
}

/// The first `count` fires strictly after `after`, each computed from the previous one.
fn fires(expression: &str, zone: &str, after: &str, count: usize) -> Vec<String> {
    let schedule = CronSchedule::parse(expression, parse_timezone(zone).unwrap())
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    let mut out = Vec::new();
    let mut cursor = at(after);
    for _ in 0..count {
        match schedule.next_after(cursor) {
            Some(next) => {
                out.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                cursor = next;
            }
            None => break,
        }
    }
    out
}

fn check(cases: &[(&str, &str, &str, &[&str])]) {
    for (expression, zone, after, expected) in cases {
        let got = fires(expression, zone, after, expected.len());
        assert_eq!(got, *expected, "'{expression}' in {zone} after {after}");
    }
}

#[test]
fn field_syntax() {
    check(&[
        (
            "*/15 9 * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T09:00:00Z",
                "2026-01-01T09:15:00Z",
                "2026-01-01T09:30:00Z",
            ],
        ),
        (
            "5,10-12 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:05:00Z",
                "2026-01-01T00:10:00Z",
                "2026-01-01T00:11:00Z",
                "2026-01-01T00:12:00Z",
                "2026-01-01T01:05:00Z",
            ],
        ),
        (
            "10-30/10 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:10:00Z",
                "2026-01-01T00:20:00Z",
                "2026-01-01T00:30:00Z",
                "2026-01-01T01:10:00Z",
            ],
        ),
        (
            "50/5 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:50:00Z",
                "2026-01-01T00:55:00Z",
                "2026-01-01T01:50:00Z",
            ],
        ),
        // Month names in any case, lists of names.
        (
            "0 0 1 jan,JUL *",
            "UTC",
            "2026-02-01T00:00:00Z",
            &["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"],
        ),
        (
            "0 0 1 Mar-May *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
                "2027-03-01T00:00:00Z",
            ],
        ),
        // Wrap-around hour range.
        (
            "0 22-1 * * *",
            "UTC",
            "2026-01-01T12:00:00Z",
            &[
                "2026-01-01T22:00:00Z",
                "2026-01-01T23:00:00Z",
                "2026-01-02T00:00:00Z",
                "2026-01-02T01:00:00Z",
                "2026-01-02T22:00:00Z",
            ],
        ),
        // Wrap-around month range.
        (
            "0 0 1 nov-feb *",
            "UTC",
            "2026-03-01T00:00:00Z",
            &[
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "2027-02-01T00:00:00Z",
                "2027-11-01T00:00:00Z",
            ],
        ),
        // Six fields: seconds first.
        (
            "*/15 * * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:00:15Z",
                "2026-01-01T00:00:30Z",
                "2026-01-01T00:00:45Z",
                "2026-01-01T00:01:00Z",
            ],
        ),
        (
            "30 0 12 * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T12:00:30Z", "2026-01-02T12:00:30Z"],
        ),
        // Leap day only.
        (
            "0 0 29 2 *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
        ),
        // Month lengths: the 31st skips short months.
        (
            "0 0 31 * *",
            "UTC",
            "2026-01-31T00:00:00Z",
            &[
                "2026-03-31T00:00:00Z",
                "2026-05-31T00:00:00Z",
                "2026-07-31T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn macros_expand_to_their_crontab_lines() {
    check(&[
        (
            "@yearly",
            "UTC",
            "2026-03-01T00:00:00Z",
            &["2027-01-01T00:00:00Z"],
        ),
        (
            "@annually",
            "UTC",
            "2026-03-01T00:00:00Z",
            &["2027-01-01T00:00:00Z"],
        ),
        (
            "@monthly",
            "UTC",
            "2026-03-05T00:00:00Z",
            &["2026-04-01T00:00:00Z"],
        ),
        // 2026-11-22 is a Sunday.
        (
            "@weekly",
            "UTC",
            "2026-11-20T00:00:00Z",
            &["2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z"],
        ),
        (
            "@daily",
            "UTC",
            "2026-03-05T10:00:00Z",
            &["2026-03-06T00:00:00Z"],
        ),
        (
            "@midnight",
            "UTC",
            "2026-03-05T10:00:00Z",
            &["2026-03-06T00:00:00Z"],
        ),
        (
            "@HOURLY",
            "UTC",
            "2026-03-05T10:00:00Z",
            &["2026-03-05T11:00:00Z"],
        ),
    ]);
}

#[test]
fn day_of_week_numbers_sunday_as_0_and_7() {
    // 2026-11-22 is a Sunday, 2026-11-23 a Monday. APScheduler's from_crontab reads 1 as Tuesday.
    check(&[
        (
            "0 9 * * 0",
            "UTC",
            "2026-11-18T00:00:00Z",
            &["2026-11-22T09:00:00Z"],
        ),
        (
            "0 9 * * 7",
            "UTC",
            "2026-11-18T00:00:00Z",
            &["2026-11-22T09:00:00Z"],
        ),
        (
            "0 9 * * 1",
            "UTC",
            "2026-11-18T00:00:00Z",
            &["2026-11-23T09:00:00Z"],
        ),
        (
            "0 9 * * MON",
            "UTC",
            "2026-11-18T00:00:00Z",
            &["2026-11-23T09:00:00Z"],
        ),
        (
            "0 9 * * sat",
            "UTC",
            "2026-11-18T00:00:00Z",
            &["2026-11-21T09:00:00Z"],
        ),
        (
            "0 9 * * 5-7",
            "UTC",
            "2026-11-19T00:00:00Z",
            &[
                "2026-11-20T09:00:00Z",
                "2026-11-21T09:00:00Z",
                "2026-11-22T09:00:00Z",
                "2026-11-27T09:00:00Z",
            ],
        ),
        (
            "0 9 * * 1-5",
            "UTC",
            "2026-11-20T10:00:00Z",
            &["2026-11-23T09:00:00Z"],
        ),
    ]);
}

#[test]
fn wrap_around_day_of_week_ranges() {
    // fri-tue: Fri 20, Sat 21, Sun 22, Mon 23, Tue 24, then Fri 27.
    check(&[
        (
            "0 0 * * fri-tue",
            "UTC",
            "2026-11-19T12:00:00Z",
            &[
                "2026-11-20T00:00:00Z",
                "2026-11-21T00:00:00Z",
                "2026-11-22T00:00:00Z",
                "2026-11-23T00:00:00Z",
                "2026-11-24T00:00:00Z",
                "2026-11-27T00:00:00Z",
            ],
        ),
        // 5-2/2: Friday, Sunday, Tuesday.
        (
            "0 0 * * 5-2/2",
            "UTC",
            "2026-11-19T12:00:00Z",
            &[
                "2026-11-20T00:00:00Z",
                "2026-11-22T00:00:00Z",
                "2026-11-24T00:00:00Z",
                "2026-11-27T00:00:00Z",
            ],
        ),
        (
            "0 0 * * SAT-SUN",
            "UTC",
            "2026-11-19T12:00:00Z",
            &[
                "2026-11-21T00:00:00Z",
                "2026-11-22T00:00:00Z",
                "2026-11-28T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn day_of_month_or_day_of_week_when_both_restricted() {
    // 13th of the month OR any Friday. November 2026: Fridays 6, 13, 20, 27.
    check(&[
        (
            "0 0 13 * 5",
            "UTC",
            "2026-11-01T00:00:00Z",
            &[
                "2026-11-06T00:00:00Z",
                "2026-11-13T00:00:00Z",
                "2026-11-20T00:00:00Z",
                "2026-11-27T00:00:00Z",
                "2026-12-04T00:00:00Z",
                "2026-12-11T00:00:00Z",
                "2026-12-13T00:00:00Z",
            ],
        ),
        // Day-of-month 1 OR Monday.
        (
            "0 0 1 * mon",
            "UTC",
            "2026-11-25T00:00:00Z",
            &[
                "2026-11-30T00:00:00Z",
                "2026-12-01T00:00:00Z",
                "2026-12-07T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn a_field_beginning_with_star_is_unrestricted_so_both_must_match() {
    // Odd days of the month that are also Fridays: Nov 2026 Fridays are 6, 13, 20, 27.
    check(&[
        (
            "0 0 */2 * 5",
            "UTC",
            "2026-11-01T00:00:00Z",
            &["2026-11-13T00:00:00Z", "2026-11-27T00:00:00Z"],
        ),
        // The 13th that falls on a day of week 0,2,4,6 (*/2): 2026-12-13 is a Sunday.
        (
            "0 0 13 * */2",
            "UTC",
            "2026-11-01T00:00:00Z",
            &["2026-12-13T00:00:00Z"],
        ),
        // Plain * in day-of-week: day-of-month alone decides.
        (
            "0 0 13 * *",
            "UTC",
            "2026-11-01T00:00:00Z",
            &["2026-11-13T00:00:00Z", "2026-12-13T00:00:00Z"],
        ),
    ]);
}

#[test]
fn time_zones_without_dst_including_odd_offsets() {
    check(&[
        (
            "0 9 * * *",
            "Asia/Kathmandu",
            "2026-06-01T00:00:00Z",
            &["2026-06-01T03:15:00Z", "2026-06-02T03:15:00Z"],
        ),
        (
            "0 9 * * *",
            "Asia/Kolkata",
            "2026-06-01T00:00:00Z",
            &["2026-06-01T03:30:00Z"],
        ),
        (
            "0 0 * * *",
            "Pacific/Chatham",
            "2026-06-01T00:00:00Z",
            &["2026-06-01T11:15:00Z"],
        ),
    ]);
}

#[test]
fn dst_spring_forward_fixed_time_fires_once_right_after_the_jump() {
    check(&[
        // New York: 2026-03-08 02:00 EST jumps to 03:00 EDT at 07:00Z.
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        ),
        (
            "0 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            &["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"],
        ),
        // Two skipped times still fire once.
        (
            "0,30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            &[
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:00:00Z",
                "2026-03-09T06:30:00Z",
            ],
        ),
        // Lord Howe jumps 30 minutes: 2026-10-04 02:00 +10:30 becomes 02:30 +11:00 at 15:30Z.
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            &["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
        ),
        // Chatham: 2026-09-27 02:45 +12:45 becomes 03:45 +13:45 at 14:00Z.
        (
            "0 3 * * *",
            "Pacific/Chatham",
            "2026-09-26T00:00:00Z",
            &["2026-09-26T14:00:00Z", "2026-09-27T13:15:00Z"],
        ),
        // London: 2026-03-29 01:00 GMT becomes 02:00 BST at 01:00Z.
        (
            "30 1 * * *",
            "Europe/London",
            "2026-03-28T12:00:00Z",
            &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
    ]);
}

#[test]
fn dst_fall_back_fixed_time_fires_once_on_the_first_pass() {
    check(&[
        // New York: 01:00-02:00 repeats on 2026-11-01; first pass is EDT (-4).
        (
            "30 1 * * *",
            "America/New_York",
            "2026-11-01T00:00:00Z",
            &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        ),
        (
            "*/20 1 * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            &[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-02T06:00:00Z",
            ],
        ),
        // Lord Howe: 01:30-02:00 repeats on 2026-04-05 (a 30-minute fold).
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T00:00:00Z",
            &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
        ),
        // Chatham: 02:45-03:45 repeats on 2026-04-05.
        (
            "15 3 * * *",
            "Pacific/Chatham",
            "2026-04-04T00:00:00Z",
            &["2026-04-04T13:30:00Z", "2026-04-05T14:30:00Z"],
        ),
    ]);
}

#[test]
fn dst_wildcard_hour_follows_the_real_clock() {
    check(&[
        // Spring forward: 02:30 does not exist and is not made up.
        (
            "30 * * * *",
            "America/New_York",
            "2026-03-08T06:00:00Z",
            &["2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"],
        ),
        // Fall back: 01:30 fires in both passes.
        (
            "30 * * * *",
            "America/New_York",
            "2026-11-01T05:00:00Z",
            &[
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:30:00Z",
            ],
        ),
        // Every 20 minutes keeps a steady real-time rhythm through the repeated hour.
        (
            "*/20 * * * *",
            "America/New_York",
            "2026-11-01T05:10:00Z",
            &[
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:20:00Z",
                "2026-11-01T06:40:00Z",
                "2026-11-01T07:00:00Z",
            ],
        ),
        // Lord Howe's 30-minute fold: every 15 minutes of real time.
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-04-04T14:25:00Z",
            &[
                "2026-04-04T14:30:00Z",
                "2026-04-04T14:45:00Z",
                "2026-04-04T15:00:00Z",
                "2026-04-04T15:15:00Z",
                "2026-04-04T15:30:00Z",
            ],
        ),
        // Lord Howe's 30-minute gap: nothing is made up for 02:00-02:30.
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-10-03T15:00:00Z",
            &[
                "2026-10-03T15:15:00Z",
                "2026-10-03T15:30:00Z",
                "2026-10-03T15:45:00Z",
            ],
        ),
        // Six-field, every 30 minutes with seconds, across the London fold.
        (
            "0 */30 * * * *",
            "Europe/London",
            "2026-10-25T00:10:00Z",
            &[
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn next_fire_is_computed_from_the_previous_scheduled_instant() {
    let schedule = CronSchedule::parse("0 */2 * * *", parse_timezone("UTC").unwrap()).unwrap();
    let scheduled = at("2026-01-01T10:00:00Z");
    // However late the previous run actually started, the next fire follows the scheduled one.
    assert_eq!(
        schedule.next_after(scheduled),
        Some(at("2026-01-01T12:00:00Z"))
    );
    assert_eq!(
        schedule.next_after(at("2026-01-01T10:00:00.999Z")),
        Some(at("2026-01-01T12:00:00Z"))
    );
    assert_eq!(
        schedule.next_after(at("2026-01-01T09:59:59.999Z")),
        Some(at("2026-01-01T10:00:00Z"))
    );
}

#[test]
fn invalid_expressions_are_rejected_naming_the_field() {
    let cases: &[(&str, &str)] = &[
        ("61 * * * *", "minute: value 61 is out of range 0-59"),
        ("* 24 * * *", "hour: value 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month: value 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month: value 32 is out of range 1-31"),
        ("* * * 13 *", "month: value 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week: value 8 is out of range 0-7"),
        ("60 * * * * *", "second: value 60 is out of range 0-59"),
        (
            "*/90 * * * *",
            "minute: step 90 is wider than the field, which has 60 values",
        ),
        (
            "* */25 * * *",
            "hour: step 25 is wider than the field, which has 24 values",
        ),
        ("*/0 * * * *", "minute: a step of 0 never advances"),
        ("* * * foo *", "month: 'foo' is neither a number nor a name"),
        (
            "* * * * funday",
            "day-of-week: 'funday' is neither a number nor a name",
        ),
        ("x * * * *", "minute: 'x' is not a number"),
        ("* * L * *", "day-of-month: 'L' is not a number"),
        ("* * ? * *", "day-of-month: '?' is not a number"),
        (
            "* * * * 5#2",
            "day-of-week: '5#2' is neither a number nor a name",
        ),
        ("1,,2 * * * *", "minute: has an empty list item"),
        ("1-2-3 * * * *", "minute: '2-3' is not a number"),
        ("*/x * * * *", "minute: step 'x' is not a whole number"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * * *", "got 7"),
        ("", "empty"),
        ("@reboot", "unknown macro '@reboot'"),
        ("0 0 31 2 *", "can never fire"),
        ("0 0 30 feb *", "can never fire"),
        ("0 0 31 4,6,9,11 *", "can never fire"),
    ];
    for (expression, expected) in cases {
        let error = triggers::CronExpr::parse(expression)
            .err()
            .unwrap_or_else(|| panic!("'{expression}' was accepted"));
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "'{expression}': got '{message}', want '{expected}'"
        );
    }
    assert!(matches!(
        triggers::CronExpr::parse("0 0 31 2 *"),
        Err(CronError::NeverFires(_))
    ));
}

#[test]
fn borderline_expressions_that_can_fire_are_accepted() {
    for expression in [
        "*/60 * * * *",
        "0 0 30 2 mon",
        "0 0 29 2 *",
        "0 0 * * */7",
        "59 23 31 12 *",
    ] {
        triggers::CronExpr::parse(expression).unwrap_or_else(|e| panic!("'{expression}': {e}"));
    }
}

#[test]
fn unknown_time_zones_are_rejected() {
    let error = TriggerKind::Cron {
        expression: "* * * * *".into(),
        timezone: "Mars/Olympus".into(),
    }
    .compile()
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown time zone 'Mars/Olympus'"),
        "{error}"
    );
}

#[test]
fn interval_trigger_steps_from_its_anchor() {
    let anchor = at("2026-01-01T00:00:00Z");
    let trigger = TriggerKind::Interval {
        every_secs: 90,
        anchor: Some(anchor),
    }
    .compile()
    .unwrap();
    assert_eq!(trigger.next_after(at("2025-12-31T23:59:59Z")), Some(anchor));
    assert_eq!(trigger.next_after(anchor), Some(at("2026-01-01T00:01:30Z")));
    assert_eq!(
        trigger.next_after(at("2026-01-01T00:01:29.5Z")),
        Some(at("2026-01-01T00:01:30Z"))
    );
    assert_eq!(
        trigger.next_after(at("2026-01-01T00:01:30Z")),
        Some(at("2026-01-01T00:03:00Z"))
    );
    assert!(
        TriggerKind::Interval {
            every_secs: 0,
            anchor: Some(anchor)
        }
        .compile()
        .is_err()
    );
}

#[test]
fn once_trigger_fires_a_single_time() {
    let instant = at("2026-05-01T12:00:00Z");
    let trigger = TriggerKind::Once { at: instant }.compile().unwrap();
    assert_eq!(
        trigger.next_after(at("2026-05-01T11:00:00Z")),
        Some(instant)
    );
    assert_eq!(trigger.next_after(instant), None);
}

#[test]
fn coalescing_folds_missed_occurrences_into_the_latest() {
    let cron = TriggerKind::Cron {
        expression: "* * * * *".into(),
        timezone: "UTC".into(),
    }
    .compile()
    .unwrap();
    let folded = cron.coalesce(at("2026-01-01T10:00:00Z"), at("2026-01-01T10:05:30Z"));
    assert_eq!(
        (folded.latest, folded.missed, folded.exact),
        (at("2026-01-01T10:05:00Z"), 5, true)
    );

    let interval = TriggerKind::Interval {
        every_secs: 60,
        anchor: Some(at("2026-01-01T00:00:00Z")),
    }
    .compile()
    .unwrap();
    let folded = interval.coalesce(at("2026-01-01T10:00:00Z"), at("2026-01-01T10:05:30Z"));
    assert_eq!(
        (folded.latest, folded.missed, folded.exact),
        (at("2026-01-01T10:05:00Z"), 5, true)
    );

    // A dense trigger after a long outage: the count is a lower bound, the latest is still right.
    let dense = TriggerKind::Cron {
        expression: "* * * * * *".into(),
        timezone: "UTC".into(),
    }
    .compile()
    .unwrap();
    let folded = dense.coalesce(at("2026-01-01T00:00:00Z"), at("2026-01-03T07:08:09.5Z"));
    assert_eq!(folded.latest, at("2026-01-03T07:08:09Z"));
    assert!(!folded.exact && folded.missed >= 1024);
}

#[test]
fn trigger_specs_round_trip_as_json() {
    let spec: TriggerSpec =
        serde_json::from_str(r#"{"type":"cron","expression":"0 9 * * 1"}"#).unwrap();
    assert_eq!(
        spec,
        TriggerKind::Cron {
            expression: "0 9 * * 1".into(),
            timezone: "UTC".into()
        }
        .into()
    );
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<TriggerSpec>(&text).unwrap(), spec);
    assert!(
        serde_json::from_str::<TriggerSpec>(r#"{"type":"cron","expression":"x","bogus":1}"#)
            .is_err()
    );
    let _: Trigger = spec.compile().unwrap();
}
