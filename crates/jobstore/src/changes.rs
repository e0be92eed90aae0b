//! The audit log: every change of a schedule or watch, with when, who made it (the client's
//! name; `engine`, `config` or `import` for the product itself), through which route, and what
//! changed, field by field ([`crate::ChangeLog`] keeps them). One log per database, beside the
//! `execution` jobstore, whichever jobstore the schedule lives in; kept as long as the ledger's
//! finished runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use service_kit::auth::Owners;

use crate::model::{Schedule, StoreName};

/// One change as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Its place in the log, given when it is recorded (0 before).
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub jobstore: StoreName,
    /// The schedule's id (a watch's is its schedule's).
    pub schedule_id: String,
    pub owner: String,
    /// Who: a client's name (`[[auth.clients]]`, `user`, `admin`, `anonymous`), or `engine`,
    /// `config`, `import`.
    pub actor: String,
    /// Through which route: `jsonrpc`, `autogpt`, `farm`, or the actor's own for the product.
    pub route: String,
    /// What was done: `create`, `update`, `pause`, `resume`, `delete`, `trigger`, `backfill`,
    /// `sync`, `import`, `park`, `cancel`.
    pub action: String,
    /// What changed: `{"field": {"before": …, "after": …}}`, or what the action did (a run's
    /// instant, a backfill's range).
    pub changes: Value,
}

impl Change {
    /// The fields of a schedule that differ between `before` and `after` (either may be
    /// absent: created, deleted), as `{"field": {"before": …, "after": …}}`.
    pub fn diff(before: Option<&Schedule>, after: Option<&Schedule>) -> Value {
        let fields = |schedule: Option<&Schedule>| -> Map<String, Value> {
            match schedule.map(serde_json::to_value) {
                Some(Ok(Value::Object(mut fields))) => {
                    // What the engine moves on its own is not a change anyone made.
                    fields.remove("next_run_at");
                    fields.remove("created_at");
                    fields
                }
                _ => Map::new(),
            }
        };
        let (old, new) = (fields(before), fields(after));
        let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
        names.sort();
        names.dedup();
        let mut changed = Map::new();
        for name in names {
            let (was, is) = (old.get(name), new.get(name));
            if was != is {
                let pair = serde_json::json!({"before": was, "after": is});
                changed.insert(name.clone(), pair);
            }
        }
        Value::Object(changed)
    }
}

/// Which changes a listing returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    pub schedule_id: Option<String>,
    pub owner: Option<String>,
    /// Only changes of owners within these (a scoped client's listing).
    pub owners: Option<Owners>,
    /// Only changes at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only changes before this one in the log (a page's cursor).
    pub before_seq: Option<i64>,
    pub limit: usize,
}

impl ChangeFilter {
    pub(crate) fn accepts(&self, change: &Change) -> bool {
        self.schedule_id
            .as_ref()
            .is_none_or(|id| *id == change.schedule_id)
            && self.owner.as_ref().is_none_or(|o| *o == change.owner)
            && self
                .owners
                .as_ref()
                .is_none_or(|owners| owners.allows(&change.owner))
            && self.since.is_none_or(|since| change.at >= since)
            && self.before_seq.is_none_or(|seq| change.seq < seq)
    }
}
