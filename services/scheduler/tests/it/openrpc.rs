//! The OpenRPC document in proto-docs must describe exactly what the server serves.

use std::collections::BTreeSet;
use std::sync::Arc;

use jobstore::{MemoryStore, StoreName};
use serde_json::{Value, json};

use crate::helpers::{Backend, Daemon, TestDb};

fn document() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../proto-docs/scheduler.openrpc.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn documented_methods(doc: &Value) -> BTreeSet<String> {
    doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn served_methods_and_the_document_match() {
    let stores = scheduler::stores::Stores::new([
        Arc::new(MemoryStore::new(StoreName::Execution)) as Arc<dyn jobstore::JobStore>
    ]);
    let leader = tokio::sync::watch::channel(true).1;
    let config = scheduler::config::Config::default();
    let app = scheduler::app::App::new(
        stores,
        leader,
        "memory",
        &config,
        Vec::new(),
        tokio::sync::watch::channel(None).1,
    )
    .unwrap();
    let module = scheduler::server::rpc_module(app).unwrap();
    let served: BTreeSet<String> = module
        .method_names()
        .filter(|m| *m != "rpc.discover")
        .map(String::from)
        .collect();
    let doc = document();
    assert_eq!(
        served,
        documented_methods(&doc),
        "methods served vs documented"
    );
    assert!(doc["openrpc"].as_str().unwrap().starts_with("1."));
    for method in doc["methods"].as_array().unwrap() {
        assert!(
            method["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{} has a summary",
            method["name"]
        );
        assert!(
            method.get("result").is_some(),
            "{} has a result",
            method["name"]
        );
    }
    for (name, code) in [
        ("ValueError", 4000),
        ("NotAuthorizedError", 4003),
        ("NotFoundError", 4004),
        ("RuntimeError", 5000),
    ] {
        assert_eq!(doc["components"]["errors"][name]["code"], code, "{name}");
    }
}

#[tokio::test]
async fn required_params_in_the_document_are_required_by_the_server() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let http = reqwest::Client::new();
    let served: Value = http
        .post(daemon.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["result"], document(), "rpc.discover serves the file");
    for method in document()["methods"].as_array().unwrap() {
        let name = method["name"].as_str().unwrap();
        if name.starts_with("execute_") {
            continue;
        }
        let required = method["params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["required"] == true);
        let reply: Value = http
            .post(daemon.url())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": name, "params": {}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The general API answers unparsable params with ValueError naming the field, like
        // every other bad value; the AutoGPT methods keep JSON-RPC's "Invalid params".
        let general = scheduler_api::GENERAL_METHODS.contains(&name)
            || scheduler_api::WATCH_METHODS.contains(&name)
            || scheduler_api::FLEET_METHODS.contains(&name);
        let code = if general { 4000 } else { -32602 };
        let invalid = reply["error"]["code"] == code;
        assert_eq!(invalid, required, "{name}: called with no params: {reply}");
        if invalid && general {
            assert_eq!(
                reply["error"]["data"]["type"], "ValueError",
                "{name}: {reply}"
            );
            let message = reply["error"]["message"].as_str().unwrap();
            assert!(message.contains("missing field"), "{name}: {message}");
        }
    }
}
