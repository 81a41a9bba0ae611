//! The embedded log: every partition an append-only file in the data directory.
//!
//! File format, per record: `key_len: u32 LE | value_len: u32 LE | checksum: u32 LE | key |
//! value`, where the checksum is FNV-1a over key and value. On open, a partition is scanned and
//! a torn or corrupt tail (a write cut short by `kill -9`) is truncated away, so the log always
//! reopens to the last complete record.
//!
//! Appends are written to the file before `append` returns, without `fsync`: a record survives
//! the crash of any process, not a power loss of the machine (the Kafka backend's durability
//! is the broker's).
//!
//! Recent records stay in memory so consumers at the live end never touch the disk; older ones
//! are read back from the file on a blocking thread. Group positions are small JSON files
//! replaced atomically on commit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::{Consumer, Log, LogError, Pending, Record, StartAt, Subscription};
use topics::names::{partition_for, TopicSpec};

/// How many of the newest records of each partition are kept in memory.
const TAIL_CACHE: usize = 4096;
const HEADER: usize = 12;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn checksum(key: &[u8], value: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.iter().chain(value) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The in-process, file-backed log.
#[derive(Debug)]
pub struct EmbeddedLog {
    dir: PathBuf,
    topics: Mutex<HashMap<&'static str, Arc<TopicLog>>>,
    // Held for the life of the log so a second process cannot append to the same files.
    _lock: File,
}

#[derive(Debug)]
struct TopicLog {
    dir: PathBuf,
    partitions: Vec<Partition>,
    // Bumped on every append so a consumer of several partitions can wait on one signal.
    appended: watch::Sender<u64>,
}

#[derive(Debug)]
struct Partition {
    path: PathBuf,
    state: RwLock<PartitionState>,
    writer: Mutex<File>,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// File position of every record, by offset.
    positions: Vec<u64>,
    /// The newest records: `tail[i]` has offset `positions.len() - tail.len() + i`.
    tail: VecDeque<(Bytes, Bytes)>,
    /// Where the next record will be written.
    end: u64,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, taking an exclusive lock on it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LogError> {
        let dir = dir.into();
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
        let offset = log.partition(topic.name, partition)?.append(key, value)?;
        log.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok((partition, offset))
    }

    fn topic(&self, spec: TopicSpec) -> Result<Arc<TopicLog>, LogError> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get(spec.name) {
            return Ok(topic.clone());
        }
        let topic = Arc::new(TopicLog::open(self.dir.join(spec.name), spec.partitions)?);
        topics.insert(spec.name, topic.clone());
        Ok(topic)
    }
}

impl TopicLog {
    fn open(dir: PathBuf, partitions: u32) -> Result<Self, LogError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let partitions = (0..partitions)
            .map(|p| Partition::open(dir.join(format!("{p}.log"))))
            .collect::<Result<Vec<_>, _>>()?;
        let (appended, _) = watch::channel(0);
        Ok(Self {
            dir,
            partitions,
            appended,
        })
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<&Partition, LogError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::NoSuchPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    fn group_path(&self, group: &str) -> PathBuf {
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("group-{safe}.json"))
    }

    fn load_group(&self, group: &str) -> Result<BTreeMap<u32, u64>, LogError> {
        let path = self.group_path(group);
        match fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn store_group(&self, group: &str, positions: &BTreeMap<u32, u64>) -> Result<(), LogError> {
        let path = self.group_path(group);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(positions).unwrap_or_default();
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

impl Partition {
    fn open(path: PathBuf) -> Result<Self, LogError> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let mut state = PartitionState::default();
        let mut pos = 0usize;
        while let Some((key, value, next)) = parse_record(&bytes, pos) {
            state.positions.push(pos as u64);
            state
                .tail
                .push_back((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
            if state.tail.len() > TAIL_CACHE {
                state.tail.pop_front();
            }
            pos = next;
        }
        if pos < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - pos,
                "truncating an incomplete record at the end of the log"
            );
            file.set_len(pos as u64).map_err(io_err(&path))?;
        }
        state.end = pos as u64;
        Ok(Self {
            path,
            state: RwLock::new(state),
            writer: Mutex::new(file),
        })
    }

    fn append(&self, key: &[u8], value: &[u8]) -> Result<u64, LogError> {
        let mut frame = Vec::with_capacity(HEADER + key.len() + value.len());
        frame.extend_from_slice(&(key.len() as u32).to_le_bytes());
        frame.extend_from_slice(&(value.len() as u32).to_le_bytes());
        frame.extend_from_slice(&checksum(key, value).to_le_bytes());
        frame.extend_from_slice(key);
        frame.extend_from_slice(value);
        // One writer at a time per partition; the write goes to the page cache (a few hundred
        // bytes, no fsync), so holding a std mutex across it is cheap.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.write_all(&frame).map_err(io_err(&self.path))?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let offset = state.positions.len() as u64;
        let position = state.end;
        state.positions.push(position);
        state.end += frame.len() as u64;
        state
            .tail
            .push_back((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
        if state.tail.len() > TAIL_CACHE {
            state.tail.pop_front();
        }
        Ok(offset)
    }

    fn next_offset(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .positions
            .len() as u64
    }

    /// The record at `offset` from memory, or the file position to read it from.
    fn lookup(&self, offset: u64) -> Option<Result<(Bytes, Bytes), u64>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let len = state.positions.len() as u64;
        if offset >= len {
            return None;
        }
        let first_cached = len - state.tail.len() as u64;
        if offset >= first_cached {
            return state
                .tail
                .get((offset - first_cached) as usize)
                .cloned()
                .map(Ok);
        }
        state.positions.get(offset as usize).copied().map(Err)
    }

    async fn read(&self, offset: u64) -> Result<Option<(Bytes, Bytes)>, LogError> {
        match self.lookup(offset) {
            None => Ok(None),
            Some(Ok(record)) => Ok(Some(record)),
            Some(Err(position)) => {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || read_at(&path, position))
                    .await
                    .map_err(|_| LogError::Closed)?
                    .map(Some)
            }
        }
    }
}

fn parse_record(bytes: &[u8], pos: usize) -> Option<(&[u8], &[u8], usize)> {
    let header = bytes.get(pos..pos + HEADER)?;
    let key_len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let value_len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let key_start = pos + HEADER;
    let value_start = key_start.checked_add(key_len)?;
    let end = value_start.checked_add(value_len)?;
    let key = bytes.get(key_start..value_start)?;
    let value = bytes.get(value_start..end)?;
    (checksum(key, value) == sum).then_some((key, value, end))
}

fn read_at(path: &Path, position: u64) -> Result<(Bytes, Bytes), LogError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, position)
        .map_err(io_err(path))?;
    let key_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let value_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut body = vec![0u8; key_len + value_len];
    file.read_exact_at(&mut body, position + HEADER as u64)
        .map_err(io_err(path))?;
    let body = Bytes::from(body);
    Ok((body.slice(..key_len), body.slice(key_len..)))
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
        let (partitions, group) = match subscription {
            Subscription::Group(group) => {
                let committed = log.load_group(&group)?;
                let positions = (0..topic.partitions)
                    .map(|p| (p, committed.get(&p).copied().unwrap_or(0)))
                    .collect();
                (positions, Some((group, committed)))
            }
            Subscription::Owned { group, partitions } => {
                let committed = log.load_group(&group)?;
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
                    let next = match start {
                        StartAt::Earliest => 0,
                        StartAt::Latest => log.partition(topic.name, p)?.next_offset(),
                    };
                    positions.push((p, next));
                }
                (positions, None)
            }
        };
        let appended = log.appended.subscribe();
        Ok(Box::new(EmbeddedConsumer {
            topic: topic.name,
            log,
            positions: partitions,
            cursor: 0,
            group,
            unpersisted: false,
            persisted_at: std::time::Instant::now(),
            appended,
        }))
    }
}

