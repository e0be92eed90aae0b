//! From an APScheduler row to a schedule of this scheduler, or the reason it is not one.
//!
//! A row becomes a schedule only when the schedule fires exactly when the APScheduler job did:
//! what the cron dialect cannot say with the same meaning is set aside, never imported
//! changed. Where the meaning is kept but the row looks wrong (its `cron` argument disagrees
//! with what its trigger does) the schedule keeps what the trigger does and a note says why.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use jobstore::{GraphExecutionTarget, Origin, Policy, Schedule, Target};
use serde_json::{Map, Number, Value as Json};
use triggers::{Trigger, TriggerKind, TriggerSpec};

use crate::pickle::{self, Limits, Value};
use crate::state::{self, Expr, Field, JobState, TriggerState};

/// The function AutoGPT's graph schedules call.
pub const EXECUTE_GRAPH: &str = "backend.executor.scheduler:execute_graph";
/// The module of AutoGPT's own jobs; every function there but `execute_graph` is a system job
/// that this scheduler declares itself.
pub const SYSTEM_MODULE: &str = "backend.executor.scheduler";
/// The tag every imported schedule carries, so an operator can list them.
pub const TAG: &str = "imported:apscheduler";
/// How many fire times are compared when checking a row's `cron` argument against its trigger.
const COMPARED_FIRES: usize = 64;

/// One row of an APScheduler jobs table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    /// Unix seconds; `None` while the job is paused.
    pub next_run_time: Option<f64>,
    pub job_state: Vec<u8>,
    /// The size of a `job_state` left unread because it is over the limit.
    pub oversized: Option<usize>,
}

/// What became of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// A schedule to store, with what the report should say about it.
    Schedule {
        schedule: Box<Schedule>,
        notes: Vec<String>,
    },
    /// One of AutoGPT's own jobs (`module:function`).
    System { func: String },
    /// Not imported, for this reason.
    SetAside { reason: String },
}

/// What the report shows of a row, whatever became of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub user: Option<String>,
    pub func: Option<String>,
    /// The trigger in this scheduler's terms: a cron expression, `every 21600s`, `once at …`.
    pub trigger: Option<String>,
    pub zone: Option<String>,
    pub next_before: Option<DateTime<Utc>>,
}

/// Maps rows; remembers per zone which wall-clock hours its daylight-saving changes touch.
pub struct Mapper {
    now: DateTime<Utc>,
    limits: Limits,
    dst_hours: HashMap<String, BTreeSet<u32>>,
}

impl Mapper {
    pub fn new(now: DateTime<Utc>, limits: Limits) -> Self {
        Mapper {
            now: now.trunc_subsecs(0),
            limits,
            dst_hours: HashMap::new(),
        }
    }

    /// Reads and maps one row.
    pub fn map(&mut self, row: &Row) -> (Mapped, Facts) {
        let mut facts = Facts {
            next_before: row.next_run_time.and_then(from_unix),
            ..Facts::default()
        };
        let mapped = self
            .map_inner(row, &mut facts)
            .unwrap_or_else(|reason| Mapped::SetAside { reason });
        (mapped, facts)
    }

    fn map_inner(&mut self, row: &Row, facts: &mut Facts) -> Result<Mapped, String> {
        if let Some(len) = row.oversized {
            return Err(format!(
                "job_state is {len} bytes, over the limit of {}",
                self.limits.max_bytes
            ));
        }
        let tree = pickle::parse(&row.job_state, self.limits)
            .map_err(|e| format!("job_state is not a readable pickle: {e}"))?;
        let job = state::job(&tree)?;
        facts.func = Some(job.func.clone());
        if job.id != row.id {
            return Err(format!(
                "the row's id '{}' differs from the id '{}' in its job_state",
                row.id, job.id
            ));
        }
        if let Some(next) = row.next_run_time
            && facts.next_before.is_none()
        {
            return Err(format!("next_run_time {next} is not an instant"));
        }
        if let Some(user) = job.kwargs.get("user_id").and_then(Value::as_str) {
            facts.user = Some(user.to_string());
        }
        if job.func != EXECUTE_GRAPH {
            if job.func.split_once(':').map(|(module, _)| module) == Some(SYSTEM_MODULE) {
                // Reported with its trigger when it can be read; skipped either way.
                let _ = self.trigger(&job, facts);
                return Ok(Mapped::System { func: job.func });
            }
            let _ = self.trigger(&job, facts);
            return Err(format!(
                "job function {} is neither AutoGPT's execute_graph nor one of its system jobs; \
                 nothing here knows what it calls",
                job.func
            ));
        }
        let (spec, notes) = self.trigger(&job, facts)?;
        let schedule = self.schedule(row, &job, spec)?;
        let mut notes = notes;
        if let Some(next) = schedule.next_run_at
            && next < self.now
        {
            notes.push(format!(
                "its next run {} is past: the scheduler runs it when it starts, once for all \
                 that were missed (coalesce {}), unless it is later than its misfire grace, as \
                 APScheduler would have",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                schedule.policy.coalesce
            ));
        }
        Ok(Mapped::Schedule {
            schedule: Box::new(schedule),
            notes,
        })
    }

