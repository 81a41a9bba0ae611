//! A consumer of the embedded log: positions per partition, group commits saved to disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::topic::TopicLog;
use crate::{Consumer, LogError, Record};

/// How often a group consumer writes its committed positions to disk. Commits in between are
/// kept in memory: a crash replays at most this much, which consumers tolerate anyway
/// (delivery is at-least-once and effects are idempotent).
const PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// A consumer of the embedded log.
#[derive(Debug)]
pub(super) struct EmbeddedConsumer {
    topic: &'static str,
    log: Arc<TopicLog>,
    /// (partition, next offset to read)
    positions: Vec<(u32, u64)>,
    /// Round-robin start so one busy partition cannot starve the others.
    cursor: usize,
    /// Group name and its committed positions.
    group: Option<(String, BTreeMap<u32, u64>)>,
    /// Commits not yet written to disk, and when positions were last written.
    unpersisted: bool,
    persisted_at: std::time::Instant,
    appended: watch::Receiver<u64>,
}

impl EmbeddedConsumer {
    /// A consumer of `topic` starting at `positions`, committing under `group` if given.
    pub(super) fn new(
        topic: &'static str,
        log: Arc<TopicLog>,
        positions: Vec<(u32, u64)>,
        group: Option<(String, BTreeMap<u32, u64>)>,
    ) -> Self {
        let appended = log.appended.subscribe();
        Self {
            topic,
            log,
            positions,
            cursor: 0,
            group,
            unpersisted: false,
            persisted_at: std::time::Instant::now(),
            appended,
        }
    }

    fn persist(&mut self) -> Result<(), LogError> {
        if let (Some((group, committed)), true) = (&self.group, self.unpersisted) {
            self.log.store_group(group, committed)?;
        }
        self.unpersisted = false;
        self.persisted_at = std::time::Instant::now();
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if let Err(error) = self.persist() {
            tracing::warn!(%error, "could not save consumer positions");
        }
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Result<Record, LogError> {
        loop {
            // Mark the signal seen before scanning, so an append racing with the scan wakes us.
            self.appended.borrow_and_update();
            let count = self.positions.len();
            for step in 0..count {
                let index = (self.cursor + step) % count;
                let (partition, offset) = self.positions[index];
                let part = self.log.partition(self.topic, partition)?;
                // Past records deleted by retention, `read` goes on at the first one kept.
                if let Some((offset, key, value)) = part.read(offset).await? {
                    self.positions[index].1 = offset + 1;
                    self.cursor = (index + 1) % count;
                    return Ok(Record {
                        partition,
                        offset,
                        key,
                        value,
                    });
                }
            }
            // Caught up: a good moment to save positions committed since the last write.
            if self.unpersisted {
                self.persist()?;
            }
            self.appended
                .changed()
                .await
                .map_err(|_| LogError::Closed)?;
        }
    }

    async fn commit(&mut self, record: &Record) -> Result<(), LogError> {
        let Some((_, committed)) = &mut self.group else {
            return Ok(());
        };
        let next = record.offset + 1;
        if committed.get(&record.partition).is_some_and(|&c| c >= next) {
            return Ok(());
        }
        committed.insert(record.partition, next);
        self.unpersisted = true;
        if self.persisted_at.elapsed() >= PERSIST_INTERVAL {
            self.persist()?;
        }
        Ok(())
    }

    fn assigned(&self) -> Vec<u32> {
        self.positions
            .iter()
            .map(|(partition, _)| *partition)
            .collect()
    }

    fn take_revoked(&mut self) -> Vec<u32> {
        // One member per group: partitions are never taken away.
        Vec::new()
    }
}