/// How often a group consumer writes its committed positions to disk. Commits in between are
/// kept in memory: a crash replays at most this much, which consumers tolerate anyway
/// (delivery is at-least-once and effects are idempotent).
const PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// A consumer of the embedded log.
#[derive(Debug)]
struct EmbeddedConsumer {
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
                if let Some((key, value)) = part.read(offset).await? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn fresh() -> (tempfile::TempDir, EmbeddedLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path().join("log")).expect("open");
        (dir, log)
    }

    #[tokio::test]
    async fn conformance_keyed_order() {
        let (_dir, log) = fresh();
        conformance::keyed_order(&log).await;
    }

    #[tokio::test]
    async fn conformance_latest_skips_history() {
        let (_dir, log) = fresh();
        conformance::latest_skips_history(&log).await;
    }

    #[tokio::test]
    async fn conformance_group_resumes_after_commit() {
        let (_dir, log) = fresh();
        conformance::group_resumes_after_commit(&log).await;
    }

    #[tokio::test]
    async fn conformance_owned_partitions_resume_after_commit() {
        let (_dir, log) = fresh();
        conformance::owned_partitions_resume_after_commit(&log).await;
    }

    #[tokio::test]
    async fn reopens_with_records_and_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = TopicSpec {
            name: "t",
            partitions: 1,
            retention_ms: 3_600_000,
        };
        {
            let log = EmbeddedLog::open(dir.path()).expect("open");
            for i in 0..5000u32 {
                log.append(spec, b"k", Bytes::from(i.to_string()))
                    .await
                    .expect("append");
            }
        }
        // Simulate a write cut short by a crash.
        let path = dir.path().join("t").join("0.log");
        let mut file = OpenOptions::new().append(true).open(&path).expect("file");
        file.write_all(&[9, 0, 0, 0, 1]).expect("torn write");
        drop(file);

        let log = EmbeddedLog::open(dir.path()).expect("reopen");
        let (_, offset) = log
            .append(spec, b"k", Bytes::from_static(b"after"))
            .await
            .expect("append");
        assert_eq!(offset, 5000);
        let mut consumer = log
            .subscribe(
                spec,
                Subscription::Partitions {
                    partitions: vec![0],
                    start: StartAt::Earliest,
                },
            )
            .await
            .expect("subscribe");
        // The first records are older than the memory tail and come from the file.
        for i in 0..5000u32 {
            let record = consumer.next().await.expect("record");
            assert_eq!(record.value, Bytes::from(i.to_string()));
        }
        assert_eq!(consumer.next().await.expect("record").value, "after");
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = EmbeddedLog::open(dir.path()).expect("open");
        assert!(matches!(
            EmbeddedLog::open(dir.path()),
            Err(LogError::Locked(_))
        ));
    }
}
