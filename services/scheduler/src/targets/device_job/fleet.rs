//! The fleet: every configured runner's phones as the runner last reported them
//! (`get_status`, asked every runner's `poll` once anything needs them), for `list_fleet` and
//! for placing the occurrences of targets that select a phone by tags.
//!
//! A placement takes, among the phones that carry every tag and take jobs (online, inside
//! their gates, not quarantined) on a runner that answers (or the one named), the one with the
//! fewest queued and running jobs, then the one whose last job ended longest ago. The jobs
//! placed here since a runner last answered count in its phones' load, so that a burst of
//! occurrences spreads over the phones instead of all going to the one idle the longest.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceStatus, RunnerStatus};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient};
use scheduler_api::{DeviceSelector, FleetPhone, FleetRunner, PhoneState, RunningJob};
use tokio::sync::Notify;

/// How long a runner may take to answer `get_status`.
const STATUS_WITHIN: Duration = Duration::from_secs(5);

pub(crate) struct Fleet {
    runners: BTreeMap<String, Side>,
    /// Told when a runner answered (or failed to): what a wait for a phone waits on.
    changed: Notify,
    started: AtomicBool,
    marks: AtomicU64,
    /// Held while a phone is chosen and its mark set, so that two occurrences placed at once
    /// see each other's choice.
    placing: Mutex<()>,
}

/// One runner as the fleet follows it.
struct Side {
    client: DeviceRunnerClient,
    poll: Duration,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    status: Option<RunnerStatus>,
    asked: bool,
    last_seen: Option<DateTime<Utc>>,
    /// Why it did not answer the last time, while it does not.
    error: Option<String>,
    /// The jobs placed here that its last answer may not count yet.
    placed: Vec<Mark>,
}

struct Mark {
    id: u64,
    serial: String,
    /// When its job was queued; `None` while the enqueue is under way.
    queued_at: Option<Instant>,
}

/// How a phone ranks for a placement, lowest first: its queued and running jobs (with those
/// placed here since its runner last answered), then the second its last job ended (never
/// first), then its runner's queued and running jobs, so that phones alike are taken on every
/// host in turn rather than host after host.
type Rank = (u64, Option<i64>, u64);

/// A phone chosen for an occurrence. Its load counts the occurrence until the runner's next
/// answer does ([`Fleet::queued`], [`Fleet::dropped`]).
#[derive(Debug)]
pub(crate) struct Choice {
    pub runner: String,
    pub serial: String,
    mark: u64,
}

impl Fleet {
    pub(crate) fn new(runners: Vec<(String, DeviceRunnerClient, Duration)>) -> Self {
        Fleet {
            runners: runners
                .into_iter()
                .map(|(name, client, poll)| {
                    let side = Side {
                        client,
                        poll,
                        seen: Mutex::default(),
                    };
                    (name, side)
                })
                .collect(),
            changed: Notify::new(),
            started: AtomicBool::new(false),
            marks: AtomicU64::new(0),
            placing: Mutex::new(()),
        }
    }

