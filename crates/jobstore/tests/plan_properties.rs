//! Properties of `plan_fire` over the whole range of values the API accepts and a store may
//! hold: planning never parks a schedule whose trigger compiles (a panic would park it), the
//! row that runs is the latest occurrence at or before now, and the next run lies after it and
//! within the years 0000-9999.

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::plan::{Active, plan_fire};
use jobstore::{Policy, RunStatus, Schedule, StoreName, SystemTaskTarget, Target};
use proptest::prelude::*;
use triggers::{LATEST, TriggerKind, TriggerSpec, in_range};

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let edge = LATEST.timestamp_millis();
    prop_oneof![
        (-62_167_219_200_000i64..=edge),
        (edge - 400 * 86_400_000..=edge),
        (0i64..=4_102_444_800_000),
    ]
    .prop_map(|millis| DateTime::from_timestamp_millis(millis).expect("in range"))
}

fn trigger() -> impl Strategy<Value = TriggerSpec> {
    let zones = [
        "UTC",
        "America/Havana",
        "Europe/Paris",
        "Asia/Kathmandu",
        "Pacific/Apia",
    ];
    let expressions = [
        "* * * * *",
        "*/7 * * * * *",
        "0 9 * * 1",
        "0 0 29 2 */7",
        "30 2 * 3 0",
        "@yearly",
    ];
    let daily: [&[&str]; 3] = [&["09:00", "18:30"], &["02:30"], &["00:00:01", "23:59:59"]];
    prop_oneof![
        (0..expressions.len(), 0..zones.len()).prop_map(move |(e, z)| TriggerSpec::from(
            TriggerKind::Cron {
                expression: expressions[e].to_string(),
                timezone: zones[z].to_string(),
            }
        )),
        (1u64..=triggers::MAX_INTERVAL_SECS, instant()).prop_map(|(every_secs, anchor)| {
            TriggerSpec::from(TriggerKind::Interval {
                every_secs,
                anchor: Some(anchor),
            })
        }),
        instant().prop_map(|at| TriggerSpec::from(TriggerKind::Once { at })),
        (0..daily.len(), 0..zones.len()).prop_map(move |(d, z)| TriggerSpec::from(
            TriggerKind::DailyTimes {
                times: daily[d].iter().map(|t| t.to_string()).collect(),
                timezone: zones[z].to_string(),
            }
        )),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    let grace = prop_oneof![
        Just(None),
        any::<u64>().prop_map(Some),
        (0..=Policy::MAX_MISFIRE_GRACE_SECS).prop_map(Some),
        (0u64..=120).prop_map(Some),
    ];
    (any::<bool>(), grace).prop_map(|(coalesce, misfire_grace_secs)| Policy {
        coalesce,
        misfire_grace_secs,
        ..Policy::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn planning_never_fails_for_a_trigger_that_compiles(
        trigger in trigger(),
        policy in policy(),
        due in instant(),
        late_secs in prop_oneof![0i64..=120, 0i64..=400 * 366 * 86_400],
        lease_secs in 1i64..=86_400,
    ) {
        let now = due
            .checked_add_signed(TimeDelta::seconds(late_secs))
            .map_or(LATEST, |now| now.min(LATEST));
        let compiles = trigger.compile().is_ok();
        let schedule = Schedule {
            id: "s".into(),
            name: "s".into(),
            owner: "u".into(),
            trigger,
            target: Target::SystemTask(SystemTaskTarget { task: "t".into(), kwargs: serde_json::Value::Null }),
            policy,
            paused: false,
            tags: Vec::new(),
            paused_reason: None,
            next_run_at: Some(due.min(now)),
            created_at: due.min(now),
        };
        let plan = plan_fire(StoreName::Execution, &schedule, now, TimeDelta::seconds(lease_secs), Active::default());
        if !compiles {
            prop_assert!(plan.parked.is_some());
            return Ok(());
        }
        prop_assert_eq!(&plan.parked, &None);
        let last = plan.runs.last().expect("one row for the occurrence");
        prop_assert!(matches!(last.status, RunStatus::Pending | RunStatus::Skipped));
        prop_assert!(plan.runs.len() <= 2);
        for run in &plan.runs {
            prop_assert!(in_range(run.scheduled_time), "{:?}", run);
            prop_assert!(run.scheduled_time <= now, "{:?}", run);
        }
        if let Some(next) = plan.next_run_at {
            prop_assert!(next > last.scheduled_time, "next {next} vs {:?}", last);
            prop_assert!(in_range(next));
        }
    }
}
