//! Declared schedules (`[[schedules]]`) with AGNT's 39 jobs: loaded from the shipped example,
//! registered at start, kept across restarts, replaced when changed, removed when dropped,
//! read-only through the API.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use scheduler_client::{Error, ScheduleQuery, ScheduleUpdate, SchedulerError, Target};
use service_kit::config::{Overrides, load_from};

use crate::helpers::{Backend, Daemon, StubBackend, TestDb};

const AGNT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/examples/agnt.toml"
);

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[test]
fn the_agnt_example_declares_its_39_jobs_in_wita() {
    let overrides = Overrides {
        config_file: Some(AGNT.into()),
        ..Overrides::default()
    };
    let config = load_from::<scheduler::config::Config>(&overrides, &[]).unwrap();
    assert_eq!(config.schedules.len(), 39);
    let next = |id: &str, after: &str| {
        let declaration = config.schedules.iter().find(|s| s.id == id).unwrap();
        let trigger = declaration.trigger.compile().unwrap();
        trigger.next_after(at(after))
    };
    // Tuesday 1 December 2026: the next Monday 10:00 in Makassar (UTC+8) is 02:00 UTC.
    assert_eq!(
        next("re_engagement", "2026-12-01T00:00:00Z"),
        Some(at("2026-12-07T02:00:00Z"))
    );
    assert_eq!(
        next("monthly_invoice", "2026-12-02T00:00:00Z"),
        Some(at("2027-01-01T01:00:00Z"))
    );
    assert_eq!(
        next("reset_api_key_queries_today", "2026-12-02T05:00:00Z"),
        Some(at("2026-12-03T00:00:00Z"))
    );
    assert_eq!(
        next("faq_extraction", "2026-12-02T00:00:00Z"),
        Some(at("2026-12-06T15:59:00Z")),
        "Sunday 23:59 WITA"
    );
    for declaration in &config.schedules {
        let address = match &declaration.target {
            Target::Rpc(rpc) => (rpc.endpoint.as_deref(), rpc.url.as_deref()),
            Target::Http(http) => (http.endpoint.as_deref(), http.url.as_deref()),
            other => panic!("{} calls no endpoint: {other:?}", declaration.id),
        };
        assert_eq!(address, (Some("agnt"), None), "{}", declaration.id);
    }
}

/// The example with the test's backend, plus what a test adds to it.
fn config_file(dir: &std::path::Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let file = dir.join("agnt.toml");
    let text = edit(std::fs::read_to_string(AGNT).unwrap());
    std::fs::write(&file, text).unwrap();
    file
}

