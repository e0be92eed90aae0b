//! The JSON-RPC API over HTTP and WebSocket: lifecycle, user isolation, transports, bad input.

use std::collections::HashSet;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::rpc_params;
use scheduler_client::{Error, FireTimesQuery, SchedulerError};
use serde_json::{Value, json};

use crate::helpers::{Answer, Backend, Daemon, StubExecutor, TestDb, graph_schedule};

test_support::backend_matrix!([sqlite, postgres] [
    schedule_lifecycle_add_list_pause_resume_delete,
    concurrent_adds_from_many_clients_are_all_stored,
]);

async fn schedule_lifecycle_add_list_pause_resume_delete(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stub = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &stub.url).await;
    let client = daemon.client();

    let mut request = graph_schedule("u1", "g1", "0 9 * * 1");
    request.user_timezone = Some("Europe/Berlin".into());
    let added = client.add_graph_execution_schedule(request).await.unwrap();
    assert_eq!(
        (
            added.user_id.as_str(),
            added.graph_id.as_str(),
            added.graph_version
        ),
        ("u1", "g1", 1)
    );
    assert_eq!(
        (added.cron.as_str(), added.timezone.as_str()),
        ("0 9 * * 1", "Europe/Berlin")
    );
    assert_eq!(added.input_data, json!({"query": "weather", "count": 3}));
    let next = added
        .next_run_time
        .expect("an active schedule has a next run");
    // Monday 09:00 in Berlin, shown with Berlin's offset.
    assert_eq!(
        next.format("%a %H:%M").to_string(),
        "Mon 09:00",
        "{backend:?}"
    );
    assert!(next.offset().local_minus_utc() == 3600 || next.offset().local_minus_utc() == 7200);

    let other = client
        .add_graph_execution_schedule(graph_schedule("u1", "g2", "*/5 * * * *"))
        .await
        .unwrap();
    let ids = |list: Vec<scheduler_client::GraphExecutionJobInfo>| {
        list.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(client
            .get_graph_execution_schedules(&crate::helpers::listing(None, Some("u1".into()), None))
            .await
            .unwrap()),
        [added.id.clone(), other.id.clone()]
    );
    assert_eq!(
        ids(client
            .get_graph_execution_schedules(&crate::helpers::listing(Some("g2".into()), None, None))
            .await
            .unwrap()),
        [other.id.as_str()]
    );

    assert!(
        client
            .pause_execution_schedule(&added.id, "u1")
            .await
            .unwrap()
    );
    assert_eq!(
        ids(client
            .get_graph_execution_schedules(&crate::helpers::listing(None, Some("u1".into()), None))
            .await
            .unwrap()),
        [other.id.as_str()]
    );
    let with_paused = client
        .get_graph_execution_schedules(&crate::helpers::listing(
            None,
            Some("u1".into()),
            Some(true),
        ))
        .await
        .unwrap();
    assert_eq!(with_paused.len(), 2);
    assert_eq!(
        with_paused
            .iter()
            .find(|s| s.id == added.id)
            .unwrap()
            .next_run_time,
        None
    );
    assert!(
        !client
            .pause_execution_schedule(&added.id, "u1")
            .await
            .unwrap(),
        "pausing a paused schedule answers false, as AutoGPT's does"
    );

    assert!(
        client
            .resume_execution_schedule(&added.id, "u1")
            .await
            .unwrap()
    );
    assert!(
        !client
            .resume_execution_schedule(&added.id, "u1")
            .await
            .unwrap(),
        "resuming a running schedule answers false, as AutoGPT's does"
    );
    let resumed = client
        .get_graph_execution_schedules(&crate::helpers::listing(Some("g1".into()), None, None))
        .await
        .unwrap();
    assert_eq!(resumed[0].next_run_time, Some(next));

    let deleted = client
        .delete_graph_execution_schedule(&added.id, "u1")
        .await
        .unwrap();
    assert_eq!(deleted.id, added.id);
    assert_eq!(
        ids(client
            .get_graph_execution_schedules(&crate::helpers::listing(
                None,
                Some("u1".into()),
                Some(true)
            ))
            .await
            .unwrap()),
        [other.id.as_str()]
    );
    match client
        .delete_graph_execution_schedule(&added.id, "u1")
        .await
    {
        Err(Error::Scheduler(SchedulerError::NotFound(message))) => {
            assert_eq!(message, format!("Job #{} not found.", added.id))
        }
        other => panic!("expected NotFoundError, got {other:?}"),
    }
}

