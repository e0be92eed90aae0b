//! Every row APScheduler wrote for the fixtures maps as expected: the imported ones fire at
//! exactly the times APScheduler's own `get_next_fire_time` gives, the others are set aside or
//! skipped as system jobs for the expected reason. A fuzz test feeds the reader random,
//! truncated and corrupted bytes.

mod common;

use apscheduler_import::convert::TAG;
use apscheduler_import::pickle::{self, Limits};
use apscheduler_import::{Mapped, Mapper, Row};
use jobstore::{GraphExecutionTarget, Target};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn fixtures_were_written_by_apscheduler_3_11() {
    let manifest = common::manifest();
    assert!(
        manifest.apscheduler.starts_with("3.11"),
        "{}",
        manifest.apscheduler
    );
    assert!(manifest.cases.len() >= 30);
    for case in &manifest.cases {
        assert!(
            ["apscheduler_jobs", "apscheduler_jobs_batched_notifications"]
                .contains(&case.table.as_str()),
            "{}: {}",
            case.name,
            case.table
        );
    }
}

#[test]
fn every_imported_row_fires_when_apscheduler_fires_it() {
    let manifest = common::manifest();
    let mut mapper = Mapper::new(manifest.reference, Limits::default());
    let mut checked = 0;
    for case in &manifest.cases {
        let (mapped, facts) = mapper.map(&case.row());
        match (case.expect.as_str(), &mapped) {
            ("imported", Mapped::Schedule { schedule, notes }) => {
                assert_eq!(schedule.id, case.id, "{}", case.name);
                assert_eq!(schedule.tags, [TAG]);
                let trigger = schedule.trigger.compile().unwrap();
                let mut fires = Vec::new();
                let mut at = manifest.reference;
                while fires.len() < case.fires.len() + 1 {
                    match trigger.next_after(at) {
                        Some(next) => {
                            fires.push(next);
                            at = next;
                        }
                        None => break,
                    }
                }
                if schedule.paused {
                    assert!(case.next_run_time.is_none(), "{}", case.name);
                    assert_eq!(schedule.next_run_at, None);
                } else {
                    // APScheduler's sequence, and nothing after its last fire (an end date).
                    let expected_len = case.fires.len();
                    assert_eq!(
                        &fires[..expected_len.min(fires.len())],
                        &case.fires[..],
                        "{}: fire times differ (trigger {:?})",
                        case.name,
                        schedule.trigger
                    );
                    if expected_len < 20 {
                        assert_eq!(
                            fires.len(),
                            expected_len,
                            "{}: fires past its end",
                            case.name
                        );
                    }
                    // The next run is the row's, kept.
                    assert_eq!(schedule.next_run_at, Some(case.fires[0]), "{}", case.name);
                    assert_eq!(facts.next_before, Some(case.fires[0]));
                }
                let numbering = notes.iter().any(|n| n.contains("day-of-week numbering"));
                assert_eq!(numbering, case.dow_mismatch, "{}: {notes:?}", case.name);
                let dst = notes.iter().any(|n| n.contains("daylight-saving"));
                assert_eq!(dst, case.dst_note, "{}: {notes:?}", case.name);
                let other = notes.iter().any(|n| n.contains("fires at other times"));
                assert_eq!(other, case.cron_note, "{}: {notes:?}", case.name);
                if !case.dow_mismatch && !case.dst_note && !case.cron_note {
                    assert!(notes.is_empty(), "{}: {notes:?}", case.name);
                }
                checked += 1;
            }
            ("system", Mapped::System { func }) => {
                assert!(func.starts_with("backend.executor.scheduler:"), "{func}");
            }
            ("set_aside", Mapped::SetAside { reason }) => {
                let word = case.reason.as_deref().unwrap();
                assert!(
                    reason.contains(word),
                    "{}: '{reason}' lacks '{word}'",
                    case.name
                );
            }
            (expected, other) => panic!("{}: expected {expected}, got {other:?}", case.name),
        }
    }
    assert!(checked >= 20, "{checked} imported rows checked");
}

