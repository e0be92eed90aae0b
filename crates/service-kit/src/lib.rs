//! What every service of the workspace shares, written once: the layered configuration
//! ([`config`]), logging ([`logging`]), the command line and exit codes ([`cli`]), database
//! URLs and pools ([`database`]) with queries written once for both backends ([`sql`]), and
//! the serving stack ([`serve`]): axum with jsonrpsee on one port, `rpc.discover`, the body
//! limit ([`body_limit`]), bearer and admin tokens ([`auth`], [`calls`]), the JSON-RPC ids
//! jsonrpsee cannot hold ([`request_ids`]), `/health_check`, `/ready`, `/metrics`
//! ([`metrics`]), and graceful shutdown ([`shutdown`]); traces over OTLP and W3C trace context
//! ([`traces`]).

pub mod auth;
pub mod body_limit;
pub mod calls;
pub mod cli;
pub mod config;
pub mod database;
pub mod logging;
pub mod metrics;
pub mod request_ids;
pub mod serve;
pub mod shutdown;
pub mod sql;
pub mod subscriptions;
pub mod traces;

pub use database::{Database, DatabaseError, DatabaseUrl};
pub use shutdown::Shutdown;