#[tokio::test]
async fn users_cannot_see_or_change_each_others_schedules() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let client = daemon.client();
    let mine = client
        .add_graph_execution_schedule(graph_schedule("alice", "g1", "0 * * * *"))
        .await
        .unwrap();
    client
        .add_graph_execution_schedule(graph_schedule("bob", "g1", "0 * * * *"))
        .await
        .unwrap();

    let not_authorized = |result: Result<_, Error>| match result {
        Err(Error::Scheduler(SchedulerError::NotAuthorized(_))) => {}
        other => panic!("expected NotAuthorizedError, got {other:?}"),
    };
    not_authorized(
        client
            .delete_graph_execution_schedule(&mine.id, "bob")
            .await
            .map(|_| ()),
    );
    not_authorized(
        client
            .pause_execution_schedule(&mine.id, "bob")
            .await
            .map(|_| ()),
    );
    not_authorized(
        client
            .resume_execution_schedule(&mine.id, "bob")
            .await
            .map(|_| ()),
    );
    not_authorized(
        client
            .get_schedule_runs(&mine.id, "bob", None)
            .await
            .map(|_| ()),
    );

    let bobs = client
        .get_graph_execution_schedules(&crate::helpers::listing(None, Some("bob".into()), None))
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1);
    assert!(bobs.iter().all(|s| s.user_id == "bob"));
    // Alice's schedule is untouched by Bob's attempts.
    let alices = client
        .get_graph_execution_schedules(&crate::helpers::listing(None, Some("alice".into()), None))
        .await
        .unwrap();
    assert_eq!(alices.len(), 1);
    assert!(alices[0].next_run_time.is_some());
}

#[tokio::test]
async fn params_by_position_batches_and_websocket() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let http = reqwest::Client::new();
    let positional = json!({"jsonrpc": "2.0", "id": 7, "method": "add_graph_execution_schedule",
        "params": ["u1", "g1", 4, "30 8 * * *", {"x": 1}, {}, "morning", "Asia/Kathmandu"]});
    let reply: Value = http
        .post(daemon.url())
        .json(&positional)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["result"]["name"], "morning");
    assert_eq!(reply["result"]["timezone"], "Asia/Kathmandu");
    assert!(
        reply["result"]["next_run_time"]
            .as_str()
            .unwrap()
            .ends_with("T08:30:00+05:45"),
        "{reply}"
    );

    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "health_check"},
        {"jsonrpc": "2.0", "id": 2, "method": "get_graph_execution_schedules", "params": {"user_id": "u1"}},
        {"jsonrpc": "2.0", "id": 3, "method": "no_such_method"}
    ]);
    let replies: Vec<Value> = http
        .post(daemon.url())
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_id = |id: i64| replies.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by_id(1)["result"], "OK");
    assert_eq!(by_id(2)["result"].as_array().unwrap().len(), 1);
    assert_eq!(by_id(3)["error"]["code"], -32601);

    let ws = jsonrpsee::ws_client::WsClientBuilder::default()
        .build(format!("ws://127.0.0.1:{}", daemon.port))
        .await
        .unwrap();
    let health: String = ws.request("health_check", rpc_params![]).await.unwrap();
    assert_eq!(health, "OK");
    let listed: Vec<Value> = ws
        .request(
            "get_graph_execution_schedules",
            rpc_params![Value::Null, "u1"],
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start_with(
        &db,
        "http://127.0.0.1:9/",
        &[("SCHEDULER__SERVER__MAX_BODY_BYTES", "65536")],
    )
    .await;
    let client = daemon.client();
    let kept = client
        .add_graph_execution_schedule(graph_schedule("u1", "g1", "0 0 * * *"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |body: String| {
        let http = http.clone();
        let url = daemon.url();
        async move {
            let response = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let call = |method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
    };
    let error_of = |text: &str| serde_json::from_str::<Value>(text).unwrap()["error"].clone();

    let (_, text) = post("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ".into()).await;
    assert_eq!(
        error_of(&text)["code"],
        -32700,
        "malformed JSON is a parse error: {text}"
    );
    let (_, text) = post(call("add_graph_execution_schedule", json!({"user_id": "u1", "graph_id": "g1", "graph_version": "one", "cron": "* * * * *", "input_data": {}}))).await;
    assert_eq!(
        error_of(&text)["code"],
        -32602,
        "a wrong type is invalid params: {text}"
    );
    let (_, text) = post(call(
        "add_graph_execution_schedule",
        json!({"user_id": "u1"}),
    ))
    .await;
    assert_eq!(
        error_of(&text)["code"],
        -32602,
        "missing arguments are invalid params: {text}"
    );
    let (_, text) = post(call("drop_all_tables", json!({}))).await;
    assert_eq!(error_of(&text)["code"], -32601);

    for (cron, zone, expected) in [
        ("61 * * * *", "UTC", "minute: value 61 is out of range 0-59"),
        ("0 0 31 2 *", "UTC", "can never fire"),
        ("* * * *", "UTC", "expected 5 fields"),
        (
            "0 9 * * *",
            "Mars/Olympus",
            "unknown time zone 'Mars/Olympus'",
        ),
    ] {
        let (_, text) = post(call("add_graph_execution_schedule", json!({"user_id": "u1", "graph_id": "g1", "graph_version": 1, "cron": cron, "input_data": {}, "user_timezone": zone}))).await;
        let error = error_of(&text);
        assert_eq!(
            (error["code"].as_i64(), error["data"]["type"].as_str()),
            (Some(4000), Some("ValueError")),
            "{text}"
        );
        assert!(
            error["message"].as_str().unwrap().contains(expected),
            "{cron} {zone}: {text}"
        );
    }
    let (_, text) = post(call("add_graph_execution_schedule", json!({"user_id": "u1", "graph_id": "g1", "graph_version": 1, "cron": "* * * * *", "input_data": [1, 2]}))).await;
    assert!(
        error_of(&text)["message"]
            .as_str()
            .unwrap()
            .contains("input_data must be a JSON object"),
        "{text}"
    );
    let (_, text) = post(call(
        "next_fire_times",
        json!({"cron": "* * * * *", "count": 0}),
    ))
    .await;
    assert!(
        error_of(&text)["message"]
            .as_str()
            .unwrap()
            .contains("count must be between 1 and 1000"),
        "{text}"
    );
    let (_, text) = post(call(
        "next_fire_times",
        json!({"cron": "* * * * *", "after": "yesterday"}),
    ))
    .await;
    assert!(
        error_of(&text)["message"]
            .as_str()
            .unwrap()
            .contains("not an RFC 3339 instant"),
        "{text}"
    );

    // A body over the limit (configured to 64 KiB here) is refused with a 413 the client gets
    // to read, on both kinds of route, whether its length is declared or it comes chunked.
    for size in [100 * 1024, 4 * 1024 * 1024] {
        let huge_args = json!({"user_id": "u1", "graph_id": "g1", "graph_version": 1, "cron": "* * * * *", "input_data": {"blob": "x".repeat(size)}});
        let (status, text) = post(call("add_graph_execution_schedule", huge_args.clone())).await;
        assert_eq!(status, 413, "{text}");
        assert_eq!(error_of(&text)["code"], -32007, "{text}");
        assert!(
            error_of(&text)["message"]
                .as_str()
                .unwrap()
                .contains("exceeds the limit of 65536 bytes"),
            "{text}"
        );
        let compat = http
            .post(format!("{}/add_graph_execution_schedule", daemon.url()))
            .json(&huge_args)
            .send()
            .await
            .unwrap();
        assert_eq!(compat.status().as_u16(), 413);
        let detail: Value = compat.json().await.unwrap();
        assert!(
            detail["detail"]
                .as_str()
                .unwrap()
                .contains("exceeds the limit of 65536 bytes"),
            "{detail}"
        );
        let chunks: Vec<Result<String, std::io::Error>> =
            (0..size / 8192).map(|_| Ok("x".repeat(8192))).collect();
        let chunked = http
            .post(format!("{}/add_graph_execution_schedule", daemon.url()))
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(chunked.status().as_u16(), 413, "chunked, {size} bytes");
    }

    let all = client
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, Some(true)))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        [kept.id],
        "nothing stored was lost or added"
    );
    assert_eq!(client.health_check().await.unwrap(), "OK", "still serving");
}

