//! The published documents and pages, checked by the ecosystem's own tools rather than by our
//! reading of their rules: both OpenRPC documents by the official validator
//! (`@open-rpc/schema-utils-js`, against `@open-rpc/meta-schema`), so the OpenRPC playground
//! and client generators take them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `program` with `args` in `dir`; its output, or a panic naming what failed.
fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} cannot be run ({e}): apt-get install -y nodejs npm (.ci/run does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{text}",
        output.status
    );
    text
}

#[test]
fn both_openrpc_documents_pass_the_official_validator() {
    let tool = root().join("tests/openrpc");
    if !tool.join("node_modules/@open-rpc/schema-utils-js").exists() {
        // The versions of package-lock.json, from the npm registry.
        run("npm", &["ci", "--no-audit", "--no-fund"], &tool);
    }
    let documents = [
        root().join("proto-docs/scheduler.openrpc.json"),
        root().join("proto-docs/device-runner.openrpc.json"),
    ];
    let paths: Vec<&str> = documents.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["validate.mjs"];
    args.extend(&paths);
    let report = run("node", &args, &tool);
    for path in paths {
        assert!(report.contains(&format!("valid: {path}")), "{report}");
    }
}