    /// Asks every runner once (those never asked yet) and starts following them.
    async fn ensure(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        futures::future::join_all(self.runners.keys().map(|name| self.refresh(name))).await;
        for name in self.runners.keys() {
            let fleet = self.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let poll = fleet.runners[&name].poll;
                loop {
                    tokio::time::sleep(poll).await;
                    fleet.refresh(&name).await;
                }
            });
        }
    }

    /// Asks runner `name` how its phones stand.
    async fn refresh(&self, name: &str) {
        let Some(side) = self.runners.get(name) else {
            return;
        };
        let asked_at = Instant::now();
        let answer = tokio::time::timeout(STATUS_WITHIN, side.client.rpc().get_status()).await;
        {
            let mut seen = lock(&side.seen);
            seen.asked = true;
            match answer {
                Ok(Ok(status)) => {
                    seen.status = Some(status);
                    seen.last_seen = Some(Utc::now());
                    seen.error = None;
                    // What was queued before it was asked is in its answer.
                    seen.placed
                        .retain(|mark| mark.queued_at.is_none_or(|at| at > asked_at));
                }
                Ok(Err(error)) => {
                    let error = with_causes(&device_runner_client::Error::from(error));
                    if seen.error.is_none() {
                        tracing::warn!(runner = name, %error, "device runner does not answer; its phones get no new placements");
                    }
                    seen.error = Some(error);
                }
                Err(_) => {
                    if seen.error.is_none() {
                        tracing::warn!(
                            runner = name,
                            "device runner does not answer within {STATUS_WITHIN:?}; its phones get no new placements"
                        );
                    }
                    seen.error = Some(format!("no answer within {STATUS_WITHIN:?}"));
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until a runner has answered again (or failed to), at most `within`.
    pub(crate) async fn changed(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.changed.notified()).await;
    }

    /// Every runner, and the phones that pass the filters.
    pub(crate) async fn view(
        self: &Arc<Self>,
        runner: Option<&str>,
        tags: &[String],
        state: Option<PhoneState>,
    ) -> scheduler_api::Fleet {
        self.ensure().await;
        let mut runners = Vec::new();
        let mut phones = Vec::new();
        for (name, side) in &self.runners {
            let seen = lock(&side.seen);
            let reachable = seen.error.is_none() && seen.status.is_some();
            let devices = seen.status.as_ref().map_or(&[][..], |s| &s.devices[..]);
            runners.push(FleetRunner {
                name: name.clone(),
                reports_as: seen.status.as_ref().map(|s| s.name.clone()),
                reachable,
                last_seen: seen.last_seen,
                error: seen.error.clone(),
                phones: devices.len(),
            });
            if runner.is_some_and(|wanted| wanted != name) {
                continue;
            }
            for device in devices {
                let phone = fleet_phone(name, device, reachable);
                let carries = tags.iter().all(|tag| phone.tags.contains(tag));
                if carries && state.is_none_or(|state| state == phone.state) {
                    phones.push(phone);
                }
            }
        }
        scheduler_api::Fleet { runners, phones }
    }

    /// The phone `serial` of runner `name` as last seen.
    pub(crate) async fn phone(self: &Arc<Self>, runner: &str, serial: &str) -> Option<FleetPhone> {
        self.view(Some(runner), &[], None)
            .await
            .phones
            .into_iter()
            .find(|phone| phone.serial == serial)
    }

    /// Asks runner `name` again now (after a change made there).
    pub(crate) async fn refresh_now(&self, name: &str) {
        self.refresh(name).await;
    }

    /// Chooses a phone for an occurrence whose target selects by `select`, never `avoid`
    /// (the phone a job is being moved from). The reason none can take it, otherwise.
    pub(crate) async fn choose(
        self: &Arc<Self>,
        select: &DeviceSelector,
        avoid: Option<(&str, &str)>,
    ) -> Result<Choice, String> {
        self.ensure().await;
        let _placing = lock(&self.placing);
        // (load, last job's end), runner, serial
        let mut best: Option<(Rank, String, String)> = None;
        let mut unavailable: BTreeMap<String, usize> = BTreeMap::new();
        let mut carrying = 0;
        for (name, side) in &self.runners {
            if select.runner.as_ref().is_some_and(|wanted| wanted != name) {
                continue;
            }
            let seen = lock(&side.seen);
            let reachable = seen.error.is_none() && seen.status.is_some();
            let devices = seen.status.as_ref().map_or(&[][..], |s| &s.devices[..]);
            let mut placed: HashMap<&str, u64> = HashMap::new();
            for mark in &seen.placed {
                *placed.entry(mark.serial.as_str()).or_default() += 1;
            }
            let load = |device: &DeviceStatus| {
                device.pending
                    + u64::from(device.running.is_some())
                    + placed
                        .get(device.device.serial.as_str())
                        .copied()
                        .unwrap_or(0)
            };
            let host_load: u64 = devices.iter().map(load).sum();
            for device in devices {
                let info = &device.device;
                if !select.tags.iter().all(|tag| info.tags.contains(tag)) {
                    continue;
                }
                carrying += 1;
                if avoid == Some((name.as_str(), info.serial.as_str())) {
                    *unavailable.entry("being moved from".into()).or_default() += 1;
                    continue;
                }
                let state = phone_state(device, reachable);
                if !state.takes_jobs() {
                    *unavailable.entry(why_not(state, device)).or_default() += 1;
                    continue;
                }
                let ended = device.last_ended_at.map(|at| at.timestamp());
                let key = (load(device), ended, host_load);
                let better = best.as_ref().is_none_or(|(best_key, _, _)| key < *best_key);
                if better {
                    best = Some((key, name.clone(), info.serial.clone()));
                }
            }
        }
        let Some((_, runner, serial)) = best else {
            return Err(no_phone(select, carrying, &unavailable));
        };
        let mark = self.marks.fetch_add(1, Ordering::Relaxed);
        lock(&self.runners[&runner].seen).placed.push(Mark {
            id: mark,
            serial: serial.clone(),
            queued_at: None,
        });
        Ok(Choice {
            runner,
            serial,
            mark,
        })
    }

    /// The choice's job is queued: the runner's next answer counts it.
    pub(crate) fn queued(&self, choice: &Choice) {
        if let Some(side) = self.runners.get(&choice.runner) {
            let mut seen = lock(&side.seen);
            if let Some(mark) = seen.placed.iter_mut().find(|m| m.id == choice.mark) {
                mark.queued_at = Some(Instant::now());
            }
        }
    }

    /// The choice's job was not queued: it no longer counts.
    pub(crate) fn dropped(&self, choice: &Choice) {
        if let Some(side) = self.runners.get(&choice.runner) {
            lock(&side.seen).placed.retain(|m| m.id != choice.mark);
        }
    }
}

/// An error with what caused it, as people read it (`… : Connection refused (os error 111)`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = inner.source();
    }
    text
}

