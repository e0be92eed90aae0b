//! `schedctl schedule …`, `schedctl runs`, `schedctl cron next`.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use scheduler_client::{
    ChangeQuery, FireTimesQuery, NewSchedule, RunQuery, RunStatus, Schedule, ScheduleChange,
    SchedulePolicy, ScheduleQuery, ScheduleUpdate, SchedulerClient, Target, TriggerSpec,
};
use serde_json::{Value, json};

use crate::output::{Format, Table, cut, json, or_dash, time};
use crate::{Context, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum ScheduleCommand {
    /// Create a schedule.
    #[command(
        after_help = "Example:\n  schedctl schedule create --owner alice --name nightly \
        --cron '0 3 * * *' --tz Europe/Paris \\\n    --target '{\"type\": \"rpc\", \"endpoint\": \
        \"backend\", \"method\": \"cleanup\"}' --tag maintenance"
    )]
    Create(CreateArgs),
    /// List schedules, 100 at a time (--all follows the pages).
    #[command(after_help = "Example:\n  schedctl schedule list --owner alice --paused false")]
    List(ListArgs),
    /// A schedule, its next fire times and its latest runs.
    #[command(after_help = "Example:\n  schedctl schedule describe nightly --owner alice")]
    Describe(ScheduleRef),
    /// Change a schedule in place; a new trigger is planned from now.
    #[command(
        after_help = "Example:\n  schedctl schedule update nightly --owner alice --cron '30 3 * * *'"
    )]
    Update(UpdateArgs),
    /// Pause a schedule, with a reason that is kept and shown.
    #[command(
        after_help = "Example:\n  schedctl schedule pause nightly --owner alice --reason 'backend migration'"
    )]
    Pause(PauseArgs),
    /// Resume a paused schedule (what was missed meanwhile is not caught up).
    #[command(after_help = "Example:\n  schedctl schedule resume nightly --owner alice")]
    Resume(ScheduleRef),
    /// Run a schedule now, once, as an occurrence of its own.
    #[command(after_help = "Example:\n  schedctl schedule trigger nightly --owner alice")]
    Trigger(ScheduleRef),
    /// Queue the occurrences a schedule had in a range and that are not in its ledger.
    #[command(
        after_help = "Example:\n  schedctl schedule backfill nightly --owner alice \
        --start 2026-11-01T00:00:00Z --end 2026-11-08T00:00:00Z"
    )]
    Backfill(BackfillArgs),
    /// Delete a schedule (its ledger stays as history).
    #[command(after_help = "Example:\n  schedctl schedule delete nightly --owner alice")]
    Delete(ScheduleRef),
    /// Who changed a schedule, when, through which route, and what changed (the audit log).
    #[command(after_help = "Example:\n  schedctl schedule history nightly --limit 20")]
    History(HistoryArgs),
}

/// `schedule history`.
#[derive(Args, Debug)]
pub(crate) struct HistoryArgs {
    /// The schedule's (or watch's) id.
    pub(crate) id: String,
    /// How many changes, newest first.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
}

/// A schedule by id and owner.
#[derive(Args, Debug)]
pub(crate) struct ScheduleRef {
    /// The schedule's id.
    pub(crate) id: String,
    /// The schedule's owner (an admin token may act on any).
    #[arg(long)]
    pub(crate) owner: String,
}

/// How a schedule fires: one of the trigger flags, or --trigger with the JSON form.
#[derive(Args, Debug, Default)]
pub(crate) struct TriggerArgs {
    /// A cron expression (5 fields, or 6 with seconds first; macros such as @daily).
    #[arg(long, value_name = "EXPR", group = "when")]
    pub(crate) cron: Option<String>,
    /// Every N seconds.
    #[arg(long, value_name = "SECS", group = "when")]
    pub(crate) interval: Option<u64>,
    /// Every day at these wall-clock times, comma-separated (09:00,18:30).
    #[arg(long, value_name = "HH:MM,…", group = "when", value_delimiter = ',')]
    pub(crate) daily_times: Option<Vec<String>>,
    /// Once, at this instant (RFC 3339).
    #[arg(long, value_name = "TIME", group = "when")]
    pub(crate) once: Option<DateTime<Utc>>,
    /// The trigger as JSON: {"type": "cron", "expression": "0 9 * * *", "timezone": "UTC"}.
    #[arg(long, value_name = "JSON", group = "when")]
    pub(crate) trigger: Option<String>,
    /// The IANA zone of --cron or --daily-times (default UTC; on update, the schedule's).
    #[arg(long, value_name = "ZONE")]
    pub(crate) tz: Option<String>,
    /// No fire before this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub(crate) start_at: Option<DateTime<Utc>>,
    /// No fire after this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub(crate) end_at: Option<DateTime<Utc>>,
    /// Skip the dates of this calendar (`[calendars.<name>]`); repeat for more.
    #[arg(long, value_name = "CALENDAR")]
    pub(crate) exclude: Vec<String>,
}

