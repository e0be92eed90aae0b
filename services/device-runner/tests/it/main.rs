//! Integration tests: the real `device-runner` binary on a temporary directory, driven over
//! JSON-RPC, with small shell programs standing in for the phone bots.

mod helpers;
mod jobs;
mod restart;
mod stopping;
mod store;
