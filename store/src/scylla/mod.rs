//! The ScyllaDB store: the same [`Store`](crate::Store) on a Scylla (or Cassandra) cluster.
//!
//! Statements are prepared once at connect, rows are typed tuples, and a semaphore bounds
//! how many requests one process has in flight. Consistency is configurable (default
//! `LOCAL_QUORUM`, LWTs at `LOCAL_SERIAL`).
//!
//! Scylla has no multi-partition transactions, so `Store::apply` keeps its guarantees with a
//! small protocol keyed by the command id:
//! 1. a `done` key means the command was applied: return its outcome;
//! 2. write a `pending` key holding the writes and the outcome;
//! 3. compare-and-set the campaign row on its version, recording the command id in it;
//! 4. insert the donations and presence rows (idempotent by key), then mark the key `done`.
//!
//! After a crash between 3 and 4, the next attempt finds the `pending` key, sees from the
//! campaign row that step 3 happened, and finishes the stored writes instead of deciding again,
//! so nothing is counted twice; if step 3 did not happen, the attempt starts over. One command
//! writes at most one campaign (all Fawkes decisions do).
//!
//! Layout: `config` (settings) and `schema` (the CQL schema) need no driver and are always
//! built, so the command line can parse settings and print the schema in any build; with
//! the `scylla` feature, `statements` (the CQL by name), `plan` (the pure decisions, unit
//! tested), `driver` (the [`ScyllaStore`] calls) and `apply` (the write protocol below).

mod config;
mod schema;

#[cfg(feature = "scylla")]
mod apply;
#[cfg(feature = "scylla")]
mod driver;
#[cfg(feature = "scylla")]
mod plan;
#[cfg(feature = "scylla")]
mod statements;

pub use config::{Consistency, ScyllaConfig};
#[cfg(feature = "scylla")]
pub use driver::ScyllaStore;
pub use schema::schema_statements;
