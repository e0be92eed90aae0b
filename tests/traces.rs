//! Traces across the product: the scheduler and a device runner export spans over OTLP/HTTP to
//! a receiver on loopback, and one occurrence is one trace, from its claim to the job's run on
//! the runner and the job's own process (its `TRACEPARENT`); an `http` target gets the trace in
//! its `traceparent` header, and an API request continues the caller's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, JobStatus};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use scheduler_client::{
    DeviceJobTarget, HttpTarget, NewSchedule, SchedulerClient, Target, TriggerKind,
};
use serde_json::{Map, json};
use test_support::{Stack, wait_until};

const SOON: Duration = Duration::from_secs(60);

/// What `probe` finds, as soon as it finds it; the test fails naming `what` after [`SOON`].
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_until(what, SOON, || {
        let found = probe().ok_or_else(|| "not yet".to_string());
        async move { found }
    })
    .await
}

/// One exported span, as the receiver keeps it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Default)]
struct Received {
    spans: Vec<Exported>,
    /// The `traceparent` header of each request the http target's stub got.
    traceparents: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver's `/v1/traces`: protobuf `ExportTraceServiceRequest`s.
async fn otlp(State(received): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut received = received.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .filter_map(|kv| {
                        Some((kv.key.clone(), text(kv.value.as_ref()?.value.as_ref()?)))
                    })
                    .collect();
                received.spans.push(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_id: hex(&span.parent_span_id),
                    attributes,
                });
            }
        }
    }
    ""
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The http target's stub: records the `traceparent` it is sent.
async fn target(State(received): State<Shared>, headers: HeaderMap) -> &'static str {
    if let Some(value) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        received
            .lock()
            .unwrap()
            .traceparents
            .push(value.to_string());
    }
    "ok"
}

