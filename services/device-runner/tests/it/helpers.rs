use device_runner_client::Enqueue;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, Job, JobStatus};

/// A database for one runner: a SQLite file, or a PostgreSQL schema dropped afterwards.
pub(crate) struct TestDb {
    pub url: String,
    _schema: Option<test_support::PgSchema>,
}

impl TestDb {
    pub(crate) fn sqlite(dir: &Path) -> TestDb {
        TestDb {
            url: format!("sqlite://{}", dir.join("runner.db").display()),
            _schema: None,
        }
    }

    /// `None` outside CI when PostgreSQL is not reachable (said on stderr); panics under CI.
    pub(crate) async fn postgres() -> Option<TestDb> {
        let schema = test_support::PgSchema::create("runner").await?;
        Some(TestDb {
            url: schema.url(),
            _schema: Some(schema),
        })
    }
}

/// A runner process with its own directory, configuration and database.
pub(crate) struct Runner {
    pub dir: PathBuf,
    pub port: u16,
    pub db_url: String,
    config: String,
    /// Environment for the process, beyond the defaults of [`Runner::spawn`].
    pub env: Vec<(String, String)>,
    process: Option<test_support::Daemon>,
    /// Dropped after the process is stopped (fields drop after `Drop::drop`).
    _db: Option<TestDb>,
}

pub(crate) use test_support::Backend;

pub(crate) const DEVICE: &str = "PHONE1";

/// Job types for the tests: `sh -c` programs.
pub(crate) const JOB_TYPES: &str = r#"
[job_types.quick]
argv = ["sh", "-c", "echo started $JOB_ID on $ANDROID_SERIAL; echo params=$JOB_PARAMS"]
max_duration = "1m"

[job_types.long]
argv = ["sh", "-c", "echo running; exec sleep 300"]
max_duration = "10m"

[job_types.guarded]
argv = ["sh", "-c", "echo running; exec sleep 300"]
max_duration = "10m"
protected = true

[job_types.stubborn]
argv = ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & echo ignoring TERM; wait; wait"]
max_duration = "1s"

[job_types.reporter]
argv = ["sh", "-c", "echo '::progress 10 warming up'; echo '::checkpoint {\"page\": 1}'; echo '::result {\"likes\": 3}'; echo '::checkpoint {\"page\": 2}'; echo '::result {\"likes\": 5}'; echo '::progress 100'; echo '::checkpoint {oops'; echo done >&2"]
max_duration = "1m"

[job_types.resumable]
argv = ["sh", "-c", "echo resumed from ${JOB_CHECKPOINT:-nothing}; echo '::checkpoint {\"step\": 7}'; exec sleep 300"]
max_duration = "10m"
requeue_on_preempt = true

[job_types.orphaning]
argv = ["sh", "-c", "sleep 300 & echo child $!; while true; do echo tick; sleep 0.1; done"]
max_duration = "10m"

[job_types.failing]
argv = ["sh", "-c", "echo failing; exit 3"]
max_duration = "1m"

[job_types.missing]
argv = ["/nonexistent/bot", "{params_json}"]
max_duration = "1m"

[job_types.chatty]
argv = ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done"]
max_duration = "1m"

[job_types.flood]
argv = ["sh", "-c", "yes 0123456789abcdef | head -c 5000000; echo; echo finished"]
max_duration = "1m"

[job_types.module]
argv = ["sh", "-c", "echo serial=${ANDROID_SERIAL:-none} params=$JOB_PARAMS; sleep 1; echo end"]
max_duration = "1m"
runs_on = "pool:modules"

[job_types.resumable_module]
argv = ["sh", "-c", "echo from ${JOB_CHECKPOINT:-nothing}; echo '::checkpoint {\"step\": 3}'; exec sleep 300"]
max_duration = "10m"
runs_on = "pool:modules"

[[pools]]
name = "modules"
concurrency = 2
"#;

pub(crate) use test_support::phones::{fake_adb, set_facts};

impl Runner {
    /// Starts a runner on SQLite with one configured device and the test job types; `extra` is
    /// more TOML for the top of the file.
    pub(crate) async fn start(extra: &str) -> Runner {
        let dir = tempfile::tempdir().unwrap().keep();
        let db = TestDb::sqlite(&dir);
        Runner::start_on(dir, db.url, extra).await
    }

    /// Starts a runner on `backend`; on PostgreSQL in a schema of its own, dropped with the
    /// runner. `None` outside CI when PostgreSQL is not reachable; panics under CI.
    pub(crate) async fn start_with(backend: Backend, extra: &str) -> Option<Runner> {
        match backend {
            Backend::Memory => panic!("the device runner stores its jobs in a database"),
            Backend::Sqlite => Some(Runner::start(extra).await),
            Backend::Postgres => {
                let db = TestDb::postgres().await?;
                let dir = tempfile::tempdir().unwrap().keep();
                let mut runner = Runner::start_on(dir, db.url.clone(), extra).await;
                runner._db = Some(db);
                Some(runner)
            }
        }
    }