impl TriggerArgs {
    /// Whether the trigger flags name wall-clock times, which need a zone.
    fn needs_zone(&self) -> bool {
        self.cron.is_some() || self.daily_times.is_some()
    }

    /// The trigger the flags describe, in `--tz` or else `zone`; `None` when no trigger flag
    /// was given.
    fn spec(&self, zone: &str) -> Result<Option<TriggerSpec>, Failure> {
        let zone = self.tz.as_deref().unwrap_or(zone);
        let mut value = if let Some(expression) = &self.cron {
            json!({"type": "cron", "expression": expression, "timezone": zone})
        } else if let Some(secs) = self.interval {
            json!({"type": "interval", "every_secs": secs})
        } else if let Some(times) = &self.daily_times {
            json!({"type": "daily_times", "times": times, "timezone": zone})
        } else if let Some(at) = self.once {
            json!({"type": "once", "at": at})
        } else if let Some(text) = &self.trigger {
            parse_json("--trigger", text)?
        } else {
            if self.start_at.is_some()
                || self.end_at.is_some()
                || self.tz.is_some()
                || !self.exclude.is_empty()
            {
                return Err(Failure::usage(
                    "--tz, --start-at, --end-at and --exclude go with a trigger flag (--cron, \
                     --interval, --daily-times, --once or --trigger)",
                ));
            }
            return Ok(None);
        };
        if let Value::Object(map) = &mut value {
            if let Some(at) = self.start_at {
                map.insert("start_at".into(), json!(at));
            }
            if let Some(at) = self.end_at {
                map.insert("end_at".into(), json!(at));
            }
            if !self.exclude.is_empty() {
                map.insert("exclude".into(), json!(self.exclude));
            }
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| Failure::usage(format!("the trigger: {e}")))
    }
}

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The user who owns it: the only one (with the admin) who may change it.
    #[arg(long)]
    pub(crate) owner: String,
    /// The id (default: one made up by the scheduler).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// A name for people (default: the id).
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) trigger: TriggerArgs,
    /// What a fire does, as JSON: {"type": "rpc", "endpoint": "backend", "method": "m"},
    /// {"type": "http", "endpoint": "backend", "path": "/x"}, {"type": "device_job", …}.
    #[arg(long, value_name = "JSON")]
    pub(crate) target: String,
    /// Place each occurrence of a device_job target on a phone of the fleet that carries
    /// these tags: tags=tiktok,sim; and runner=NAME (repeat the flag) for one runner's phones.
    #[arg(long, value_name = "tags=T1,T2|runner=NAME")]
    pub(crate) select: Vec<String>,
    /// The policy as JSON: {"overlap": "skip", "jitter_secs": 30, "misfire_grace_secs": 60}.
    #[arg(long, value_name = "JSON")]
    pub(crate) policy: Option<String>,
    /// A label (repeat for more).
    #[arg(long = "tag", value_name = "TAG")]
    pub(crate) tags: Vec<String>,
    /// The jobstore (default execution).
    #[arg(long)]
    pub(crate) jobstore: Option<String>,
    /// Replace a schedule of the same id, keeping its ledger.
    #[arg(long)]
    pub(crate) replace: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[arg(long)]
    pub(crate) owner: Option<String>,
    /// Only targets of this kind (rpc, http, redis_publish, device_job, graph_execution, …).
    #[arg(long)]
    pub(crate) target_type: Option<String>,
    /// Only paused (true) or running (false) schedules.
    #[arg(long)]
    pub(crate) paused: Option<bool>,
    #[arg(long)]
    pub(crate) tag: Option<String>,
    #[arg(long)]
    pub(crate) jobstore: Option<String>,
    /// At most this many (default 100).
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// The page after this cursor (printed after a full page).
    #[arg(long)]
    pub(crate) cursor: Option<String>,
    /// Every page.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Args, Debug)]
