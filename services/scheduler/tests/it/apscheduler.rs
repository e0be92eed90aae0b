//! `scheduler import-apscheduler` run as an operator runs it: the real binary reads AutoGPT's
//! APScheduler tables from a real PostgreSQL schema (rows APScheduler 3.11 wrote, from
//! `crates/apscheduler-import/fixtures`) and writes into SQLite or PostgreSQL; then the
//! scheduler serves and fires what was imported.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use test_support::PgSchema;

use crate::helpers::{Answer, Backend, Daemon, StubExecutor, TestDb};

struct Fixture {
    name: String,
    table: String,
    id: String,
    next_run_time: Option<f64>,
    expect: String,
    bytes: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/apscheduler-import/fixtures");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap().to_string();
            Fixture {
                bytes: std::fs::read(dir.join("rows").join(format!("{name}.pkl"))).unwrap(),
                name,
                table: case["table"].as_str().unwrap().into(),
                id: case["id"].as_str().unwrap().into(),
                next_run_time: case["next_run_time"].as_f64(),
                expect: case["expect"].as_str().unwrap().into(),
            }
        })
        .collect()
}

/// AutoGPT's database: a schema holding APScheduler's two tables as SQLAlchemyJobStore
/// creates them.
struct Source {
    schema: PgSchema,
    conn: PgConnection,
}

impl Source {
    async fn new() -> Option<Source> {
        let schema = PgSchema::create("autogpt").await?;
        let mut conn = PgConnection::connect(&test_support::base_url())
            .await
            .unwrap();
        let name = schema.name();
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        for table in ["apscheduler_jobs", "apscheduler_jobs_batched_notifications"] {
            let sql = format!(
                "CREATE TABLE \"{name}\".{table} (id VARCHAR(191) PRIMARY KEY, \
                 next_run_time FLOAT(25), job_state BYTEA NOT NULL); \
                 CREATE INDEX ON \"{name}\".{table} (next_run_time)"
            );
            sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
        }
        Some(Source { schema, conn })
    }

    async fn insert(&mut self, table: &str, rows: &[(String, Option<f64>, Vec<u8>)]) {
        let sql = format!(
            "INSERT INTO \"{}\".{table} (id, next_run_time, job_state) \
             SELECT * FROM unnest($1::text[], $2::float8[], $3::bytea[])",
            self.schema.name()
        );
        for chunk in rows.chunks(2000) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.0.as_str()).collect();
            let times: Vec<Option<f64>> = chunk.iter().map(|r| r.1).collect();
            let states: Vec<&[u8]> = chunk.iter().map(|r| r.2.as_slice()).collect();
            sqlx::query(&sql)
                .bind(ids)
                .bind(times)
                .bind(states)
                .execute(&mut self.conn)
                .await
                .unwrap();
        }
    }

    /// Every row, to check that the import changed none.
    async fn snapshot(&mut self, table: &str) -> Vec<(String, Option<f64>, Vec<u8>)> {
        let sql = format!(
            "SELECT id::text, next_run_time::float8, job_state FROM \"{}\".{table} ORDER BY id",
            self.schema.name()
        );
        sqlx::query_as(&sql)
            .fetch_all(&mut self.conn)
            .await
            .unwrap()
    }
}

/// Runs `scheduler import-apscheduler` in `dir` with these arguments.
fn import(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .arg("import-apscheduler")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "import failed ({:?}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn read_report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn count(fixtures: &[Fixture], table: &str, expect: &str) -> u64 {
    fixtures
        .iter()
        .filter(|f| f.table == table && f.expect == expect)
        .count() as u64
}

