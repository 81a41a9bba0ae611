//! Log topic names and their layout.
//!
//! Commands are keyed by channel topic, so every command for one campaign lands on one
//! partition and is handled in order by one processor. Deliveries are keyed by connector id,
//! so a reply reaches only the connector whose socket asked. Broadcasts are read by every
//! connector.
//!
//! Partition counts are part of the contract, compiled into every process: Fawkes picks the
//! partition of a record itself ([`partition_for`]), so every connector and processor, the
//! embedded log's files and the Kafka topics must agree on them. Commands have 8 partitions:
//! at most 8 processors share the work of one deployment. For more, raise
//! [`COMMANDS`]`.partitions` (say to 32 or 48), regenerate `infra/topics.json` with
//! `fawkes topics manifest`, and start on fresh topics and a fresh data directory: records
//! already written are not moved, so a key's old and new partitions would no longer agree
//! (`fawkes topics create` refuses topics whose counts differ from these).

/// One log topic: its name and how many partitions it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name on the log.
    pub name: &'static str,
    /// Number of partitions; records are spread over them by key.
    pub partitions: u32,
    /// How long records are kept, in milliseconds (Kafka `retention.ms`).
    pub retention_ms: i64,
}

impl TopicSpec {
    /// The Kafka topic settings this definition implies.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("retention.ms", self.retention_ms.to_string()),
            ("cleanup.policy", "delete".to_owned()),
        ]
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Client commands (join, channel events, leave), keyed by channel topic.
pub const COMMANDS: TopicSpec = TopicSpec {
    name: "fawkes.commands",
    partitions: 8,
    // Long enough to replay after an outage of the processors.
    retention_ms: 7 * DAY_MS,
};

/// Replies and direct pushes for one socket, keyed by connector id.
pub const DELIVERIES: TopicSpec = TopicSpec {
    name: "fawkes.deliveries",
    partitions: 8,
    // Replies are useless once the client's 10 s push timeout has passed.
    retention_ms: HOUR_MS,
};

/// Broadcasts for every subscriber of a channel topic on every connector, keyed by channel topic.
pub const BROADCASTS: TopicSpec = TopicSpec {
    name: "fawkes.broadcasts",
    partitions: 8,
    // Connectors read from the live end; history is for debugging only.
    retention_ms: HOUR_MS,
};

/// Domain events for analytics (Avro), keyed by campaign id.
pub const EVENTS: TopicSpec = TopicSpec {
    name: "fawkes.events",
    partitions: 8,
    // Analytics may reprocess a month.
    retention_ms: 30 * DAY_MS,
};

/// Commands that could not be processed (undecodable or permanently failing), keyed like
/// the command topic; inspected by operators, never consumed automatically.
pub const DEAD_LETTERS: TopicSpec = TopicSpec {
    name: "fawkes.commands.dead",
    partitions: 1,
    retention_ms: 30 * DAY_MS,
};

/// Connector heartbeats, keyed by connector id; every processor reads them all to expire the
/// presences of connectors that went silent.
pub const HEARTBEATS: TopicSpec = TopicSpec {
    name: "fawkes.heartbeats",
    partitions: 1,
    // Read from the live end; only the last lease matters.
    retention_ms: HOUR_MS,
};

/// Work a processor runs beside its command partitions, so a slow job (a
/// `complex_calculation`) never holds up the commands behind it: derived commands keyed by
/// channel topic, shared by the processors through a consumer group; a job's position is
/// committed once its result is on the command topic, so a job cut short runs again.
pub const JOBS: TopicSpec = TopicSpec {
    name: "fawkes.jobs",
    partitions: 8,
    // As long as commands: a job waits out an outage of the processors like they do.
    retention_ms: 7 * DAY_MS,
};

/// Long-poll requests relayed to the connector holding their session, and its answers back,
/// keyed by the connector id they are for (like deliveries): a client's requests may land on
/// any connector, its session lives on one (`topics::relay`).
pub const LONGPOLL: TopicSpec = TopicSpec {
    name: "fawkes.longpoll",
    partitions: 8,
    // Read from the live end; a relayed request is useless after its window (10 s).
    retention_ms: HOUR_MS,
};

/// Every topic Fawkes uses.
pub const ALL: [TopicSpec; 8] = [
    COMMANDS,
    DELIVERIES,
    BROADCASTS,
    EVENTS,
    DEAD_LETTERS,
    HEARTBEATS,
    JOBS,
    LONGPOLL,
];

/// The partition a key maps to: FNV-1a over the key bytes, modulo the partition count.
///
/// A stable hash (not the std `DefaultHasher`, which is randomly seeded) so that every process
/// and every restart agrees on where a key lives.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// The topic definitions as the JSON manifest kept in `infra/topics.json`.
pub fn manifest() -> serde_json::Value {
    let topics: Vec<serde_json::Value> = ALL
        .iter()
        .map(|t| {
            let settings: serde_json::Map<String, serde_json::Value> = t
                .settings()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
                .collect();
            serde_json::json!({"name": t.name, "partitions": t.partitions, "settings": settings})
        })
        .collect();
    serde_json::json!({ "topics": topics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_infra_manifest_matches_the_definitions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/topics.json");
        let text = std::fs::read_to_string(path).expect("infra/topics.json exists");
        let written: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            written,
            manifest(),
            "infra/topics.json is stale: regenerate it with `fawkes topics manifest > infra/topics.json`"
        );
    }

    #[test]
    fn partitioning_is_stable_and_in_range() {
        let a = partition_for(b"donations:campaign:1", 8);
        assert_eq!(a, partition_for(b"donations:campaign:1", 8));
        assert!(a < 8);
        assert_eq!(partition_for(b"anything", 1), 0);
        let spread: std::collections::HashSet<u32> = (0..100)
            .map(|i| partition_for(format!("donations:campaign:{i}").as_bytes(), 8))
            .collect();
        assert!(
            spread.len() > 4,
            "keys should spread over partitions: {spread:?}"
        );
    }
}
