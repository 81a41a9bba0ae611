//! Connection settings for Kafka: plain values, so the binary's flags parse in any build.

use std::time::Duration;

/// Connection settings for Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// `client.id` prefix, for the broker's logs.
    pub client_id: String,
    /// `fetch.wait.max.ms`: how long a fetch waits for data (milliseconds).
    pub fetch_wait_max_ms: u32,
    /// `session.timeout.ms` of group members (milliseconds).
    pub session_timeout_ms: u32,
    /// `linger.ms` of the producer (milliseconds).
    pub linger_ms: u32,
    /// `group.instance.id`: a stable identity for this group member (static membership), so a
    /// restarted member can take over its predecessor's partitions without waiting for the
    /// broker to expire the dead member (on brokers that support it).
    pub group_instance_id: Option<String>,
    /// How long an append may wait for the broker's acknowledgement.
    pub produce_timeout: Duration,
}

impl KafkaConfig {
    /// Default `fetch.wait.max.ms`: librdkafka's own. Apache Kafka answers a waiting fetch as
    /// soon as a record arrives, so this bounds idle polling, not latency. Brokers that answer
    /// only when the wait runs out (Tansu) need a few milliseconds instead; tests set it.
    pub const FETCH_WAIT_MAX_MS: u32 = 500;
    /// Default `session.timeout.ms`: a dead processor's partitions move after 10 s (the
    /// Kafka client default, 45 s, would stall its campaigns that long).
    pub const SESSION_TIMEOUT_MS: u32 = 10_000;

    /// Defaults for a Kafka cluster, for `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "fawkes".into(),
            fetch_wait_max_ms: Self::FETCH_WAIT_MAX_MS,
            session_timeout_ms: Self::SESSION_TIMEOUT_MS,
            // Small records leave within a millisecond; batching still happens under load.
            linger_ms: 1,
            group_instance_id: None,
            produce_timeout: Duration::from_secs(10),
        }
    }
}
