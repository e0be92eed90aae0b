//! The console in a real browser: Debian's Chromium driven through chromedriver (WebDriver),
//! against the real scheduler and device runner with configured phones. The test goes through
//! the console as an operator does: gives the token once, creates a schedule through the form
//! (seeing the preview and a validation error first), finds it in the table, runs it now, sees
//! the run in its history and the job on the timeline, follows a live log, pauses with a
//! reason and cancels a watch. A screenshot of each page goes to
//! `target/console-screenshots/`.

use device_runner_client::Enqueue;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient};
use fantoccini::{Client, ClientBuilder, Locator};
use scheduler_client::{Check, ClientConfig, NewWatch, SchedulerClient};
use serde_json::{Value, json};
use test_support::{Stack, free_port};

const TOKEN: &str = "console-user-token";
const ADMIN: &str = "console-admin-token";

const RUNNER_CONFIG: &str = r#"
kill_grace = "1s"

[[devices]]
serial = "P1"
label = "Pixel one"

[[devices]]
serial = "P2"

[job_types.tick]
argv = ["sh", "-c", "echo ran on $ANDROID_SERIAL"]
max_duration = "1m"

[job_types.slow]
argv = ["sh", "-c", "echo start; sleep 3; echo end"]
max_duration = "1m"
"#;

fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let target = exe.ancestors().nth(3).expect("target/").to_path_buf();
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let path = Path::new("/usr/bin/chromedriver");
        assert!(
            path.exists(),
            "/usr/bin/chromedriver is missing: apt-get install -y chromium chromium-driver \
             (.ci/run does)"
        );
        let port = free_port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, port };
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(&status).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    async fn browser(&self, width: u32, height: u32) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn services() -> Stack {
    Stack::builder(RUNNER_CONFIG)
        .scheduler_env("SCHEDULER__AUTH__TOKEN", TOKEN)
        .scheduler_env("SCHEDULER__AUTH__ADMIN_TOKEN", ADMIN)
        .scheduler_env("SCHEDULER__REDIS__URL", "redis://127.0.0.1:6379")
        .start()
        .await
}

/// A client of the stack's scheduler presenting `token`.
fn scheduler_client(services: &Stack, token: &str) -> SchedulerClient {
    SchedulerClient::new(ClientConfig {
        host: "127.0.0.1".into(),
        port: services.scheduler.port,
        timeout: Duration::from_secs(30),
        retries: 1,
        retry_delay: Duration::from_millis(50),
        token: Some(token.into()),
    })
    .unwrap()
}

