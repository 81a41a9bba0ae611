//! Connection settings for Kafka: plain values, so the binary's flags parse in any build.

use std::num::NonZeroU16;
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

/// How new topics are placed on the cluster (`fawkes topics create`). Unset values leave the
/// choice to the brokers (`default.replication.factor`, `min.insync.replicas`), as
/// `kafka-topics.sh --create` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicPlacement {
    /// Replicas of every partition; the broker's `default.replication.factor` when `None`.
    pub replication_factor: Option<NonZeroU16>,
    /// `min.insync.replicas` of every topic: with the producers' `acks=all`, how many replicas
    /// must hold a record before it is acknowledged. The broker's default when `None`.
    pub min_insync_replicas: Option<NonZeroU16>,
}

impl TopicPlacement {
    /// Every problem with this placement (empty when it can be used).
    pub fn problems(&self) -> Vec<String> {
        match (self.replication_factor, self.min_insync_replicas) {
            (Some(factor), Some(min)) if min > factor => vec![format!(
                "min.insync.replicas ({min}) is larger than the replication factor ({factor}): \
                 no record could ever be acknowledged"
            )],
            _ => Vec::new(),
        }
    }

    /// The topic settings this placement adds to a topic's own.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        self.min_insync_replicas
            .map(|min| ("min.insync.replicas", min.to_string()))
            .into_iter()
            .collect()
    }

    /// The replication factor to ask for; -1 asks for the broker's default.
    pub fn replication(&self) -> i32 {
        self.replication_factor.map_or(-1, |f| i32::from(f.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(factor: u16, min: u16) -> TopicPlacement {
        TopicPlacement {
            replication_factor: NonZeroU16::new(factor),
            min_insync_replicas: NonZeroU16::new(min),
        }
    }

    #[test]
    fn unset_placement_leaves_the_choice_to_the_brokers() {
        let default = TopicPlacement::default();
        assert_eq!(default.replication(), -1);
        assert!(default.settings().is_empty());
        assert!(default.problems().is_empty());
    }

    #[test]
    fn a_placement_sets_replication_and_min_insync() {
        let production = placement(3, 2);
        assert_eq!(production.replication(), 3);
        assert_eq!(
            production.settings(),
            vec![("min.insync.replicas", "2".to_owned())]
        );
        assert!(production.problems().is_empty());
        assert_eq!(placement(2, 3).problems().len(), 1);
        // Only the brokers know their default factor; Kafka checks it when records arrive.
        assert!(placement(0, 3).problems().is_empty());
    }
}
