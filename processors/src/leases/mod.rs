//! Connector leases: a connector that stops heart-beating loses its presences.
//!
//! Connectors append a [`Heartbeat`](topics::Heartbeat) to
//! [`HEARTBEATS`](topics::names::HEARTBEATS) several times per lease. Every processor reads
//! them from the live end and, every sweep, looks for connectors that still have presences but
//! whose last heartbeat is older than their lease. For each of their topics whose command
//! partition this processor owns, it appends an `EXPIRE` command; the topic's owner then drops
//! the presences and broadcasts the leaves in order with everything else on the topic, like any
//! other command.
//!
//! A connector never heard from since this processor started counts from the start, so a
//! restarted processor gives live connectors a full lease to show up. Expiry commands are
//! idempotent (their id names the connector, its last heartbeat and the topic), so two
//! processors sweeping at once cost nothing but a duplicate read.
//!
//! Layout:
//! - `book`: the lease book, the pure bookkeeping (who lapsed, which expiry is due), with time
//!   passed in rather than read, so it is tested without sleeping.
//! - `sweep`: the IO shell: reads heartbeats and the store, appends expiries, and reads the
//!   clock once per heartbeat and per sweep to hand it to the book.

mod book;
mod sweep;

pub(crate) use sweep::{sweep, Owned};
