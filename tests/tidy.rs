//! Checks of the architecture invariants a test can check (ARCHITECTURE.md), run over the
//! source tree as it is:
//!
//! - only the device runner's process code (`services/device-runner/src/process/`) spawns or
//!   signals processes;
//! - an `*-api` crate depends on no runtime, database or web framework;
//! - no module imports another in a circle, within any crate;
//! - a target kind's variant is named only in its homes (its data in `scheduler-api`, its
//!   behaviour in the scheduler's `targets/`), and where a surface makes targets of that kind;
//! - the jobstore's SQL is written once for both databases: only `sql/dialect.rs` (where they
//!   differ) and `sql/mod.rs` (their connections) pick one;
//! - no file under a `tests` folder is hidden from git by `.gitignore`.
//!
//! That each OpenRPC document lists exactly what its service serves is checked by the
//! services' own `openrpc` tests, against the running binary's `rpc.discover`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root (this crate is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The workspace's members with a `src/`: `(crate folder, its src folder)`.
fn crates() -> Vec<(PathBuf, PathBuf)> {
    let mut found = Vec::new();
    for group in ["crates", "services"] {
        assert!(root().join(group).is_dir(), "{group}/ is in the workspace");
        let Ok(entries) = std::fs::read_dir(root().join(group)) else {
            continue;
        };
        for entry in entries.flatten() {
            let src = entry.path().join("src");
            if src.is_dir() {
                found.push((entry.path(), src));
            }
        }
    }
    found.sort();
    found
}

/// The text of a file without what follows `//` on each line, so comments that name a
/// forbidden call do not count.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What creates or signals a process.
const PROCESS_CALLS: [&str; 8] = [
    "Command::new",
    "process::Command",
    "tokio::process",
    "killpg",
    "signal::kill",
    "nix::sys::signal",
    "libc::kill",
    "pidfd",
];

