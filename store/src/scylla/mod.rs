//! The ScyllaDB store: the same [`Store`](crate::Store) on a Scylla (or Cassandra) cluster.
//!
//! Statements are prepared once at connect, rows are typed tuples, and a semaphore bounds
//! how many requests one process has in flight. Consistency is configurable (default
//! `LOCAL_QUORUM`, LWTs at `LOCAL_SERIAL`).
//!
//! Scylla has no multi-partition transactions; `protocol` explains how a group of commands is
//! stored exactly once anyway (one lightweight transaction per campaign carrying its fence and
//! the group's pending commands, then idempotent writes and outcomes, finished by `settle`
//! after a crash).
//!
//! Layout: `config` (settings) and `schema` (the CQL schema) need no driver, so the command
//! line parses settings and prints the schema in any build; `tables` is what the protocol asks
//! of the cluster, one method per statement; `plan` the pure parts (buckets, the campaign's
//! conditional write); `protocol` the [`Store`](crate::Store) over any `tables`; `model` an
//! in-memory twin of the tables with their single-partition conditional semantics (tests);
//! with the `scylla` feature, `statements` (the CQL by name) and `driver` (the tables as
//! prepared statements, and [`ScyllaStore`]).

mod config;
#[cfg(any(test, feature = "scylla"))]
mod plan;
#[cfg(any(test, feature = "scylla"))]
mod protocol;
mod schema;
#[cfg(any(test, feature = "scylla"))]
mod tables;

#[cfg(feature = "scylla")]
mod driver;
#[cfg(test)]
mod model;
#[cfg(feature = "scylla")]
mod statements;

pub use config::{Consistency, ScyllaConfig};
#[cfg(feature = "scylla")]
pub use driver::ScyllaStore;
pub use schema::schema_statements;
