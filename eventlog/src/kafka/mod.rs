//! The Kafka backend of the log (rdkafka, librdkafka 2.12 bundled).
//!
//! Fawkes picks partitions itself ([`partition_for`](topics::names::partition_for)) rather than leaving it to the
//! producer's partitioner, so the embedded and Kafka backends agree on where a key lives and a
//! connector knows which partition carries its deliveries.
//!
//! `fetch.wait.max.ms` is part of the configuration, librdkafka's 500 ms by default: Apache
//! Kafka answers a waiting fetch as soon as data arrives. Some Kafka-protocol brokers (Tansu)
//! answer only when the wait runs out, so against them it must be a few milliseconds (the
//! tests set it), or every round trip gains half a second.
//!
//! Layout: `config` the settings (always built); with feature `kafka`, `log` the rdkafka
//! producer, admin and [`Log`](crate::Log) implementation, `consumer` its consumers.

mod config;
#[cfg(feature = "kafka")]
mod consumer;
#[cfg(feature = "kafka")]
mod log;

pub use config::{KafkaConfig, TopicPlacement};
#[cfg(feature = "kafka")]
pub use log::{Created, KafkaLog, Retention};
