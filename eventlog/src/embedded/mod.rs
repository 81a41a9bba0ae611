//! The embedded log: every partition a folder of append-only segment files in the data
//! directory, kept as long as its topic's retention says.
//!
//! Layout, under the data directory: `<topic>/<partition>/<base offset>.log` for the segments
//! (the offset of a segment's first record, in 20 digits, so names sort like offsets),
//! `<topic>/group-<name>.json` for each group's committed positions (replaced atomically on
//! commit), and `LOCK`, held so a second process cannot append to the same files. A partition
//! in the previous format (one file, `<topic>/<partition>.log`) is moved in as segment 0 when
//! it opens: same records, same offsets.
//!
//! Record format: `key_len: u32 LE | value_len: u32 LE | checksum: u32 LE | key | value`, where
//! the checksum is FNV-1a over key and value. Offsets are not stored: a record's offset is its
//! segment's base plus its index there, so they never change when older segments go. On open,
//! each segment is scanned and a torn or corrupt tail (a write cut short by `kill -9`) is
//! truncated away, so the log always reopens to the last complete record; the next offset
//! follows from the newest segment, the first kept one from the oldest.
//!
//! Rolling: before a record would take the active segment past 64 MiB, or once the active
//! segment's first record is older than the topic's retention (at most one day), a new segment
//! named by the next offset is started (Kafka's `segment.bytes` and `segment.ms`, judged on
//! append). A crash between creating it and writing to it leaves an empty newest segment,
//! which simply reopens as the active one.
//!
//! Retention: a closed segment is deleted, whole and oldest first, once its newest record is
//! older than the topic's `retention_ms` (its age is the file's last write: no timestamp per
//! record, and the format is unchanged). Checked after each roll, every minute while a
//! partition is appended to, and when a topic opens; a partition nobody appends to does not
//! grow. Never deleted: the active segment, and a segment holding any record a group has not
//! committed yet (the commands the processors have not handled stay however old). A group
//! counts from its first subscription on, through its positions file. A consumer positioned
//! before the first kept record goes on at it (Kafka's `auto.offset.reset=earliest`).
//!
//! Footprint: on disk, 12 bytes per record plus key and value, kept for the topic's retention
//! plus up to one roll (64 MiB or a day); in memory, 8 bytes per kept record (its file
//! position) plus the newest 4,096 records of each partition, so consumers at the live end
//! never touch the disk (older ones are read back on a blocking thread).
//!
//! Appends are written to the file before `append` returns, without `fsync`: a record survives
//! the crash of any process, not a power loss of the machine (the Kafka backend's durability
//! is the broker's).
//!
//! Layout of this module: `segment` (one file: record format, scan, read), `partition`
//! (segments, appends, rolls, reads, expiry), `topic` (partitions and group positions),
//! `consumer`.

mod consumer;
mod partition;
mod segment;
mod topic;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Consumer, Log, LogError, Pending, StartAt, Subscription};
use consumer::EmbeddedConsumer;
use topic::TopicLog;
use topics::names::{partition_for, TopicSpec};

/// A segment is closed before a record would take it past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the log reads the time; segments roll and expire by it.
#[derive(Debug, Clone)]
enum Clock {
    System,
    /// Milliseconds since the Unix epoch, set by the test.
    #[cfg(test)]
    Manual(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    fn now(&self) -> SystemTime {
        match self {
            Self::System => SystemTime::now(),
            #[cfg(test)]
            Self::Manual(ms) => {
                SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_millis(
                        ms.load(std::sync::atomic::Ordering::Relaxed),
                    )
            }
        }
    }
}

/// The in-process, file-backed log.
#[derive(Debug)]
pub struct EmbeddedLog {
    dir: PathBuf,
    topics: Mutex<HashMap<&'static str, Arc<TopicLog>>>,
    /// Segment size: `SEGMENT_BYTES`, smaller in tests.
    segment_bytes: u64,
    clock: Clock,
    // Held for the life of the log so a second process cannot append to the same files.
    _lock: File,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, taking an exclusive lock on it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LogError> {
        Self::open_with(dir.into(), SEGMENT_BYTES, Clock::System)
    }

    fn open_with(dir: PathBuf, segment_bytes: u64, clock: Clock) -> Result<Self, LogError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock()
            .map_err(|_| LogError::Locked(dir.display().to_string()))?;
        Ok(Self {
            dir,
            topics: Mutex::new(HashMap::new()),
            segment_bytes,
            clock,
            _lock: lock,
        })
    }

    fn append_now(
        &self,
        topic: TopicSpec,
        key: &[u8],
        value: &[u8],
    ) -> Result<(u32, u64), LogError> {
        let log = self.topic(topic)?;
        let partition = partition_for(key, topic.partitions);
        let offset = log.append(topic.name, partition, key, value, self.clock.now())?;
        log.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok((partition, offset))
    }

    fn topic(&self, spec: TopicSpec) -> Result<Arc<TopicLog>, LogError> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get(spec.name) {
            return Ok(topic.clone());
        }
        let topic = Arc::new(TopicLog::open(
            self.dir.join(spec.name),
            spec,
            self.segment_bytes,
            self.clock.now(),
        )?);
        topics.insert(spec.name, topic.clone());
        Ok(topic)
    }
}

#[async_trait]
impl Log for EmbeddedLog {
    async fn append(
        &self,
        topic: TopicSpec,
        key: &[u8],
        value: Bytes,
    ) -> Result<(u32, u64), LogError> {
        self.append_now(topic, key, &value)
    }

    fn send_all(&self, records: Vec<(TopicSpec, Bytes, Bytes)>) -> Result<Pending, LogError> {
        // Appends are synchronous page-cache writes: done now, nothing left to wait for.
        for (topic, key, value) in &records {
            self.append_now(*topic, key, value)?;
        }
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    async fn subscribe(
        &self,
        topic: TopicSpec,
        subscription: Subscription,
    ) -> Result<Box<dyn Consumer>, LogError> {
        let log = self.topic(topic)?;
        let (positions, group) = match subscription {
            Subscription::Group(group) => {
                let committed = log.join_group(&group)?;
                let positions = (0..topic.partitions)
                    .map(|p| (p, committed.get(&p).copied().unwrap_or(0)))
                    .collect();
                (positions, Some((group, committed)))
            }
            Subscription::Owned { group, partitions } => {
                let committed = log.join_group(&group)?;
                let mut positions = Vec::with_capacity(partitions.len());
                for p in partitions {
                    log.partition(topic.name, p)?;
                    positions.push((p, committed.get(&p).copied().unwrap_or(0)));
                }
                (positions, Some((group, committed)))
            }
            Subscription::Partitions { partitions, start } => {
                let mut positions = Vec::with_capacity(partitions.len());
                for p in partitions {
                    let partition = log.partition(topic.name, p)?;
                    let next = match start {
                        StartAt::Earliest => partition.first_offset(),
                        StartAt::Latest => partition.next_offset(),
                    };
                    positions.push((p, next));
                }
                (positions, None)
            }
        };
        Ok(Box::new(EmbeddedConsumer::new(
            topic.name, log, positions, group,
        )))
    }
}

#[cfg(test)]
mod tests;
