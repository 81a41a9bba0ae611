//! Log topic names and their layout.
//!
//! Commands are keyed by channel topic, so every command for one campaign lands on one
//! partition and is handled in order by one processor. Deliveries are keyed by connector id,
//! so a reply reaches only the connector whose socket asked. Broadcasts are read by every
//! connector.

/// One log topic: its name and how many partitions it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name on the log.
    pub name: &'static str,
    /// Number of partitions; records are spread over them by key.
    pub partitions: u32,
}

/// Client commands (join, channel events, leave), keyed by channel topic.
pub const COMMANDS: TopicSpec = TopicSpec {
    name: "fawkes.commands",
    partitions: 8,
};

/// Replies and direct pushes for one socket, keyed by connector id.
pub const DELIVERIES: TopicSpec = TopicSpec {
    name: "fawkes.deliveries",
    partitions: 8,
};

/// Broadcasts for every subscriber of a channel topic on every connector, keyed by channel topic.
pub const BROADCASTS: TopicSpec = TopicSpec {
    name: "fawkes.broadcasts",
    partitions: 8,
};

/// Domain events for analytics (Avro), keyed by campaign id.
pub const EVENTS: TopicSpec = TopicSpec {
    name: "fawkes.events",
    partitions: 8,
};

/// Commands that could not be processed (undecodable or permanently failing), keyed like
/// the command topic; inspected by operators, never consumed automatically.
pub const DEAD_LETTERS: TopicSpec = TopicSpec {
    name: "fawkes.commands.dead",
    partitions: 1,
};

/// Every topic Fawkes uses.
pub const ALL: [TopicSpec; 5] = [COMMANDS, DELIVERIES, BROADCASTS, EVENTS, DEAD_LETTERS];

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

#[cfg(test)]
mod tests {
    use super::*;

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
