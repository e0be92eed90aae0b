//! The trace each target is handed (`[telemetry] otlp_endpoint`): a `traceparent` header on an
//! `http` and an `rpc` target's call, a `traceparent` field in a published Redis message, one
//! trace per occurrence; and nothing of it with traces off. The cross-service trace is
//! `tests/traces.rs`'s.

use std::time::Duration;

use scheduler_client::{
    HttpTarget, NewSchedule, RedisPublishTarget, RpcTarget, Target, TriggerKind, TriggerSpec,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, Daemon, REDIS, StubBackend, Subscriber, TestDb};

fn every_second() -> TriggerSpec {
    TriggerKind::Cron {
        expression: "* * * * * *".into(),
        timezone: "UTC".into(),
    }
    .into()
}

fn hook() -> Target {
    Target::Http(HttpTarget {
        endpoint: Some("backend".into()),
        url: None,
        method: "POST".into(),
        path: "/hook".into(),
        headers: Default::default(),
        body: Value::Null,
        expected_status: "2xx".into(),
    })
}

/// The trace id of a W3C `traceparent`, after checking its form.
fn trace_id(traceparent: &str) -> String {
    service_kit::traces::check_traceparent(traceparent)
        .unwrap_or_else(|e| panic!("not a traceparent: {e}"));
    traceparent.split('-').nth(1).unwrap().to_string()
}

async fn start(db: &TestDb, backend: &StubBackend, traces: bool) -> Daemon {
    let rpc = format!("{}/rpc", backend.url);
    let mut env = vec![
        ("SCHEDULER__ENDPOINTS__BACKEND__URL", backend.url.as_str()),
        ("SCHEDULER__ENDPOINTS__JOBS__URL", rpc.as_str()),
        ("SCHEDULER__REDIS__URL", REDIS),
    ];
    if traces {
        // The stub takes the exports too (its `/v1/traces`).
        env.push(("SCHEDULER__TELEMETRY__OTLP_ENDPOINT", backend.url.as_str()));
    }
    Daemon::start_with(db, "http://127.0.0.1:9/", &env).await
}

async fn create(daemon: &Daemon, id: &str, target: Target) {
    let mut schedule = NewSchedule::new("u1", every_second(), target);
    schedule.id = Some(id.into());
    daemon.client().create_schedule(schedule).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_is_handed_its_occurrences_trace() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = start(&db, &backend, true).await;
    let channel = format!("scheduler-traces-{}", std::process::id());
    let mut subscriber = Subscriber::subscribe(&channel).await;

    create(&daemon, "hook", hook()).await;
    let rpc = Target::Rpc(RpcTarget {
        endpoint: Some("jobs".into()),
        url: None,
        method: "cleanup.run".into(),
        params: Default::default(),
    });
    create(&daemon, "rpc", rpc).await;
    let publish = Target::RedisPublish(RedisPublishTarget {
        channel: channel.clone(),
        message: json!({"hello": "world"}),
    });
    create(&daemon, "publish", publish).await;

    let hooks = backend.wait_for("/hook", 2, Duration::from_secs(30)).await;
    assert!(hooks.len() >= 2, "the http target fires");
    let traces: Vec<String> = hooks
        .iter()
        .map(|r| trace_id(r.header("traceparent").expect("a traceparent header")))
        .collect();
    assert_ne!(
        traces[0], traces[1],
        "each occurrence is a trace of its own"
    );

    let calls = backend.wait_for("/rpc", 1, Duration::from_secs(30)).await;
    let call = calls.first().expect("the rpc target fires");
    trace_id(call.header("traceparent").expect("a traceparent header"));

    let message = subscriber.next(Duration::from_secs(30)).await;
    assert_eq!(message["schedule_id"], "publish");
    trace_id(
        message["traceparent"]
            .as_str()
            .expect("a traceparent field"),
    );

    // And the spans went to the collector.
    let exports = backend
        .wait_for("/v1/traces", 1, Duration::from_secs(30))
        .await;
    assert!(!exports.is_empty(), "spans are exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_off_nothing_is_handed_on() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let daemon = start(&db, &backend, false).await;
    create(&daemon, "hook", hook()).await;
    let hooks = backend.wait_for("/hook", 2, Duration::from_secs(30)).await;
    assert!(hooks.len() >= 2, "the http target fires");
    assert!(
        hooks.iter().all(|r| r.header("traceparent").is_none()),
        "no traceparent with traces off"
    );
    assert!(backend.requests("/v1/traces").is_empty());
}
