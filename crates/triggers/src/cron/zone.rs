//! A cron expression applied in an IANA time zone, with cronie's daylight-saving policy:
//!
//! - A fixed wall-clock time skipped by a jump forward fires once, at the first instant after
//!   the jump.
//! - A fixed wall-clock time repeated by a jump back fires once, on its first pass.
//! - When the hour field begins with `*` the job follows the real clock: it fires in both passes
//!   of a repeated hour and makes nothing up for a skipped one.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::{CronError, CronExpr};

/// How far ahead of an instant a clock change is looked for when deciding whether wall-clock
/// times just before "now" can still come round again. Every clock change in the tz database
/// since 1970 that turns clocks back is shorter than this.
const FOLD_LOOKAHEAD: TimeDelta = TimeDelta::hours(3);

/// A cron expression bound to a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    expr: CronExpr,
    zone: Tz,
}

impl CronSchedule {
    pub fn new(expr: CronExpr, zone: Tz) -> Self {
        CronSchedule { expr, zone }
    }

    /// Parses `expression` and binds it to `zone`; an `H` is refused.
    pub fn parse(expression: &str, zone: Tz) -> Result<Self, CronError> {
        CronSchedule::parse_keyed(expression, zone, None)
    }

    /// Parses `expression`, its `H` fields chosen by a hash of `key`, and binds it to `zone`.
    pub fn parse_keyed(expression: &str, zone: Tz, key: Option<&str>) -> Result<Self, CronError> {
        Ok(CronSchedule::new(
            CronExpr::parse_keyed(expression, key)?,
            zone,
        ))
    }

    pub fn expr(&self) -> &CronExpr {
        &self.expr
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first fire strictly after `after`; `None` when there is none up to
    /// [`crate::LATEST`], the end of year 9999.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if after >= crate::LATEST {
            return None;
        }
        // Before year 0000 the search starts there: no fire is earlier.
        let after = after.max(crate::EARLIEST - TimeDelta::milliseconds(1));
        self.search_after(after).filter(|at| *at <= crate::LATEST)
    }

    fn search_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset_now = self.offset_seconds(after);
        let offset_ahead = self.offset_seconds(after + FOLD_LOOKAHEAD);
        // When clocks are about to go back, wall-clock times shortly before "now" will come
        // round again, so the scan starts that much earlier.
        let fold = TimeDelta::seconds((offset_now - offset_ahead).max(0));
        let mut cursor = after.with_timezone(&self.zone).naive_local() - fold;
        let mut best: Option<DateTime<Utc>> = None;
        let mut scan_until: Option<NaiveDateTime> = None;
        loop {
            let candidate = self.expr.next_local_from(cursor)?;
            if scan_until.is_some_and(|limit| candidate >= limit) {
                return best;
            }
            for instant in self.instants_of(candidate) {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            if let (Some(found), None) = (best, scan_until) {
                // Later wall-clock times can only map to earlier instants across a clock change
                // that turns clocks back between `after` and the fire found; scan that far more.
                let shrink = offset_now.max(offset_ahead) - self.offset_seconds(found);
                if shrink <= 0 {
                    return best;
                }
                scan_until = Some(candidate + TimeDelta::seconds(shrink));
            }
            cursor = candidate + TimeDelta::seconds(1);
        }
    }

    /// The instants at which a matching wall-clock time fires, under the DST policy.
    fn instants_of(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) => vec![at.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = if a <= b { (a, b) } else { (b, a) };
                if self.expr.hour_wildcard() {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc)]
                }
            }
            LocalResult::None if self.expr.hour_wildcard() => Vec::new(),
            LocalResult::None => self.end_of_gap(local).into_iter().collect(),
        }
    }

    /// The first instant whose wall-clock time is past `local`, which lies in a gap: that is the
    /// instant the clocks jumped forward.
    fn end_of_gap(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let as_utc = local.and_utc().timestamp();
        // UTC offsets lie within -12h..+14h, so the jump is inside this window.
        let (mut lo, mut hi) = (as_utc - 15 * 3600, as_utc + 13 * 3600);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let wall = DateTime::from_timestamp(mid, 0)?
                .with_timezone(&self.zone)
                .naive_local();
            if wall > local {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        DateTime::from_timestamp(lo, 0)
    }

    fn offset_seconds(&self, at: DateTime<Utc>) -> i64 {
        i64::from(
            self.zone
                .offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    }
}
