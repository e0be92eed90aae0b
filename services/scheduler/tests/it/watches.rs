//! Watches against the real binary: a stub module on loopback whose status flips after a few
//! calls, a stub core whose `/continue` fails or answers, a real Redis SUBSCRIBE for the
//! notifications; exhaustion, cancellation, bad input, and a completion that outlives a SIGKILL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use scheduler_client::{
    Check, DeliveryState, Error, NewWatch, OnComplete, RunQuery, RunStatus, SchedulerClient,
    SchedulerError, Watch, WatchQuery, WatchStatus,
};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Daemon, REDIS, StubBackend, Subscriber, TestDb, raw_call, serve_on_loopback,
};

/// A JSON-RPC module whose `status` tool answers `{"data": {"state": "running"}}` until it
/// has been called `flip_after` times, then `"done"`; `broken` answers a JSON-RPC error. It
/// answers batch requests, or (made [`StubModule::without_batches`]) refuses them as a
/// JSON-RPC service without batches does.
struct StubModule {
    url: String,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Value>>>,
    /// Each request's body, as it came.
    requests: Arc<Mutex<Vec<Value>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ModuleState {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    flip_after: usize,
    /// When set, the state is "done" from this instant on, whatever the count.
    done_from: Option<std::time::Instant>,
    batches: bool,
}

impl StubModule {
    async fn start(flip_after: usize) -> StubModule {
        StubModule::serve(flip_after, None, true).await
    }

    /// A module whose state is "done" from `instant` on.
    async fn done_from(instant: std::time::Instant) -> StubModule {
        StubModule::serve(usize::MAX, Some(instant), true).await
    }

    /// A module that answers a batch request `Invalid Request`, as one without batches does.
    async fn without_batches() -> StubModule {
        StubModule::serve(usize::MAX, None, false).await
    }

    async fn serve(
        flip_after: usize,
        done_from: Option<std::time::Instant>,
        batches: bool,
    ) -> StubModule {
        let state = ModuleState {
            calls: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            requests: Arc::new(Mutex::new(Vec::new())),
            flip_after,
            done_from,
            batches,
        };
        let app = axum::Router::new()
            .route("/", axum::routing::post(module_call))
            .with_state(state.clone());
        let (address, server) = serve_on_loopback(app).await;
        StubModule {
            url: format!("http://{address}/"),
            calls: state.calls,
            seen: state.seen,
            requests: state.requests,
            server,
        }
    }

    /// How many calls each request carried so far (1 for a plain request).
    fn request_sizes(&self) -> Vec<usize> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|request| request.as_array().map_or(1, Vec::len))
            .collect()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for StubModule {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn module_call(State(state): State<ModuleState>, Json(request): Json<Value>) -> Json<Value> {
    state.requests.lock().unwrap().push(request.clone());
    Json(match request {
        Value::Array(_) if !state.batches => json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": -32600, "message": "Invalid Request"}}),
        Value::Array(calls) => calls.into_iter().map(|call| answer(&state, call)).collect(),
        call => answer(&state, call),
    })
}

/// The answer to one call.
fn answer(state: &ModuleState, call: Value) -> Value {
    state.seen.lock().unwrap().push(call.clone());
    let id = call["id"].clone();
    if call["method"] == "broken" {
        return json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32000, "message": "deployer is down"}});
    }
    let count = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let done = state
        .done_from
        .is_some_and(|from| std::time::Instant::now() >= from);
    let status = if count >= state.flip_after || done {
        "done"
    } else {
        "running"
    };
    json!({"jsonrpc": "2.0", "id": id, "result": {"data": {"state": status}}})
}

/// A Redis subscriber on `notifications:{platform}`.
async fn notifications(platform: &str) -> Subscriber {
    Subscriber::subscribe(&format!("notifications:{platform}")).await
}

/// A platform name of this test alone, so that parallel tests do not hear each other.
fn platform(test: &str) -> String {
    format!("it-{test}-{}", std::process::id())
}

async fn daemon(db: &TestDb, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![("SCHEDULER__REDIS__URL", REDIS)];
    env.extend_from_slice(extra);
    Daemon::start_with(db, "http://127.0.0.1:9/", &env).await
}