#[test]
fn only_the_device_runners_process_code_spawns_or_signals_processes() {
    let allowed = root().join("services/device-runner/src/process");
    // Test support and project automation start binaries to test and measure them.
    let tooling = [
        root().join("crates/test-support"),
        root().join("crates/xtask"),
    ];
    let mut offenders = Vec::new();
    for (krate, src) in crates() {
        if tooling.contains(&krate) {
            continue;
        }
        for file in rust_files(&src) {
            if file.starts_with(&allowed) {
                continue;
            }
            let text = code(&file);
            for call in PROCESS_CALLS {
                if text.contains(call) {
                    offenders.push(format!("{}: {call}", file.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "processes are created or signalled only in {}:\n{}",
        allowed.display(),
        offenders.join("\n")
    );
}

#[test]
fn api_crates_hold_types_and_traits_without_a_runtime_a_database_or_a_web_framework() {
    let mut checked = 0;
    for (krate, _) in crates() {
        let name = krate.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with("-api") {
            continue;
        }
        checked += 1;
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(krate.join("Cargo.toml")).unwrap()).unwrap();
        let dependencies = manifest
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        for forbidden in ["tokio", "sqlx", "axum", "hyper", "reqwest", "service-kit"] {
            assert!(
                !dependencies.contains_key(forbidden),
                "{name} depends on {forbidden}: API crates hold serde types and #[rpc] traits only"
            );
        }
        if let Some(features) = dependencies
            .get("jsonrpsee")
            .and_then(|j| j.get("features"))
            .and_then(toml::Value::as_array)
        {
            for feature in features.iter().filter_map(toml::Value::as_str) {
                assert!(
                    !["server", "http-client", "ws-client"].contains(&feature),
                    "{name} enables jsonrpsee's {feature}: the transport belongs to the \
                     service or the client crate"
                );
            }
        }
    }
    assert!(checked >= 2, "the API crates were found");
}

/// Where each target kind lives: its data, and its behaviour behind the `Kind` trait.
const TARGET_HOMES: [&str; 2] = [
    "crates/scheduler-api/src/target",
    "services/scheduler/src/targets",
];

/// The files outside the homes that name a target variant, and why: each makes targets of
/// one kind, or reads the one kind its surface is about.
const TARGET_MAKERS: [(&str, &str); 8] = [
    (
        "crates/apscheduler-import/src/convert.rs",
        "imports AutoGPT's graph executions",
    ),
    (
        "services/scheduler/src/api/schedules.rs",
        "AutoGPT's graph execution schedules",
    ),
    (
        "services/scheduler/src/api/system.rs",
        "runs a system task by hand",
    ),
    (
        "services/scheduler/src/autogpt/tasks/mod.rs",
        "declares the system tasks",
    ),
    (
        "services/scheduler/src/api/watches.rs",
        "makes a watch's schedule",
    ),
    (
        "services/scheduler/src/api/access.rs",
        "a watch's schedule is changed through its own methods",
    ),
    (
        "services/scheduler/src/api/views.rs",
        "AutoGPT's job info shows a graph execution's fields",
    ),
    (
        "services/scheduler/src/farm/schedules.rs",
        "the farm's schedules are device jobs",
    ),
];

/// The variants of `scheduler_api::Target`, read from its declaration.
fn target_variants() -> Vec<String> {
    let text = code(&root().join("crates/scheduler-api/src/target/mod.rs"));
    let start = text
        .find("pub enum Target {")
        .expect("Target is declared in target/mod.rs");
    let body = &text[start..];
    let body = &body[..body.find("\n}").expect("the enum ends")];
    body.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (name, _) = line.split_once('(')?;
            (!name.is_empty() && name.chars().all(char::is_alphanumeric)).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn a_target_kind_is_named_only_in_its_homes_and_by_what_makes_one() {
    let variants = target_variants();
    assert!(
        variants.len() >= 7,
        "the target kinds were read: {variants:?}"
    );
    // Tests and benchmarks make targets of every kind, as callers do.
    let tooling = [
        root().join("crates/test-support"),
        root().join("crates/xtask"),
    ];
    let mut offenders = Vec::new();
    let mut makers_seen = BTreeSet::new();
    for (krate, src) in crates() {
        if tooling.contains(&krate) {
            continue;
        }
        for file in rust_files(&src) {
            let relative = file
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if TARGET_HOMES.iter().any(|home| relative.starts_with(home)) {
                continue;
            }
            let text = code(&file);
            // A file's unit tests (at its end) make targets as callers do.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let named: Vec<&String> = variants
                .iter()
                .filter(|v| text.contains(&format!("Target::{v}(")))
                .collect();
            if named.is_empty() {
                continue;
            }
            if TARGET_MAKERS.iter().any(|(maker, _)| *maker == relative) {
                makers_seen.insert(relative);
                continue;
            }
            offenders.push(format!("{relative}: {named:?}"));
        }
    }
    assert!(
        offenders.is_empty(),
        "a target kind's behaviour belongs in services/scheduler/src/targets/<kind>.rs, its \
         data in crates/scheduler-api/src/target/<kind>.rs:\n{}",
        offenders.join("\n")
    );
    for (maker, why) in TARGET_MAKERS {
        assert!(
            makers_seen.contains(maker),
            "{maker} ({why}) no longer names a target kind: take it off TARGET_MAKERS"
        );
    }
}

/// What picks one database's way of doing a thing, or runs a query outside `on_db!`.
const DIALECT_SWITCHES: [&str; 6] = [
    "Dialect::Postgres",
    "Dialect::Sqlite",
    "Conn::Postgres",
    "Conn::Sqlite",
    "sqlx::query",
    "QueryBuilder",
];

#[test]
fn the_jobstores_sql_is_written_once_and_differs_only_in_its_dialect() {
    let src = root().join("crates/jobstore/src");
    let sql = src.join("sql");
    // Where the two databases differ, and where their connections are opened.
    let homes = [sql.join("dialect.rs"), sql.join("mod.rs")];
    let files = rust_files(&src);
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(&sql) && !homes.contains(f)),
        "the SQL store's queries live in {}",
        sql.display()
    );
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !homes.contains(f)) {
        let text = code(file);
        for switch in DIALECT_SWITCHES {
            if text.contains(switch) {
                offenders.push(format!("{} uses {switch}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a query of the jobstore is written once (service_kit::on_db!) with what differs \
         between the databases taken from sql/dialect.rs:\n{}",
        offenders.join("\n")
    );
}

/// The first identifier of each path a `crate::` reference names: `crate::app::App` gives
/// `app`, `crate::{app, tasks::SystemTask}` gives `app` and `tasks`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` in a macro refers to the defining crate's root, not a module.
        let preceded = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if preceded.is_some_and(|c| c == '$' || c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let inner = &group[..end];
            let mut depth = 0;
            let mut start = 0;
            let mut parts = Vec::new();
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&inner[start..]);
            for part in parts {
                names.insert(leading_identifier(part.trim()));
            }
        } else {
            names.insert(leading_identifier(rest));
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

fn leading_identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A crate's top-level modules and which others each refers to.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap();
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" || module == "bin" {
            continue;
        }
        let references = crate_references(&code(&file));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(references.into_iter().filter(|r| *r != module));
    }
    // Only edges between modules of this crate (not re-exports of other crates' items).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|e| modules.contains(e));
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_module_imports_another_in_a_circle() {
    let mut circles = Vec::new();
    for (krate, src) in crates() {
        if let Some(cycle) = find_cycle(&module_graph(&src)) {
            circles.push(format!("{}: {}", krate.display(), cycle.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "modules in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_circle_check_sees_grouped_and_nested_imports() {
    let refs = crate_references(
        "use crate::app::App;\nuse crate::{config::{A, B}, tasks};\nlet x = $crate::sql::Conn;",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["app", "config", "tasks"]
    );
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let mut acyclic = graph.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}

/// What the tests read from the tree is committed: a file under a `tests` folder that
/// .gitignore hides passes here and is missing from a fresh clone (a database fixture once
/// was).
#[test]
fn no_file_under_a_tests_folder_is_hidden_by_gitignore() {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "--others", "--ignored", "--exclude-standard"])
        .arg("--directory")
        .current_dir(root())
        .output()
        .expect("git runs in the checkout");
    assert!(
        listed.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let hidden: Vec<&str> = std::str::from_utf8(&listed.stdout)
        .unwrap()
        .lines()
        .filter(|path| path.split('/').any(|part| part == "tests"))
        .filter(|path| !path.contains("node_modules"))
        .collect();
    assert!(
        hidden.is_empty(),
        "ignored by .gitignore, so a fresh clone lacks them: {hidden:?}"
    );
}