#[test]
fn graph_arguments_policy_and_zone_come_over() {
    let manifest = common::manifest();
    let mut mapper = Mapper::new(manifest.reference, Limits::default());
    let find = |name: &str| manifest.cases.iter().find(|c| c.name == name).unwrap();
    let schedule = |mapper: &mut Mapper, name: &str| match mapper.map(&find(name).row()).0 {
        Mapped::Schedule { schedule, .. } => schedule,
        other => panic!("{name}: {other:?}"),
    };

    let enums = schedule(&mut mapper, "enum_kwargs");
    let Target::GraphExecution(GraphExecutionTarget {
        graph_version,
        input_data,
        input_credentials,
        ..
    }) = &enums.target
    else {
        panic!("{:?}", enums.target)
    };
    assert_eq!(*graph_version, 3);
    assert_eq!(input_data, &json!({"topic": "enum_kwargs", "count": 2}));
    // Enum members became their values.
    assert_eq!(input_credentials["github"]["provider"], "github");
    assert_eq!(input_credentials["github"]["type"], "api_key");
    assert!(input_credentials["github"]["title"].is_null());

    let policy = schedule(&mut mapper, "policy");
    assert_eq!(policy.name, "nightly report");
    assert!(!policy.policy.coalesce);
    assert_eq!(policy.policy.misfire_grace_secs, Some(300));
    let defaults = schedule(&mut mapper, "utc_daily");
    assert!(defaults.policy.coalesce);
    assert_eq!(defaults.policy.misfire_grace_secs, None);
    assert_eq!(defaults.name, "execute_graph");

    for (name, zone, expression) in [
        ("pytz_zone", "Europe/London", "0 7 * * *"),
        ("fixed_offset", "Etc/GMT-8", "45 20 * * *"),
        ("paris_weekdays", "Europe/Paris", "0 9 * * 1-5"),
        ("weekday_numbers_old", "UTC", "0 9 * * 2"),
        ("named_ranges", "Europe/Paris", "0 8-17/3 1-15 1-6 *"),
        ("seconds", "UTC", "*/30 */5 * * * *"),
    ] {
        let s = schedule(&mut mapper, name);
        assert_eq!(
            serde_json::to_value(&s.trigger).unwrap(),
            json!({"type": "cron", "expression": expression, "timezone": zone}),
            "{name}"
        );
    }
    let paused = schedule(&mut mapper, "paused");
    assert!(paused.paused);
    let (_, facts) = mapper.map(&find("utc_daily").row());
    assert_eq!(
        Some(&defaults.owner),
        facts.user.as_ref(),
        "the owner is the row's user_id"
    );
    assert_eq!(defaults.owner.len(), 36);
}

#[test]
fn every_truncation_of_every_fixture_is_an_error_not_a_panic() {
    let manifest = common::manifest();
    let mut mapper = Mapper::new(manifest.reference, Limits::default());
    for case in &manifest.cases {
        let bytes = case.bytes();
        for len in 0..bytes.len() {
            let row = Row {
                job_state: bytes[..len].to_vec(),
                ..case.row()
            };
            let (mapped, _) = mapper.map(&row);
            assert!(
                matches!(mapped, Mapped::SetAside { .. }),
                "{} cut at {len} was not set aside",
                case.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = pickle::parse(&bytes, Limits::default());
        let mut with_header = vec![0x80, 5];
        with_header.extend(&bytes);
        let _ = pickle::parse(&with_header, Limits::default());
    }

    #[test]
    fn corrupted_fixtures_never_panic(
        which in 0usize..64,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let manifest = common::manifest();
        let case = &manifest.cases[which % manifest.cases.len()];
        let mut bytes = case.bytes();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        let mut mapper = Mapper::new(manifest.reference, Limits::default());
        let _ = mapper.map(&Row { job_state: bytes, ..case.row() });
    }
}
