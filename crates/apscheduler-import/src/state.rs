//! What an APScheduler 3.x job's pickled state says, read from the [`pickle`](crate::pickle)
//! tree: the job's fields, its trigger (cron with its fields and expressions, interval, date),
//! time zones (`datetime.timezone`, `zoneinfo.ZoneInfo`, pytz), datetimes and timedeltas.
//! Nothing else is recognised; anything else in a place that matters is an error naming it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::pickle::{Call, Value};

/// A job's state as `Job.__getstate__` wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub id: String,
    /// `module:function`.
    pub func: String,
    pub trigger: TriggerState,
    pub args: Vec<Value>,
    /// The keyword arguments, still as pickled values.
    pub kwargs: Value,
    pub name: Option<String>,
    /// Seconds; `None` for no limit.
    pub misfire_grace_time: Option<f64>,
    pub coalesce: bool,
    pub max_instances: Option<i64>,
    pub next_run_time: Option<DateTime<Utc>>,
}

/// A trigger's state.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerState {
    Cron {
        timezone: Zone,
        start_date: Option<DateTime<Utc>>,
        end_date: Option<DateTime<Utc>>,
        jitter: Option<f64>,
        /// year, month, day, week, day_of_week, hour, minute, second.
        fields: Vec<Field>,
    },
    Interval {
        timezone: Zone,
        start_date: DateTime<Utc>,
        end_date: Option<DateTime<Utc>>,
        interval: TimeDelta,
        jitter: Option<f64>,
    },
    Date {
        run_date: DateTime<Utc>,
    },
}

/// One of a cron trigger's eight fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub is_default: bool,
    pub expressions: Vec<Expr>,
}

/// A cron field's expression, as APScheduler's classes hold it. Numbers are APScheduler's:
/// day of week 0 = Monday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `*` or `*/step`.
    All { step: Option<u32> },
    /// `first`, `first-last`, with `/step`; `last` absent means the field's maximum. Also
    /// month and weekday names, which APScheduler keeps as numbers.
    Range {
        first: u32,
        last: Option<u32>,
        step: Option<u32>,
    },
    /// `2nd mon`, `last fri`.
    WeekdayPosition { option: String, weekday: u32 },
    /// `last` (the month's last day).
    LastDayOfMonth,
}

/// A time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// An IANA name (`UTC` for `datetime.timezone.utc`).
    Named(String),
    /// A fixed offset east of UTC, in seconds.
    Fixed(i32),
}

impl Zone {
    /// The IANA name this scheduler evaluates the trigger in.
    pub fn iana(&self) -> Result<String, String> {
        match self {
            Zone::Named(name) => name.parse::<Tz>().map(|_| name.clone()).map_err(|_| {
                format!("time zone '{name}' is not an IANA zone this scheduler knows")
            }),
            Zone::Fixed(0) => Ok("UTC".into()),
            Zone::Fixed(secs) if secs % 3600 == 0 && secs.abs() <= 14 * 3600 => {
                // The Etc zones are named with the sign inverted (POSIX style).
                let hours = -secs / 3600;
                Ok(format!("Etc/GMT{hours:+}"))
            }
            Zone::Fixed(secs) => Err(format!(
                "the fixed offset {} has no IANA zone (only whole hours do)",
                offset_text(*secs)
            )),
        }
    }
}

fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// Reads a job's state dict.
pub fn job(state: &Value) -> Result<JobState, String> {
    if !matches!(state, Value::Dict(_)) {
        return Err(format!(
            "the job state is a {}, not a dict",
            state.describe()
        ));
    }
    let version = state.get("version").and_then(Value::as_int).unwrap_or(1);
    if version > 1 {
        return Err(format!(
            "job state version {version}: only version 1 is known"
        ));
    }
    let text = |key: &str| -> Result<String, String> {
        match state.get(key) {
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(other) => Err(format!("job {key} is a {}, not a string", other.describe())),
            None => Err(format!("the job state has no '{key}'")),
        }
    };
    let trigger = trigger(
        state
            .get("trigger")
            .ok_or("the job state has no 'trigger'")?,
    )?;
    let args = match state.get("args") {
        None | Some(Value::None) => Vec::new(),
        Some(value) => value
            .items()
            .ok_or_else(|| format!("job args is a {}", value.describe()))?
            .to_vec(),
    };
    let misfire_grace_time = match state.get("misfire_grace_time") {
        None | Some(Value::None) => None,
        Some(Value::Int(secs)) => Some(*secs as f64),
        Some(Value::Float(secs)) => Some(*secs),
        Some(other) => return Err(format!("misfire_grace_time is a {}", other.describe())),
    };
    let next_run_time = match state.get("next_run_time") {
        None | Some(Value::None) => None,
        Some(value) => Some(datetime(value).map_err(|e| format!("next_run_time: {e}"))?),
    };
    Ok(JobState {
        id: text("id")?,
        func: text("func")?,
        trigger,
        args,
        kwargs: state
            .get("kwargs")
            .cloned()
            .unwrap_or(Value::Dict(Vec::new())),
        name: state
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        misfire_grace_time,
        coalesce: match state.get("coalesce") {
            Some(Value::Bool(b)) => *b,
            _ => true,
        },
        max_instances: state.get("max_instances").and_then(Value::as_int),
        next_run_time,
    })
}

/// The object a NEWOBJ built, with its class and its BUILD state (the dict of a `(None,
/// dict)` pair, as APScheduler 3.0 wrote it).
fn object<'a>(
    value: &'a Value,
    what: &str,
) -> Result<(&'a Call, (&'a str, &'a str), &'a Value), String> {
    let call = value
        .call()
        .ok_or_else(|| format!("{what} is a {}, not an object", value.describe()))?;
    let class = call
        .class()
        .ok_or_else(|| format!("{what} is built by {}, not by a class", call.callable))?;
    let state = match &call.state {
        Some(Value::Tuple(pair)) if pair.len() == 2 => &pair[1],
        Some(state) => state,
        None => {
            return Err(format!(
                "{what} of class {}.{} has no state",
                class.0, class.1
            ));
        }
    };
    Ok((call, class, state))
}

fn trigger(value: &Value) -> Result<TriggerState, String> {
    let (_, (module, class), state) = object(value, "the trigger")?;
    let version = state.get("version").and_then(Value::as_int).unwrap_or(1);
    let optional_date = |key: &str| -> Result<Option<DateTime<Utc>>, String> {
        match state.get(key) {
            None | Some(Value::None) => Ok(None),
            Some(value) => datetime(value)
                .map(Some)
                .map_err(|e| format!("trigger {key}: {e}")),
        }
    };
    let jitter = match state.get("jitter") {
        None | Some(Value::None) => None,
        Some(Value::Int(secs)) => Some(*secs as f64),
        Some(Value::Float(secs)) => Some(*secs),
        Some(other) => return Err(format!("trigger jitter is a {}", other.describe())),
    };
    let zone = || -> Result<Zone, String> {
        zone(state.get("timezone").ok_or("the trigger has no timezone")?)
    };
    match (module, class) {
        ("apscheduler.triggers.cron", "CronTrigger") => {
            if version > 2 {
                return Err(format!(
                    "CronTrigger state version {version}: only 1 and 2 are known"
                ));
            }
            let fields = state
                .get("fields")
                .and_then(Value::items)
                .ok_or("the cron trigger has no list of fields")?
                .iter()
                .map(field)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TriggerState::Cron {
                timezone: zone()?,
                start_date: optional_date("start_date")?,
                end_date: optional_date("end_date")?,
                jitter,
                fields,
            })
        }
        ("apscheduler.triggers.interval", "IntervalTrigger") => {
            if version > 2 {
                return Err(format!(
                    "IntervalTrigger state version {version}: only 1 and 2 are known"
                ));
            }
            Ok(TriggerState::Interval {
                timezone: zone()?,
                start_date: optional_date("start_date")?
                    .ok_or("the interval trigger has no start_date")?,
                end_date: optional_date("end_date")?,
                interval: timedelta(
                    state
                        .get("interval")
                        .ok_or("the interval trigger has no interval")?,
                )?,
                jitter,
            })
        }
        ("apscheduler.triggers.date", "DateTrigger") => Ok(TriggerState::Date {
            run_date: optional_date("run_date")?.ok_or("the date trigger has no run_date")?,
        }),
        (module, class) => Err(format!(
            "trigger class {module}.{class} is not one of APScheduler's cron, interval or date \
             triggers"
        )),
    }
}

