//! The book (`docs/`) and the front door (README.md), checked against the tree: the
//! configuration reference names exactly the keys each service reads, every page is in the
//! book's table of contents, and every relative link leads to a file that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use service_kit::config::{Overrides, ServiceConfig, load_from};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn book() -> PathBuf {
    root().join("docs/src")
}

/// A scheduler configuration that sets every key, optional ones included. Unknown keys are
/// refused by the loader, so this file cannot name a key the scheduler does not read.
const SCHEDULER_EVERY_KEY: &str = r#"
[alerts]
late_after_secs = 300
failed_in_a_row = 3
missing_after_secs = 86400
every = "15s"
retry_delay = "5s"
max_retry_delay = "10m"
[alerts.channels.NAME]
kind = "webhook"
url = "https://hooks.example.com/scheduler"
token = "t"
channel = "scheduler-alerts"
timeout = "10s"
[calendars.holidays]
zone = "Europe/Berlin"
dates = ["2026-12-25", "2026-12-31..2027-01-01"]
weekdays = ["sun"]
[system_tasks]
notification_manager_url = "http://127.0.0.1:1/"
database_manager_url = "http://127.0.0.1:1/"
storage_url = "http://127.0.0.1:1/"
alert_webhook_url = "http://127.0.0.1:1/"
[[system_tasks.tasks]]
id = "weekly"
task = "process_weekly_summary"
jobstore = "execution"
cron = "0 9 * * 1"
timezone = "UTC"
kwargs = {}
[[system_tasks.tasks]]
id = "often"
task = "cleanup_expired_files"
jobstore = "execution"
every_secs = 60
[endpoints.NAME]
url = "http://127.0.0.1:1"
token = "t"
timeout = "1s"
batch = 1
signing_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
[device_runners.NAME]
url = "http://127.0.0.1:1"
token = "t"
timeout = "1s"
poll = "1s"
admin_token = "a"
[farm]
runner = "NAME"
[redis]
url = "redis://127.0.0.1:1"
[modules.NAME]
url = "http://127.0.0.1:1"
token = "t"
timeout = "1s"
[watches]
core_url = "http://127.0.0.1:1"
core_token = "t"
[[schedules]]
id = "declared"
name = "declared"
trigger = { type = "cron", expression = "0 3 * * *" }
target = { type = "http", endpoint = "NAME", path = "/x" }
policy = {}
jobstore = "execution"
tags = ["t"]
[telemetry]
otlp_endpoint = "http://collector:4318"
[auth]
token = "t"
admin_token = "a"

[[auth.clients]]
name = "agnt"
token = "c"
owners = ["agnt", "user-*"]
admin = false

[[auth.clients]]
name = "ops"
token_file = "@DIR@/ops.token"
admin = true
"#;

/// The same for the device runner.
const RUNNER_EVERY_KEY: &str = r#"
name = "host-1"
[[devices]]
serial = "P1"
label = "phone"
tags = ["sim"]
[[pools]]
name = "modules"
concurrency = 2
[job_types.NAME]
argv = ["true"]
cwd = "."
env = { A = "1" }
max_duration = "1m"
protected = false
requeue_on_preempt = false
runs_on = "pool:modules"
[telemetry]
otlp_endpoint = "http://collector:4318"
[adb]
enabled = false
[health]
poll = "30s"
min_battery = 20
max_temperature = 42.0
stop_above_temperature = 45.0
quarantine_after = 3
recovery = "reboot"
recovery_timeout = "5m"
[auth]
token = "t"
admin_token = "a"

[[auth.clients]]
name = "agnt"
token = "c"
owners = ["agnt", "user-*"]
admin = false

[[auth.clients]]
name = "ops"
token_file = "@DIR@/ops.token"
admin = true
"#;

/// The sections whose keys are names of the operator's.
const NAMED: [&str; 6] = [
    "endpoints",
    "alerts.channels",
    "device_runners",
    "modules",
    "job_types",
    "calendars",
];

/// The keys whose values are free-form (a map of variables, a trigger, a target): documented
/// as one key, not key by key.
const FREE_FORM: [&str; 5] = [
    "job_types.<name>.env",
    "schedules[].trigger",
    "schedules[].target",
    "schedules[].policy",
    "system_tasks.tasks[].kwargs",
];

/// Every key of `config` as the reference spells it: dotted, `<name>` for a name of the
/// operator's, `[]` for an entry of an array of tables.
fn keys_of(config: &impl Serialize) -> BTreeSet<String> {
    let value = serde_json::to_value(config).expect("the configuration serializes");
    let mut keys = BTreeSet::new();
    flatten("", &value, &mut keys);
    keys
}