    /// Starts a runner on `db_url` (SQLite in `dir` when `None`) with more environment.
    pub(crate) async fn start_env(
        db_url: Option<String>,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Runner {
        let dir = tempfile::tempdir().unwrap().keep();
        let db_url = db_url.unwrap_or_else(|| TestDb::sqlite(&dir).url);
        let mut runner = Runner::prepare(dir, db_url, extra);
        runner.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        runner.spawn().await;
        runner
    }

    pub(crate) async fn start_on(dir: PathBuf, db_url: String, extra: &str) -> Runner {
        let mut runner = Runner::prepare(dir, db_url, extra);
        runner.spawn().await;
        runner
    }

    fn prepare(dir: PathBuf, db_url: String, extra: &str) -> Runner {
        let config = format!(
            "{extra}\nlog_dir = \"{}\"\nlog_cap_bytes = 65536\n\n[[devices]]\nserial = \"{DEVICE}\"\nlabel = \"phone 1\"\ntags = [\"tiktok\", \"sim\"]\n{JOB_TYPES}",
            dir.join("logs").display()
        );
        Runner {
            dir,
            port: 0,
            db_url,
            config,
            env: Vec::new(),
            process: None,
            _db: None,
        }
    }

    /// Starts (or restarts) the process on a fresh port and waits until it answers.
    pub(crate) async fn spawn(&mut self) {
        let config_path = self.dir.join("device-runner.toml");
        std::fs::write(&config_path, &self.config).unwrap();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let process = test_support::Launch::new(env!("CARGO_BIN_EXE_device-runner"), &self.dir)
            .arg("--config")
            .arg(&config_path)
            .args(["--database-url", &self.db_url])
            .env("DEVICE_RUNNER__LOG__LEVEL", "info")
            .envs(&env)
            .start_within(Duration::from_secs(20))
            .graceful_drop(true)
            .start()
            .await
            .unwrap_or_else(|message| panic!("device-runner did not start: {message}"));
        self.port = process.port;
        self.process = Some(process);
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn client(&self) -> DeviceRunnerClient {
        DeviceRunnerClient::new(&self.url()).unwrap()
    }

    /// A client that presents `token`.
    pub(crate) fn client_with_token(&self, token: &str) -> DeviceRunnerClient {
        DeviceRunnerClient::with_options(&self.url(), Duration::from_secs(60), Some(token)).unwrap()
    }

    /// The log of the process running now (or of the last one).
    pub(crate) fn log(&self) -> String {
        self.process
            .as_ref()
            .map(test_support::Daemon::log_text)
            .unwrap_or_default()
    }

    /// The process id of the process running now.
    pub(crate) fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").pid()
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill_9(&mut self) {
        if let Some(process) = self.process.as_mut() {
            process.kill9();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.as_mut().expect("running").terminate()
    }

    pub(crate) async fn enqueue(&self, job_type: &str, priority: i64) -> Job {
        self.client()
            .rpc()
            .enqueue(device_runner_client::EnqueueJob {
                device: Some(DEVICE.into()),
                job_type: job_type.into(),
                priority: Some(priority),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    pub(crate) async fn job(&self, id: &str) -> Job {
        self.client().rpc().get_run(id.into()).await.unwrap()
    }

    /// Waits until the job satisfies `done`, failing after `within`.
    pub(crate) async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&Job) -> bool,
    ) -> Job {
        let started = Instant::now();
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                started.elapsed() < within,
                "job {id} did not get there in {within:?}: {job:#?}\nrunner log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until job `id`'s log holds `text`; returns the log.
    pub(crate) async fn wait_log(&self, id: &str, text: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let log = self
                .client()
                .rpc()
                .get_logs(id.into(), None, None)
                .await
                .map(|chunk| chunk.data)
                .unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            assert!(
                started.elapsed() < within,
                "job {id}'s log did not show {text:?} in {within:?}: {log}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the job queued again in place of `from` (by preemption or a restart) is
    /// pending or running, and returns it.
    pub(crate) async fn wait_requeued(&self, from: &str, within: Duration) -> Job {
        let started = Instant::now();
        loop {
            let client = self.client();
            let rpc = client.rpc();
            let queued = rpc.list_queue(None).await.unwrap();
            let status = rpc.get_status().await.unwrap();
            let running = status.devices.into_iter().filter_map(|d| d.running);
            if let Some(job) = queued
                .into_iter()
                .chain(running)
                .find(|job| job.requeued_from.as_deref() == Some(from))
            {
                return job;
            }
            assert!(
                started.elapsed() < within,
                "no job was queued again from {from} in {within:?}\nrunner log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for a status; for `Running`, also for its process to be recorded.
    pub(crate) async fn wait_status(&self, id: &str, status: JobStatus, within: Duration) -> Job {
        self.wait_for(id, within, |job| {
            job.status == status && (status != JobStatus::Running || job.pid.is_some())
        })
        .await
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // The process stops (SIGTERM, its jobs with it) before its directory goes.
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The live (not zombie) processes whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    device_runner::process::group_members(pgid)
}

impl Runner {
    /// The runner's store, opened beside (or instead of) the process.
    pub(crate) async fn store(&self) -> device_runner::store::Store {
        let url = service_kit::DatabaseUrl::parse(&self.db_url).unwrap();
        device_runner::store::Store::connect(&url, 1).await.unwrap()
    }

    /// A job read from the store while the runner is down.
    pub(crate) async fn job_offline(&self, id: &str) -> Job {
        self.store().await.get(id).await.unwrap().unwrap()
    }

    /// Makes a running job's record point at another pid, as if the pid had been reused.
    pub(crate) async fn point_job_at(&self, id: &str, pid: i32) {
        let store = self.store().await;
        let (_, identity) = store
            .running()
            .await
            .unwrap()
            .into_iter()
            .find(|(job, _)| job.id == id)
            .unwrap();
        let mut identity = identity.expect("the process identity was recorded");
        identity.pid = pid;
        identity.pgid = pid;
        store.record_process(id, &identity).await.unwrap();
        store.close().await;
    }
}
