//! The fleet: every device runner's phones, and their quarantine (admin).

use scheduler_api::SchedulerApiClient;
pub use scheduler_api::{Fleet, FleetPhone, FleetRunner, PhoneState, RunningJob};

use crate::{Error, SchedulerClient};

/// Which phones `list_fleet` returns: all by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetQuery {
    pub runner: Option<String>,
    /// Phones carrying every one of these.
    pub tags: Vec<String>,
    pub state: Option<PhoneState>,
}

impl SchedulerClient {
    /// Every runner, and the phones the query selects.
    pub async fn list_fleet(&self, query: FleetQuery) -> Result<Fleet, Error> {
        self.call(|rpc| {
            let q = query.clone();
            let tags = (!q.tags.is_empty()).then_some(q.tags);
            async move { rpc.list_fleet(q.runner, tags, q.state).await }
        })
        .await
    }

    /// Quarantines a phone of a runner (admin).
    pub async fn quarantine_device(
        &self,
        runner: &str,
        serial: &str,
        reason: Option<&str>,
    ) -> Result<FleetPhone, Error> {
        let (runner, serial) = (runner.to_string(), serial.to_string());
        let reason = reason.map(str::to_string);
        self.call(|rpc| {
            let (runner, serial, reason) = (runner.clone(), serial.clone(), reason.clone());
            async move { rpc.quarantine_device(runner, serial, reason).await }
        })
        .await
    }

    /// Ends a phone's quarantine (admin).
    pub async fn release_device(&self, runner: &str, serial: &str) -> Result<FleetPhone, Error> {
        let (runner, serial) = (runner.to_string(), serial.to_string());
        self.call(|rpc| {
            let (runner, serial) = (runner.clone(), serial.clone());
            async move { rpc.release_device(runner, serial).await }
        })
        .await
    }
}
