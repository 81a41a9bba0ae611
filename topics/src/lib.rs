//! The contract between connectors and processors.
//!
//! Connectors and processors never call each other: they meet on the log. This crate owns
//! everything both sides must agree on, and nothing else.
//!
//! Layout:
//! - [`names`]: the log topics, their partition counts and what is keyed by what.
//! - [`envelope`]: the records carried on those topics (commands, deliveries, broadcasts).
//! - [`routes`]: which channel topics exist at all (`donations:campaign:<id>`, ...).
//! - [`avro`]: Avro single-object encoding with schema evolution (`topics/schemas/`).
//! - [`events`]: domain events for analytics.
//! - [`presence`]: presence payloads and how diffs combine.
//! - [`log`]: the log interface and its backends: embedded (file-backed) and Kafka.

pub mod avro;
pub mod envelope;
pub mod events;
pub mod log;
pub mod names;
pub mod presence;
pub mod routes;

pub use envelope::{
    Audience, Broadcast, Claims, Command, CommandKind, Delivery, Heartbeat, Push, RecordError,
    ReplyBody, SocketRef, Transform,
};
pub use log::{Log, LogError, Record, StartAt, Subscription};
