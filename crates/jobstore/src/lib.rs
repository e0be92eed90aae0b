//! Schedules and the run ledger, behind one [`JobStore`] (the traits [`Schedules`], [`Claims`],
//! [`Ledger`] and [`Retention`], composed), and the watches beside them ([`WatchStore`]). Two
//! implementations: [`SqlStore`] for PostgreSQL and SQLite (the embedded default), each query
//! written once, and [`MemoryStore`]. Every backend passes one conformance suite
//! (`tests/conformance/`).
//!
//! What a fire does with a due schedule (coalescing, grace, the next run time) is decided once,
//! in [`plan`], so every backend applies the same policy inside its own claim transaction.

pub mod alerts;
pub mod changes;
mod connect;
mod memory;
mod model;
pub mod plan;
pub mod replica;
pub mod sole;
mod sql;
mod store;
pub mod watches;

pub use alerts::{Alert, AlertFilter, AlertKind, AlertState, Delivery, Phase, RunFacts, Watched};
pub use changes::{Change, ChangeFilter};
pub use connect::{alert_log, change_log, connect, migrate, persisted, watches};
pub use memory::MemoryStore;
pub use model::{
    AlertPolicy, DeviceJobTarget, DeviceSelector, ExpectedStatus, GraphExecutionTarget, HttpTarget,
    ListFilter, Origin, Overlap, Page, Policy, RedisPublishTarget, RpcTarget, RunFilter, RunNote,
    RunOutcome, RunPlacement, RunRecord, RunStatus, Schedule, StoreName, SystemTaskTarget, Target,
    Tenancy, WatchTarget, http_method,
};
pub use service_kit::{Database, DatabaseUrl};
pub use sole::{LockError, SoleProcess};
pub use sql::{Plans, SqlStore};
pub use store::{
    AlertLog, ChangeLog, ClaimAt, Claims, JobStore, Ledger, Retention, Schedules, StoreError,
};
pub use watches::{Sent, WatchFilter, WatchStore};
