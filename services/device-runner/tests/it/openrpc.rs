use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::Runner;

#[tokio::test]
async fn served_methods_and_the_openrpc_document_match() {
    let document: Value =
        serde_json::from_str(device_runner::server::OPENRPC).expect("the document is JSON");
    assert!(document["openrpc"].as_str().unwrap().starts_with("1."));
    let documented: BTreeSet<String> = document["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();

    let runner = Runner::start("").await;
    let served: BTreeSet<String> = {
        let dir = tempfile::tempdir().unwrap();
        let store = device_runner::store::Store::connect(
            &service_kit::DatabaseUrl::parse(&format!("sqlite://{}/x.db", dir.path().display()))
                .unwrap(),
            1,
        )
        .await
        .unwrap();
        let config = std::sync::Arc::new(device_runner::config::Config::default());
        let module = device_runner::server::rpc_module(device_runner::state::RunnerState::new(
            config, store,
        ))
        .unwrap();
        module
            .method_names()
            .filter(|name| *name != "rpc.discover")
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        served, documented,
        "proto-docs/device-runner.openrpc.json is out of date"
    );

    // rpc.discover serves the same document.
    let reply: Value = reqwest_free_post(
        &runner.url(),
        r#"{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}"#,
    )
    .await;
    assert_eq!(reply["result"], document);
}

/// A JSON-RPC call over a raw HTTP/1.1 connection.
async fn reqwest_free_post(url: &str, body: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"))
}