async fn serve(received: Shared) -> String {
    let app = Router::new()
        .route("/v1/traces", post(otlp))
        .route("/hook", post(target))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

const RUNNER: &str = r#"
[job_types.traced]
argv = ["sh", "-c", "echo TRACEPARENT=$TRACEPARENT"]
max_duration = "1m"
runs_on = "pool:modules"

[job_types.stuck]
argv = ["sh", "-c", "exec sleep 60"]
max_duration = "1s"
runs_on = "pool:modules"

[[pools]]
name = "modules"
concurrency = 2
"#;

fn every_second() -> scheduler_client::TriggerSpec {
    TriggerKind::Cron {
        expression: "* * * * * *".into(),
        timezone: "UTC".into(),
    }
    .into()
}

fn pool_job(job_type: &str) -> Target {
    Target::DeviceJob(DeviceJobTarget {
        runner: "farm".into(),
        device: None,
        pool: Some("modules".into()),
        select: None,
        moves: 0,
        job_type: job_type.into(),
        params: Map::new(),
        priority: 5,
        max_duration: None,
    })
}

/// The spans of `trace_id`, by service and name.
fn of_trace(received: &Shared, trace_id: &str) -> Vec<Exported> {
    let received = received.lock().unwrap();
    received
        .spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect()
}

fn has(spans: &[Exported], service: &str, name: &str) -> bool {
    spans.iter().any(|s| s.service == service && s.name == name)
}

/// The trace of the first occurrence of `schedule_id` whose spans include every one of `names`
/// from `service`.
async fn trace_of(received: &Shared, schedule_id: &str) -> String {
    eventually(
        &format!("an occurrence of {schedule_id} is exported"),
        || {
            let received = received.lock().unwrap();
            received
                .spans
                .iter()
                .find(|s| {
                    s.name == "occurrence"
                        && s.attributes.get("schedule_id").map(String::as_str) == Some(schedule_id)
                })
                .map(|s| s.trace_id.clone())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_occurrence_is_one_trace_across_the_scheduler_the_runner_and_the_job() {
    let received: Shared = Arc::default();
    let url = serve(received.clone()).await;
    let runner_config = format!("{RUNNER}\n[telemetry]\notlp_endpoint = \"{url}\"\n");
    let stack = Stack::builder(&runner_config)
        .scheduler_env("SCHEDULER__TELEMETRY__OTLP_ENDPOINT", &url)
        .scheduler_env("SCHEDULER__ENDPOINTS__HOOK__URL", &url)
        .start()
        .await;
    let client = SchedulerClient::new(scheduler_client::ClientConfig {
        port: stack.scheduler.port,
        ..Default::default()
    })
    .unwrap();

    // An API request continues the caller's trace.
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let params = json!({"id": "traced", "owner": "farm", "trigger": every_second(),
                        "target": pool_job("traced")});
    let answer: serde_json::Value = reqwest::Client::new()
        .post(stack.scheduler.url())
        .header("traceparent", caller)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "create_schedule", "params": params}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.get("result").is_some(), "{answer}");
    let request = eventually(
        "the API request's span continues the caller's trace",
        || {
            let spans = of_trace(&received, "0af7651916cd43dd8448eb211c80319c");
            spans
                .into_iter()
                .find(|s| s.service == "scheduler" && s.name == "request")
        },
    )
    .await;
    assert_eq!(request.parent_id, "b7ad6b7169203331");
    assert_eq!(request.attributes["rpc.method"], "create_schedule");

    // A device job's occurrence: the scheduler's spans, the runner's, and the job's process.
    let trace = trace_of(&received, "traced").await;
    let spans = eventually("the occurrence's trace has every span", || {
        let spans = of_trace(&received, &trace);
        let complete = ["occurrence", "claim", "dispatch", "attempt", "outcome"]
            .iter()
            .all(|name| has(&spans, "scheduler", name))
            && ["queue", "run"]
                .iter()
                .all(|name| has(&spans, "device-runner", name));
        complete.then_some(spans)
    })
    .await;
    let occurrence = spans.iter().find(|s| s.name == "occurrence").unwrap();
    assert!(
        occurrence.attributes["ledger_key"].starts_with("traced@"),
        "{occurrence:?}"
    );
    assert_eq!(
        occurrence.parent_id, "",
        "an occurrence's trace starts at its claim"
    );
    let attempt = spans.iter().find(|s| s.name == "attempt").unwrap();
    let queue = spans.iter().find(|s| s.name == "queue").unwrap();
    assert_eq!(
        queue.parent_id, attempt.span_id,
        "the runner continues the attempt"
    );
    let run = spans.iter().find(|s| s.name == "run").unwrap();
    assert_eq!(run.attributes["status"], "completed");
    // The job's process was handed the run's trace.
    let runner = DeviceRunnerClient::new(&stack.runner.url()).unwrap();
    let log = runner
        .rpc()
        .get_logs(run.attributes["job_id"].clone(), None, None)
        .await
        .unwrap();
    assert!(
        log.data
            .contains(&format!("TRACEPARENT=00-{trace}-{}-01", run.span_id)),
        "{}",
        log.data
    );

    // A job stopped at its limit: its kill is in its occurrence's trace.
    let mut stuck = NewSchedule::new("farm", every_second(), pool_job("stuck"));
    stuck.id = Some("stuck".into());
    client.create_schedule(stuck).await.unwrap();
    let stuck_trace = trace_of(&received, "stuck").await;
    let killed = eventually("the job's kill is a span of its trace", || {
        let spans = of_trace(&received, &stuck_trace);
        spans
            .iter()
            .find(|s| s.service == "device-runner" && s.name == "kill")
            .cloned()
    })
    .await;
    assert!(
        killed.attributes["reason"].contains("max duration"),
        "{killed:?}"
    );
    let jobs = runner
        .rpc()
        .list_runs(None, None, None, Some(100), None, None)
        .await
        .unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.job_type == "stuck" && j.status == JobStatus::Timeout)
    );

    // An http target is sent the trace of its attempt.
    let mut hook = NewSchedule::new(
        "farm",
        every_second(),
        Target::Http(HttpTarget {
            endpoint: Some("hook".into()),
            url: None,
            method: "POST".into(),
            path: "/hook".into(),
            headers: Default::default(),
            body: serde_json::Value::Null,
            expected_status: "2xx".into(),
        }),
    );
    hook.id = Some("hook".into());
    client.create_schedule(hook).await.unwrap();
    let sent = eventually("the http target is called with a traceparent", || {
        let received = received.lock().unwrap();
        received.traceparents.first().cloned()
    })
    .await;
    let hook_trace = sent.split('-').nth(1).unwrap().to_string();
    let hook_spans = eventually("the header names an exported trace", || {
        let spans = of_trace(&received, &hook_trace);
        has(&spans, "scheduler", "attempt").then_some(spans)
    })
    .await;
    let attempt = hook_spans.iter().find(|s| s.name == "attempt").unwrap();
    assert_eq!(sent, format!("00-{hook_trace}-{}-01", attempt.span_id));
    let occurrence = hook_spans.iter().find(|s| s.name == "occurrence");
    assert_eq!(
        occurrence.map(|s| s.attributes["schedule_id"].as_str()),
        Some("hook")
    );
}
