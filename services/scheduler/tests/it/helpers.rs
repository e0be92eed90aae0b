//! Shared helpers: the daemon under test, its database, and a stub execution service.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use scheduler_client::{ClientConfig, HttpTarget, NewGraphSchedule, SchedulerClient, Target};
use serde_json::{Value, json};
use test_support::PgSchema;

pub(crate) use test_support::Backend;

/// A database for one test: a SQLite file in a temporary directory, or a private PostgreSQL
/// schema. `None` from [`TestDb::new`] means PostgreSQL is unreachable outside CI.
pub(crate) struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    _schema: Option<PgSchema>,
}

impl TestDb {
    pub(crate) async fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Memory => panic!("the scheduler's tests store in a database"),
            Backend::Sqlite => {
                let url = format!(
                    "sqlite://{}",
                    dir.path().join("data/scheduler.db").display()
                );
                Some(TestDb {
                    url,
                    dir,
                    _schema: None,
                })
            }
            Backend::Postgres => {
                let schema = PgSchema::create("scheduler_it").await?;
                Some(TestDb {
                    url: schema.url(),
                    dir,
                    _schema: Some(schema),
                })
            }
        }
    }
}

/// The scheduler binary, running (on the shared harness, [`test_support::daemon`]).
pub(crate) struct Daemon {
    process: test_support::Daemon,
    pub port: u16,
}

pub(crate) fn free_port() -> u16 {
    test_support::free_port()
}

impl Daemon {
    /// Starts the binary on `db` and waits until it answers `health_check`.
    pub(crate) async fn start(db: &TestDb, executor_url: &str) -> Daemon {
        Daemon::start_with(db, executor_url, &[]).await
    }

    pub(crate) async fn start_with(
        db: &TestDb,
        executor_url: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_at(db, &db.url, executor_url, env).await
    }

    /// Starts the binary in `db`'s directory on the database at `url`.
    pub(crate) async fn start_at(
        db: &TestDb,
        url: &str,
        executor_url: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::launch(db, url, executor_url, env, &[]).await
    }

    /// Starts the binary on `db` with `--config file`.
    pub(crate) async fn start_with_config(
        db: &TestDb,
        file: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_configured(db, "http://127.0.0.1:9/", file, env).await
    }

    /// Starts the binary on `db` with `--config file` and the execution service at
    /// `executor_url`.
    pub(crate) async fn start_configured(
        db: &TestDb,
        executor_url: &str,
        file: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        let file = file.to_str().unwrap();
        Daemon::launch(db, &db.url, executor_url, env, &["--config", file]).await
    }

    async fn launch(
        db: &TestDb,
        url: &str,
        executor_url: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        let process = test_support::Launch::new(env!("CARGO_BIN_EXE_scheduler"), db.dir.path())
            .args(["--database-url", url, "--executor-url", executor_url])
            .args(args)
            .env("SCHEDULER__EXECUTOR__RETRY_DELAY", "50ms")
            .env("SCHEDULER__EXECUTOR__TIMEOUT", "5s")
            .env("SCHEDULER__LOG__LEVEL", "info,scheduler=debug")
            .envs(env)
            .start()
            .await
            .unwrap_or_else(|message| panic!("the scheduler did not start: {message}"));
        let port = process.port;
        Daemon { process, port }
    }

    pub(crate) fn url(&self) -> String {
        self.process.url()
    }

    /// Whether the process is still alive.
    pub(crate) fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub(crate) fn client(&self) -> SchedulerClient {
        self.client_as(None, 2)
    }

    /// A client that presents `token`, and does not retry.
    pub(crate) fn client_with_token(&self, token: &str) -> SchedulerClient {
        self.client_as(Some(token), 0)
    }

    fn client_as(&self, token: Option<&str>, retries: usize) -> SchedulerClient {
        SchedulerClient::new(ClientConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            timeout: Duration::from_secs(30),
            retries,
            retry_delay: Duration::from_millis(50),
            token: token.map(str::to_string),
        })
        .unwrap()
    }

    pub(crate) fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, then waits for the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.process
            .stop(Duration::from_secs(20))
            .unwrap_or_else(|message| panic!("scheduler: {message}"))
    }
}