async fn concurrent_adds_from_many_clients_are_all_stored(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let adders: Vec<_> = (0..16)
        .map(|worker| {
            let client = daemon.client();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let schedule =
                        graph_schedule(&format!("user{worker}"), &format!("g{i}"), "*/10 * * * *");
                    ids.push(
                        client
                            .add_graph_execution_schedule(schedule)
                            .await
                            .unwrap()
                            .id,
                    );
                }
                ids
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for adder in adders {
        ids.extend(adder.await.unwrap());
    }
    assert_eq!(ids.len(), 400);
    let listed = daemon
        .client()
        .get_graph_execution_schedules(&crate::helpers::listing(None, None, None))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.clone()).collect::<HashSet<_>>(),
        ids
    );
    let user3 = daemon
        .client()
        .get_graph_execution_schedules(&crate::helpers::listing(None, Some("user3".into()), None))
        .await
        .unwrap();
    assert_eq!(user3.len(), 25);
}

#[tokio::test]
async fn next_fire_times_numbers_sunday_0_and_monday_1() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let client = daemon.client();
    // 2026-11-22 is a Sunday. APScheduler's from_crontab would have fired "1" on Tuesday.
    let monday = client
        .next_fire_times(
            "0 9 * * 1",
            FireTimesQuery {
                after: Some("2026-11-21T00:00:00Z".into()),
                count: Some(2),
                ..FireTimesQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(monday, ["2026-11-23T09:00:00Z", "2026-11-30T09:00:00Z"]);
    let sunday = client
        .next_fire_times(
            "0 9 * * 0",
            FireTimesQuery {
                timezone: Some("America/New_York".into()),
                after: Some("2026-11-21T00:00:00Z".into()),
                count: Some(1),
                ..FireTimesQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sunday, ["2026-11-22T14:00:00Z"]);
}

#[tokio::test]
async fn system_task_triggers_exist_and_answer() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let daemon = Daemon::start(&db, "http://127.0.0.1:9/").await;
    let client = daemon.client();
    for task in scheduler_api::SYSTEM_TASKS {
        match client
            .execute_system_task(task, Some(json!({"notification_types": ["AGENT_RUN"]})))
            .await
        {
            Err(Error::Scheduler(SchedulerError::Runtime(message))) => {
                assert!(
                    message.contains(task) && message.contains("is not set"),
                    "{message}"
                )
            }
            other => panic!("{task}: expected a RuntimeError naming the task, got {other:?}"),
        }
    }
}