fn field(value: &Value) -> Result<Field, String> {
    let (_, (module, _), state) = object(value, "a cron field")?;
    if module != "apscheduler.triggers.cron.fields" {
        return Err(format!("a cron field of module {module}"));
    }
    let name = state
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a cron field has no name")?
        .to_string();
    let expressions = state
        .get("expressions")
        .and_then(Value::items)
        .ok_or_else(|| format!("cron field {name} has no expressions"))?
        .iter()
        .map(|e| expression(e).map_err(|error| format!("cron field {name}: {error}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Field {
        is_default: matches!(state.get("is_default"), Some(Value::Bool(true))),
        name,
        expressions,
    })
}

fn expression(value: &Value) -> Result<Expr, String> {
    let (_, (module, class), state) = object(value, "an expression")?;
    if module != "apscheduler.triggers.cron.expressions" {
        return Err(format!("an expression of module {module}"));
    }
    let number = |key: &str| -> Result<Option<u32>, String> {
        match state.get(key) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Int(n)) => u32::try_from(*n)
                .map(Some)
                .map_err(|_| format!("{class}.{key} = {n}")),
            Some(other) => Err(format!("{class}.{key} is a {}", other.describe())),
        }
    };
    Ok(match class {
        "AllExpression" => Expr::All {
            step: number("step")?,
        },
        "RangeExpression" | "MonthRangeExpression" | "WeekdayRangeExpression" => Expr::Range {
            first: number("first")?.ok_or_else(|| format!("{class} has no first value"))?,
            last: number("last")?,
            step: number("step")?,
        },
        "WeekdayPositionExpression" => {
            let option = match state.get("option_num") {
                Some(Value::Int(n)) => ["1st", "2nd", "3rd", "4th", "5th", "last"]
                    .get(usize::try_from(*n).unwrap_or(usize::MAX))
                    .copied()
                    .unwrap_or("?")
                    .to_string(),
                _ => "?".to_string(),
            };
            Expr::WeekdayPosition {
                option,
                weekday: number("weekday")?.unwrap_or(0),
            }
        }
        "LastDayOfMonthExpression" => Expr::LastDayOfMonth,
        other => return Err(format!("unknown expression class {other}")),
    })
}

/// A time zone object.
pub fn zone(value: &Value) -> Result<Zone, String> {
    if let Value::Str(name) = value {
        return Ok(Zone::Named(name.clone()));
    }
    let call = value
        .call()
        .ok_or_else(|| format!("a time zone that is a {}", value.describe()))?;
    let args = call.args.items().unwrap_or(&[]);
    let first_str = || args.first().and_then(Value::as_str).map(str::to_string);
    // zoneinfo.ZoneInfo pickles as getattr(ZoneInfo, '_unpickle')(key, from_cache).
    if let Some(inner) = call.callable.call()
        && inner.class() == Some(("builtins", "getattr"))
    {
        let target = inner.args.items().unwrap_or(&[]);
        if let [class, Value::Str(method)] = target
            && matches!(
                class.global(),
                Some(("zoneinfo" | "backports.zoneinfo", "ZoneInfo"))
            )
            && method == "_unpickle"
        {
            return first_str()
                .map(Zone::Named)
                .ok_or_else(|| "a ZoneInfo without a key".to_string());
        }
        return Err(format!(
            "a time zone built by getattr{:?}",
            inner.args.describe()
        ));
    }
    match call.class() {
        Some(("zoneinfo" | "backports.zoneinfo", "ZoneInfo")) => first_str()
            .map(Zone::Named)
            .ok_or_else(|| "a ZoneInfo without a key".to_string()),
        Some(("pytz", "_p")) => first_str()
            .map(Zone::Named)
            .ok_or_else(|| "a pytz zone without a name".to_string()),
        Some(("pytz", "_UTC")) => Ok(Zone::Named("UTC".into())),
        Some(("datetime", "timezone")) => {
            let offset = args.first().ok_or("datetime.timezone without an offset")?;
            let micros = timedelta(offset)?.num_microseconds().unwrap_or(i64::MAX);
            if micros % 1_000_000 != 0 {
                return Err("a datetime.timezone offset with a fraction of a second".into());
            }
            let secs = i32::try_from(micros / 1_000_000)
                .map_err(|_| "a datetime.timezone offset out of range".to_string())?;
            Ok(Zone::Fixed(secs))
        }
        Some((module, class)) => Err(format!("time zone class {module}.{class} is not known")),
        None => Err(format!("a time zone built by {}", call.callable)),
    }
}

