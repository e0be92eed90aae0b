//! Integration tests: each starts the real `scheduler` binary on a temporary directory and talks
//! to it over its real protocols. The execution service is a stub HTTP server on loopback.

mod alerts;
mod api;
mod apscheduler;
mod audit;
mod auth;
mod autogpt;
mod calendars;
mod clients;
mod compat;
mod declared;
mod firing;
mod general;
mod hardening;
mod helpers;
mod hostile;
mod observability;
mod openrpc;
mod outage;
mod preview;
mod replicas;
mod restart;
mod router;
mod signing;
mod startup;
mod system_tasks;
mod traces;
mod watches;
