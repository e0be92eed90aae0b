//! Phones' health through a fake adb whose answers the tests change: facts, gates that hold a
//! phone's jobs with the reason in their rows, an overheat that stops a running job,
//! quarantine after failures (kept across a restart) and its recovery by a reboot.

use std::path::Path;
use std::time::{Duration, Instant};

use device_runner_client::{DeviceInfo, DeviceRunnerApiClient, JobStatus};

use crate::helpers::{DEVICE, Runner, TestDb, fake_adb};

const SOON: Duration = Duration::from_secs(15);

fn set_facts(dir: &Path, level: u8, tenths_of_degree: i32) {
    crate::helpers::set_facts(dir, DEVICE, level, f64::from(tenths_of_degree) / 10.0);
}

fn adb_settings(adb: &Path) -> String {
    format!(
        "adb = {{ enabled = true, path = \"{}\", poll_interval = \"100ms\", debounce = 2 }}",
        adb.display()
    )
}

/// Waits until the phone satisfies `done`.
async fn wait_device(runner: &Runner, done: impl Fn(&DeviceInfo) -> bool) -> DeviceInfo {
    let started = Instant::now();
    loop {
        let devices = runner.client().rpc().list_devices().await.unwrap();
        let phone = devices.into_iter().find(|d| d.serial == DEVICE).unwrap();
        if done(&phone) {
            return phone;
        }
        assert!(
            started.elapsed() < SOON,
            "the phone did not get there: {phone:#?}\nrunner log:\n{}",
            runner.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn facts_are_read_and_a_phone_outside_its_gates_holds_its_jobs_with_the_reason() {
    let adb_dir = tempfile::tempdir().unwrap();
    let adb = fake_adb(adb_dir.path(), &format!("{DEVICE}\tdevice\n"));
    set_facts(adb_dir.path(), 12, 305);
    let runner = Runner::start(&format!(
        "{}\nhealth = {{ poll = \"100ms\", min_battery = 20, max_temperature = 42.0, \
         stop_above_temperature = 45.0 }}",
        adb_settings(&adb)
    ))
    .await;

    let phone = wait_device(&runner, |d| d.health.is_some() && d.usable).await;
    let health = phone.health.unwrap();
    assert_eq!(health.model.as_deref(), Some("Pixel 7"));
    assert_eq!(health.android_version.as_deref(), Some("14"));
    assert_eq!(health.battery_percent, Some(12));
    assert_eq!(health.charging, Some(true));
    assert_eq!(health.temperature_celsius, Some(30.5));
    assert_eq!(phone.held.as_deref(), Some("battery 12 % < 20 %"));
    let (_, metrics) = crate::serving::get(&runner, "/metrics", None).await;
    let battery = crate::serving::sample(
        &metrics,
        "device_runner_device_battery_percent",
        &[("device", DEVICE)],
    );
    assert_eq!(battery, Some(12.0), "{metrics}");
    let quarantined = crate::serving::sample(
        &metrics,
        "device_runner_device_quarantined",
        &[("device", DEVICE)],
    );
    assert_eq!(quarantined, Some(0.0), "{metrics}");

    // Low battery: the job waits, and its row says why.
    let job = runner.enqueue("quick", 5).await;
    runner
        .wait_for(&job.id, SOON, |j| {
            j.waiting.as_deref() == Some("battery 12 % < 20 %")
        })
        .await;
    // Charged but hot: it still waits, for the new reason.
    set_facts(adb_dir.path(), 80, 440);
    let hot = runner
        .wait_for(&job.id, SOON, |j| {
            j.waiting.as_deref() == Some("temperature 44.0 °C > 42.0 °C")
        })
        .await;
    assert_eq!(hot.status, JobStatus::Pending);
    // Inside its gates again: it runs, and no longer says it waits.
    set_facts(adb_dir.path(), 80, 300);
    let done = runner
        .wait_status(&job.id, JobStatus::Completed, SOON)
        .await;
    assert_eq!(done.waiting, None);

    // A gate does not stop a running job; an overheat past stop_above_temperature does.
    let long = runner.enqueue("long", 5).await;
    runner.wait_status(&long.id, JobStatus::Running, SOON).await;
    set_facts(adb_dir.path(), 80, 430);
    wait_device(&runner, |d| d.held.is_some()).await;
    set_facts(adb_dir.path(), 80, 470);
    let stopped = runner
        .wait_status(&long.id, JobStatus::Interrupted, SOON)
        .await;
    let error = stopped.error.unwrap();
    assert!(error.contains("47.0 °C > 45.0 °C"), "{error}");
}

#[tokio::test]
async fn failures_in_a_row_quarantine_a_phone_until_released_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap().keep();
    let db = TestDb::sqlite(&dir);
    let mut runner =
        Runner::start_on(dir, db.url.clone(), "health = { quarantine_after = 3 }").await;
    // Two failures, a success, two failures: no three in a row yet.
    for job_type in ["failing", "failing", "quick", "failing", "failing"] {
        let job = runner.enqueue(job_type, 5).await;
        runner
            .wait_for(&job.id, SOON, |j| j.status.is_finished())
            .await;
    }
    assert!(wait_device(&runner, |_| true).await.quarantine.is_none());
    let third = runner.enqueue("failing", 5).await;
    runner.wait_status(&third.id, JobStatus::Failed, SOON).await;
    let phone = wait_device(&runner, |d| d.quarantine.is_some()).await;
    let quarantine = phone.quarantine.unwrap();
    assert_eq!(quarantine.by, "failures");
    assert!(
        quarantine.reason.contains("3 jobs in a row"),
        "{quarantine:?}"
    );

    // Quarantined: a new job waits and says why.
    let waiting = runner.enqueue("quick", 5).await;
    let held = runner
        .wait_for(&waiting.id, SOON, |j| j.waiting.is_some())
        .await;
    assert!(
        held.waiting
            .unwrap()
            .starts_with("quarantined: 3 jobs in a row")
    );

    // The quarantine outlives a restart.
    runner.terminate();
    runner.spawn().await;
    let phone = wait_device(&runner, |_| true).await;
    assert_eq!(
        phone.quarantine.as_ref().map(|q| q.by.as_str()),
        Some("failures")
    );
    assert_eq!(runner.job(&waiting.id).await.status, JobStatus::Pending);
    let (_, metrics) = crate::serving::get(&runner, "/metrics", None).await;
    let quarantined = crate::serving::sample(
        &metrics,
        "device_runner_device_quarantined",
        &[("device", DEVICE)],
    );
    assert_eq!(quarantined, Some(1.0), "{metrics}");

    // Released, it takes its queue again, and failures are counted afresh.
    let client = runner.client();
    let released = client.rpc().release_device(DEVICE.into()).await.unwrap();
    assert!(released.quarantine.is_none() && released.held.is_none());
    let done = runner
        .wait_status(&waiting.id, JobStatus::Completed, SOON)
        .await;
    assert_eq!(done.waiting, None);
    let next = runner.enqueue("failing", 5).await;
    runner.wait_status(&next.id, JobStatus::Failed, SOON).await;
    let after = runner.enqueue("quick", 5).await;
    runner
        .wait_status(&after.id, JobStatus::Completed, SOON)
        .await;

    // An operator's quarantine, with its reason, and the history of it all.
    let quarantined = client
        .rpc()
        .quarantine_device(DEVICE.into(), Some("cracked screen".into()))
        .await
        .unwrap();
    assert_eq!(
        quarantined.held.as_deref(),
        Some("quarantined: cracked screen")
    );
    let history = client
        .rpc()
        .get_device_history(DEVICE.into(), None)
        .await
        .unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["quarantined", "released", "quarantined"],
        "{history:#?}"
    );
    assert!(history[0].message.contains("cracked screen (by operator)"));
    let unknown = client
        .rpc()
        .quarantine_device("NOPE".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("unknown device 'NOPE'") && unknown.contains(DEVICE),
        "{unknown}"
    );
}

#[tokio::test]
async fn a_quarantined_phone_is_rebooted_and_released_once_back_and_inside_its_gates() {
    let adb_dir = tempfile::tempdir().unwrap();
    let adb = fake_adb(adb_dir.path(), &format!("{DEVICE}\tdevice\n"));
    set_facts(adb_dir.path(), 80, 300);
    let runner = Runner::start(&format!(
        "{}\nhealth = {{ poll = \"100ms\", quarantine_after = 1, recovery = \"reboot\", \
         recovery_timeout = \"30s\" }}",
        adb_settings(&adb)
    ))
    .await;
    wait_device(&runner, |d| d.usable).await;
    let job = runner.enqueue("failing", 5).await;
    runner.wait_status(&job.id, JobStatus::Failed, SOON).await;
    let started = Instant::now();
    let history = loop {
        let history = runner
            .client()
            .rpc()
            .get_device_history(DEVICE.into(), None)
            .await
            .unwrap();
        if history.first().is_some_and(|e| e.kind == "released") {
            break history;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the phone was not released: {history:#?}\nrunner log:\n{}",
            runner.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kinds: Vec<&str> = history.iter().rev().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["quarantined", "reboot", "online", "released"],
        "{history:#?}"
    );
    let reboots = std::fs::read_to_string(adb_dir.path().join("reboots.txt")).unwrap();
    assert_eq!(reboots.trim(), DEVICE);
    let phone = wait_device(&runner, |d| d.quarantine.is_none()).await;
    assert!(phone.held.is_none());
    let after = runner.enqueue("quick", 5).await;
    runner
        .wait_status(&after.id, JobStatus::Completed, SOON)
        .await;
}

#[tokio::test]
async fn cancel_job_takes_back_only_a_pending_job() {
    let runner = Runner::start("").await;
    let client = runner.client();
    let running = runner.enqueue("long", 5).await;
    runner
        .wait_status(&running.id, JobStatus::Running, SOON)
        .await;
    let pending = runner.enqueue("quick", 5).await;
    let cancelled = client.rpc().cancel_job(pending.id.clone()).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let refused = client
        .rpc()
        .cancel_job(running.id.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no longer pending (running)"), "{refused}");
    assert_eq!(runner.job(&running.id).await.status, JobStatus::Running);
}
