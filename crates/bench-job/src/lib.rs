//! `bench-job`: the job the device-runner benchmark queues. It prints when it started, waits
//! for a gate file if its params name one, sleeps `sleep_ms`, prints when it exits, and exits.
//! The stamps are Unix nanoseconds, read by the benchmark ([`stamps`]) from the job's log. A
//! program of its own, small, so that its start is a small part of what the benchmark
//! measures (the xtask binary, which ran the jobs before, is about 100 MB).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Now, in Unix nanoseconds.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The job: stamps, the gate, the sleep, stamps.
pub fn run() -> ExitCode {
    let started = unix_nanos();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "started {started}");
    let params: Value = std::env::var("JOB_PARAMS")
        .ok()
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or_default();
    if let Some(gate) = params["gate"].as_str() {
        while !Path::new(gate).exists() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if let Some(ms) = params["sleep_ms"].as_u64() {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let _ = writeln!(out, "exiting {}", unix_nanos());
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// The `started` and `exiting` stamps of a job's log.
pub fn stamps(log: &str) -> (Option<i64>, Option<i64>) {
    let stamp = |prefix: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|n| n.trim().parse().ok())
    };
    (stamp("started "), stamp("exiting "))
}