/// POSTs `body` as JSON to `path` on the daemon; the status and the body as text.
pub(crate) async fn post_text(daemon: &Daemon, path: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", daemon.url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A graph schedule with the given cron, owned by `user`.
pub(crate) fn graph_schedule(user: &str, graph: &str, cron: &str) -> NewGraphSchedule {
    NewGraphSchedule {
        user_id: user.into(),
        graph_id: graph.into(),
        graph_version: 1,
        cron: cron.into(),
        input_data: json!({"query": "weather", "count": 3}),
        input_credentials: Some(json!({"api": {"id": "cred-1", "provider": "openai"}})),
        name: Some(format!("{graph} for {user}")),
        user_timezone: None,
        policy: None,
        ..NewGraphSchedule::default()
    }
}

/// What `get_graph_execution_schedules` lists: one graph's, one user's, paused ones too.
pub(crate) fn listing(
    graph_id: Option<String>,
    user_id: Option<String>,
    include_paused: Option<bool>,
) -> scheduler_api::ExecutionScheduleQuery {
    scheduler_api::ExecutionScheduleQuery {
        graph_id,
        user_id,
        include_paused: include_paused.unwrap_or(false),
        ..Default::default()
    }
}

/// One `add_graph_execution` call the stub received.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub params: Value,
    pub received_at: DateTime<Utc>,
}

impl Call {
    pub(crate) fn scheduled_time(&self) -> DateTime<Utc> {
        let text = self.params["scheduled_time"]
            .as_str()
            .expect("scheduled_time is a string");
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }
}

/// How the stub answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    Accept,
    /// HTTP 503 for the next `n` calls, then accept.
    Unavailable(usize),
    /// A JSON-RPC error for every call.
    Refuse,
    /// Accept every call after this many milliseconds, as a busy executor would.
    AcceptAfter(u64),
    /// Accept every call sent alone, and answer a batch request as a JSON-RPC server without
    /// batches does (one `Invalid Request` error).
    NoBatches,
}

#[derive(Default)]
struct StubState {
    calls: Vec<Call>,
    answer: Option<Answer>,
    attempts: usize,
    /// The size of each batch request answered as a batch.
    batches: Vec<usize>,
}

/// A stand-in for AutoGPT's execution service: a JSON-RPC server on loopback that records every
/// `add_graph_execution` it receives.
pub(crate) struct StubExecutor {
    pub url: String,
    state: Arc<Mutex<StubState>>,
    server: tokio::task::JoinHandle<()>,
}