/// Waits until the JavaScript expression is truthy in the page; returns its value.
async fn until(browser: &Client, what: &str, expression: &str) -> Value {
    let script = format!("return ({expression}) || null;");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = browser
            .execute(&script, vec![])
            .await
            .unwrap_or(Value::Null);
        if !value.is_null() && value != json!(false) {
            return value;
        }
        if Instant::now() >= deadline {
            let text = browser
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            panic!("{what}: not so after 20s; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn click(browser: &Client, css: &str) {
    let button = browser.find(Locator::Css(css)).await.expect(css);
    button.click().await.unwrap();
}

/// Waits for the console's token dialog and gives it `token`.
async fn give_token(browser: &Client, token: &str) {
    until(
        browser,
        "the token dialog",
        "document.getElementById('token-dialog').open",
    )
    .await;
    fill(browser, "#token-input", token).await;
    click(browser, "#token-form button[type=submit]").await;
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.expect(css);
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// One browser at a time: two would share these two cores with both services each.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_goes_through_the_console() {
    let _turn = ONE_BROWSER.lock().await;
    let services = services().await;
    let driver = Driver::start().await;
    let browser = driver.browser(1280, 900).await;
    let base = services.scheduler.url();

    // The token, asked once and kept for the tab.
    browser
        .goto(&format!("{base}/ui/#/schedules/new"))
        .await
        .unwrap();
    give_token(&browser, TOKEN).await;

    // The form: a validation error from the API at its field, then the preview.
    until(
        &browser,
        "the form",
        "document.getElementById('schedule-form')",
    )
    .await;
    fill(&browser, "input[name=owner]", "ops").await;
    fill(&browser, "input[name=id]", "console-tick").await;
    fill(&browser, "input[name=name]", "Console tick").await;
    fill(&browser, "input[name=expression]", "61 * * * *").await;
    let error = until(
        &browser,
        "the expression's error",
        "document.getElementById('error-expression').textContent.includes('61') && \
         document.getElementById('error-expression').textContent",
    )
    .await;
    assert!(error.as_str().unwrap().contains("61"), "{error}");
    // H is previewed as it becomes for the id typed in the form.
    fill(&browser, "input[name=expression]", "H H(0-7) * * *").await;
    until(
        &browser,
        "five previewed fire times of an H expression",
        "document.querySelectorAll('#preview li').length === 5 && \
         document.getElementById('preview-words').textContent.includes(\"chosen by the schedule's id\")",
    )
    .await;
    shot(&browser, "schedule-form-hashed").await;
    fill(&browser, "input[name=expression]", "0 9 * * 1-5").await;
    fill(&browser, "input[name=timezone]", "Europe/Paris").await;
    until(
        &browser,
        "five previewed fire times",
        "document.querySelectorAll('#preview li').length === 5",
    )
    .await;
    let words = until(
        &browser,
        "the plain words of the expression and zone typed last",
        "document.getElementById('preview-words').textContent.includes('Europe/Paris') && \
         document.getElementById('preview-words').textContent",
    )
    .await;
    assert_eq!(words, "at 09:00 on Monday to Friday, Europe/Paris");
    let target = r#"{"type": "device_job", "runner": "farm", "device": "P1", "job_type": "tick"}"#;
    fill(&browser, "textarea[name=target]", target).await;
    shot(&browser, "schedule-form").await;
    click(&browser, "#schedule-form button[type=submit]").await;
    until(
        &browser,
        "the schedule's page",
        "location.hash.startsWith('#/schedule/console-tick')",
    )
    .await;

    // In the table, with its trigger in words.
    browser
        .goto(&format!("{base}/ui/#/schedules"))
        .await
        .unwrap();
    let row = until(
        &browser,
        "the schedule in the table",
        "document.querySelector('tr[data-id=\"console-tick\"]')?.innerText",
    )
    .await;
    let row = row.as_str().unwrap();
    assert!(
        row.contains("Console tick") && row.contains("at 09:00 on Monday to Friday"),
        "{row}"
    );
    shot(&browser, "schedules").await;

    // Run now: the run in its history.
    browser
        .goto(&format!("{base}/ui/#/schedule/console-tick?owner=ops"))
        .await
        .unwrap();
    until(
        &browser,
        "the run-now button",
        "document.getElementById('run-now')",
    )
    .await;
    click(&browser, "#run-now").await;
    until(
        &browser,
        "the run dispatched in the history",
        "document.querySelector('main table')?.innerText.includes('dispatched')",
    )
    .await;
    shot(&browser, "schedule").await;

    // The job on the timeline, once the runner has run it.
    let runner = DeviceRunnerClient::new(&services.runner.url()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let tick = loop {
        let runs = runner
            .rpc()
            .list_runs(
                Some("P1".into()),
                None,
                Some("tick".into()),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        if let Some(run) = runs.into_iter().find(|r| r.ended_at.is_some()) {
            break run;
        }
        assert!(Instant::now() < deadline, "the tick job never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    browser
        .goto(&format!("{base}/ui/#/timeline"))
        .await
        .unwrap();
    let bar = until(
        &browser,
        "the tick job on the timeline",
        &format!(
            "document.querySelector('.tl-bar[data-job=\"{}\"]')?.getAttribute('aria-label')",
            tick.id
        ),
    )
    .await;
    assert!(
        bar.as_str().unwrap().starts_with("tick · completed"),
        "{bar}"
    );
    let legend = until(
        &browser,
        "the legend",
        "document.getElementById('legend').innerText",
    )
    .await;
    assert!(legend.as_str().unwrap().contains("tick"), "{legend}");
    shot(&browser, "timeline").await;

    // A log followed live while its job runs.
    let slow = runner
        .rpc()
        .enqueue(device_runner_client::EnqueueJob {
            device: Some("P2".into()),
            job_type: "slow".into(),
            source: Some("console test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    browser
        .goto(&format!("{base}/ui/#/logs/{}", slow.id))
        .await
        .unwrap();
    until(
        &browser,
        "the first line, live",
        "document.getElementById('log')?.textContent.includes('start')",
    )
    .await;
    let status = until(
        &browser,
        "the follow status",
        "document.getElementById('log-status').textContent",
    )
    .await;
    let ended_early = status.as_str().unwrap().starts_with("The job has ended");
    until(
        &browser,
        "the last line",
        "document.getElementById('log').textContent.includes('end')",
    )
    .await;
    until(
        &browser,
        "the end of the log",
        "document.getElementById('log-status').textContent.startsWith('The job has ended')",
    )
    .await;
    assert!(
        !ended_early,
        "the log was read after the job, not followed: {status}"
    );
    let log = until(
        &browser,
        "the log",
        "document.getElementById('log').textContent",
    )
    .await;
    assert_eq!(log, "start\nend\n");
    shot(&browser, "log").await;

    // Pause with a reason.
    browser
        .goto(&format!("{base}/ui/#/schedule/console-tick?owner=ops"))
        .await
        .unwrap();
    until(
        &browser,
        "the pause field",
        "document.getElementById('pause-reason')",
    )
    .await;
    fill(&browser, "#pause-reason", "phone repair").await;
    click(&browser, "#pause").await;
    until(
        &browser,
        "the resume button",
        "document.getElementById('resume')",
    )
    .await;
    until(
        &browser,
        "the reason shown",
        "document.querySelector('main').innerText.includes('phone repair')",
    )
    .await;
    let client = scheduler_client(&services, ADMIN);
    let paused = client.get_schedule("console-tick", "ops").await.unwrap();
    assert!(paused.paused);
    assert_eq!(paused.paused_reason.as_deref(), Some("phone repair"));

    // Cancel a watch.
    let watch = client
        .add_watch(NewWatch::new(
            "carol",
            Check::Delay {
                delay_seconds: 3600,
            },
            "done",
        ))
        .await
        .unwrap();
    browser.goto(&format!("{base}/ui/#/watches")).await.unwrap();
    let cancel = format!(
        "document.querySelector('tr[data-watch=\"{}\"] button')",
        watch.id
    );
    until(&browser, "the watch's cancel button", &cancel).await;
    click(&browser, &format!("tr[data-watch=\"{}\"] button", watch.id)).await;
    until(
        &browser,
        "the watch cancelled",
        &format!(
            "document.querySelector('tr[data-watch=\"{}\"]')?.innerText.includes('cancelled')",
            watch.id
        ),
    )
    .await;
    shot(&browser, "watches").await;

    // The other pages render their data.
    browser.goto(&format!("{base}/ui/#/devices")).await.unwrap();
    until(
        &browser,
        "the phones",
        "document.querySelector('[data-device=\"P1 (Pixel one)\"]')",
    )
    .await;
    shot(&browser, "devices").await;
    browser.goto(&format!("{base}/ui/#/runs")).await.unwrap();
    until(
        &browser,
        "the runs",
        "document.querySelector('main table')?.innerText.includes('slow')",
    )
    .await;
    shot(&browser, "runs").await;
    browser.goto(&format!("{base}/ui/#/system")).await.unwrap();
    until(
        &browser,
        "the status",
        "document.getElementById('status').innerText.includes('Database')",
    )
    .await;
    // The registry asks for the admin token, once.
    until(
        &browser,
        "the admin button",
        "document.getElementById('admin-registry')",
    )
    .await;
    click(&browser, "#admin-registry").await;
    give_token(&browser, ADMIN).await;
    until(
        &browser,
        "the system tasks",
        "document.getElementById('registry').innerText.includes('report_late_executions')",
    )
    .await;
    shot(&browser, "system").await;

    // At a phone's width the schedules page still holds its table.
    browser.set_window_size(390, 844).await.unwrap();
    browser
        .goto(&format!("{base}/ui/#/schedules"))
        .await
        .unwrap();
    until(
        &browser,
        "the narrow table",
        "document.querySelector('tr[data-id=\"console-tick\"]')",
    )
    .await;
    let dialog = browser
        .execute(
            "return document.getElementById('token-dialog').open",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(dialog, json!(false), "no token asked for again");
    let row = browser
        .execute(
            "return document.querySelector('tr[data-id=\"console-tick\"]').innerText",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        row.as_str().unwrap().contains("dispatched"),
        "the last run in the table: {row}"
    );
    shot(&browser, "schedules-phone").await;
    browser.close().await.unwrap();
}

/// Whether the element `css` takes up space on the page (not hidden, not `display: none`).
fn shown(css: &str) -> String {
    format!("(document.querySelector('{css}')?.getClientRects().length ?? 0) > 0")
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_tokens_hidden_fields_times_and_close_runs_read_right() {
    let _turn = ONE_BROWSER.lock().await;
    let services = services().await;
    let driver = Driver::start().await;
    let browser = driver.browser(1280, 900).await;
    let base = services.scheduler.url();

    // The icon every page asks for is served, without a token.
    let icon = reqwest::get(format!("{base}/favicon.ico")).await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");

    // Two refused tokens: the prompt comes back saying so each time; the third is tried.
    browser
        .goto(&format!("{base}/ui/#/schedules"))
        .await
        .unwrap();
    for wrong in ["wrong-one", "wrong-two"] {
        give_token(&browser, wrong).await;
        let why = until(
            &browser,
            "the refusal said at the prompt",
            "document.getElementById('token-dialog').open && \
             document.getElementById('token-why').textContent.includes('refused') && \
             document.getElementById('token-input').value === '' && \
             document.getElementById('token-why').textContent",
        )
        .await;
        assert!(why.as_str().unwrap().contains("was refused"), "{why}");
    }
    shot(&browser, "token-refused").await;
    fill(&browser, "#token-input", TOKEN).await;
    click(&browser, "#token-form button[type=submit]").await;
    until(
        &browser,
        "the schedules page with the third token",
        "!document.getElementById('token-dialog').open && document.querySelector('main table, main p.muted')",
    )
    .await;

    // The form shows only the chosen trigger kind's fields.
    browser
        .goto(&format!("{base}/ui/#/schedules/new"))
        .await
        .unwrap();
    until(
        &browser,
        "the form",
        "document.getElementById('schedule-form')",
    )
    .await;
    let kinds = [
        ("cron", ["expression", "timezone"].as_slice()),
        ("interval", ["every_secs"].as_slice()),
        ("daily_times", ["times", "timezone"].as_slice()),
        ("once", ["at"].as_slice()),
    ];
    for (kind, fields) in kinds {
        browser
            .execute(
                &format!(
                    "const s = document.querySelector('select[name=type]'); s.value = '{kind}'; \
                     s.dispatchEvent(new Event('change', {{bubbles: true}}));"
                ),
                vec![],
            )
            .await
            .unwrap();
        for name in ["expression", "timezone", "every_secs", "times", "at"] {
            let expected = fields.contains(&name);
            let check = shown(&format!("[name={name}]"));
            let visible = until(
                &browser,
                &format!("{name} shown = {expected} for {kind}"),
                &format!("({check}) === {expected} ? 'ok' : null"),
            )
            .await;
            assert_eq!(visible, "ok");
        }
    }

    // A paused schedule says why nothing is upcoming; a finished run's times keep the
    // schedule's zone, and a run just ended does not read "in 0 s".
    let client = scheduler_client(&services, TOKEN);
    let trigger: scheduler_client::TriggerSpec = serde_json::from_value(
        json!({"type": "cron", "expression": "0 4 * * *", "timezone": "Asia/Tokyo"}),
    )
    .unwrap();
    let target: scheduler_client::Target = serde_json::from_value(
        json!({"type": "device_job", "runner": "farm", "device": "P2", "job_type": "tick"}),
    )
    .unwrap();
    let mut new = scheduler_client::NewSchedule::new("ops", trigger, target);
    new.id = Some("tokyo".into());
    client.create_schedule(new).await.unwrap();
    client.trigger_schedule("tokyo", "ops").await.unwrap();
    client
        .pause_schedule("tokyo", "ops", Some("maintenance".into()))
        .await
        .unwrap();
    browser
        .goto(&format!("{base}/ui/#/schedule/tokyo?owner=ops"))
        .await
        .unwrap();
    let none = until(
        &browser,
        "a word for the empty upcoming list",
        "document.getElementById('upcoming-none')?.textContent",
    )
    .await;
    assert!(none.as_str().unwrap().contains("paused"), "{none}");
    let finished = until(
        &browser,
        "the run's finished time",
        "[...document.querySelectorAll('#runs table tr')].filter((r) => r.cells[0]?.tagName === 'TD')\
         .map((r) => r.cells[2].innerText).find((t) => t !== '–')",
    )
    .await;
    let finished = finished.as_str().unwrap();
    assert!(
        finished.contains("GMT+9"),
        "in the schedule's zone: {finished}"
    );
    assert!(finished.contains("here"), "and the browser's: {finished}");
    let just = browser
        .execute(
            "const now = Date.now(); return [relative(new Date(now).toISOString()),              relative(new Date(now - 400).toISOString()), relative(new Date(now - 5000).toISOString())];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(just, json!(["just now", "just now", "5 s ago"]));
    shot(&browser, "paused-schedule").await;

    // Runs seconds apart on one phone: each bar keeps a width and stays reachable.
    let runner = DeviceRunnerClient::new(&services.runner.url()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let job = runner
            .rpc()
            .enqueue(device_runner_client::EnqueueJob {
                device: Some("P2".into()),
                job_type: "tick".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push(job.id);
    }
    browser
        .goto(&format!("{base}/ui/#/timeline"))
        .await
        .unwrap();
    let ids = serde_json::to_string(&ids).unwrap();
    let reachable = until(
        &browser,
        "every close run's bar reachable at its centre",
        &format!(
            "{ids}.every((id) => {{ const bar = document.querySelector(`.tl-bar[data-job=\"${{id}}\"]`); \
             if (!bar) return false; const r = bar.getBoundingClientRect(); \
             return r.width >= 5 && document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === bar; }})"
        ),
    )
    .await;
    assert_eq!(reachable, json!(true));
    shot(&browser, "timeline-close-runs").await;

    // What will fire over the next 24 h: every minute's bar, and the minutes on the hour and
    // the half hour, where both schedules fall due, named busiest.
    for (id, expression) in [
        ("preview-every", "* * * * *"),
        ("preview-half", "*/30 * * * *"),
    ] {
        let trigger: scheduler_client::TriggerSpec =
            serde_json::from_value(json!({"type": "cron", "expression": expression})).unwrap();
        let target: scheduler_client::Target = serde_json::from_value(
            json!({"type": "redis_publish", "channel": "console-preview", "message": {}}),
        )
        .unwrap();
        let mut new = scheduler_client::NewSchedule::new("ops", trigger, target);
        new.id = Some(id.into());
        new.tags = vec!["preview".into()];
        client.create_schedule(new).await.unwrap();
    }
    browser
        .goto(&format!("{base}/ui/#/preview?tag=preview"))
        .await
        .unwrap();
    let bars = until(
        &browser,
        "a bar for every minute of the next 24 h",
        "document.querySelectorAll('.preview-bar').length >= 1440 && \
         document.querySelectorAll('.preview-bar').length",
    )
    .await;
    assert!(bars.as_u64().unwrap() <= 1441, "{bars}");
    let busiest = until(
        &browser,
        "the busiest minutes named",
        "[...document.querySelectorAll('#preview-busiest tr[data-minute]')]\
         .map((r) => [new Date(r.dataset.minute).getUTCMinutes(), r.cells[1].innerText])",
    )
    .await;
    let busiest = busiest.as_array().unwrap();
    assert_eq!(busiest.len(), 10, "{busiest:?}");
    for minute in busiest {
        assert!(
            [json!(0), json!(30)].contains(&minute[0]) && minute[1] == "2",
            "{busiest:?}"
        );
    }
    let summary = until(
        &browser,
        "the summary",
        "document.getElementById('preview-summary').textContent",
    )
    .await;
    assert!(
        summary.as_str().unwrap().contains("the busiest has 2"),
        "{summary}"
    );
    shot(&browser, "preview").await;
    browser.close().await.unwrap();
}

/// Every runner's job types and gates for the fleet page.
const FLEET_RUNNER: &str = r#"
[health]
poll = "100ms"
max_temperature = 42.0

[job_types.tick]
argv = ["sh", "-c", "echo ran on $ANDROID_SERIAL"]
max_duration = "1m"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_page_shows_every_runner_and_quarantines_a_phone() {
    let _turn = ONE_BROWSER.lock().await;
    let mut fleet = test_support::fleet::FleetStack::builder()
        .host("r1", &[("A1", &["tiktok"]), ("A2", &["tiktok", "sim"])])
        .host("r2", &[("B1", &["insta"])])
        .runner_config(FLEET_RUNNER)
        .scheduler_env("SCHEDULER__AUTH__TOKEN", TOKEN)
        .scheduler_env("SCHEDULER__AUTH__ADMIN_TOKEN", ADMIN)
        .start()
        .await;
    fleet.host("r1").facts("A2", 64, 45.0);
    let driver = Driver::start().await;
    let browser = driver.browser(1280, 800).await;
    let base = format!("http://127.0.0.1:{}", fleet.scheduler_port());

    browser.goto(&format!("{base}/ui/#/fleet")).await.unwrap();
    give_token(&browser, TOKEN).await;
    let row =
        |phone: &str| format!("document.querySelector('tr[data-phone=\"{phone}\"]')?.innerText");
    until(
        &browser,
        "both runners",
        "document.querySelectorAll('#runners .card').length === 2",
    )
    .await;
    let hot = until(
        &browser,
        "A2 held for its temperature",
        &format!("{0} && {0}.includes('45.0 °C >') && {0}", row("r1/A2")),
    )
    .await;
    let hot = hot.as_str().unwrap();
    assert!(
        hot.contains("held") && hot.contains("64 %") && hot.contains("sim"),
        "{hot}"
    );
    until(
        &browser,
        "B1 idle",
        &format!("{0} && {0}.includes('idle')", row("r2/B1")),
    )
    .await;
    shot(&browser, "fleet").await;

    // Filtered by tag: only the phone that carries it.
    fill(&browser, "#fleet-tags", "sim").await;
    click(&browser, "form.filters button[type=submit]").await;
    until(
        &browser,
        "one phone with the tag",
        "document.querySelectorAll('#phones tr[data-phone]').length === 1",
    )
    .await;
    browser.goto(&format!("{base}/ui/#/fleet")).await.unwrap();
    until(
        &browser,
        "every phone again",
        "document.querySelectorAll('#phones tr[data-phone]').length === 3",
    )
    .await;

    // Quarantined from the page: the reason asked, then the admin token.
    click(
        &browser,
        "tr[data-phone=\"r2/B1\"] button[data-action=quarantine]",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.get_alert_text().await.is_err() {
        assert!(Instant::now() < deadline, "no prompt for the reason");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.send_alert_text("cracked screen").await.unwrap();
    browser.accept_alert().await.unwrap();
    give_token(&browser, ADMIN).await;
    until(
        &browser,
        "B1 quarantined",
        &format!(
            "{0} && {0}.includes('quarantined') && {0}.includes('cracked screen')",
            row("r2/B1")
        ),
    )
    .await;
    shot(&browser, "fleet-quarantined").await;
    click(
        &browser,
        "tr[data-phone=\"r2/B1\"] button[data-action=release]",
    )
    .await;
    until(
        &browser,
        "B1 released",
        &format!("{0} && {0}.includes('idle')", row("r2/B1")),
    )
    .await;

    // A runner that stops answering is shown so, its phones as last seen.
    fleet
        .hosts
        .get_mut("r2")
        .unwrap()
        .daemon
        .as_mut()
        .unwrap()
        .kill9();
    until(
        &browser,
        "r2 unreachable",
        "document.querySelector('[data-runner=\"r2\"]')?.innerText.includes('unreachable')",
    )
    .await;
    until(
        &browser,
        "B1 unreachable",
        &format!("{0} && {0}.includes('unreachable')", row("r2/B1")),
    )
    .await;
    shot(&browser, "fleet-unreachable").await;
    browser.close().await.unwrap();
}

/// A schedule naming an exclusion calendar shows the calendar with its dates and lists no
/// upcoming fire on them; the System page lists every calendar.
#[tokio::test(flavor = "multi_thread")]
async fn a_schedules_calendar_is_shown_and_its_dates_left_out() {
    let _turn = ONE_BROWSER.lock().await;
    let services = Stack::builder(RUNNER_CONFIG)
        .scheduler_env("SCHEDULER__AUTH__TOKEN", TOKEN)
        .scheduler_env("SCHEDULER__AUTH__ADMIN_TOKEN", ADMIN)
        .scheduler_file(
            "[calendars.weekdays-off]\nzone = \"Europe/Berlin\"\nweekdays = [\"mon\", \"tue\"]\n\n\
             [calendars.holidays]\nzone = \"Europe/Berlin\"\n\
             dates = [\"2030-12-24..2030-12-26\", \"2030-12-31\"]\n",
        )
        .start()
        .await;
    let client = scheduler_client(&services, TOKEN);
    let trigger: scheduler_client::TriggerSpec = serde_json::from_value(json!({
        "type": "daily_times", "times": ["09:00"], "timezone": "Europe/Berlin",
        "exclude": ["weekdays-off", "holidays"],
    }))
    .unwrap();
    let target: scheduler_client::Target = serde_json::from_value(
        json!({"type": "device_job", "runner": "farm", "device": "P2", "job_type": "tick"}),
    )
    .unwrap();
    let mut new = scheduler_client::NewSchedule::new("ops", trigger, target);
    new.id = Some("office-hours".into());
    client.create_schedule(new).await.unwrap();

    let driver = Driver::start().await;
    let browser = driver.browser(1280, 900).await;
    let base = services.scheduler.url();
    browser
        .goto(&format!("{base}/ui/#/schedule/office-hours?owner=ops"))
        .await
        .unwrap();
    give_token(&browser, TOKEN).await;
    let skips = until(
        &browser,
        "the calendars the schedule skips",
        "document.getElementById('skips')?.innerText.includes('holidays') && \
         document.getElementById('skips').innerText",
    )
    .await;
    let skips = skips.as_str().unwrap();
    assert!(
        skips.contains("weekdays-off (Europe/Berlin): mon, tue")
            && skips.contains("holidays (Europe/Berlin): 2030-12-24..2030-12-26, 2030-12-31"),
        "{skips}"
    );
    // The upcoming fires fall on none of the excluded weekdays, in Berlin.
    let days = until(
        &browser,
        "the upcoming fires",
        "[...document.querySelectorAll('ol.preview li')].length === 5 && \
         [...document.querySelectorAll('ol.preview li')].map((li) => li.innerText)",
    )
    .await;
    let upcoming = client.get_schedule("office-hours", "ops").await.unwrap();
    assert_eq!(upcoming.next_fire_times.len(), 5, "{days}");
    for at in &upcoming.next_fire_times {
        // Shown in the schedule's zone, Berlin.
        let day = at.format("%a").to_string();
        assert!(!["Mon", "Tue"].contains(&day.as_str()), "{at} is a {day}");
    }
    // Its history: pausing it here is recorded, by the token's client, through JSON-RPC.
    fill(&browser, "#pause-reason", "audit").await;
    click(&browser, "#pause").await;
    let history = until(
        &browser,
        "the pause in the schedule's history",
        "[...document.querySelectorAll('#history tr')].filter((r) => r.cells[0]?.tagName === 'TD')\
         .length === 2 && document.getElementById('history').innerText",
    )
    .await;
    let history = history.as_str().unwrap();
    assert!(
        history.contains("create") && history.contains("user") && history.contains("jsonrpc"),
        "{history}"
    );
    assert!(
        history.contains(r#"paused_reason: null → "audit""#),
        "{history}"
    );
    shot(&browser, "schedule-calendars").await;

    browser.goto(&format!("{base}/ui/#/system")).await.unwrap();
    let listed = until(
        &browser,
        "the calendars on the System page",
        "document.getElementById('calendars')?.innerText.includes('weekdays-off') && \
         document.getElementById('calendars').innerText",
    )
    .await;
    assert!(
        listed.as_str().unwrap().contains("2030-12-24..2030-12-26"),
        "{listed}"
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn open_incidents_show_above_every_page_and_on_the_schedules_page() {
    let _turn = ONE_BROWSER.lock().await;
    let services = Stack::builder(RUNNER_CONFIG)
        .scheduler_env("SCHEDULER__AUTH__TOKEN", TOKEN)
        .scheduler_env("SCHEDULER__AUTH__ADMIN_TOKEN", ADMIN)
        .scheduler_file(
            "[endpoints.nowhere]\nurl = \"http://127.0.0.1:9/\"\ntimeout = \"1s\"\n\n\
             [alerts]\nevery = \"200ms\"\n",
        )
        .start()
        .await;
    let client = scheduler_client(&services, TOKEN);
    // Every run fails: nothing listens on port 9.
    let trigger: scheduler_client::TriggerSpec =
        serde_json::from_value(json!({"type": "interval", "every_secs": 1})).unwrap();
    let target: scheduler_client::Target = serde_json::from_value(json!({
        "type": "http", "endpoint": "nowhere", "method": "POST", "path": "/export",
    }))
    .unwrap();
    let mut new = scheduler_client::NewSchedule::new("ops", trigger, target);
    new.id = Some("nightly-export".into());
    new.name = Some("nightly export".into());
    new.policy = Some(
        serde_json::from_value(json!({"attempts": 1, "alerts": {"failed_in_a_row": 2}})).unwrap(),
    );
    client.create_schedule(new).await.unwrap();

    let driver = Driver::start().await;
    let browser = driver.browser(1280, 900).await;
    let base = services.scheduler.url();
    browser
        .goto(&format!("{base}/ui/#/schedules"))
        .await
        .unwrap();
    give_token(&browser, TOKEN).await;
    let banner = until(
        &browser,
        "the open incident above the page",
        "!document.getElementById('incidents').hidden && \
         document.getElementById('incidents').innerText",
    )
    .await;
    let banner = banner.as_str().unwrap();
    assert!(
        banner.contains("1 open incident")
            && banner.contains("failing")
            && banner.contains("nightly export")
            && banner.contains("runs in a row failed"),
        "{banner}"
    );
    // Above every page: the fleet's too.
    browser.goto(&format!("{base}/ui/#/fleet")).await.unwrap();
    until(
        &browser,
        "the banner on the fleet page",
        "document.querySelector('h1')?.innerText === 'Fleet' && \
         !document.getElementById('incidents').hidden",
    )
    .await;
    // Its link leads to the schedule, whose page lists the incident with the last error.
    click(&browser, "#incidents a").await;
    let alerts = until(
        &browser,
        "the incident on the schedule's page",
        "document.getElementById('alerts')?.innerText.includes('open') && \
         document.getElementById('alerts').innerText",
    )
    .await;
    let alerts = alerts.as_str().unwrap();
    assert!(
        alerts.contains("failing") && alerts.contains("127.0.0.1:9"),
        "{alerts}"
    );
    shot(&browser, "schedule-alerts").await;
    browser.close().await.unwrap();
}