pub(crate) struct UpdateArgs {
    /// The schedule's id.
    pub(crate) id: String,
    /// The schedule's owner (an admin token may act on any).
    #[arg(long)]
    pub(crate) owner: String,
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) trigger: TriggerArgs,
    #[arg(long, value_name = "JSON")]
    pub(crate) target: Option<String>,
    #[arg(long, value_name = "JSON")]
    pub(crate) policy: Option<String>,
    /// Replace the tags (repeat for more).
    #[arg(long = "tag", value_name = "TAG")]
    pub(crate) tags: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct PauseArgs {
    /// The schedule's id.
    pub(crate) id: String,
    /// The schedule's owner (an admin token may act on any).
    #[arg(long)]
    pub(crate) owner: String,
    /// Why, kept with the schedule and shown.
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct BackfillArgs {
    /// The schedule's id.
    pub(crate) id: String,
    /// The schedule's owner (an admin token may act on any).
    #[arg(long)]
    pub(crate) owner: String,
    /// The range's start (RFC 3339).
    #[arg(long)]
    pub(crate) start: DateTime<Utc>,
    /// The range's end (RFC 3339).
    #[arg(long)]
    pub(crate) end: DateTime<Utc>,
    /// At most this many occurrences (default 1000).
    #[arg(long)]
    pub(crate) max: Option<u32>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  schedctl runs nightly --owner alice --status failed --limit 20"
)]
pub(crate) struct RunsArgs {
    /// The schedule's id.
    pub(crate) id: String,
    /// The schedule's owner (an admin token may act on any).
    #[arg(long)]
    pub(crate) owner: String,
    /// pending, buffered, dispatched, failed, skipped or coalesced.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// Only runs scheduled at or after this instant (RFC 3339).
    #[arg(long)]
    pub(crate) since: Option<DateTime<Utc>>,
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    #[arg(long)]
    pub(crate) cursor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CronCommand {
    /// The next fire times of an expression, computed by the scheduler.
    #[command(
        after_help = "Examples:\n  schedctl cron next '0 9 * * mon-fri' --tz Europe/Paris --count 5\n  schedctl cron next 'H H(0-7) * * *' --hash-key nightly-report"
    )]
    Next {
        expression: String,
        /// The IANA zone (default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// How many (default 5).
        #[arg(long, default_value_t = 5)]
        count: u32,
        /// The id of the schedule the expression is for: what its `H` fields become there.
        #[arg(long)]
        hash_key: Option<String>,
        /// A calendar whose dates are left out (`[calendars.<name>]`); repeat for more.
        #[arg(long)]
        exclude: Vec<String>,
    },
}

/// `target` (a `device_job`) placed by the selector of `--select tags=T1,T2 --select
/// runner=NAME`.
fn with_select(target: &mut Value, select: &[String]) -> Result<(), Failure> {
    let Some(fields) = target.as_object_mut().filter(|t| t["type"] == "device_job") else {
        return Err(Failure::usage(
            "--select goes with a device_job --target: {\"type\": \"device_job\", \"job_type\": …}",
        ));
    };
    let mut tags = Vec::new();
    let mut runner = None;
    for part in select.iter().map(|p| p.trim()) {
        match part.split_once('=') {
            Some(("tags", list)) => tags.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            Some(("runner", name)) => runner = Some(name.trim().to_string()),
            _ => {
                return Err(Failure::usage(format!(
                    "--select '{part}': give tags=T1,T2 (and --select runner=NAME for one runner)"
                )));
            }
        }
    }
    if tags.is_empty() {
        return Err(Failure::usage("--select names no tags: give tags=T1,T2"));
    }
    fields.insert("select".into(), json!({"tags": tags, "runner": runner}));
    Ok(())
}

