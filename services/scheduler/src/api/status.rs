//! `get_scheduler_status`: what an operator asks a replica first.

use scheduler_api::{JobstoreStatus, SchedulerStatus};

use crate::app::App;

pub(super) async fn status(app: &App) -> SchedulerStatus {
    let leader = app.is_leader();
    let mut jobstores = Vec::new();
    let mut database_ok = true;
    for store in app.stores.all() {
        let persisted = store.backend() != "memory";
        let schedules = app.counts.of(store).await;
        let next_run_time = match store.next_wakeup().await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, jobstore = store.jobstore().as_str(), "status: cannot read the next run");
                database_ok &= !persisted;
                None
            }
        };
        database_ok &= schedules.is_some() || !persisted;
        jobstores.push(JobstoreStatus {
            name: store.jobstore().as_str().to_string(),
            backend: store.backend().to_string(),
            schedules,
            next_run_time,
            active: leader || persisted,
        });
    }
    let next_run_time = jobstores
        .iter()
        .filter(|j| j.active)
        .filter_map(|j| j.next_run_time)
        .min();
    SchedulerStatus {
        started_at: app.started_at_utc,
        uptime_secs: app.started_at.elapsed().as_secs_f64(),
        leader,
        database: app.database.to_string(),
        database_ok,
        jobstores,
        next_run_time,
    }
}
