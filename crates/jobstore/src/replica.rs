//! Which process holds a pending run. Each scheduler process is a replica with an id of its
//! own, made once at start; a claim writes it into the run's ledger row (`claimed_by`), and a
//! run taken over from another holder (its lease expired, or its holder is known to be dead)
//! is marked `recovered`: it is being delivered again, and an occurrence that meets only such
//! runs waits for them to end rather than being skipped ([`crate::plan::admit`]).
//!
//! On PostgreSQL a replica announces that it is alive with a session advisory lock on the key
//! [`LOCK_KEY`] and the hash of its id, held on a connection of its own; the server frees it
//! the moment that connection dies, so the other replicas know at once whose runs to take
//! over ([`crate::Claims::take_over`]).

use std::sync::OnceLock;

/// The advisory lock a live replica holds, as the SQL of its two keys: one namespace per
/// schema, and the hash of the replica's id (`$1`, or a run's `claimed_by`).
pub const LOCK_KEY: &str = "hashtext('scheduler-replica:' || current_schema())";

/// This process's replica id.
pub fn id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}