#[tokio::test]
async fn import_into_sqlite_dry_run_first_twice_without_duplicates_then_serve_and_fire() {
    let Some(mut source) = Source::new().await else {
        return;
    };
    let fixtures = fixtures();
    let mut rows: Vec<(String, Option<f64>, Vec<u8>)> = Vec::new();
    for fixture in fixtures.iter().filter(|f| f.table == "apscheduler_jobs") {
        rows.push((
            fixture.id.clone(),
            fixture.next_run_time,
            fixture.bytes.clone(),
        ));
    }
    // A row that was due while the old scheduler was down: it fires once the new one starts.
    let daily = fixtures.iter().find(|f| f.name == "utc_daily").unwrap();
    let overdue_id = "0c6a51f2-0000-4000-8000-00000000d0e1".to_string();
    let overdue_bytes = replace(&daily.bytes, daily.id.as_bytes(), overdue_id.as_bytes());
    let overdue_at = chrono::Utc::now().timestamp() as f64 - 30.0;
    rows.push((overdue_id.clone(), Some(overdue_at), overdue_bytes));
    source.insert("apscheduler_jobs", &rows).await;
    let batched: Vec<_> = fixtures
        .iter()
        .filter(|f| f.table == "apscheduler_jobs_batched_notifications")
        .map(|f| (f.id.clone(), f.next_run_time, f.bytes.clone()))
        .collect();
    source
        .insert("apscheduler_jobs_batched_notifications", &batched)
        .await;
    let before = source.snapshot("apscheduler_jobs").await;

    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = db.dir.path();
    let from = source.schema.url();
    let target = ["--from", from.as_str(), "--database-url", db.url.as_str()];

    // The dry run reports and writes nothing: not even the SQLite file.
    let dry = succeeded(&import(
        dir,
        &[&target[..], &["--dry-run", "--report", "dry.json"]].concat(),
    ));
    assert!(dry.contains("dry run: nothing written"), "{dry}");
    let db_file = dir.join("data/scheduler.db");
    assert!(!db_file.exists(), "a dry run created the store");
    let dry_report = read_report(&dir.join("dry.json"));

    let text = succeeded(&import(
        dir,
        &[&target[..], &["--report", "real.json"]].concat(),
    ));
    let report = read_report(&dir.join("real.json"));
    let imported = count(&fixtures, "apscheduler_jobs", "imported") + 1;
    let system = count(&fixtures, "apscheduler_jobs", "system");
    let set_aside = count(&fixtures, "apscheduler_jobs", "set_aside");
    assert_eq!(report["counts"]["imported"], imported, "{text}");
    assert_eq!(report["counts"]["system"], system, "{text}");
    assert_eq!(report["counts"]["set_aside"], set_aside, "{text}");
    assert_eq!(report["counts"]["already_present"], 0);
    // The dry run said the same, row by row.
    assert_eq!(dry_report["counts"], report["counts"]);
    assert_eq!(dry_report["rows"], report["rows"]);
    assert_eq!(report["dry_run"], false);
    assert_eq!(dry_report["dry_run"], true);
    // The set-aside rows are exactly the expected ones, each with its reason in the text.
    let aside: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "set_aside")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = fixtures
        .iter()
        .filter(|f| f.table == "apscheduler_jobs" && f.expect == "set_aside")
        .map(|f| f.id.as_str())
        .collect();
    expected.sort();
    assert_eq!(aside, expected);
    assert!(text.contains("day-of-week numbering"), "{text}");
    assert!(text.contains("process_weekly_summary"), "{text}");

    // Twice: nothing imported twice.
    succeeded(&import(
        dir,
        &[&target[..], &["--report", "again.json"]].concat(),
    ));
    let again = read_report(&dir.join("again.json"));
    assert_eq!(again["counts"]["imported"], 0);
    assert_eq!(again["counts"]["already_present"], imported);

    // The other table: only AutoGPT's own batch job, skipped.
    let other = succeeded(&import(
        dir,
        &[
            &target[..],
            &[
                "--table",
                "apscheduler_jobs_batched_notifications",
                "--jobstore",
                "batched_notifications",
            ],
        ]
        .concat(),
    ));
    assert!(other.contains("1 system jobs skipped"), "{other}");

    // The source was never written.
    assert_eq!(source.snapshot("apscheduler_jobs").await, before);

    // The scheduler serves the imported schedules as AutoGPT listed them, and fires the one
    // that was overdue.
    let executor = StubExecutor::start(Answer::Accept).await;
    let daemon = Daemon::start(&db, &executor.url).await;
    let client = daemon.client();
    let paris = fixtures
        .iter()
        .find(|f| f.name == "paris_weekdays")
        .unwrap();
    let owner = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == paris.id.as_str())
        .unwrap()["user"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = client
        .get_graph_execution_schedules(&crate::helpers::listing(
            None,
            Some(owner.clone()),
            Some(true),
        ))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, paris.id);
    assert_eq!(listed[0].cron, "0 9 * * 1-5");
    assert_eq!(listed[0].timezone, "Europe/Paris");
    let next = listed[0].next_run_time.unwrap();
    assert_eq!(next.timestamp() as f64, paris.next_run_time.unwrap());
    assert_eq!(
        next.offset().local_minus_utc(),
        3600,
        "shown in the schedule's zone"
    );
    // The import is in the audit log, by `import`, with what it stored.
    let history = client
        .list_changes(scheduler_client::ChangeQuery {
            schedule_id: Some(paris.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(history.changes.len(), 1, "{history:?}");
    let imported = &history.changes[0];
    assert_eq!(
        (
            imported.action.as_str(),
            imported.actor.as_str(),
            imported.route.as_str()
        ),
        ("import", "import", "import")
    );
    assert_eq!(imported.changes["owner"]["after"], owner.as_str());

    let overdue_user = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == overdue_id.as_str())
        .unwrap()["user"]
        .clone();
    let calls = executor.wait_for(1, Duration::from_secs(20)).await;
    let fired: Vec<_> = calls
        .iter()
        .filter(|c| c.scheduled_time().timestamp() as f64 == overdue_at)
        .collect();
    assert_eq!(fired.len(), 1, "{calls:?}");
    assert_eq!(fired[0].params["user_id"], overdue_user);
    assert_eq!(fired[0].params["graph_version"], 3);
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("the id is in the pickle");
    let mut out = haystack.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    assert!(
        out.windows(from.len()).all(|w| w != from),
        "the id appears once"
    );
    out
}

#[tokio::test]
async fn ten_thousand_rows_into_postgres() {
    let Some(mut source) = Source::new().await else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    // 10,000 rows: the fixtures of the jobs table over and over, each copy under an id of its
    // own (the same length, so the pickle stays valid).
    let fixtures: Vec<Fixture> = fixtures()
        .into_iter()
        .filter(|f| f.table == "apscheduler_jobs")
        .collect();
    let mut rows = Vec::new();
    let mut expected = std::collections::HashMap::<&str, u64>::new();
    for i in 0..10_000u32 {
        let fixture = &fixtures[i as usize % fixtures.len()];
        let id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        rows.push((
            id.clone(),
            fixture.next_run_time,
            replace(&fixture.bytes, fixture.id.as_bytes(), id.as_bytes()),
        ));
        *expected.entry(fixture.expect.as_str()).or_default() += 1;
    }
    source.insert("apscheduler_jobs", &rows).await;

    let dir = db.dir.path();
    let from = source.schema.url();
    let args = [
        "--from",
        from.as_str(),
        "--database-url",
        db.url.as_str(),
        "--report",
        "r.json",
    ];
    let started = std::time::Instant::now();
    succeeded(&import(dir, &args));
    eprintln!("imported 10,000 rows in {:?}", started.elapsed());
    let report = read_report(&dir.join("r.json"));
    assert_eq!(report["counts"]["rows"], 10_000);
    assert_eq!(report["counts"]["imported"], expected["imported"]);
    assert_eq!(report["counts"]["system"], expected["system"]);
    assert_eq!(report["counts"]["set_aside"], expected["set_aside"]);

    let mut conn = PgConnection::connect(&test_support::base_url())
        .await
        .unwrap();
    let schema = db.url.rsplit_once("schema=").unwrap().1.to_string();
    let stored: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".schedules_execution WHERE tags @> '[\"imported:apscheduler\"]'"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored as u64, expected["imported"]);

    succeeded(&import(dir, &args));
    let again = read_report(&dir.join("r.json"));
    assert_eq!(again["counts"]["imported"], 0);
    assert_eq!(again["counts"]["already_present"], expected["imported"]);
}