/// The declared schedules the daemon holds, by id, with their next runs.
async fn declared(daemon: &Daemon) -> BTreeMap<String, Option<DateTime<Utc>>> {
    let registry = daemon.client().get_registry().await.unwrap();
    registry
        .schedules
        .into_iter()
        .filter(|s| s.owner == "system" && s.target["type"] == "http")
        .map(|s| (s.id, s.next_run_time))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_schedules_are_registered_once_kept_replaced_and_removed_across_restarts() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let env = [("SCHEDULER__ENDPOINTS__AGNT__URL", backend.url.as_str())];
    // A raw URL is accepted in a declared schedule: a probe every second.
    let raw = format!(
        "\n[[schedules]]\nid = \"raw_probe\"\ntrigger = {{ type = \"interval\", every_secs = 1 }}\n\
         target = {{ type = \"http\", url = \"{}\", path = \"/raw\", method = \"GET\" }}\n",
        backend.url
    );
    let file = config_file(db.dir.path(), |text| text + &raw);

    let mut daemon = Daemon::start_with_config(&db, &file, &env).await;
    let first = declared(&daemon).await;
    assert_eq!(first.len(), 40, "39 AGNT jobs and the probe: {first:?}");
    assert!(first.values().all(Option::is_some), "each has a next run");
    let probes = backend.wait_for("/raw", 2, Duration::from_secs(30)).await;
    assert!(probes.len() >= 2, "the raw-URL probe fires");
    assert_eq!(probes[0].method, "GET");

    // Shown through the API as declared, and read-only there.
    let client = daemon.client();
    let page = client
        .list_schedules(ScheduleQuery {
            tag: Some("agnt".into()),
            ..ScheduleQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.schedules.len(), 39);
    assert!(
        page.schedules
            .iter()
            .all(|s| s.declared && s.owner == "system")
    );
    let booking = page
        .schedules
        .iter()
        .find(|s| s.id == "re_engagement")
        .unwrap();
    assert_eq!(booking.timezone, "Asia/Makassar");
    assert_eq!(
        booking
            .next_run_time
            .unwrap()
            .format("%a %H:%M %:z")
            .to_string(),
        "Mon 10:00 +08:00"
    );
    for refused in [
        client
            .update_schedule("re_engagement", "system", ScheduleUpdate::default())
            .await
            .map(drop),
        client
            .delete_schedule("re_engagement", "system")
            .await
            .map(drop),
        client
            .pause_schedule("re_engagement", "system", None)
            .await
            .map(drop),
    ] {
        assert!(
            matches!(
                refused,
                Err(Error::Scheduler(SchedulerError::NotAuthorized(ref m))) if m.contains("declared")
            ),
            "{refused:?}"
        );
    }
    // Nor through AutoGPT's API, whatever user id is given.
    assert!(
        client
            .delete_graph_execution_schedule("re_engagement", "system")
            .await
            .is_err()
    );

    // A restart with the same file changes nothing: no duplicate, the same next runs.
    daemon.terminate();
    let mut daemon = Daemon::start_with_config(&db, &file, &env).await;
    let again = declared(&daemon).await;
    let unchanged = |map: &BTreeMap<String, Option<DateTime<Utc>>>| {
        map.iter()
            .filter(|(id, _)| id.as_str() != "raw_probe")
            .map(|(id, next)| (id.clone(), *next))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        unchanged(&again),
        unchanged(&first),
        "kept across a restart"
    );

    // Drop one job, change another's trigger and a third's name.
    daemon.terminate();
    let file = config_file(db.dir.path(), |text| {
        let text = text.replace(
            "id = \"rating_prompt\"\ntrigger = { type = \"interval\", every_secs = 3600 }\n\
             target = { type = \"http\", endpoint = \"agnt\", path = \"/internal/jobs/rating_prompt\" }\n\
             tags = [\"agnt\"]",
            "",
        );
        let text = text.replace(
            "id = \"deliver_reminders\"\ntrigger = { type = \"interval\", every_secs = 300 }",
            "id = \"deliver_reminders\"\ntrigger = { type = \"interval\", every_secs = 600 }",
        );
        text.replace(
            "id = \"dlq_cleanup\"\n",
            "id = \"dlq_cleanup\"\nname = \"Trim the dead-letter queue\"\n",
        )
    });
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("/internal/jobs/rating_prompt") && text.contains("every_secs = 600"));
    // The dropped job leaves an empty [[schedules]] table: remove it.
    let text = text.replace("[[schedules]]\n\n\n", "");
    std::fs::write(&file, text).unwrap();
    let daemon = Daemon::start_with_config(&db, &file, &env).await;
    let changed = declared(&daemon).await;
    assert_eq!(
        changed.len(),
        38,
        "rating_prompt and the probe are no longer declared: {changed:?}"
    );
    assert!(!changed.contains_key("rating_prompt") && !changed.contains_key("raw_probe"));
    assert_eq!(
        changed["dlq_cleanup"], first["dlq_cleanup"],
        "a new name keeps the next run"
    );
    assert_ne!(
        changed["deliver_reminders"], first["deliver_reminders"],
        "a new trigger gets a new next run"
    );
    let reminders = daemon
        .client()
        .get_schedule("deliver_reminders", "system")
        .await
        .unwrap();
    assert!(
        matches!(
            reminders.trigger.kind,
            scheduler_client::TriggerKind::Interval {
                every_secs: 600,
                ..
            }
        ),
        "{:?}",
        reminders.trigger
    );
    let cleanup = daemon
        .client()
        .get_schedule("dlq_cleanup", "system")
        .await
        .unwrap();
    assert_eq!(cleanup.name, "Trim the dead-letter queue");
}

#[test]
fn bad_declarations_are_refused_at_load_naming_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "[[schedules]]\nid = \"a\"\ntrigger = { type = \"cron\", expression = \"0 9 * * *\" }\n\
             target = { type = \"http\", endpoint = \"nowhere\", path = \"/x\" }\n",
            "target.endpoint 'nowhere' is not configured",
        ),
        (
            "[[schedules]]\nid = \"a\"\ntrigger = { type = \"cron\", expression = \"0 9 * * *\" }\n\
             target = { type = \"http\", url = \"ftp://x\" }\n",
            "target.url must be an http:// or https:// URL",
        ),
        (
            "[[schedules]]\nid = \"a\"\ntrigger = { type = \"daily_times\", times = [\"9am\"] }\n\
             target = { type = \"redis_publish\", channel = \"c\" }\n",
            "'9am' is not a time of day",
        ),
        (
            "[[schedules]]\nid = \"report_late_executions\"\n\
             trigger = { type = \"cron\", expression = \"0 9 * * *\" }\n\
             target = { type = \"http\", url = \"http://x\" }\n",
            "declared twice",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let overrides = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        let error = load_from::<scheduler::config::Config>(&overrides, &[]).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(expected), "{text}: {message}");
        assert!(message.contains("schedules"), "{message}");
    }
}