fn parse_json(flag: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::usage(format!("{flag} is not JSON: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(flag: &str, text: &str) -> Result<T, Failure> {
    serde_json::from_value(parse_json(flag, text)?)
        .map_err(|e| Failure::usage(format!("{flag}: {e}")))
}

/// A trigger in short: the expression or times and the zone.
pub(crate) fn trigger_text(trigger: &TriggerSpec) -> String {
    let text = rule_text(trigger);
    match trigger.exclude.is_empty() {
        true => text,
        false => format!("{text} except {}", trigger.exclude.join(",")),
    }
}

/// When a trigger fires, without the calendars it skips.
fn rule_text(trigger: &TriggerSpec) -> String {
    let value = serde_json::to_value(trigger).unwrap_or_default();
    let zone = value["timezone"].as_str().unwrap_or("UTC");
    match value["type"].as_str() {
        Some("cron") => format!(
            "cron {} {zone}",
            value["expression"].as_str().unwrap_or("?")
        ),
        Some("interval") => format!("every {}s", value["every_secs"]),
        Some("daily_times") => {
            let times: Vec<&str> = value["times"]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("daily {} {zone}", times.join(","))
        }
        Some("once") => format!("once {}", value["at"].as_str().unwrap_or("?")),
        other => other.unwrap_or("?").to_string(),
    }
}

fn target_text(target: &Target) -> String {
    let value = serde_json::to_value(target).unwrap_or_default();
    let kind = value["type"].as_str().unwrap_or("?");
    if let Some(tags) = value["select"]["tags"].as_array() {
        let tags: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
        let job_type = value["job_type"].as_str().unwrap_or("?");
        return format!("{kind} on tags {} {job_type}", tags.join(","));
    }
    let detail = [
        "endpoint", "runner", "device", "pool", "method", "path", "channel", "graph_id",
        "job_type", "task",
    ]
    .iter()
    .filter_map(|k| value[*k].as_str())
    .collect::<Vec<_>>()
    .join(" ");
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} {detail}")
    }
}

fn schedules_table(schedules: &[Schedule]) -> String {
    let mut table = Table::new(&[
        "ID", "NAME", "OWNER", "TRIGGER", "TARGET", "STATE", "NEXT RUN",
    ]);
    for s in schedules {
        let state = match (&s.paused, &s.paused_reason) {
            (true, Some(reason)) => format!("paused: {}", cut(reason, 30)),
            (true, None) => "paused".into(),
            (false, _) => "active".into(),
        };
        table.row(vec![
            s.id.clone(),
            cut(&s.name, 30),
            s.owner.clone(),
            trigger_text(&s.trigger),
            cut(&target_text(&s.target), 40),
            state,
            time(s.next_run_time.as_ref()),
        ]);
    }
    table.render()
}

fn print_schedule(context: &Context, schedule: &Schedule) {
    match context.format {
        Format::Json => json(schedule),
        Format::Table => print!("{}", schedules_table(std::slice::from_ref(schedule))),
    }
}

pub(crate) async fn run(context: &Context, command: ScheduleCommand) -> Result<(), Failure> {
    let client = context.scheduler()?;
    match command {
        ScheduleCommand::Create(args) => create(context, &client, args).await?,
        ScheduleCommand::List(args) => list(context, &client, args).await?,
        ScheduleCommand::Describe(target) => describe(context, &client, target).await?,
        ScheduleCommand::Update(args) => update(context, &client, args).await?,
        ScheduleCommand::Pause(args) => {
            let schedule = client
                .pause_schedule(&args.id, &args.owner, args.reason)
                .await?;
            print_schedule(context, &schedule);
        }
        ScheduleCommand::Resume(target) => {
            let schedule = client.resume_schedule(&target.id, &target.owner).await?;
            print_schedule(context, &schedule);
        }
        ScheduleCommand::Trigger(target) => {
            let run = client.trigger_schedule(&target.id, &target.owner).await?;
            match context.format {
                Format::Json => json(&run),
                Format::Table => print!("{}", runs_table(std::slice::from_ref(&run))),
            }
        }
        ScheduleCommand::Backfill(args) => {
            let backfill = client
                .backfill_schedule(&args.id, &args.owner, args.start, args.end, args.max)
                .await?;
            match context.format {
                Format::Json => json(&backfill),
                Format::Table => println!(
                    "queued {}, already in the ledger {}",
                    backfill.queued, backfill.already_in_ledger
                ),
            }
        }
        ScheduleCommand::Delete(target) => {
            let schedule = client.delete_schedule(&target.id, &target.owner).await?;
            match context.format {
                Format::Json => json(&schedule),
                Format::Table => println!("deleted {}", schedule.id),
            }
        }
        ScheduleCommand::History(args) => {
            let query = ChangeQuery {
                schedule_id: Some(args.id.clone()),
                limit: Some(args.limit),
                ..ChangeQuery::default()
            };
            let page = client.list_changes(query).await?;
            match context.format {
                Format::Json => json(&page.changes),
                Format::Table if page.changes.is_empty() => {
                    println!("no change of '{}' in the audit log", args.id)
                }
                Format::Table => print!("{}", changes_table(&page.changes)),
            }
        }
    }
    Ok(())
}