/// Where a phone stands, from its runner's answer.
fn phone_state(device: &DeviceStatus, reachable: bool) -> PhoneState {
    let info = &device.device;
    if !reachable {
        PhoneState::Unreachable
    } else if info.quarantine.is_some() {
        PhoneState::Quarantined
    } else if !info.usable {
        PhoneState::Offline
    } else if info.held.is_some() {
        PhoneState::Held
    } else if device.running.is_some() {
        PhoneState::Busy
    } else {
        PhoneState::Idle
    }
}

fn fleet_phone(runner: &str, device: &DeviceStatus, reachable: bool) -> FleetPhone {
    let info = &device.device;
    FleetPhone {
        runner: runner.to_string(),
        serial: info.serial.clone(),
        label: info.label.clone(),
        tags: info.tags.clone(),
        state: phone_state(device, reachable),
        adb_state: info.state.clone(),
        health: info.health.clone(),
        quarantine: info.quarantine.clone(),
        held: info.held.clone(),
        running: device.running.as_ref().map(|job| RunningJob {
            id: job.id.clone(),
            job_type: job.job_type.clone(),
            started_at: job.started_at,
            source: job.source.clone(),
        }),
        queued: device.pending,
        last_ended_at: device.last_ended_at,
    }
}

/// Why a phone that carries the tags takes no job, as counted in the reason none could:
/// `quarantined`, `above 42.0 °C`, `battery below 20 %`, `offline`, `on unreachable runners`.
fn why_not(state: PhoneState, device: &DeviceStatus) -> String {
    match state {
        PhoneState::Held => {
            let held = device.device.held.as_deref().unwrap_or("held");
            if let Some((_, limit)) = held.split_once(" > ") {
                format!("above {limit}")
            } else if let Some((_, limit)) = held.split_once(" < ") {
                format!("battery below {limit}")
            } else {
                held.to_string()
            }
        }
        PhoneState::Unreachable => "on unreachable runners".into(),
        other => other.as_str().to_string(),
    }
}