#[tokio::test]
async fn bad_sources_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!("sqlite://{}", dir.path().join("s.db").display());
    let cases: [(&[&str], &str); 3] = [
        (&["--from", "sqlite:///tmp/x.db"], "not a PostgreSQL URL"),
        (
            &[
                "--from",
                "postgres://u@127.0.0.1:1/db",
                "--table",
                "jobs; DROP",
            ],
            "--table",
        ),
        (&["--jobstore", "weekly"], "invalid value 'weekly'"),
    ];
    for (args, message) in cases {
        let mut all = vec!["--database-url", target.as_str()];
        if !args.contains(&"--from") {
            all.extend(["--from", "postgres://u@127.0.0.1:1/db"]);
        }
        all.extend(args);
        let output = import(dir.path(), &all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let Some(mut source) = Source::new().await else {
        return;
    };
    // Rows beyond the reader's limits are set aside, never read whole.
    let mut deep = vec![0x80, 5];
    deep.extend(std::iter::repeat_n(b']', 100));
    deep.extend(std::iter::repeat_n(b'a', 99));
    deep.push(b'.');
    let huge = vec![b'N'; 3 << 19];
    source
        .insert(
            "apscheduler_jobs",
            &[
                ("deep".into(), Some(1.9e9), deep),
                ("huge".into(), None, huge),
            ],
        )
        .await;
    let url = source.schema.url();
    let output = import(
        dir.path(),
        &[
            "--from",
            &url,
            "--database-url",
            &target,
            "--dry-run",
            "--report",
            "limits.json",
        ],
    );
    succeeded(&output);
    let report = read_report(&dir.path().join("limits.json"));
    assert_eq!(report["counts"]["set_aside"], 2, "{report}");
    let reasons: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("deeper than 64"), "{reasons:?}");
    assert!(
        reasons[1].contains("1572864 bytes, over the limit"),
        "{reasons:?}"
    );
    let output = import(
        dir.path(),
        &[
            "--from",
            &url,
            "--table",
            "apscheduler_missing",
            "--database-url",
            &target,
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no table"), "{stderr}");
}
