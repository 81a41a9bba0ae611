//! The contract between connectors and processors.
//!
//! Connectors and processors never call each other: they meet on the log (the `eventlog`
//! crate). This crate owns everything both sides must agree on, and nothing else: no IO, no
//! runtime, no driver.
//!
//! Glossary (these words mean one thing everywhere in Fawkes):
//! - **command**: a client action that needs a decision (a join, an event pushed on a channel,
//!   a leave, a presence expiry), appended by a connector, keyed by its channel topic
//!   ([`Command`]).
//! - **delivery**: what goes back to exactly one socket: an optional reply, then pushes
//!   ([`Delivery`]). Never used for the one-to-many path.
//! - **broadcast**: an event for every subscriber of a channel topic on every connector, with
//!   per-socket transforms applied at fan-out ([`Broadcast`]).
//! - **domain event**: a typed fact for analytics (a donation was created, ...), Avro on the
//!   events topic ([`events::DomainEvent`]).
//! - **outcome**: everything one decided command sends (its delivery, broadcasts and domain
//!   events), stored with its effects so a command processed twice sends the same again.
//! - **projection**: a row in the store that the processors keep (a campaign, a donation, a
//!   presence), rebuilt from decided commands.
//! - **refusal**: a client-visible `error` reply with a reason ([`Refusal`]); validation
//!   failures are the other kind, with per-field `errors`.
//! - **position**: where a record sits in the log (partition, offset).
//! - **presence**: who is on a channel topic, as Phoenix Presence lists it
//!   ([`presence`]).
//! - **lease**: how long a connector's presences outlive its last heartbeat ([`Heartbeat`]).
//! - **connector id**: one connector process on the log; deliveries are keyed by it.
//! - **join id**: a connector's own id for one join of one socket, unique within the socket
//!   (unlike the wire `join_ref`, which V1 clients never send); commands and deliveries carry
//!   it so a reply for an ended join is dropped.
//!
//! Layout:
//! - [`names`]: the log topics, their partition counts and what is keyed by what.
//! - [`envelope`]: the records carried on those topics (commands, deliveries, broadcasts,
//!   heartbeats).
//! - [`routes`]: which channel topics exist at all (`donations:campaign:<id>`, ...).
//! - [`broadcast`]: broadcasts and their per-socket shapes (redactions, reveals), with the
//!   masks the connector encodes one variant per.
//! - [`refusal`]: the closed catalog of reasons an `error` reply may carry.
//! - [`relay`]: long-poll requests relayed to the connector that holds their session, and
//!   its answers.
//! - [`avro`]: Avro single-object encoding with schema evolution (`topics/schemas/`).
//! - [`events`]: domain events for analytics.
//! - [`presence`]: presence payloads and how diffs combine.
//! - [`timestamp`]: the one timestamp format on the log and in payloads.

pub mod avro;
pub mod broadcast;
pub mod envelope;
pub mod events;
pub mod names;
pub mod presence;
pub mod refusal;
pub mod relay;
pub mod routes;
pub mod timestamp;

pub use broadcast::{Audience, Broadcast, StreamPosition, Transform};
pub use envelope::{
    Claims, Command, CommandKind, Delivery, Heartbeat, Push, RecordError, ReplyBody, ReplyStatus,
    SocketRef,
};
pub use refusal::Refusal;
