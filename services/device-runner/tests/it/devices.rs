use std::time::{Duration, Instant};

use device_runner_client::{DeviceRunnerApiClient, JobStatus};

use crate::helpers::{DEVICE, Runner, fake_adb, group_members};

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn adb_discovers_phones_and_a_phone_that_disappears_ends_its_job_as_device_lost() {
    let adb_dir = tempfile::tempdir().unwrap();
    let adb = fake_adb(
        adb_dir.path(),
        &format!(
            "{DEVICE}\tdevice usb:1 model:Pixel_7\nNEW1\tdevice model:Galaxy\nBAD1\tunauthorized\n"
        ),
    );
    let runner = Runner::start(&format!(
        "adb = {{ enabled = true, path = \"{}\", poll_interval = \"100ms\", debounce = 2 }}",
        adb.display()
    ))
    .await;
    let client = runner.client();
    let started = Instant::now();
    let devices = loop {
        let devices = client.rpc().list_devices().await.unwrap();
        if devices.len() == 3 && devices.iter().all(|d| d.state != "absent") {
            break devices;
        }
        assert!(
            started.elapsed() < SOON,
            "adb devices never showed up: {devices:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let phone = devices.iter().find(|d| d.serial == DEVICE).unwrap();
    assert!(phone.usable && phone.configured);
    assert_eq!(
        phone.label.as_deref(),
        Some("phone 1"),
        "the configured label wins"
    );
    assert_eq!(phone.tags, ["tiktok", "sim"], "its configured tags");
    let discovered = devices.iter().find(|d| d.serial == "NEW1").unwrap();
    assert!(discovered.usable && !discovered.configured);
    assert_eq!(discovered.label.as_deref(), Some("Galaxy"));
    assert!(discovered.tags.is_empty(), "{discovered:?}");
    let status = client.rpc().get_status().await.unwrap();
    let listed = status.devices.iter().find(|d| d.device.serial == DEVICE);
    assert_eq!(listed.unwrap().device.tags, ["tiktok", "sim"]);
    // Without a name of its own, the runner reports the host's.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(status.name, host.trim());
    assert!(!devices.iter().find(|d| d.serial == "BAD1").unwrap().usable);

    let job = runner.enqueue("long", 5).await;
    let running = runner.wait_status(&job.id, JobStatus::Running, SOON).await;
    std::fs::write(adb_dir.path().join("devices.txt"), "NEW1\tdevice\n").unwrap();
    let lost = runner
        .wait_status(&job.id, JobStatus::DeviceLost, SOON)
        .await;
    assert!(
        lost.error.as_deref().unwrap().contains("absent"),
        "{lost:?}"
    );
    assert!(group_members(running.pid.unwrap()).is_empty());
    let log = std::fs::read_to_string(lost.log_path.unwrap()).unwrap();
    assert!(log.contains("running"), "the partial log is kept: {log}");

    // While the phone is away its queue waits; when it is back the queue runs.
    let waiting = runner.enqueue("quick", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runner.job(&waiting.id).await.status, JobStatus::Pending);
    std::fs::write(
        adb_dir.path().join("devices.txt"),
        format!("{DEVICE}\tdevice\n"),
    )
    .unwrap();
    runner
        .wait_status(&waiting.id, JobStatus::Completed, SOON)
        .await;
}
