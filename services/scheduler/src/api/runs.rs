//! The run ledger as the API shows it.

use jsonrpsee::Extensions;

use crate::api::access::{self, Who};
use crate::api::views;
use scheduler_api::{ScheduleRun, SchedulerError, page_limit};

use crate::app::{App, storage_error};

const DEFAULT_LIMIT: u32 = 50;

pub(super) async fn list(
    app: &App,
    extensions: &Extensions,
    schedule_id: &str,
    user_id: &str,
    limit: Option<u32>,
) -> Result<Vec<ScheduleRun>, SchedulerError> {
    let limit = page_limit(limit, DEFAULT_LIMIT)?;
    let store = app.execution()?;
    let runs = store
        .runs(schedule_id, &jobstore::RunFilter::latest(limit))
        .await
        .map_err(storage_error)?;
    // The owner is checked against the live schedule, or against the ledger once it is deleted.
    let owner = match store.get(schedule_id).await.map_err(storage_error)? {
        Some(schedule) => Some(schedule.owner),
        None => runs.first().map(|run| run.owner.clone()),
    };
    match owner {
        None => Err(SchedulerError::NotFound(format!(
            "Job #{schedule_id} not found."
        ))),
        Some(owner) => {
            let who = Who::owner(user_id, extensions);
            access::owner(&owner, who).map_err(|denied| match denied {
                access::Denied::OutOfScope => access::Denied::out_of_scope(user_id, who.caller),
                _ => {
                    SchedulerError::NotAuthorized("User ID does not match the job's user ID".into())
                }
            })?;
            Ok(runs.iter().map(views::run).collect())
        }
    }
}