fn poll_module() -> Check {
    Check::PollModule {
        module: "deployer".into(),
        tool: "status".into(),
        args: json!({"deploy": "d-1"}).as_object().unwrap().clone(),
        success_field: "data.state".into(),
        success_values: vec![json!("done"), json!("succeeded")],
    }
}

fn watch_of(platform: &str, check: Check, message: &str) -> NewWatch {
    NewWatch {
        interval_seconds: Some(1),
        platform: Some(platform.into()),
        platform_channel_id: Some("C42".into()),
        platform_thread_id: Some("T7".into()),
        conversation_id: Some("conv-9".into()),
        ..NewWatch::new("u1", check, message)
    }
}

/// Waits until the watch's completion has been delivered.
async fn delivered(client: &SchedulerClient, id: &str, within: Duration) -> Watch {
    test_support::wait_until("the completion is delivered", within, || {
        let client = client.clone();
        async move {
            let page = client
                .list_watches(WatchQuery::default())
                .await
                .map_err(|e| e.to_string())?;
            let watch = page.watches.into_iter().find(|w| w.id == id);
            match watch {
                Some(w)
                    if w.delivery
                        .as_ref()
                        .is_some_and(|d| d.state == DeliveryState::Delivered) =>
                {
                    Ok(w)
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_watch_checks_until_it_succeeds_and_notifies_once() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let module = StubModule::start(3).await;
    let daemon = daemon(&db, &[("SCHEDULER__MODULES__DEPLOYER__URL", &module.url)]).await;
    let client = daemon.client();
    let platform = platform("module");
    let mut notifications = notifications(&platform).await;

    let mut new = watch_of(&platform, poll_module(), "Deploy finished: {result}");
    new.workflow_id = Some("wf-deploy".into());
    let added = client.add_watch(new).await.unwrap();
    assert_eq!((added.status, added.attempts), (WatchStatus::Active, 0));
    assert_eq!((added.interval_seconds, added.max_attempts), (1, 120));
    assert!(added.next_run_at.unwrap() > added.created_at);

    let message = notifications.next(Duration::from_secs(30)).await;
    assert_eq!(
        message,
        json!({
            "user_id": "u1",
            "platform": platform,
            "platform_channel_id": "C42",
            "platform_thread_id": "T7",
            "conversation_id": "conv-9",
            "watch_id": added.id,
            "workflow_id": "wf-deploy",
            "status": "completed",
            "message": "Deploy finished: done",
        })
    );
    let done = delivered(&client, &added.id, Duration::from_secs(10)).await;
    assert_eq!(done.status, WatchStatus::Completed);
    assert_eq!(done.attempts, 3, "two 'running' answers, then 'done'");
    assert_eq!(done.next_run_at, None);
    assert!(done.completed_at.is_some());
    let last = done.last_result.unwrap();
    assert_eq!((last.attempt, last.success), (3, true));
    assert_eq!(last.value, Some(json!("done")));
    assert_eq!(module.calls(), 3, "no check after the success");
    let sent = module.seen.lock().unwrap()[0].clone();
    assert_eq!(sent["method"], "status");
    assert_eq!(sent["params"], json!({"deploy": "d-1"}));

    // Each attempt is an occurrence in the ledger.
    let runs = client
        .list_runs(&added.id, "u1", RunQuery::default())
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|r| r.status == RunStatus::Dispatched));
    assert!(runs[0].detail.as_deref().unwrap().contains("succeeded"));
    assert!(runs[2].detail.as_deref().unwrap().contains("running"));
    // Its schedule is gone with its end, and the watch is never sent twice.
    let schedule = client.get_schedule(&added.id, "u1").await;
    assert!(
        matches!(schedule, Err(Error::Scheduler(SchedulerError::NotFound(_)))),
        "{schedule:?}"
    );
    assert_eq!(notifications.another(Duration::from_secs(2)).await, None);
    assert_eq!(module.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_out_of_attempts_fails_with_its_errors_kept() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let module = StubModule::start(usize::MAX).await;
    let backend = StubBackend::start().await;
    backend.answer("/health", 503, Duration::ZERO);
    let daemon = daemon(&db, &[("SCHEDULER__MODULES__DEPLOYER__URL", &module.url)]).await;
    let client = daemon.client();
    let platform = platform("exhausted");
    let mut notifications = notifications(&platform).await;

    // A URL answering 503, with a failure message of its own.
    let url_check = Check::PollUrl {
        url: format!("{}/health", backend.url),
        method: "GET".into(),
        expected_status: 200,
    };
    let mut new = watch_of(&platform, url_check, "up");
    new.max_attempts = Some(2);
    new.on_failure_message = Some("The service never came back.".into());
    let by_url = client.add_watch(new).await.unwrap();
    let message = notifications.next(Duration::from_secs(30)).await;
    assert_eq!(message["watch_id"], json!(by_url.id));
    assert_eq!(message["status"], "failed");
    assert_eq!(message["message"], "The service never came back.");
    let failed = delivered(&client, &by_url.id, Duration::from_secs(10)).await;
    assert_eq!((failed.status, failed.attempts), (WatchStatus::Failed, 2));
    assert_eq!(failed.last_result.unwrap().value, Some(json!(503)));
    assert_eq!(backend.requests("/health").len(), 2);

    // A module that answers with a JSON-RPC error: each attempt fails with it; the default
    // message names the check.
    let mut broken = poll_module();
    if let Check::PollModule { tool, .. } = &mut broken {
        *tool = "broken".into();
    }
    let mut new = watch_of(&platform, broken, "never");
    new.max_attempts = Some(2);
    let by_module = client.add_watch(new).await.unwrap();
    let message = notifications.next(Duration::from_secs(30)).await;
    assert_eq!(message["watch_id"], json!(by_module.id));
    let text = message["message"].as_str().unwrap();
    assert!(
        text.contains("2 attempts") && text.contains("poll_module deployer.broken"),
        "{text}"
    );
    assert!(text.contains("deployer is down"), "{text}");
    let runs = client
        .list_runs(&by_module.id, "u1", RunQuery::default())
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run.status, RunStatus::Failed);
        assert!(
            run.detail.as_deref().unwrap().contains("deployer is down"),
            "the error is kept on the attempt: {run:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_conversation_calls_the_core_or_falls_back_to_the_notification() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let core = StubBackend::start().await;
    core.answer("/continue", 502, Duration::ZERO);
    let daemon = daemon(
        &db,
        &[
            ("SCHEDULER__WATCHES__CORE_URL", &core.url),
            ("SCHEDULER__WATCHES__CORE_ATTEMPTS", "2"),
        ],
    )
    .await;
    let client = daemon.client();
    let platform = platform("resume");
    let mut notifications = notifications(&platform).await;
    let delay = Check::Delay { delay_seconds: 1 };

    // The core fails: after its attempts, the notification goes instead, and says so.
    let mut new = watch_of(
        &platform,
        delay.clone(),
        "Waited {result}s; continue the deploy.",
    );
    new.on_complete = OnComplete::ResumeConversation;
    new.workflow_id = Some("wf-1".into());
    let first = client.add_watch(new.clone()).await.unwrap();
    let message = notifications.next(Duration::from_secs(30)).await;
    assert_eq!(message["watch_id"], json!(first.id));
    assert_eq!(message["message"], "Waited 1s; continue the deploy.");
    let fell_back = delivered(&client, &first.id, Duration::from_secs(10)).await;
    let delivery = fell_back.delivery.unwrap();
    assert_eq!(delivery.via, Some(OnComplete::Notify));
    let detail = delivery.detail.unwrap();
    assert!(
        detail.contains("resume_conversation failed") && detail.contains("502"),
        "{detail}"
    );
    assert_eq!(core.requests("/continue").len(), 2, "core_attempts = 2");

    // The core answers: the conversation resumes, and no notification is sent.
    core.answer("/continue", 200, Duration::ZERO);
    let second = client.add_watch(new).await.unwrap();
    let resumed = delivered(&client, &second.id, Duration::from_secs(30)).await;
    assert_eq!(
        resumed.delivery.unwrap().via,
        Some(OnComplete::ResumeConversation)
    );
    let calls = core.requests("/continue");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[2].body,
        json!({
            "conversation_id": "conv-9",
            "user_id": "u1",
            "message": "Waited 1s; continue the deploy.",
            "watch_id": second.id,
            "workflow_id": "wf-1",
            "status": "completed",
        })
    );
    assert_eq!(notifications.another(Duration::from_secs(1)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_watches_stop_checking_and_send_nothing() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let module = StubModule::start(usize::MAX).await;
    let daemon = daemon(&db, &[("SCHEDULER__MODULES__DEPLOYER__URL", &module.url)]).await;
    let client = daemon.client();
    let platform = platform("cancel");
    let mut notifications = notifications(&platform).await;
    let mut ids = Vec::new();
    for workflow in [Some("wf-a"), Some("wf-a"), Some("wf-b"), None] {
        let mut new = watch_of(&platform, poll_module(), "done");
        new.workflow_id = workflow.map(str::to_string);
        ids.push(client.add_watch(new).await.unwrap().id);
    }
    // They check (the module always says "running").
    test_support::wait_until("the watches check", Duration::from_secs(20), || {
        let calls = module.calls();
        async move {
            if calls >= 8 {
                Ok(())
            } else {
                Err(format!("{calls} calls"))
            }
        }
    })
    .await;

    assert_eq!(client.cancel_workflow("wf-a").await.unwrap(), 2);
    assert_eq!(client.cancel_workflow("wf-a").await.unwrap(), 0);
    let cancelled = client.cancel_watch(&ids[3]).await.unwrap();
    assert_eq!(cancelled.status, WatchStatus::Cancelled);
    assert_eq!((cancelled.next_run_at, cancelled.delivery), (None, None));
    let again = client.cancel_watch(&ids[3]).await.unwrap();
    assert_eq!(again.completed_at, cancelled.completed_at, "left as it was");
    let missing = client.cancel_watch("no-such-watch").await;
    assert!(
        matches!(missing, Err(Error::Scheduler(SchedulerError::NotFound(_)))),
        "{missing:?}"
    );

    let query = |status: WatchStatus| WatchQuery {
        status: Some(status),
        ..WatchQuery::default()
    };
    let ended = client
        .list_watches(query(WatchStatus::Cancelled))
        .await
        .unwrap();
    let mut ended: Vec<_> = ended.watches.into_iter().map(|w| w.id).collect();
    ended.sort();
    let mut expected = vec![ids[0].clone(), ids[1].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(ended, expected);
    let active = client
        .list_watches(query(WatchStatus::Active))
        .await
        .unwrap();
    assert_eq!(active.watches.len(), 1);
    assert_eq!(active.watches[0].id, ids[2]);
    // Newest first, a page at a time.
    let first = client
        .list_watches(WatchQuery {
            limit: Some(3),
            ..WatchQuery::default()
        })
        .await
        .unwrap();
    let newest: Vec<_> = first.watches.iter().map(|w| w.id.clone()).collect();
    assert_eq!(newest, [ids[3].clone(), ids[2].clone(), ids[1].clone()]);
    let rest = client
        .list_watches(WatchQuery {
            limit: Some(3),
            cursor: first.next_cursor,
            ..WatchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.watches.len(), 1);
    assert_eq!(rest.watches[0].id, ids[0]);

    // The cancelled ones check no more; the active one goes on.
    let counted = |id: String| {
        let client = client.clone();
        async move {
            let runs = client.list_runs(&id, "u1", RunQuery::default()).await;
            runs.unwrap().runs.len()
        }
    };
    let before = counted(ids[0].clone()).await;
    let active_before = counted(ids[2].clone()).await;
    test_support::wait_until(
        "the active watch checks on",
        Duration::from_secs(20),
        || {
            let counted = counted(ids[2].clone());
            async move {
                let now = counted.await;
                if now >= active_before + 2 {
                    Ok(())
                } else {
                    Err(format!("{now} runs"))
                }
            }
        },
    )
    .await;
    assert_eq!(counted(ids[0].clone()).await, before);
    assert_eq!(
        notifications.another(Duration::from_millis(200)).await,
        None
    );
    // A watch's schedule cannot be changed through the schedule API.
    let deleted = client.delete_schedule(&ids[2], "u1").await;
    assert!(
        matches!(deleted, Err(Error::Scheduler(SchedulerError::NotAuthorized(ref m))) if m.contains("cancel_watch")),
        "{deleted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watches_are_refused_naming_what_is_wrong_and_nothing_is_stored() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let file = db.dir.path().join("watches.toml");
    let config = format!(
        "[redis]\nurl = \"{REDIS}\"\n[modules.deployer]\nurl = \"http://127.0.0.1:9/\"\n\
         [watches]\nurl_allow = [\"http://127.0.0.1\"]\n"
    );
    std::fs::write(&file, config).unwrap();
    let daemon = Daemon::start_with_config(&db, &file, &[]).await;
    let base = json!({
        "job_type": "poll_module",
        "check_config": {"module": "deployer", "tool": "status", "args": {},
            "success_field": "state", "success_values": ["done"]},
        "on_success_message": "ok",
        "user_id": "u1",
    });
    let with = |changes: Value| {
        let mut params = base.clone();
        for (key, value) in changes.as_object().unwrap() {
            params[key] = value.clone();
        }
        params
    };
    let url_check = |url: &str| json!({"job_type": "poll_url", "check_config": {"url": url}});
    let cases = [
        (with(json!({"job_type": "poll_disk"})), "job_type"),
        (with(json!({"on_complete": "email"})), "on_complete"),
        (
            with(json!({"check_config": {"module": "deployer", "tool": "status"}})),
            "success_field",
        ),
        (with(json!({"interval_seconds": 0})), "interval_seconds"),
        (with(json!({"max_attempts": 0})), "max_attempts"),
        (with(json!({"max_attempts": 100_001})), "max_attempts"),
        (
            with(json!({"check_config": {"module": "billing", "tool": "t",
                "success_field": "s", "success_values": [1]}})),
            "module 'billing' is not configured",
        ),
        (with(url_check("ftp://127.0.0.1/x")), "http or https"),
        (with(url_check("http://example.com/")), "watches.url_allow"),
        (
            with(json!({"check_config": {"delay_seconds": 0}, "job_type": "delay"})),
            "delay_seconds",
        ),
        (
            with(json!({"on_complete": "resume_conversation"})),
            "watches.core_url",
        ),
        (with(json!({"user_id": ""})), "user_id"),
    ];
    for (params, expected) in cases {
        let reply = raw_call(&daemon, "add_watch", params.clone()).await;
        assert_eq!(
            reply["error"]["data"]["type"], "ValueError",
            "{params}: {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{params}: {message}");
    }
    let stored = daemon
        .client()
        .list_watches(WatchQuery::default())
        .await
        .unwrap();
    assert!(stored.watches.is_empty(), "nothing was stored");
    let reply = raw_call(&daemon, "list_watches", json!({"status_filter": "paused"})).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status_filter"),
        "{reply}"
    );
    // A message without `{result}` is fine: it is sent as it is.
    let plain = daemon
        .client()
        .add_watch(NewWatch::new(
            "u1",
            Check::Delay { delay_seconds: 60 },
            "It is time.",
        ))
        .await
        .unwrap();
    assert_eq!(plain.on_success_message, "It is time.");
}

/// A completion is persisted before it is sent: killed while Redis is out of reach, the
/// scheduler sends it once after its restart.
/// Checks of one module due together go as one JSON-RPC batch request; a module that refuses
/// a batch as a service without batches does gets its checks again one per request, and every
/// later one too. The checks are made due together by a stop over their first due time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modules_checks_due_together_share_a_batch_request_where_the_module_takes_them() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let batched = StubModule::start(usize::MAX).await;
    let legacy = StubModule::without_batches().await;
    let env = [
        ("SCHEDULER__MODULES__DEPLOYER__URL", batched.url.as_str()),
        ("SCHEDULER__MODULES__LEGACY__URL", legacy.url.as_str()),
    ];
    let mut first = daemon(&db, &env).await;
    let client = first.client();
    let platform = platform("batch");
    let mut ids = Vec::new();
    for module in ["deployer", "legacy"] {
        for _ in 0..3 {
            let mut check = poll_module();
            if let Check::PollModule { module: named, .. } = &mut check {
                *named = module.into();
            }
            let mut new = watch_of(&platform, check, "done");
            new.interval_seconds = Some(3);
            ids.push(client.add_watch(new).await.unwrap());
        }
    }
    // A tool that answers an error in the batch: its check failed, and it is not asked again.
    let mut broken = poll_module();
    if let Check::PollModule { tool, .. } = &mut broken {
        *tool = "broken".into();
    }
    let mut new = watch_of(&platform, broken, "never");
    new.interval_seconds = Some(3);
    new.max_attempts = Some(2);
    let broken = client.add_watch(new).await.unwrap();
    ids.push(broken.clone());
    first.terminate();
    assert_eq!(
        batched.calls() + legacy.calls(),
        0,
        "stopped before any was due"
    );
    let last_due = ids.iter().filter_map(|w| w.next_run_at).max().unwrap();
    let wait = (last_due - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;

    let second = daemon(&db, &env).await;
    let client = second.client();
    // Every watch checks twice: its overdue check, then one more on its own time.
    let watches =
        test_support::wait_until("each watch checks twice", Duration::from_secs(30), || {
            let client = client.clone();
            async move {
                let page = client.list_watches(WatchQuery::default()).await;
                let watches = page.map_err(|e| e.to_string())?.watches;
                let attempts: Vec<u32> = watches.iter().map(|w| w.attempts).collect();
                let ended = watches.iter().any(|w| w.status == WatchStatus::Failed);
                if watches.len() == 7 && attempts.iter().all(|n| *n >= 2) && ended {
                    Ok(watches)
                } else {
                    Err(format!("attempts {attempts:?}"))
                }
            }
        })
        .await;
    for watch in watches.iter().filter(|w| w.id != broken.id) {
        let last = watch.last_result.as_ref().unwrap();
        assert_eq!(
            (last.success, last.error.as_deref()),
            (false, None),
            "{watch:?}"
        );
        assert_eq!(last.value, Some(json!("running")), "{watch:?}");
    }
    let sizes = batched.request_sizes();
    assert_eq!(
        sizes[0], 4,
        "the four overdue checks in one request: {sizes:?}"
    );
    let runs = client
        .list_runs(&broken.id, "u1", RunQuery::default())
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in &runs {
        assert_eq!(run.status, RunStatus::Failed, "{run:?}");
        assert!(
            run.detail.as_deref().unwrap().contains("deployer is down"),
            "{run:?}"
        );
    }
    let asked = |method: &str| {
        let seen = batched.seen.lock().unwrap();
        seen.iter().filter(|call| call["method"] == method).count()
    };
    assert_eq!(asked("broken"), 2, "one call per attempt, none again alone");
    let sent = batched.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (sent["method"].clone(), sent["params"].clone()),
        (json!("status"), json!({"deploy": "d-1"}))
    );
    let sizes = legacy.request_sizes();
    assert_eq!(sizes[0], 3, "the batch it refused: {sizes:?}");
    assert!(
        sizes[1..].iter().all(|n| *n == 1),
        "then one call per request: {sizes:?}"
    );
    assert!(legacy.calls() >= 6, "each check was made: {sizes:?}");
    let warned = second
        .log_text()
        .matches("calls to this service go one per request from now on")
        .count();
    assert_eq!(warned, 1, "the refusal is logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_outlives_a_sigkill_and_is_sent_once_after_the_restart() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let nowhere = format!("redis://127.0.0.1:{}", crate::helpers::free_port());
    let mut first = Daemon::start_with(
        &db,
        "http://127.0.0.1:9/",
        &[("SCHEDULER__REDIS__URL", nowhere.as_str())],
    )
    .await;
    let client = first.client();
    let platform = platform("sigkill");
    let mut notifications = notifications(&platform).await;
    let added = client
        .add_watch(watch_of(
            &platform,
            Check::Delay { delay_seconds: 1 },
            "time's up",
        ))
        .await
        .unwrap();
    // It succeeded, and its notification failed at least once.
    let pending = test_support::wait_until(
        "the completion waits for Redis",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let id = added.id.clone();
            async move {
                let page = client.list_watches(WatchQuery::default()).await;
                let watch = page.map_err(|e| e.to_string())?.watches;
                let watch = watch.into_iter().find(|w| w.id == id).unwrap();
                match &watch.delivery {
                    Some(d) if d.attempts >= 1 && d.state == DeliveryState::Pending => Ok(watch),
                    other => Err(format!("{:?} {other:?}", watch.status)),
                }
            }
        },
    )
    .await;
    assert_eq!(pending.status, WatchStatus::Completed);
    let detail = pending.delivery.unwrap().detail.unwrap();
    assert!(detail.contains("redis unreachable"), "{detail}");
    first.kill9();

    let second = daemon(&db, &[]).await;
    let message = notifications.next(Duration::from_secs(30)).await;
    assert_eq!(message["watch_id"], json!(added.id));
    assert_eq!(message["message"], "time's up");
    let done = delivered(&second.client(), &added.id, Duration::from_secs(10)).await;
    assert!(done.delivery.unwrap().attempts >= 2);
    assert_eq!(notifications.another(Duration::from_secs(2)).await, None);
}

/// Three replicas on PostgreSQL, 200 watches, one replica SIGKILLed while they check: every
/// watch completes and is notified once, and each attempt is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_complete_each_watch_once_while_one_is_killed() {
    const WATCHES: usize = 200;
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    // The module says "done" from six seconds on: by then every watch has checked a few times.
    let module = StubModule::done_from(std::time::Instant::now() + Duration::from_secs(6)).await;
    let env = [
        ("SCHEDULER__REDIS__URL", REDIS),
        ("SCHEDULER__MODULES__DEPLOYER__URL", module.url.as_str()),
        ("SCHEDULER__ENGINE__LEASE", "2s"),
        ("SCHEDULER__ENGINE__LEADER_POLL", "200ms"),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await);
    }
    let platform = platform("replicas");
    let mut notifications = notifications(&platform).await;
    let mut ids = std::collections::HashSet::new();
    for i in 0..WATCHES {
        let client = replicas[i % 3].client();
        let added = client
            .add_watch(watch_of(&platform, poll_module(), "done: {result}"))
            .await
            .unwrap();
        ids.insert(added.id);
    }
    // Kill one replica while the watches check, before any can succeed.
    test_support::wait_until("the watches check", Duration::from_secs(20), || {
        let calls = module.calls();
        async move {
            if calls >= WATCHES {
                Ok(())
            } else {
                Err(format!("{calls} checks"))
            }
        }
    })
    .await;
    replicas[1].kill9();

    let mut notified: std::collections::HashMap<String, usize> = Default::default();
    while notified.len() < WATCHES {
        let message = notifications.next(Duration::from_secs(60)).await;
        assert_eq!(message["status"], "completed", "{message}");
        *notified
            .entry(message["watch_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(notifications.another(Duration::from_secs(3)).await, None);
    assert!(
        notified.values().all(|n| *n == 1),
        "each watch notified once"
    );
    assert_eq!(
        notified
            .keys()
            .cloned()
            .collect::<std::collections::HashSet<_>>(),
        ids
    );

    let client = replicas[0].client();
    let mut attempts = 0;
    let mut recorded = 0;
    for id in &ids {
        let runs = client
            .list_runs(id, "u1", RunQuery::default())
            .await
            .unwrap()
            .runs;
        let ended: Vec<_> = runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Dispatched | RunStatus::Failed))
            .collect();
        recorded += ended.len();
        let page = client
            .list_watches(WatchQuery {
                limit: Some(1000),
                ..WatchQuery::default()
            })
            .await
            .unwrap();
        let watch = page.watches.into_iter().find(|w| &w.id == id).unwrap();
        assert_eq!(watch.status, WatchStatus::Completed);
        assert_eq!(
            watch.attempts as usize,
            ended.len(),
            "each attempt counted once, with its ledger row: {runs:?}"
        );
        attempts += watch.attempts as usize;
    }
    assert_eq!(attempts, recorded);
    // A check is repeated only when the killed replica had made it and not recorded it.
    assert!(
        module.calls() >= attempts,
        "{} < {attempts}",
        module.calls()
    );
    for (i, replica) in replicas.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(
            !replica.log_text().contains("ERROR"),
            "replica {i} logged an error:\n{}",
            replica.log_text()
        );
    }
}
