//! `list_changes`: the audit log, newest first, within the caller's owners.

use chrono::{DateTime, Utc};
use jobstore::ChangeFilter;
use jsonrpsee::Extensions;
use scheduler_api::{ChangePage, SchedulerError, page_limit};

use crate::api::{access, views};
use crate::app::{App, storage_error};

const DEFAULT_LIMIT: u32 = 50;

/// What `list_changes` is asked.
pub(crate) struct ChangeQuery {
    pub schedule_id: Option<String>,
    pub owner: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub(super) async fn list(
    app: &App,
    extensions: &Extensions,
    query: ChangeQuery,
) -> Result<ChangePage, SchedulerError> {
    let limit = page_limit(query.limit, DEFAULT_LIMIT)?;
    let before_seq = query
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor.parse::<i64>().map_err(|_| {
                SchedulerError::Value(format!(
                    "cursor '{cursor}' is not one list_changes gave out"
                ))
            })
        })
        .transpose()?;
    let owners = access::listing_scope_naming(query.owner.as_deref(), extensions)?;
    let Some(log) = app.stores.changes() else {
        return Ok(ChangePage {
            changes: Vec::new(),
            next_cursor: None,
        });
    };
    let filter = ChangeFilter {
        schedule_id: query.schedule_id,
        owner: query.owner,
        owners,
        since: query.since,
        before_seq,
        // One more than asked, to know whether another page follows.
        limit: limit + 1,
    };
    let mut changes = log.changes(&filter).await.map_err(storage_error)?;
    let more = changes.len() > limit;
    changes.truncate(limit);
    let next_cursor = more
        .then(|| changes.last().map(|change| change.seq.to_string()))
        .flatten();
    Ok(ChangePage {
        changes: changes.iter().map(views::change).collect(),
        next_cursor,
    })
}
