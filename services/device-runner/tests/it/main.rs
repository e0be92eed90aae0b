//! Integration tests: the real `device-runner` binary on a temporary directory, driven over
//! JSON-RPC, with small shell programs standing in for the phone bots.

mod devices;
mod health;
mod helpers;
mod hostile;
mod jobs;
mod openrpc;
mod pools;
mod restart;
mod serving;
mod stopping;
mod store;
