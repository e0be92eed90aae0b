//! `list_alerts`: the incidents of schedules whose work did not happen, newest first, within
//! the caller's owners.

use jobstore::AlertFilter;
use jsonrpsee::Extensions;
use scheduler_api::{Alert, AlertState, SchedulerError, page_limit};

use crate::api::access;
use crate::app::{App, storage_error};

const DEFAULT_LIMIT: u32 = 100;

/// What `list_alerts` is asked.
pub(crate) struct AlertQuery {
    pub state: Option<AlertState>,
    pub owner: Option<String>,
    pub schedule_id: Option<String>,
    pub limit: Option<u32>,
}

pub(crate) async fn list(
    app: &App,
    extensions: &Extensions,
    query: AlertQuery,
) -> Result<Vec<Alert>, SchedulerError> {
    let limit = page_limit(query.limit, DEFAULT_LIMIT)?;
    let owners = access::listing_scope_naming(query.owner.as_deref(), extensions)?;
    let Some(log) = app.stores.alerts() else {
        return Ok(Vec::new());
    };
    let filter = AlertFilter {
        state: query.state,
        owner: query.owner,
        owners,
        schedule_id: query.schedule_id,
        limit,
    };
    log.alerts(&filter).await.map_err(storage_error)
}