fn flatten(prefix: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>) {
    if !prefix.is_empty() {
        keys.insert(prefix.to_string());
    }
    if FREE_FORM.contains(&prefix) {
        return;
    }
    let join = |key: &str| {
        let key = if NAMED.contains(&prefix) {
            "<name>"
        } else {
            key
        };
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        serde_json::Value::Object(table) => {
            for (key, value) in table {
                flatten(&join(key), value, keys);
            }
        }
        serde_json::Value::Array(items)
            if !items.is_empty() && items.iter().all(serde_json::Value::is_object) =>
        {
            for item in items {
                flatten(&format!("{prefix}[]"), item, keys);
            }
        }
        _ => {}
    }
}

/// The keys a section of the configuration page lists: the first column of its table.
fn documented(section: &str) -> BTreeSet<String> {
    let page = std::fs::read_to_string(book().join("configuration.md")).unwrap();
    let start = page
        .find(&format!("## {section}"))
        .unwrap_or_else(|| panic!("configuration.md has a section '{section}'"));
    let rest = &page[start + 3..];
    let rest = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    rest.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split_once('`'))
        .map(|(key, _)| key.to_string())
        .collect()
}

/// Every key `C` reads, from a file that sets them all.
fn read_keys<C: ServiceConfig + Serialize>(every_key: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("every-key.toml");
    std::fs::write(dir.path().join("ops.token"), "o\n").unwrap();
    let every_key = every_key.replace("@DIR@", dir.path().to_str().unwrap());
    std::fs::write(&file, every_key).unwrap();
    let overrides = Overrides {
        config_file: Some(file),
        ..Default::default()
    };
    let config: C = load_from(&overrides, &[]).expect("the file with every key is accepted");
    let keys = keys_of(&config);
    // Sections are documented by their keys; an array of tables by its name too.
    let is_section = |key: &String| {
        keys.iter().any(|other| {
            other.starts_with(&format!("{key}.")) || other.starts_with(&format!("{key}[]"))
        })
    };
    let documented_whole = |key: &String| {
        FREE_FORM.contains(&key.as_str())
            || ["schedules", "system_tasks.tasks"].contains(&key.as_str())
    };
    keys.iter()
        .filter(|key| !is_section(key) || documented_whole(key))
        .cloned()
        .collect()
}

fn compare(section: &str, read: BTreeSet<String>) {
    let documented = documented(section);
    let missing: Vec<&String> = read.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&read).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/src/configuration.md, {section}: keys read but not documented {missing:?}; \
         documented but not read {stale:?}"
    );
}

#[test]
fn the_configuration_reference_names_every_key_the_scheduler_reads_and_no_other() {
    compare(
        "The scheduler's keys",
        read_keys::<scheduler::config::Config>(SCHEDULER_EVERY_KEY),
    );
}

#[test]
fn the_configuration_reference_names_every_key_the_device_runner_reads_and_no_other() {
    compare(
        "The device runner's keys",
        read_keys::<device_runner::config::Config>(RUNNER_EVERY_KEY),
    );
}

#[test]
fn the_reference_check_sees_a_key_it_does_not_document() {
    let mut read = read_keys::<scheduler::config::Config>(SCHEDULER_EVERY_KEY);
    read.insert("engine.warp_speed".into());
    let missing: Vec<String> = read
        .difference(&documented("The scheduler's keys"))
        .cloned()
        .collect();
    assert_eq!(missing, ["engine.warp_speed"]);
}

/// The pages the book's table of contents lists.
fn summary() -> Vec<String> {
    let text = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    text.lines()
        .filter_map(|line| line.split_once("](").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .collect()
}

#[test]
fn every_page_of_the_book_is_in_its_table_of_contents() {
    let listed: BTreeSet<String> = summary().into_iter().collect();
    let mut pages = BTreeSet::new();
    for entry in std::fs::read_dir(book()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            pages.insert(name);
        }
    }
    assert_eq!(
        listed, pages,
        "SUMMARY.md lists exactly the pages in docs/src"
    );
}

/// The relative links of a Markdown file: `](target)` with no scheme.
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .filter(|target| !target.contains("://") && !target.starts_with('#'))
        .collect()
}

#[test]
fn every_relative_link_of_the_docs_leads_to_a_file() {
    let mut files = vec![
        root().join("README.md"),
        root().join("CONTRIBUTING.md"),
        root().join("CHANGELOG.md"),
        root().join("ARCHITECTURE.md"),
    ];
    for entry in std::fs::read_dir(book()).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in relative_links(&text) {
            let path = link.split('#').next().unwrap_or_default();
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: {link}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_readme_is_a_front_door() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; the manual belongs in docs/"
    );
    for command in ["cargo run -p scheduler", "cargo test --workspace"] {
        assert!(text.contains(command), "README.md states `{command}`");
    }
}