/// The reason no phone can take an occurrence:
/// `no phone with tags [tiktok] is available: 3 quarantined, 2 above 42.0 °C`.
fn no_phone(
    select: &DeviceSelector,
    carrying: usize,
    unavailable: &BTreeMap<String, usize>,
) -> String {
    let tags = select.tags.join(", ");
    let on = select
        .runner
        .as_ref()
        .map_or_else(String::new, |runner| format!(" on runner '{runner}'"));
    if carrying == 0 {
        return format!("no phone{on} carries tags [{tags}]");
    }
    let mut counts: Vec<(&String, &usize)> = unavailable.iter().collect();
    counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let counts: Vec<String> = counts
        .into_iter()
        .map(|(why, count)| format!("{count} {why}"))
        .collect();
    format!(
        "no phone with tags [{tags}]{on} is available: {}",
        counts.join(", ")
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_runner_api::{DeviceInfo, Quarantine};

    fn device(serial: &str, tags: &[&str], pending: u64) -> DeviceStatus {
        DeviceStatus {
            device: DeviceInfo {
                serial: serial.into(),
                label: None,
                state: "device".into(),
                usable: true,
                configured: true,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                health: None,
                quarantine: None,
                held: None,
            },
            running: None,
            pid: None,
            pending,
            last_ended_at: None,
        }
    }

    fn status(devices: Vec<DeviceStatus>) -> RunnerStatus {
        RunnerStatus {
            name: "host".into(),
            started_at: Utc::now(),
            uptime_secs: 1.0,
            uptime: "1s".into(),
            modules: 0,
            devices,
            pools: Vec::new(),
            running_jobs: Vec::new(),
        }
    }

    /// A fleet whose runners answered `statuses` (never asked again: the pollers are off).
    fn fleet(statuses: Vec<(&str, Option<RunnerStatus>)>) -> Arc<Fleet> {
        let runners = statuses
            .iter()
            .map(|(name, _)| {
                let client = DeviceRunnerClient::new("http://127.0.0.1:9").unwrap();
                (name.to_string(), client, Duration::from_secs(3600))
            })
            .collect();
        let fleet = Fleet::new(runners);
        fleet.started.store(true, Ordering::Release);
        for (name, status) in statuses {
            let mut seen = lock(&fleet.runners[name].seen);
            seen.asked = true;
            match status {
                Some(status) => {
                    seen.status = Some(status);
                    seen.last_seen = Some(Utc::now());
                }
                None => seen.error = Some("connection refused".into()),
            }
        }
        Arc::new(fleet)
    }

    fn select(tags: &[&str], runner: Option<&str>) -> DeviceSelector {
        DeviceSelector {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            runner: runner.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn a_burst_spreads_over_the_matching_phones_by_load_then_idle_time() {
        let mut older = device("B", &["tiktok", "sim"], 0);
        older.last_ended_at = Some(Utc::now() - chrono::TimeDelta::hours(1));
        let mut newer = device("A", &["tiktok"], 0);
        newer.last_ended_at = Some(Utc::now());
        let fleet = fleet(vec![
            ("r1", Some(status(vec![newer, device("C", &["insta"], 0)]))),
            ("r2", Some(status(vec![older, device("D", &["tiktok"], 2)]))),
        ]);
        let wanted = select(&["tiktok"], None);
        let mut chosen = Vec::new();
        for _ in 0..5 {
            let choice = fleet.choose(&wanted, None).await.unwrap();
            fleet.queued(&choice);
            chosen.push(format!("{}/{}", choice.runner, choice.serial));
        }
        // Idle the longest first, then by load: C never (no tag), D only once the others
        // carry as many jobs as it has.
        assert_eq!(chosen, ["r2/B", "r1/A", "r2/B", "r1/A", "r2/D"]);
        let on_r1 = fleet
            .choose(&select(&["tiktok"], Some("r1")), None)
            .await
            .unwrap();
        assert_eq!(on_r1.runner, "r1");
        let moved = fleet
            .choose(&select(&["sim"], None), Some(("r2", "B")))
            .await
            .unwrap_err();
        assert_eq!(
            moved,
            "no phone with tags [sim] is available: 1 being moved from"
        );
    }

    #[tokio::test]
    async fn phones_alike_are_taken_on_every_host_in_turn() {
        let alike = fleet(vec![
            (
                "h1",
                Some(status(
                    (0..3)
                        .map(|i| device(&format!("X{i}"), &["t"], 0))
                        .collect(),
                )),
            ),
            (
                "h2",
                Some(status(
                    (0..3)
                        .map(|i| device(&format!("Y{i}"), &["t"], 0))
                        .collect(),
                )),
            ),
        ]);
        let mut hosts = Vec::new();
        for _ in 0..4 {
            let choice = alike.choose(&select(&["t"], None), None).await.unwrap();
            alike.queued(&choice);
            hosts.push(choice.runner);
        }
        assert_eq!(hosts, ["h1", "h2", "h1", "h2"]);
    }

    #[tokio::test]
    async fn no_phone_names_why_each_that_carries_the_tags_cannot_take_it() {
        let mut quarantined = device("Q", &["tiktok"], 0);
        quarantined.device.quarantine = Some(Quarantine {
            since: Utc::now(),
            reason: "broken".into(),
            by: "operator".into(),
        });
        let hot = |serial: &str| {
            let mut hot = device(serial, &["tiktok"], 0);
            hot.device.held = Some("temperature 44.5 °C > 42.0 °C".into());
            hot
        };
        let mut offline = device("O", &["tiktok"], 0);
        offline.device.usable = false;
        let fleet = fleet(vec![
            (
                "r1",
                Some(status(vec![quarantined, hot("H1"), hot("H2"), offline])),
            ),
            ("r2", None),
        ]);
        {
            // The unreachable runner's phones, as it last reported them.
            let mut seen = lock(&fleet.runners["r2"].seen);
            seen.status = Some(status(vec![device("U", &["tiktok"], 0)]));
        }
        let reason = fleet
            .choose(&select(&["tiktok"], None), None)
            .await
            .unwrap_err();
        assert_eq!(
            reason,
            "no phone with tags [tiktok] is available: 2 above 42.0 °C, 1 offline, \
             1 on unreachable runners, 1 quarantined"
        );
        let none = fleet
            .choose(&select(&["ios"], None), None)
            .await
            .unwrap_err();
        assert_eq!(none, "no phone carries tags [ios]");
        let view = fleet.view(None, &[], None).await;
        assert!(!view.runners[1].reachable && view.runners[1].error.is_some());
        let states: Vec<_> = view
            .phones
            .iter()
            .map(|p| (p.serial.as_str(), p.state))
            .collect();
        assert_eq!(
            states,
            [
                ("Q", PhoneState::Quarantined),
                ("H1", PhoneState::Held),
                ("H2", PhoneState::Held),
                ("O", PhoneState::Offline),
                ("U", PhoneState::Unreachable),
            ]
        );
        let held = fleet.view(None, &[], Some(PhoneState::Held)).await;
        assert_eq!(held.phones.len(), 2);
    }
}