/// A `datetime.timedelta`.
pub fn timedelta(value: &Value) -> Result<TimeDelta, String> {
    let call = value
        .call()
        .filter(|c| c.class() == Some(("datetime", "timedelta")))
        .ok_or_else(|| format!("expected a datetime.timedelta, got {}", value.describe()))?;
    let parts = call.args.items().unwrap_or(&[]);
    let part = |i: usize| parts.get(i).and_then(Value::as_int).unwrap_or(0);
    TimeDelta::try_days(part(0))
        .and_then(|d| d.checked_add(&TimeDelta::try_seconds(part(1))?))
        .and_then(|d| d.checked_add(&TimeDelta::microseconds(part(2))))
        .ok_or_else(|| "a timedelta out of range".to_string())
}

/// A timezone-aware `datetime.datetime`, as the instant it names.
pub fn datetime(value: &Value) -> Result<DateTime<Utc>, String> {
    let call = value
        .call()
        .filter(|c| c.class() == Some(("datetime", "datetime")))
        .ok_or_else(|| format!("expected a datetime.datetime, got {}", value.describe()))?;
    let args = call.args.items().unwrap_or(&[]);
    let (Some(Value::Bytes(bytes)), tz) = (args.first(), args.get(1)) else {
        return Err("a datetime without its 10 bytes".into());
    };
    if bytes.len() != 10 {
        return Err(format!("a datetime of {} bytes, not 10", bytes.len()));
    }
    let year = i32::from(bytes[0]) << 8 | i32::from(bytes[1]);
    let fold = bytes[2] & 0x80 != 0;
    let month = u32::from(bytes[2] & 0x7f);
    let micros = u32::from(bytes[7]) << 16 | u32::from(bytes[8]) << 8 | u32::from(bytes[9]);
    let local = NaiveDate::from_ymd_opt(year, month, u32::from(bytes[3]))
        .and_then(|d| {
            d.and_hms_micro_opt(
                u32::from(bytes[4]),
                u32::from(bytes[5]),
                u32::from(bytes[6]),
                micros,
            )
        })
        .ok_or("a datetime with fields out of range")?;
    let tz = match tz {
        None | Some(Value::None) => {
            return Err(format!("the naive datetime {local} has no time zone"));
        }
        Some(tz) => tz,
    };
    // A pytz zone carries the offset the datetime was localized with: use it exactly.
    if let Some(call) = tz.call()
        && call.class() == Some(("pytz", "_p"))
        && let Some(offset) = call
            .args
            .items()
            .and_then(|a| a.get(1))
            .and_then(Value::as_int)
    {
        return Ok(Utc.from_utc_datetime(&(local - TimeDelta::seconds(offset))));
    }
    match zone(tz)? {
        Zone::Fixed(secs) => Ok(Utc.from_utc_datetime(&(local - TimeDelta::seconds(secs.into())))),
        Zone::Named(name) => {
            let tz: Tz = name
                .parse()
                .map_err(|_| format!("unknown time zone '{name}'"))?;
            Ok(in_zone(&tz, local, fold))
        }
    }
}

/// A wall-clock time in a zone as Python reads it: `fold` picks the later of a repeated time;
/// a skipped time takes the offset from before the change.
fn in_zone(tz: &Tz, local: NaiveDateTime, fold: bool) -> DateTime<Utc> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(early, late) => if fold { late } else { early }.with_timezone(&Utc),
        LocalResult::None => {
            let before = local - TimeDelta::hours(3);
            let offset = tz
                .from_local_datetime(&before)
                .earliest()
                .map(|at| at.offset().fix().local_minus_utc())
                .unwrap_or(0);
            Utc.from_utc_datetime(&(local - TimeDelta::seconds(offset.into())))
        }
    }
}
