//! `preview_fires`: every occurrence the active schedules will have in a window, computed from
//! their triggers as the engine computes them, and how many fall due in each minute.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use jobstore::{ListFilter, Page, Schedule};
use scheduler_api::{FirePreview, MinuteCount, PreviewFire, SchedulerError};

use jsonrpsee::Extensions;

use crate::api::access;
use crate::api::general::stores_named;
use crate::app::{App, storage_error};

const DEFAULT_LIMIT: u32 = 10_000;
const MAX_LIMIT: u32 = 10_000;
/// The longest window previewed.
const MAX_WINDOW: TimeDelta = TimeDelta::days(7);
/// The most occurrences a window may hold: counting them all is the preview's cost.
const MAX_TOTAL: u64 = 1_000_000;
/// Schedules read from a store at a time.
const PAGE: usize = 1000;
/// The busiest minutes named.
const BUSIEST: usize = 10;

/// What `preview_fires` is asked.
pub(crate) struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub owner: Option<String>,
    pub tag: Option<String>,
    pub jobstore: Option<String>,
    pub limit: Option<u32>,
}

pub(crate) async fn preview_fires(
    app: &App,
    extensions: &Extensions,
    window: Window,
) -> Result<FirePreview, SchedulerError> {
    let limit = window.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(SchedulerError::Value(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let (from, to) = (window.from, window.to);
    if to < from {
        return Err(SchedulerError::Value(format!(
            "to {to} is before from {from}"
        )));
    }
    if to - from > MAX_WINDOW {
        return Err(SchedulerError::Value(format!(
            "a preview covers at most 7 days; from {from} to {to} is longer"
        )));
    }
    let owners = access::listing_scope_naming(window.owner.as_deref(), extensions)?;
    let stores = stores_named(app, window.jobstore.as_deref())?;
    let mut preview = Collected::new(limit as usize);
    for store in stores {
        // Active schedules only (not paused, with a next run), a page at a time.
        let mut after_id = None;
        loop {
            let filter = ListFilter {
                owner: window.owner.clone(),
                owners: owners.clone(),
                tag: window.tag.clone(),
                page: Some(Page {
                    after_id: after_id.take(),
                    limit: PAGE,
                }),
                ..ListFilter::default()
            };
            let schedules = store.list(&filter).await.map_err(storage_error)?;
            for schedule in &schedules {
                preview.add(schedule, store.jobstore().as_str(), from, to)?;
            }
            match schedules.last() {
                Some(last) if schedules.len() == PAGE => after_id = Some(last.id.clone()),
                _ => break,
            }
        }
    }
    Ok(preview.finish())
}

/// The occurrences found so far: the earliest `limit` kept, every one counted.
struct Collected {
    limit: usize,
    fires: Vec<PreviewFire>,
    total: u64,
    per_minute: BTreeMap<DateTime<Utc>, u64>,
}

impl Collected {
    fn new(limit: usize) -> Self {
        Collected {
            limit,
            fires: Vec::new(),
            total: 0,
            per_minute: BTreeMap::new(),
        }
    }

    /// Adds the occurrences of `schedule` in `[from, to]`: those its trigger has from its next
    /// run on (what is before it has been claimed already).
    fn add(
        &mut self,
        schedule: &Schedule,
        jobstore: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let (Some(next), Ok(trigger)) = (
            schedule.next_run_at,
            schedule.trigger.compile_for(&schedule.id),
        ) else {
            return Ok(());
        };
        let mut cursor = from.max(next) - TimeDelta::milliseconds(1);
        // What will run: an occurrence on a date a calendar excludes is left out.
        while let Some(at) = trigger.next_included_after(cursor).filter(|at| *at <= to) {
            self.total += 1;
            if self.total > MAX_TOTAL {
                return Err(SchedulerError::Value(format!(
                    "the window holds more than {MAX_TOTAL} occurrences; narrow it (a shorter window, an owner, a tag)"
                )));
            }
            let minute = at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at);
            *self.per_minute.entry(minute).or_default() += 1;
            self.fires.push(PreviewFire {
                at,
                schedule_id: schedule.id.clone(),
                name: schedule.name.clone(),
                owner: schedule.owner.clone(),
                jobstore: jobstore.to_string(),
                target_type: schedule.target.kind().to_string(),
            });
            if self.fires.len() >= 2 * self.limit {
                self.keep_earliest();
            }
            cursor = at;
        }
        Ok(())
    }

    fn keep_earliest(&mut self) {
        self.fires
            .sort_by(|a, b| (a.at, &a.schedule_id).cmp(&(b.at, &b.schedule_id)));
        self.fires.truncate(self.limit);
    }

    fn finish(mut self) -> FirePreview {
        self.keep_earliest();
        let per_minute: Vec<MinuteCount> = self
            .per_minute
            .into_iter()
            .map(|(minute, count)| MinuteCount { minute, count })
            .collect();
        let mut busiest = per_minute.clone();
        busiest.sort_by(|a, b| b.count.cmp(&a.count).then(a.minute.cmp(&b.minute)));
        busiest.truncate(BUSIEST);
        FirePreview {
            truncated: self.total > self.fires.len() as u64,
            total: self.total,
            fires: self.fires,
            per_minute,
            busiest,
        }
    }
}
