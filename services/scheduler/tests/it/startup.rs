//! Start-up, configuration and shutdown of the binary.

use std::process::Command;

use crate::helpers::{Backend, Daemon, TestDb, free_port};

fn scheduler() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scheduler"));
    command.env_remove("DATABASE_URL").env_remove("DIRECT_URL");
    command
}

#[test]
fn check_config_prints_the_layered_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scheduler.toml"),
        "[server]\nport = 9100\n[executor]\nretries = 4\n",
    )
    .unwrap();
    let output = scheduler()
        .current_dir(dir.path())
        .env("SCHEDULER__EXECUTOR__RETRIES", "6")
        .env("DIRECT_URL", "postgresql://u@db:5432/app?schema=platform")
        .args(["--check-config", "--executor-url", "http://exec:8002/"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        config["server"]["port"].as_integer(),
        Some(9100),
        "from scheduler.toml"
    );
    assert_eq!(
        config["executor"]["retries"].as_integer(),
        Some(6),
        "environment over file"
    );
    assert_eq!(
        config["executor"]["url"].as_str(),
        Some("http://exec:8002/"),
        "command line"
    );
    assert_eq!(
        config["database"]["url"].as_str(),
        Some("postgresql://u@db:5432/app?schema=platform"),
        "AutoGPT's DIRECT_URL"
    );
}

#[test]
fn unknown_keys_and_bad_values_stop_start_up_with_a_clear_message() {
    for (key, value, expected) in [
        ("SCHEDULER__SERVER__PROT", "1", "prot"),
        (
            "SCHEDULER__ENGINE__LEASE",
            "soon",
            "invalid duration 'soon'",
        ),
        (
            "SCHEDULER__DATABASE__URL",
            "mysql://h/db",
            "expected sqlite://PATH",
        ),
    ] {
        let output = scheduler()
            .env(key, value)
            .arg("--check-config")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{key}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{key}: {stderr}");
    }
}

#[tokio::test]
async fn a_taken_port_is_reported_and_sigterm_stops_cleanly() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let output = scheduler()
        .current_dir(db.dir.path())
        .args([
            "--port",
            &daemon.port.to_string(),
            "--database-url",
            &format!("sqlite://{}/other.db", db.dir.path().display()),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(&format!("cannot listen on 127.0.0.1:{}", daemon.port))
    );
    let status = daemon.terminate();
    assert!(
        status.success(),
        "SIGTERM exits 0: {status}\n{}",
        daemon.log_text()
    );
    assert!(daemon.log_text().contains("scheduler stopped"));
    let _ = free_port();
}