    /// The trigger in this scheduler's terms, with notes on a cron argument that disagrees.
    fn trigger(
        &mut self,
        job: &JobState,
        facts: &mut Facts,
    ) -> Result<(TriggerSpec, Vec<String>), String> {
        let mut notes = Vec::new();
        let (spec, zone) = match &job.trigger {
            TriggerState::Cron {
                timezone,
                start_date,
                end_date,
                fields,
                ..
            } => {
                let zone = timezone.iana()?;
                facts.zone = Some(zone.clone());
                let expression = cron_expression(fields)?;
                facts.trigger = Some(expression.clone());
                let spec = TriggerSpec {
                    kind: TriggerKind::Cron {
                        expression: expression.clone(),
                        timezone: zone.clone(),
                    },
                    start_at: *start_date,
                    end_at: *end_date,
                    exclude: Vec::new(),
                };
                if let Some(hours) = hours(fields)
                    && let Some(note) = self.dst_note(&zone, &hours)
                {
                    notes.push(note);
                }
                (spec, zone)
            }
            TriggerState::Interval {
                start_date,
                end_date,
                interval,
                timezone,
                ..
            } => {
                let spec = interval_spec(*start_date, *end_date, *interval)?;
                if let TriggerKind::Interval { every_secs, .. } = &spec.kind {
                    facts.trigger = Some(format!("every {every_secs}s"));
                }
                facts.zone = timezone.iana().ok();
                (spec, "UTC".to_string())
            }
            TriggerState::Date { run_date } => {
                facts.trigger = Some(format!(
                    "once at {}",
                    run_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
                facts.zone = Some("UTC".into());
                let spec = TriggerSpec {
                    kind: TriggerKind::Once { at: *run_date },
                    start_at: None,
                    end_at: None,
                    exclude: Vec::new(),
                };
                (spec, "UTC".to_string())
            }
        };
        let compiled = spec
            .compile()
            .map_err(|e| format!("the trigger does not compile here: {e}"))?;
        if let TriggerKind::Cron { expression, .. } = &spec.kind
            && let Some(written) = job.kwargs.get("cron").and_then(Value::as_str)
            && !written.trim().is_empty()
            && let Some(note) = self.check_cron_argument(written, expression, &zone, &compiled)
        {
            notes.push(note);
        }
        Ok((spec, notes))
    }

    /// Compares the `cron` argument AutoGPT kept beside the trigger with what the trigger does.
    fn check_cron_argument(
        &self,
        written: &str,
        expression: &str,
        zone: &str,
        compiled: &Trigger,
    ) -> Option<String> {
        let compile = |text: &str| {
            TriggerKind::Cron {
                expression: text.to_string(),
                timezone: zone.to_string(),
            }
            .compile()
        };
        let actual = fires(compiled, self.now);
        let as_written = match compile(written) {
            Ok(trigger) => trigger,
            Err(error) => {
                return Some(format!(
                    "its cron argument '{written}' is not a cron expression here ({error}); \
                     kept what the trigger does: '{expression}'"
                ));
            }
        };
        if fires(&as_written, self.now) == actual {
            return None;
        }
        let shifted = apscheduler_weekdays(written).and_then(|text| compile(&text).ok());
        if shifted.is_some_and(|t| fires(&t, self.now) == actual) {
            return Some(format!(
                "day-of-week numbering: its cron argument '{written}' counts days from Sunday as \
                 cron does, but the trigger was built from it with APScheduler's numbering (0 = \
                 Monday), so it fires a day later than written; imported as it fires, \
                 '{expression}' — change the schedule if the written days were meant"
            ));
        }
        Some(format!(
            "its cron argument '{written}' fires at other times than its trigger; kept what the \
             trigger does: '{expression}'"
        ))
    }

    /// A note when a cron trigger fires in an hour that its zone's daylight-saving changes skip
    /// or repeat: there APScheduler 3.11 shifts or repeats the fire, this scheduler follows
    /// cronie's rule.
    fn dst_note(&mut self, zone: &str, hours: &BTreeSet<u32>) -> Option<String> {
        let now = self.now;
        let touched = self
            .dst_hours
            .entry(zone.to_string())
            .or_insert_with(|| dst_hours(zone, now));
        let common: Vec<String> = touched
            .intersection(hours)
            .map(|h| format!("{h:02}:00"))
            .collect();
        if common.is_empty() {
            return None;
        }
        Some(format!(
            "it fires in the hour(s) {} that a daylight-saving change in {zone} skips or \
             repeats; on those days this scheduler follows cronie's rule (a skipped time runs \
             once right after the change, a repeated one once) where APScheduler 3.11 shifted \
             or repeated it",
            common.join(", ")
        ))
    }

    fn schedule(
        &self,
        row: &Row,
        job: &JobState,
        trigger: TriggerSpec,
    ) -> Result<Schedule, String> {
        let (owner, target) = graph_execution(row, job)?;
        let policy = policy_of(job)?;
        let paused = row.next_run_time.is_none();
        let next_run_at = row
            .next_run_time
            .and_then(from_unix)
            .map(|at| at.trunc_subsecs(3));
        Ok(Schedule {
            id: row.id.clone(),
            name: job
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "execute_graph".into()),
            owner,
            trigger,
            target,
            policy,
            tags: vec![TAG.to_string()],
            paused,
            paused_reason: None,
            next_run_at,
            created_at: self.now,
        })
    }
}

fn from_unix(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let micros = (secs * 1e6).round();
    if micros.abs() > 1e17 {
        return None;
    }
    DateTime::from_timestamp_micros(micros as i64).filter(|at| triggers::in_range(*at))
}

fn fires(trigger: &Trigger, from: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(COMPARED_FIRES);
    let mut at = from;
    while out.len() < COMPARED_FIRES {
        match trigger.next_after(at) {
            Some(next) => {
                out.push(next);
                at = next;
            }
            None => break,
        }
    }
    out
}

/// The field's largest value in cron terms (day of week 7 = Sunday).
fn field_max(name: &str) -> u32 {
    match name {
        "month" => 12,
        "day" => 31,
        "day_of_week" => 7,
        "hour" => 23,
        _ => 59,
    }
}

/// The cron expression that fires when the APScheduler fields do, or why there is none.
pub fn cron_expression(fields: &[Field]) -> Result<String, String> {
    let find = |name: &str| fields.iter().find(|f| f.name == name);
    for name in ["year", "week"] {
        if let Some(field) = find(name)
            && field.expressions != [Expr::All { step: None }]
        {
            return Err(format!(
                "it restricts the {name} field ({}), which the cron dialect does not have",
                describe(field)
            ));
        }
    }
    let mut parts = Vec::new();
    for name in ["second", "minute", "hour", "day", "month", "day_of_week"] {
        let Some(field) = find(name) else {
            return Err(format!("the cron trigger has no {name} field"));
        };
        let texts = field
            .expressions
            .iter()
            .map(|e| expression(name, e))
            .collect::<Result<Vec<_>, _>>()?;
        if texts.is_empty() {
            return Err(format!("cron field {name} has no expressions"));
        }
        parts.push(texts.join(","));
    }
    let (day, weekday) = (&parts[3], &parts[5]);
    if day != "*" && weekday != "*" && !day.starts_with('*') && !weekday.starts_with('*') {
        return Err(format!(
            "it restricts both the day of month ({day}) and the day of week ({weekday}): \
             APScheduler fires when both match, cron when either does"
        ));
    }
    if parts[0] == "0" {
        parts.remove(0);
    }
    Ok(parts.join(" "))
}

/// A field as APScheduler writes it (`*/2`, `2028`, `1-5`).
fn describe(field: &Field) -> String {
    let step = |s: &Option<u32>| s.map_or(String::new(), |s| format!("/{s}"));
    field
        .expressions
        .iter()
        .map(|e| match e {
            Expr::All { step: s } => format!("*{}", step(s)),
            Expr::Range {
                first,
                last,
                step: s,
            } => match last {
                Some(last) if last != first => format!("{first}-{last}{}", step(s)),
                _ => format!("{first}{}", step(s)),
            },
            Expr::WeekdayPosition { option, weekday } => format!("{option} {weekday}"),
            Expr::LastDayOfMonth => "last".into(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn expression(field: &str, expr: &Expr) -> Result<String, String> {
    let weekday = field == "day_of_week";
    // APScheduler numbers weekdays 0 = Monday; cron 1 = Monday, 7 = Sunday.
    let number = |n: u32| if weekday { n + 1 } else { n };
    let step = |s: Option<u32>| s.map_or(String::new(), |s| format!("/{s}"));
    match expr {
        Expr::All { step: None } => Ok("*".into()),
        // APScheduler counts the steps of a weekday `*/n` from Monday, cron from Sunday.
        Expr::All { step: s } if weekday => Ok(format!("1-7{}", step(*s))),
        Expr::All { step: s } => Ok(format!("*{}", step(*s))),
        Expr::Range {
            first,
            last,
            step: s,
        } => {
            let last = last.map_or(field_max(field), number);
            let first = number(*first);
            if first == last && s.is_none() {
                Ok(first.to_string())
            } else {
                Ok(format!("{first}-{last}{}", step(*s)))
            }
        }
        Expr::WeekdayPosition { option, weekday } => {
            const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            let name = NAMES.get(*weekday as usize).copied().unwrap_or("?");
            Err(format!(
                "its {field} field says '{option} {name}' (a weekday's position in the month), \
                 which the cron dialect cannot say"
            ))
        }
        Expr::LastDayOfMonth => Err(format!(
            "its {field} field says 'last' (the month's last day), which the cron dialect \
             cannot say"
        )),
    }
}

/// The hours a cron trigger's hour field allows, when it restricts them.
fn hours(fields: &[Field]) -> Option<BTreeSet<u32>> {
    let field = fields.iter().find(|f| f.name == "hour")?;
    let mut set = BTreeSet::new();
    for expr in &field.expressions {
        let (first, last, step) = match expr {
            Expr::All { step } => (0, 23, step.unwrap_or(1)),
            Expr::Range { first, last, step } => (*first, last.unwrap_or(23), step.unwrap_or(1)),
            _ => return None,
        };
        set.extend((first..=last.min(23)).step_by(step.max(1) as usize));
    }
    Some(set)
}

/// The wall-clock hours that the daylight-saving changes of a zone skip or repeat in the year
/// after `now`.
fn dst_hours(zone: &str, now: DateTime<Utc>) -> BTreeSet<u32> {
    use chrono::{Offset, Timelike};
    let Ok(tz) = zone.parse::<Tz>() else {
        return BTreeSet::new();
    };
    let offset = |at: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let mut touched = BTreeSet::new();
    let step = TimeDelta::hours(1);
    let mut at = now;
    let end = now + TimeDelta::days(366);
    while at < end {
        let next = at + step;
        let (before, after) = (offset(at), offset(next));
        if before != after {
            // Find the change to the second.
            let (mut lo, mut hi) = (at, next);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == before {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            // Skipped: [change in the old offset, + shift). Repeated: [change in the new
            // offset, + shift).
            let local = hi.naive_utc() + TimeDelta::seconds(before.min(after).into());
            let shift = i64::from((after - before).abs());
            let mut t = local;
            while t < local + TimeDelta::seconds(shift) {
                touched.insert(t.hour());
                t += TimeDelta::minutes(1);
            }
        }
        at = next;
    }
    touched
}

/// A crontab's day-of-week field read as APScheduler reads it (0 = Monday), written in cron
/// numbering; `None` when the expression is not five plain fields or uses no numbers there.
fn apscheduler_weekdays(cron: &str) -> Option<String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else {
        return None;
    };
    if !weekday.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let shift = |n: &str| -> Option<String> {
        let n: u32 = n.parse().ok()?;
        (n <= 6).then(|| (n + 1).to_string())
    };
    let mut items = Vec::new();
    for item in weekday.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let range = match range {
            "*" if step.is_some() => "1-7".to_string(),
            "*" => "*".to_string(),
            _ => match range.split_once('-') {
                Some((a, b)) => format!("{}-{}", shift(a)?, shift(b)?),
                None if step.is_some() => format!("{}-7", shift(range)?),
                None => shift(range)?,
            },
        };
        items.push(match step {
            Some(step) => format!("{range}/{step}"),
            None => range,
        });
    }
    Some(format!("{minute} {hour} {day} {month} {}", items.join(",")))
}

/// A pickled argument as JSON: what AutoGPT sends as the graph's inputs. Enum members become
/// their values, datetimes RFC 3339 strings; anything else that is not plain data is refused.
fn to_json(value: &Value, depth: usize) -> Result<Json, String> {
    if depth > 64 {
        return Err("nested too deep".into());
    }
    Ok(match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::BigInt(_) => return Err("an integer beyond 64 bits".into()),
        Value::Float(x) => Json::Number(
            Number::from_f64(*x).ok_or_else(|| format!("the float {x} has no JSON form"))?,
        ),
        Value::Str(s) => Json::String(s.clone()),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => Json::Array(
            items
                .iter()
                .map(|v| to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Dict(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => return Err(format!("a dict key that is a {}", other.describe())),
                };
                map.insert(key, to_json(value, depth + 1)?);
            }
            Json::Object(map)
        }
        Value::Bytes(_) => return Err("bytes, which JSON cannot carry".into()),
        Value::Global { module, name } => {
            return Err(format!("a reference to {module}.{name}"));
        }
        Value::Call(call) => {
            if call.class() == Some(("datetime", "datetime")) {
                return Ok(Json::String(state::datetime(value)?.to_rfc3339()));
            }
            // An Enum member pickles as its class called with its value.
            if !call.new
                && call.state.is_none()
                && call.items.is_empty()
                && let Some((module, class)) = call.class()
                && let Some([member]) = call.args.items()
                && matches!(
                    member,
                    Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_)
                )
                && !matches!(module, "builtins" | "os" | "posix" | "subprocess")
                && !class.is_empty()
            {
                return to_json(member, depth + 1);
            }
            return Err(format!("an object of class {}", call.callable.describe()));
        }
    })
}

/// The owner and the graph execution of an `execute_graph` job, from its keyword arguments,
/// checked as every graph execution a caller adds is.
fn graph_execution(row: &Row, job: &JobState) -> Result<(String, Target), String> {
    if !job.args.is_empty() {
        return Err(format!(
            "the job has {} positional arguments; execute_graph takes keyword arguments only",
            job.args.len()
        ));
    }
    let kwargs = &job.kwargs;
    let text = |key: &str| -> Result<String, String> {
        match kwargs.get(key) {
            Some(Value::Str(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(other) => Err(format!(
                "argument {key} is a {}, not a non-empty string",
                other.describe()
            )),
            None => Err(format!("the job's arguments have no {key}")),
        }
    };
    let user_id = text("user_id")?;
    let graph_id = text("graph_id")?;
    for (field, value) in [
        ("id", &row.id),
        ("user_id", &user_id),
        ("graph_id", &graph_id),
    ] {
        scheduler_api::check_id(field, value).map_err(|e| e.to_string())?;
    }
    let graph_version = kwargs
        .get("graph_version")
        .and_then(Value::as_int)
        .ok_or("the job's arguments have no integer graph_version")?;
    let object = |key: &str| -> Result<Map<String, Json>, String> {
        match kwargs.get(key) {
            None | Some(Value::None) => Ok(Map::new()),
            Some(value) => match to_json(value, 0).map_err(|e| format!("argument {key}: {e}"))? {
                Json::Object(map) => Ok(map),
                other => Err(format!("argument {key} is not a dict but {other}")),
            },
        }
    };
    // AutoGPT's tenancy, on rows written since it has one: "" or None is none.
    let optional = |key: &str| -> Result<Option<String>, String> {
        match kwargs.get(key) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "argument {key} is a {}, not a string",
                other.describe()
            )),
        }
    };
    let target = Target::GraphExecution(GraphExecutionTarget {
        graph_id,
        graph_version,
        input_data: Json::Object(object("input_data")?),
        input_credentials: Json::Object(object("input_credentials")?),
        organization_id: optional("organization_id")?,
        team_id: optional("team_id")?,
        expert_id: optional("expert_id")?,
    });
    target.validate(Origin::Api)?;
    Ok((user_id, target))
}

/// The policy of a job: its coalescing, misfire grace time and jitter.
fn policy_of(job: &JobState) -> Result<Policy, String> {
    let misfire_grace_secs = match job.misfire_grace_time {
        None => None,
        Some(secs) if secs.is_finite() && secs >= 0.0 => Some(secs.ceil() as u64),
        Some(secs) => return Err(format!("misfire_grace_time {secs} is not a duration")),
    };
    let jitter_secs = match &job.trigger {
        TriggerState::Cron { jitter, .. } | TriggerState::Interval { jitter, .. } => {
            jitter.map_or(0, |j| j.max(0.0).ceil() as u64)
        }
        TriggerState::Date { .. } => 0,
    };
    let policy = Policy {
        coalesce: job.coalesce,
        misfire_grace_secs,
        jitter_secs,
        ..Policy::default()
    };
    policy.validate()?;
    Ok(policy)
}

/// An APScheduler interval trigger: every whole number of seconds from its start date.
fn interval_spec(
    start_date: DateTime<Utc>,
    end_date: Option<DateTime<Utc>>,
    interval: TimeDelta,
) -> Result<TriggerSpec, String> {
    let micros = interval.num_microseconds().unwrap_or(i64::MAX);
    if micros <= 0 || micros % 1_000_000 != 0 {
        return Err(format!(
            "the interval of {} s is not a whole number of seconds, which is all this \
             scheduler counts",
            micros as f64 / 1e6
        ));
    }
    Ok(TriggerSpec {
        kind: TriggerKind::Interval {
            every_secs: (micros / 1_000_000) as u64,
            anchor: Some(start_date),
        },
        start_at: None,
        end_at: end_date,
        exclude: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, expressions: Vec<Expr>) -> Field {
        Field {
            name: name.into(),
            is_default: false,
            expressions,
        }
    }

    fn fields(day: Vec<Expr>, weekday: Vec<Expr>) -> Vec<Field> {
        let all = || vec![Expr::All { step: None }];
        let at = |n| {
            vec![Expr::Range {
                first: n,
                last: Some(n),
                step: None,
            }]
        };
        vec![
            field("year", all()),
            field("month", all()),
            field("day", day),
            field("week", all()),
            field("day_of_week", weekday),
            field("hour", at(9)),
            field("minute", at(0)),
            field("second", at(0)),
        ]
    }

    #[test]
    fn weekdays_are_renumbered_from_monday_to_cron() {
        let all = vec![Expr::All { step: None }];
        let range = |first, last, step| vec![Expr::Range { first, last, step }];
        let cases = [
            (range(0, Some(4), None), "0 9 * * 1-5"),
            (range(6, Some(6), None), "0 9 * * 7"),
            (vec![Expr::All { step: Some(2) }], "0 9 * * 1-7/2"),
            (range(2, None, Some(2)), "0 9 * * 3-7/2"),
        ];
        for (weekday, expected) in cases {
            assert_eq!(
                cron_expression(&fields(all.clone(), weekday)).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn what_cron_cannot_say_is_refused_with_the_reason() {
        let at = |n| {
            vec![Expr::Range {
                first: n,
                last: Some(n),
                step: None,
            }]
        };
        let both = cron_expression(&fields(at(13), at(4))).unwrap_err();
        assert!(both.contains("both"), "{both}");
        // A day step begins with '*': cron then requires both, as APScheduler does.
        assert_eq!(
            cron_expression(&fields(vec![Expr::All { step: Some(2) }], at(0))).unwrap(),
            "0 9 */2 * 1"
        );
        let last = cron_expression(&fields(
            vec![Expr::LastDayOfMonth],
            vec![Expr::All { step: None }],
        ));
        assert!(last.unwrap_err().contains("'last'"));
    }

    #[test]
    fn crontab_weekdays_read_the_apscheduler_way() {
        assert_eq!(
            apscheduler_weekdays("0 9 * * 1").as_deref(),
            Some("0 9 * * 2")
        );
        assert_eq!(
            apscheduler_weekdays("0 9 * * 1-5").as_deref(),
            Some("0 9 * * 2-6")
        );
        assert_eq!(
            apscheduler_weekdays("0 9 * * 0,6").as_deref(),
            Some("0 9 * * 1,7")
        );
        assert_eq!(apscheduler_weekdays("0 9 * * mon"), None);
        assert_eq!(
            apscheduler_weekdays("0 9 * * 7"),
            None,
            "APScheduler has no day 7"
        );
    }

    #[test]
    fn dst_hours_of_a_zone_with_changes_and_of_one_without() {
        let now = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(dst_hours("Europe/Berlin", now), BTreeSet::from([2]));
        assert_eq!(dst_hours("America/New_York", now), BTreeSet::from([1, 2]));
        assert!(dst_hours("Asia/Makassar", now).is_empty());
    }
}