impl StubExecutor {
    pub(crate) async fn start(answer: Answer) -> StubExecutor {
        let state = Arc::new(Mutex::new(StubState {
            answer: Some(answer),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/", post(stub_call))
            .with_state(state.clone());
        let (address, server) = serve_on_loopback(app).await;
        let url = format!("http://{address}/");
        StubExecutor { url, state, server }
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many requests arrived, including refused ones.
    pub(crate) fn attempts(&self) -> usize {
        self.state.lock().unwrap().attempts
    }

    /// How many requests arrived and how many calls were accepted, at one instant.
    pub(crate) fn requests_and_calls(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.attempts, state.calls.len())
    }

    /// The size of each batch request the stub answered as a batch.
    pub(crate) fn batches(&self) -> Vec<usize> {
        self.state.lock().unwrap().batches.clone()
    }

    /// Waits until at least `count` calls were accepted, or `timeout` passes.
    pub(crate) async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if calls.len() >= count || Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StubExecutor {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves `app` on a free loopback port until the returned task is aborted.
pub(crate) async fn serve_on_loopback(
    app: axum::Router,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (address, server)
}

/// Answers one request: a call, or a JSON-RPC 2.0 batch of calls each answered on its own.
async fn stub_call(
    State(state): State<Arc<Mutex<StubState>>>,
    Json(request): Json<Value>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let answer = state.lock().unwrap().answer;
    if let Some(Answer::AcceptAfter(ms)) = answer {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut state = state.lock().unwrap();
    state.attempts += 1;
    match state.answer.unwrap_or(Answer::Accept) {
        Answer::Unavailable(n) if n > 0 => {
            state.answer = Some(Answer::Unavailable(n - 1));
            (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
        }
        // As a JSON-RPC server without batches answers one.
        Answer::NoBatches if request.is_array() => Json(json!({
            "jsonrpc": "2.0", "id": null,
            "error": {"code": -32600, "message": "Invalid Request"}
        }))
        .into_response(),
        _ => match request.as_array() {
            Some(calls) => {
                state.batches.push(calls.len());
                let answers = calls.iter().map(|call| state.answer_call(call)).collect();
                Json(Value::Array(answers)).into_response()
            }
            None => Json(state.answer_call(&request)).into_response(),
        },
    }
}

impl StubState {
    /// The answer to one `add_graph_execution` call, recorded when accepted.
    fn answer_call(&mut self, request: &Value) -> Value {
        assert_eq!(request["method"], "add_graph_execution");
        if let Some(Answer::Refuse) = self.answer {
            return json!({
                "jsonrpc": "2.0", "id": request["id"],
                "error": {"code": -32000, "message": "graph g-missing not found"}
            });
        }
        self.calls.push(Call {
            params: request["params"].clone(),
            received_at: Utc::now(),
        });
        let id = format!("exec-{}", self.calls.len());
        json!({"jsonrpc": "2.0", "id": request["id"], "result": {"id": id}})
    }
}

/// One JSON-RPC call a [`StubService`] received.
#[derive(Debug, Clone)]
pub(crate) struct ServiceCall {
    pub method: String,
    pub params: Value,
}

#[derive(Default)]
struct ServiceState {
    results: std::collections::HashMap<String, Value>,
    calls: Vec<ServiceCall>,
    alerts: Vec<Value>,
}

/// A stand-in for the services system tasks call (notification manager, database manager,
/// storage): a JSON-RPC server on loopback that answers each method with a fixed result and
/// records the calls. `/webhook` stands in for a Discord webhook and records what it is sent.
pub(crate) struct StubService {
    pub url: String,
    state: Arc<Mutex<ServiceState>>,
    server: tokio::task::JoinHandle<()>,
}

impl StubService {
    pub(crate) async fn start(results: &[(&str, Value)]) -> StubService {
        let state = Arc::new(Mutex::new(ServiceState {
            results: results
                .iter()
                .map(|(m, v)| (m.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/", post(service_call))
            .route("/webhook", post(webhook_call))
            .with_state(state.clone());
        let (address, server) = serve_on_loopback(app).await;
        let url = format!("http://{address}");
        StubService { url, state, server }
    }

    pub(crate) fn webhook_url(&self) -> String {
        format!("{}/webhook", self.url)
    }

    pub(crate) fn calls(&self, method: &str) -> Vec<ServiceCall> {
        let state = self.state.lock().unwrap();
        state
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    pub(crate) fn alerts(&self) -> Vec<Value> {
        self.state.lock().unwrap().alerts.clone()
    }

    /// Waits until `method` was called at least `count` times, or `timeout` passes.
    pub(crate) async fn wait_for(
        &self,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ServiceCall> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls(method);
            if calls.len() >= count || Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StubService {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn service_call(
    State(state): State<Arc<Mutex<ServiceState>>>,
    Json(request): Json<Value>,
) -> Json<Value> {
    let method = request["method"].as_str().unwrap_or_default().to_string();
    let mut state = state.lock().unwrap();
    state.calls.push(ServiceCall {
        method: method.clone(),
        params: request["params"].clone(),
    });
    Json(match state.results.get(&method) {
        Some(result) => json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
        None => json!({"jsonrpc": "2.0", "id": request["id"],
            "error": {"code": -32601, "message": format!("Method not found: {method}")}}),
    })
}

async fn webhook_call(
    State(state): State<Arc<Mutex<ServiceState>>>,
    Json(body): Json<Value>,
) -> axum::http::StatusCode {
    state.lock().unwrap().alerts.push(body);
    axum::http::StatusCode::NO_CONTENT
}

pub(crate) use test_support::DbProxy;

/// One request a [`StubBackend`] received.
#[derive(Debug, Clone)]
pub(crate) struct BackendRequest {
    pub method: String,
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: Value,
    /// The body as it came, byte for byte.
    pub raw_body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

impl BackendRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct BackendState {
    requests: Vec<BackendRequest>,
    /// Per path: how it answers (status, delay).
    answers: std::collections::HashMap<String, (u16, Duration)>,
    /// Per path: requests being answered now, and the most at once.
    running: std::collections::HashMap<String, (usize, usize)>,
}

/// A stand-in for a backend the scheduler's `http` and `rpc` targets call: an HTTP server on
/// loopback that records every request to any path, answers `POST /rpc` as a JSON-RPC 2.0
/// service (result `{"ok": true}`), and answers other paths 200 unless told otherwise.
pub(crate) struct StubBackend {
    pub url: String,
    state: Arc<Mutex<BackendState>>,
    server: tokio::task::JoinHandle<()>,
}

impl StubBackend {
    pub(crate) async fn start() -> StubBackend {
        let state = Arc::new(Mutex::new(BackendState::default()));
        let app = axum::Router::new()
            .fallback(backend_request)
            .with_state(state.clone());
        let (address, server) = serve_on_loopback(app).await;
        StubBackend {
            url: format!("http://{address}"),
            state,
            server,
        }
    }

    /// Makes requests to `path` answer `status` after `delay`.
    pub(crate) fn answer(&self, path: &str, status: u16, delay: Duration) {
        let mut state = self.state.lock().unwrap();
        state.answers.insert(path.to_string(), (status, delay));
    }

    pub(crate) fn requests(&self, path: &str) -> Vec<BackendRequest> {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The most requests to `path` that were being answered at once.
    pub(crate) fn most_at_once(&self, path: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.running.get(path).map_or(0, |(_, most)| *most)
    }

    /// Waits until `path` received at least `count` requests, or `timeout` passes.
    pub(crate) async fn wait_for(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<BackendRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests(path);
            if requests.len() >= count || Instant::now() >= deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StubBackend {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn backend_request(
    State(state): State<Arc<Mutex<BackendState>>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let (status, delay) = {
        let mut state = state.lock().unwrap();
        state.requests.push(BackendRequest {
            method,
            path: path.clone(),
            headers,
            body: body.clone(),
            raw_body: bytes.to_vec(),
            received_at: Utc::now(),
        });
        let running = state.running.entry(path.clone()).or_default();
        running.0 += 1;
        running.1 = running.1.max(running.0);
        state
            .answers
            .get(&path)
            .copied()
            .unwrap_or((200, Duration::ZERO))
    };
    tokio::time::sleep(delay).await;
    state
        .lock()
        .unwrap()
        .running
        .entry(path.clone())
        .or_default()
        .0 -= 1;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if path == "/rpc" && status.is_success() && body.is_array() {
        // A batch: each call answered on its own; a call with `"fail_in_batch": true` is
        // refused here (and accepted when it comes alone).
        let answers: Vec<Value> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|call| {
                if call["params"]["fail_in_batch"] == true {
                    json!({"jsonrpc": "2.0", "id": call["id"],
                           "error": {"code": -32000, "message": "busy in a batch"}})
                } else {
                    json!({"jsonrpc": "2.0", "id": call["id"], "result": {"ok": true}})
                }
            })
            .collect();
        return Json(Value::Array(answers)).into_response();
    }
    if path == "/rpc" && status.is_success() {
        return Json(json!({"jsonrpc": "2.0", "id": body["id"], "result": {"ok": true}}))
            .into_response();
    }
    (status, format!("answered {} for {path}", status.as_u16())).into_response()
}

/// A JSON-RPC call with raw params, for values no typed client can send.
pub(crate) async fn raw_call(daemon: &Daemon, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(daemon.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An `http` target: a POST of `body` (null: none) to `path` on configured endpoint `endpoint`.
pub(crate) fn http_post(endpoint: &str, path: &str, body: Value) -> Target {
    Target::Http(HttpTarget {
        endpoint: Some(endpoint.into()),
        url: None,
        method: "POST".into(),
        path: path.into(),
        headers: Default::default(),
        body,
        expected_status: "2xx".into(),
    })
}

/// A JSON-RPC call with `token`: the result, or the error's `data.type` and message.
pub(crate) async fn rpc_as(
    daemon: &Daemon,
    token: &str,
    method: &str,
    params: Value,
) -> Result<Value, (String, String)> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/", daemon.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match answer.get("error") {
        None => Ok(answer["result"].clone()),
        Some(error) => Err((
            error["data"]["type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            error["message"].as_str().unwrap_or_default().to_string(),
        )),
    }
}

/// The Redis the tests publish and subscribe on.
pub(crate) const REDIS: &str = "redis://127.0.0.1:6379";

/// A Redis subscriber on one channel, its messages read as JSON.
pub(crate) struct Subscriber {
    messages: futures::stream::BoxStream<'static, Value>,
}

impl Subscriber {
    pub(crate) async fn subscribe(channel: &str) -> Subscriber {
        let client = redis::Client::open(REDIS).unwrap();
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .unwrap_or_else(|error| panic!("Redis at {REDIS} is needed: {error}"));
        pubsub.subscribe(channel).await.unwrap();
        let messages = pubsub
            .into_on_message()
            .map(|message| {
                let text: String = message.get_payload().unwrap();
                serde_json::from_str(&text).unwrap()
            })
            .boxed();
        Subscriber { messages }
    }

    pub(crate) async fn next(&mut self, within: Duration) -> Value {
        tokio::time::timeout(within, self.messages.next())
            .await
            .expect("a notification arrives in time")
            .expect("the subscription stays open")
    }

    /// Whether another notification arrives within `within`.
    pub(crate) async fn another(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.messages.next())
            .await
            .ok()
            .flatten()
    }
}