/// The audit log's changes, one a line, with what changed in short.
fn changes_table(changes: &[ScheduleChange]) -> String {
    let mut table = Table::new(&["AT", "ACTION", "WHO", "ROUTE", "CHANGED"]);
    for change in changes {
        let changed = match &change.changes {
            Value::Object(fields) => fields
                .iter()
                .map(
                    |(field, pair)| match (pair.get("before"), pair.get("after")) {
                        (Some(before), Some(after)) => format!("{field}: {before} -> {after}"),
                        _ => format!("{field}: {pair}"),
                    },
                )
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        table.row(vec![
            time(Some(&change.at)),
            change.action.clone(),
            change.actor.clone(),
            change.route.clone(),
            cut(&changed, 80),
        ]);
    }
    table.render()
}

/// Creates a schedule from the flags, and prints it.
async fn create(
    context: &Context,
    client: &SchedulerClient,
    args: CreateArgs,
) -> Result<(), Failure> {
    let trigger = args.trigger.spec("UTC")?.ok_or_else(|| {
        Failure::usage(
            "a trigger is needed: --cron, --interval, --daily-times, --once or --trigger",
        )
    })?;
    let mut target = parse_json("--target", &args.target)?;
    if !args.select.is_empty() {
        with_select(&mut target, &args.select)?;
    }
    let target =
        serde_json::from_value(target).map_err(|e| Failure::usage(format!("--target: {e}")))?;
    let mut new = NewSchedule::new(args.owner, trigger, target);
    new.id = args.id;
    new.name = args.name;
    new.jobstore = args.jobstore;
    new.policy = args
        .policy
        .map(|p| parse::<SchedulePolicy>("--policy", &p))
        .transpose()?;
    new.tags = args.tags;
    new.replace_existing = args.replace;
    let schedule = client.create_schedule(new).await?;
    print_schedule(context, &schedule);
    Ok(())
}

/// Lists schedules, page after page with `--all`.
async fn list(context: &Context, client: &SchedulerClient, args: ListArgs) -> Result<(), Failure> {
    let mut query = ScheduleQuery {
        owner: args.owner,
        target_type: args.target_type,
        paused: args.paused,
        tag: args.tag,
        jobstore: args.jobstore,
        limit: args.limit,
        cursor: args.cursor,
    };
    let mut schedules = Vec::new();
    let next = loop {
        let page = client.list_schedules(query.clone()).await?;
        schedules.extend(page.schedules);
        match page.next_cursor {
            Some(cursor) if args.all => query.cursor = Some(cursor),
            other => break other,
        }
    };
    match context.format {
        Format::Json => json(&json!({"schedules": schedules, "next_cursor": next})),
        Format::Table => {
            print!("{}", schedules_table(&schedules));
            if let Some(cursor) = next {
                println!("(more: --cursor {cursor}, or --all)");
            }
        }
    }
    Ok(())
}

/// Prints a schedule with its upcoming times and latest runs.
async fn describe(
    context: &Context,
    client: &SchedulerClient,
    target: ScheduleRef,
) -> Result<(), Failure> {
    let schedule = client.get_schedule(&target.id, &target.owner).await?;
    let runs = client
        .list_runs(
            &target.id,
            &target.owner,
            RunQuery {
                limit: Some(5),
                ..RunQuery::default()
            },
        )
        .await?;
    match context.format {
        Format::Json => json(&json!({"schedule": schedule, "runs": runs.runs})),
        Format::Table => {
            let field = |name: &str, value: String| println!("{name:<14}{value}");
            field("ID", schedule.id.clone());
            field("Name", schedule.name.clone());
            field("Owner", schedule.owner.clone());
            field("Jobstore", schedule.jobstore.clone());
            field("Trigger", trigger_text(&schedule.trigger));
            field("Target", target_text(&schedule.target));
            field(
                "Policy",
                serde_json::to_string(&schedule.policy).unwrap_or_default(),
            );
            field("Tags", schedule.tags.join(", "));
            let state = match (&schedule.paused, &schedule.paused_reason) {
                (true, Some(reason)) => format!("paused ({reason})"),
                (true, None) => "paused".into(),
                (false, _) => "active".into(),
            };
            field("State", state);
            println!("Upcoming:");
            for at in &schedule.next_fire_times {
                println!("  {}", time(Some(at)));
            }
            println!("Latest runs:");
            print!("{}", indent(&runs_table(&runs.runs)));
        }
    }
    Ok(())
}

/// Changes what the flags give, keeping the schedule's zone unless `--tz` moves it.
async fn update(
    context: &Context,
    client: &SchedulerClient,
    args: UpdateArgs,
) -> Result<(), Failure> {
    // A new cron expression or new times keep the schedule's zone unless --tz moves it.
    let zone = if args.trigger.needs_zone() && args.trigger.tz.is_none() {
        client.get_schedule(&args.id, &args.owner).await?.timezone
    } else {
        "UTC".to_string()
    };
    let update = ScheduleUpdate {
        name: args.name,
        trigger: args.trigger.spec(&zone)?,
        target: args.target.map(|t| parse("--target", &t)).transpose()?,
        policy: args.policy.map(|p| parse("--policy", &p)).transpose()?,
        tags: (!args.tags.is_empty()).then_some(args.tags),
    };
    let schedule = client
        .update_schedule(&args.id, &args.owner, update)
        .await?;
    print_schedule(context, &schedule);
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn runs_table(runs: &[scheduler_client::ScheduleRun]) -> String {
    let mut table = Table::new(&[
        "SCHEDULED",
        "STATUS",
        "ATTEMPTS",
        "FINISHED",
        "LAG",
        "DETAIL",
    ]);
    for run in runs {
        let lag = run.finished_at.map(|f| {
            format!(
                "{:.1}s",
                (f - run.scheduled_time).num_milliseconds() as f64 / 1000.0
            )
        });
        table.row(vec![
            time(Some(&run.scheduled_time)),
            serde_json::to_value(run.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            run.attempts.to_string(),
            time(run.finished_at.as_ref()),
            or_dash(lag),
            cut(run.detail.as_deref().unwrap_or("-"), 60),
        ]);
    }
    table.render()
}

pub(crate) async fn runs(context: &Context, args: RunsArgs) -> Result<(), Failure> {
    let status = args
        .status
        .map(|s| {
            serde_json::from_value::<RunStatus>(json!(s)).map_err(|_| {
                Failure::usage(format!(
                    "--status '{s}': one of pending, buffered, dispatched, failed, skipped, \
                     coalesced"
                ))
            })
        })
        .transpose()?;
    let page = context
        .scheduler()?
        .list_runs(
            &args.id,
            &args.owner,
            RunQuery {
                status,
                since: args.since,
                limit: args.limit,
                cursor: args.cursor,
            },
        )
        .await?;
    match context.format {
        Format::Json => json(&page),
        Format::Table => {
            print!("{}", runs_table(&page.runs));
            if let Some(cursor) = page.next_cursor {
                println!("(more: --cursor {cursor})");
            }
        }
    }
    Ok(())
}

pub(crate) async fn cron(context: &Context, command: CronCommand) -> Result<(), Failure> {
    let CronCommand::Next {
        expression,
        tz,
        count,
        hash_key,
        exclude,
    } = command;
    let query = FireTimesQuery {
        timezone: tz,
        count: Some(count),
        hash_key,
        exclude: (!exclude.is_empty()).then_some(exclude),
        ..FireTimesQuery::default()
    };
    let times = context
        .scheduler()?
        .next_fire_times(&expression, query)
        .await?;
    match context.format {
        Format::Json => json(&times),
        Format::Table => {
            for text in times {
                let at = DateTime::parse_from_rfc3339(&text).ok();
                println!("{}  ({text})", time(at.as_ref()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_goes_into_the_trigger_and_is_shown_with_it() {
        let args = TriggerArgs {
            cron: Some("0 9 * * *".into()),
            exclude: vec!["holidays".into(), "weekends".into()],
            ..TriggerArgs::default()
        };
        let spec = args.spec("Europe/Berlin").unwrap().unwrap();
        assert_eq!(spec.exclude, ["holidays", "weekends"]);
        assert_eq!(
            trigger_text(&spec),
            "cron 0 9 * * * Europe/Berlin except holidays,weekends"
        );
        let alone = TriggerArgs {
            exclude: vec!["holidays".into()],
            ..TriggerArgs::default()
        };
        let refused = alone.spec("UTC").unwrap_err();
        assert!(format!("{refused:?}").contains("--exclude"), "{refused:?}");
    }
}
