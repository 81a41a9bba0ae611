//! The Kafka backend of the log (rdkafka, librdkafka 2.12 bundled).
//!
//! Fawkes picks partitions itself ([`partition_for`](topics::names::partition_for)) rather than leaving it to the
//! producer's partitioner, so the embedded and Kafka backends agree on where a key lives and a
//! connector knows which partition carries its deliveries.
//!
//! `fetch.wait.max.ms` is part of the configuration and low by default: some Kafka-protocol
//! brokers (Tansu) answer a waiting fetch only when it runs out, so librdkafka's 500 ms
//! default would add half a second to every round trip.
//!
//! Layout: `config` the settings (always built), `log` the rdkafka client (feature `kafka`).

mod config;
#[cfg(feature = "kafka")]
mod log;

pub use config::KafkaConfig;
#[cfg(feature = "kafka")]
pub use log::{Created, KafkaLog};
