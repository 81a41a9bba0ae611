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
    /// Defaults tuned for low latency, for `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "fawkes".into(),
            fetch_wait_max_ms: 5,
            session_timeout_ms: 10_000,
            linger_ms: 1,
            group_instance_id: None,
            produce_timeout: Duration::from_secs(10),
        }
    }
}
