//! The log: partitioned, keyed, append-only topics with consumer positions, and its backends.
//!
//! Connectors and processors meet here; what they put on it (names, envelopes, schemas) is the
//! contract in the `topics` crate. This crate is only the transport: the [`Log`] interface,
//! the embedded backend every build has, and Kafka behind the `kafka` feature (it compiles
//! librdkafka, so crates that only need the interface build and test without it).
//!
//! Guarantees every backend keeps (and the conformance tests in [`conformance`] check):
//! - Records with the same key land on the same partition and are read in append order.
//! - `append` returns once the record is stored: a reader started afterwards sees it, and it
//!   survives a crash of the appending process.
//! - A group consumer resumes after the last offset it committed; records after that are
//!   delivered again (at-least-once), so consumers make their effects idempotent.
//! - A partition consumer started at [`StartAt::Latest`] sees only records appended after it
//!   subscribed.
//!
//! Layout:
//! - `lib.rs`: [`Log`], [`Consumer`] and the values around them; their guarantees.
//! - `backoff`: [`Backoff`], the capped exponential delays of every retry of the log.
//! - `embedded`: [`EmbeddedLog`], the in-process backend, durable in the data directory.
//! - `health`: [`LogHealth`], whether a component reaches the log (`fawkes_log_up`,
//!   `/readyz`), and [`watch`], the probe that keeps it current while nothing else runs.
//! - `kafka/`: [`KafkaConfig`] (always: plain settings), and with feature `kafka` the
//!   `KafkaLog`, any Kafka-protocol broker through rdkafka.
//! - [`conformance`] (tests and feature `conformance`): the scenarios every backend passes.

mod backoff;
mod embedded;
mod health;
mod kafka;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use backoff::Backoff;
pub use embedded::EmbeddedLog;
pub use health::{watch, LogHealth};
#[cfg(feature = "kafka")]
pub use kafka::{Created, KafkaLog, Retention};
pub use kafka::{KafkaConfig, TopicPlacement};

use async_trait::async_trait;
use bytes::Bytes;

use topics::names::TopicSpec;

/// A log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The backing storage failed.
    #[error("the log storage at {path} failed: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory is held by another process.
    #[error("the log directory {0} is already in use by another Fawkes process")]
    Locked(String),
    /// A partition number outside the topic.
    #[error("topic {topic} has no partition {partition}")]
    NoSuchPartition {
        /// The topic name.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
    /// The log cannot be reached now (every broker down, a connection lost, a request timed
    /// out); retrying later may succeed. An append that ended this way is *unknown*, not
    /// failed: the record may still be stored.
    #[error("the log is unreachable: {0}")]
    Unavailable(String),
    /// Kafka refused or failed an operation, and retrying the same call will not help.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The log was shut down.
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    /// Whether the failure is the log being unreachable for a while (retry with backoff, keep
    /// the consumer) rather than a refusal or a closed log (a consumer that returned it is
    /// given up and subscribed again, or the caller stops).
    pub fn is_transient(&self) -> bool {
        matches!(self, LogError::Unavailable(_))
    }
}

/// Where a partition consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first record still stored.
    Earliest,
    /// The live end: only records appended after subscribing.
    Latest,
}

/// How a consumer reads a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// A consumer group: positions are committed and resumed, partitions are shared by the
    /// members (the embedded log has one member per group, which owns every partition).
    Group(String),
    /// Fixed partitions whose positions are committed and resumed under a group name, without
    /// group membership (static assignment: a restarted processor resumes its partitions at
    /// once, with no rebalance to wait for). Each partition must have one owner at a time.
    Owned {
        /// The group the positions are committed under.
        group: String,
        /// The partitions this consumer owns.
        partitions: Vec<u32>,
    },
    /// Fixed partitions, no committed positions (connectors reading deliveries and broadcasts).
    Partitions {
        /// The partitions to read.
        partitions: Vec<u32>,
        /// Where to start.
        start: StartAt,
    },
}

/// One record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// The key it was appended with.
    pub key: Bytes,
    /// The record bytes.
    pub value: Bytes,
}

/// Records on their way to the log; completes once they are all stored.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LogError>> + Send>>;

/// A log backend.
#[async_trait]
pub trait Log: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `value` under `key` and returns (partition, offset) once it is stored.
    async fn append(
        &self,
        topic: TopicSpec,
        key: &[u8],
        value: Bytes,
    ) -> Result<(u32, u64), LogError>;

    /// Puts several records on their way, in order, without waiting: the returned future
    /// completes once all are stored. Records for one partition keep the order given, and
    /// across calls the order of the calls, so a caller may send the next batch before the
    /// previous one is acknowledged (pipelining).
    fn send_all(&self, records: Vec<(TopicSpec, Bytes, Bytes)>) -> Result<Pending, LogError>;

    /// Checks that the log answers now (a cheap round trip to a broker for Kafka; always fine
    /// for the embedded log). Health checks call it while the log is thought unreachable.
    async fn ping(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Waits, at most `within`, until every record put on its way has been stored or has
    /// failed, so a process that exits loses nothing it sent without waiting (heartbeats,
    /// dashboard batches). A no-op where appends are stored before they return (the embedded
    /// log).
    async fn flush(&self, within: std::time::Duration) -> Result<(), LogError> {
        let _ = within;
        Ok(())
    }

    /// Starts reading `topic`.
    async fn subscribe(
        &self,
        topic: TopicSpec,
        subscription: Subscription,
    ) -> Result<Box<dyn Consumer>, LogError>;
}

/// Reads records of one topic in order per partition.
#[async_trait]
pub trait Consumer: Send + std::fmt::Debug {
    /// The next record, waiting until one is available.
    async fn next(&mut self) -> Result<Record, LogError>;

    /// Marks `record` and everything before it in its partition as processed (group consumers;
    /// a no-op for partition consumers).
    async fn commit(&mut self, record: &Record) -> Result<(), LogError>;

    /// The partitions this consumer reads now (for a group member: its assignment).
    fn assigned(&self) -> Vec<u32>;

    /// Partitions this group member lost since the last call (a rebalance gave them to another
    /// member). Their uncommitted records must not be processed or committed any further.
    fn take_revoked(&mut self) -> Vec<u32>;
}
