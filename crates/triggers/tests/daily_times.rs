//! `daily_times`: fixed wall-clock times in a zone, each behaving as the fixed cron time
//! `S M H * * *` does (daylight-saving gaps and repeats included).

use chrono::{DateTime, TimeDelta, Utc};
use triggers::{
    CronSchedule, MAX_DAILY_TIMES, TriggerError, TriggerKind, TriggerSpec, parse_timezone,
};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn daily(times: &[&str], zone: &str) -> TriggerSpec {
    TriggerKind::DailyTimes {
        times: times.iter().map(|t| t.to_string()).collect(),
        timezone: zone.to_string(),
    }
    .into()
}

#[test]
fn the_next_fire_is_the_earliest_listed_time_in_the_zone() {
    let trigger = daily(&["18:30", "09:00"], "Europe/Paris")
        .compile()
        .unwrap();
    // 10:00 in Paris (CEST, UTC+2): 18:30 comes next, then 09:00 the day after.
    let cases = [
        ("2026-06-01T08:00:00Z", "2026-06-01T16:30:00Z"),
        ("2026-06-01T16:30:00Z", "2026-06-02T07:00:00Z"),
        ("2026-06-01T06:59:59Z", "2026-06-01T07:00:00Z"),
        // Winter (CET, UTC+1).
        ("2026-12-01T12:00:00Z", "2026-12-01T17:30:00Z"),
    ];
    for (after, expected) in cases {
        assert_eq!(
            trigger.next_after(at(after)),
            Some(at(expected)),
            "after {after}"
        );
    }
    assert_eq!(trigger.zone(), parse_timezone("Europe/Paris").unwrap());
    let seconds = daily(&["00:00:30"], "UTC").compile().unwrap();
    assert_eq!(
        seconds.next_after(at("2026-01-01T00:00:30Z")),
        Some(at("2026-01-02T00:00:30Z"))
    );
    // WITA, as the AGNT backend declares its jobs: 10:00 there is 02:00 UTC.
    let wita = daily(&["10:00"], "Asia/Makassar").compile().unwrap();
    assert_eq!(
        wita.next_after(at("2026-12-07T00:00:00Z")),
        Some(at("2026-12-07T02:00:00Z"))
    );
}

#[test]
fn daylight_saving_is_handled_as_fixed_cron_times_are() {
    let times = ["01:30", "02:30", "03:15:20", "09:00"];
    for zone in ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"] {
        let tz = parse_timezone(zone).unwrap();
        let trigger = daily(&times, zone).compile().unwrap();
        let crons: Vec<CronSchedule> = times
            .iter()
            .map(|t| {
                let parts: Vec<&str> = t.split(':').collect();
                let second = parts.get(2).copied().unwrap_or("0");
                CronSchedule::parse(&format!("{second} {} {} * * *", parts[1], parts[0]), tz)
                    .unwrap()
            })
            .collect();
        // Around both of 2026's transitions in each zone, every 7 minutes for three days.
        for start in [
            "2026-03-27T00:00:00Z",
            "2026-10-23T00:00:00Z",
            "2026-04-03T00:00:00Z",
        ] {
            let mut after = at(start);
            for _ in 0..(3 * 24 * 60 / 7) {
                let expected = crons.iter().filter_map(|c| c.next_after(after)).min();
                assert_eq!(trigger.next_after(after), expected, "{zone} after {after}");
                after += TimeDelta::minutes(7);
            }
        }
    }
}

#[test]
fn repeated_times_fire_once_and_missed_days_coalesce() {
    let trigger = daily(&["09:00", "09:00", "21:00"], "UTC")
        .compile()
        .unwrap();
    assert_eq!(
        trigger.next_after(at("2026-05-01T09:00:00Z")),
        Some(at("2026-05-01T21:00:00Z"))
    );
    let folded = trigger.coalesce(at("2026-05-01T09:00:00Z"), at("2026-05-03T22:00:00Z"));
    assert_eq!(folded.latest, at("2026-05-03T21:00:00Z"));
    assert_eq!((folded.missed, folded.exact), (5, true));
}

#[test]
fn bad_times_are_refused_naming_the_time() {
    for bad in [
        "9:00",
        "24:00",
        "12:60",
        "12:00:60",
        "12:00:00:00",
        "ab:cd",
        "",
        "12",
        "-1:00",
    ] {
        let error = daily(&[bad], "UTC").compile().unwrap_err();
        assert!(
            matches!(&error, TriggerError::DailyTimes(message) if message.contains(&format!("'{bad}'"))),
            "{bad}: {error}"
        );
    }
    let none = daily(&[], "UTC").compile().unwrap_err();
    assert!(none.to_string().contains("at least one time"), "{none}");
    let many: Vec<String> = (0..=MAX_DAILY_TIMES)
        .map(|i| format!("{:02}:{:02}", i / 60, i % 60))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let error = daily(&refs, "UTC").compile().unwrap_err();
    assert!(error.to_string().contains("at most"), "{error}");
    let zone = daily(&["09:00"], "Mars/Olympus").compile().unwrap_err();
    assert!(matches!(zone, TriggerError::UnknownZone(_)), "{zone}");
}

#[test]
fn it_is_stored_as_tagged_json() {
    let spec = daily(&["09:00", "18:30"], "Asia/Makassar");
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "daily_times", "times": ["09:00", "18:30"], "timezone": "Asia/Makassar"})
    );
    assert_eq!(serde_json::from_value::<TriggerSpec>(json).unwrap(), spec);
    let utc: TriggerSpec =
        serde_json::from_value(serde_json::json!({"type": "daily_times", "times": ["07:00"]}))
            .unwrap();
    assert_eq!(utc.timezone_name(), "UTC");
    let unknown = serde_json::from_value::<TriggerSpec>(
        serde_json::json!({"type": "daily_times", "times": ["07:00"], "zone": "UTC"}),
    );
    assert!(unknown.is_err(), "unknown fields are refused");
}
