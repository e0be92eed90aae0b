//! Properties of every trigger over the whole range of values a caller can hand in: no panic,
//! fires strictly after the instant asked about, never past the end of year 9999, and always
//! writable as RFC 3339.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::TZ_VARIANTS;
use proptest::prelude::*;
use triggers::{CronSchedule, LATEST, Trigger, TriggerKind, in_range};

/// Any instant chrono can hold, with a bias towards the edges of the supported years.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp_millis();
    let max = DateTime::<Utc>::MAX_UTC.timestamp_millis();
    let edge = LATEST.timestamp_millis();
    prop_oneof![
        (min..=max),
        (edge - 400 * 86_400_000..=edge + 86_400_000),
        (-62_167_219_200_000i64 - 86_400_000..=-62_167_219_200_000 + 400 * 86_400_000),
        (0i64..=4_102_444_800_000),
    ]
    .prop_map(|millis| DateTime::from_timestamp_millis(millis).expect("within chrono's range"))
}

fn zone() -> impl Strategy<Value = chrono_tz::Tz> {
    (0..TZ_VARIANTS.len()).prop_map(|i| TZ_VARIANTS[i])
}

/// One cron field: a mix of the syntax the dialect accepts and values just outside it.
fn field(max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (0..=max + 1).prop_map(|n| n.to_string()),
        (0..=max, 0..=max).prop_map(|(a, b)| format!("{a}-{b}")),
        (1..=max + 2).prop_map(|step| format!("*/{step}")),
        (0..=max, 0..=max, 1..=max + 1).prop_map(|(a, b, s)| format!("{a}-{b}/{s}")),
        (0..=max, 0..=max).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    prop_oneof![
        (field(59), field(23), field(31), field(12), field(7))
            .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}")),
        (
            field(59),
            field(59),
            field(23),
            field(31),
            field(12),
            field(7)
        )
            .prop_map(|(s, m, h, dom, mon, dow)| format!("{s} {m} {h} {dom} {mon} {dow}")),
        Just("@yearly".to_string()),
        Just("0 0 29 2 */7".to_string()),
        Just("0 0 29 2 1".to_string()),
        ".{0,40}",
    ]
}

fn check_fire(fire: Option<DateTime<Utc>>, after: DateTime<Utc>) -> Result<(), TestCaseError> {
    if let Some(fire) = fire {
        prop_assert!(fire > after, "{fire} is not after {after}");
        prop_assert!(in_range(fire), "{fire} is outside the years 0000-9999");
        let text = fire.to_rfc3339_opts(SecondsFormat::Millis, true);
        prop_assert!(
            DateTime::parse_from_rfc3339(&text).is_ok(),
            "{text} is not RFC 3339"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn cron_fires_are_after_the_instant_and_within_the_years(
        expression in expression(),
        zone in zone(),
        after in instant(),
    ) {
        let Ok(schedule) = CronSchedule::parse(&expression, zone) else {
            return Ok(());
        };
        let mut cursor = after;
        for _ in 0..3 {
            let fire = schedule.next_after(cursor);
            check_fire(fire, cursor)?;
            let Some(fire) = fire else { break };
            cursor = fire;
        }
    }

    #[test]
    fn intervals_compile_or_refuse_and_never_panic(
        every_secs in prop_oneof![any::<u64>(), 0u64..=100 * 366 * 86_400],
        anchor in instant(),
        after in instant(),
        now in instant(),
    ) {
        let spec = TriggerKind::Interval { every_secs, anchor: Some(anchor) };
        let Ok(trigger) = spec.compile() else {
            return Ok(());
        };
        check_fire(trigger.next_after(after), after)?;
        check_coalesce(&trigger, after, now)?;
    }

    #[test]
    fn once_triggers_fire_at_most_once(at in instant(), after in instant()) {
        let Ok(trigger) = (TriggerKind::Once { at }).compile() else {
            prop_assert!(!in_range(at));
            return Ok(());
        };
        let fire = trigger.next_after(after);
        check_fire(fire, after)?;
        if let Some(fire) = fire {
            prop_assert_eq!(trigger.next_after(fire), None);
        }
    }

    #[test]
    fn coalescing_lands_between_the_due_instant_and_now(
        expression in expression(),
        zone in zone(),
        due in instant(),
        span_secs in prop_oneof![0i64..=86_400, 0i64..=400 * 366 * 86_400],
    ) {
        let Ok(schedule) = CronSchedule::parse(&expression, zone) else {
            return Ok(());
        };
        let Some(now) = due.checked_add_signed(TimeDelta::seconds(span_secs)) else {
            return Ok(());
        };
        check_coalesce(&Trigger::from(schedule), due, now)?;
    }
}

fn check_coalesce(
    trigger: &Trigger,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let (due, now) = if due <= now { (due, now) } else { (now, due) };
    let folded = trigger.coalesce(due, now);
    prop_assert!(
        folded.latest >= due && folded.latest <= now,
        "coalesced {} outside {due}..{now}",
        folded.latest
    );
    Ok(())
}
