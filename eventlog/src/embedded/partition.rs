//! One partition: its segments, appends and rolls, reads by offset, and deleting expired
//! segments.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{io_err, segment};
use crate::LogError;

/// How many of the newest records of each partition are kept in memory.
const TAIL_CACHE: usize = 4096;
/// The longest a segment stays active, however long the topic's retention.
const MAX_ROLL_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often an appended-to partition looks for expired segments between rolls.
const RETENTION_CHECK: Duration = Duration::from_secs(60);

/// When a partition rolls its segments and which it deletes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// The active segment is closed before a record would take it past this size.
    pub(super) segment_bytes: u64,
    /// The active segment is closed once its first record is this old.
    pub(super) roll_age: Duration,
    /// A closed segment is deleted once its newest record is this old; `None`: never.
    pub(super) retention: Option<Duration>,
}

impl Policy {
    /// The policy of a topic kept `retention_ms` (Kafka's meaning: negative is forever).
    pub(super) fn new(retention_ms: i64, segment_bytes: u64) -> Self {
        let retention = u64::try_from(retention_ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        Self {
            segment_bytes,
            roll_age: retention.map_or(MAX_ROLL_AGE, |r| r.min(MAX_ROLL_AGE)),
            retention,
        }
    }
}

/// A partition: segment files named by their first offset in its own folder.
#[derive(Debug)]
pub(super) struct Partition {
    dir: PathBuf,
    policy: Policy,
    state: RwLock<PartitionState>,
    // One appender at a time; readers only take `state`.
    writer: Mutex<Writer>,
}

/// The active segment, as the appender sees it.
#[derive(Debug)]
struct Writer {
    file: File,
    path: PathBuf,
    /// Bytes in the active segment: where the next record goes.
    bytes: u64,
    /// When the active segment's first record was written (`None` while it is empty); it
    /// rolls by age from then.
    first_at: Option<SystemTime>,
    /// When the appender looks for expired segments next.
    retention_due: SystemTime,
}

#[derive(Debug)]
struct PartitionState {
    /// The kept segments, oldest first; the last is the active one. Never empty.
    segments: VecDeque<Segment>,
    /// The newest records: `tail[i]` has offset `next - tail.len() + i`.
    tail: VecDeque<(Bytes, Bytes)>,
    /// The offset the next record gets.
    next: u64,
}

#[derive(Debug)]
struct Segment {
    /// The offset of its first record, and its file name.
    base: u64,
    path: PathBuf,
    /// File position of each record: record `base + i` starts at `positions[i]`.
    positions: Vec<u64>,
    /// When its newest record was written; retention judges the segment by it.
    newest: SystemTime,
}

/// Where the record at an offset is, as seen under the state lock.
enum Lookup {
    /// Not appended yet.
    Ahead,
    /// Deleted by retention (or lost): the next record kept has this offset.
    Skip(u64),
    Cached(Bytes, Bytes),
    OnDisk(PathBuf, u64),
}

impl Partition {
    /// Opens the partition in `dir`, first moving in a single-file partition of the previous
    /// format (`legacy`) as its segment 0.
    pub(super) fn open(
        dir: PathBuf,
        legacy: &Path,
        policy: Policy,
        now: SystemTime,
    ) -> Result<Self, LogError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut bases = segment_bases(&dir)?;
        if legacy.exists() {
            if bases.is_empty() {
                // One rename: a crash leaves either the old file or the segment.
                let first = dir.join(segment::file_name(0));
                fs::rename(legacy, &first).map_err(io_err(legacy))?;
                bases.push(0);
            } else {
                tracing::warn!(
                    path = %legacy.display(),
                    "ignoring a partition file of the previous format next to segments"
                );
            }
        }
        let active_base = bases.pop().unwrap_or(0);
        let mut state = PartitionState {
            segments: VecDeque::with_capacity(bases.len() + 1),
            tail: VecDeque::with_capacity(TAIL_CACHE),
            next: 0,
        };
        for base in bases {
            state.load(&dir, base)?;
        }
        let active = state.load(&dir, active_base)?;
        let writer = Writer {
            file: active.file,
            path: dir.join(segment::file_name(active_base)),
            bytes: active.len,
            first_at: (!active.empty).then_some(active.created),
            retention_due: now + RETENTION_CHECK,
        };
        Ok(Self {
            dir,
            policy,
            state: RwLock::new(state),
            writer: Mutex::new(writer),
        })
    }

    /// Appends a record at time `now`: its offset, and whether it is time to look for
    /// expired segments.
    pub(super) fn append(
        &self,
        key: &[u8],
        value: &[u8],
        now: SystemTime,
    ) -> Result<(u64, bool), LogError> {
        let frame = segment::frame(key, value);
        // The write goes to the page cache (a few hundred bytes, no fsync), so holding a std
        // mutex across it is cheap.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let full = writer.bytes + frame.len() as u64 > self.policy.segment_bytes;
        let old = writer.first_at.is_some_and(|first| {
            now.duration_since(first).unwrap_or_default() >= self.policy.roll_age
        });
        if writer.bytes > 0 && (full || old) {
            self.roll(&mut writer, now)?;
        }
        let position = writer.bytes;
        if let Err(error) = writer.file.write_all(&frame) {
            // Cut a partial write off, so the next record starts where the index says.
            let _ = writer.file.set_len(position);
            return Err(io_err(&writer.path)(error));
        }
        writer.bytes += frame.len() as u64;
        writer.first_at.get_or_insert(now);
        let due = now >= writer.retention_due;
        if due {
            writer.retention_due = now + RETENTION_CHECK;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let offset = state.next;
        state.next += 1;
        if let Some(active) = state.segments.back_mut() {
            active.positions.push(position);
            active.newest = now;
        }
        state.push_tail(key, value);
        Ok((offset, due))
    }

    /// Closes the active segment and starts the next, named by the next offset.
    fn roll(&self, writer: &mut Writer, now: SystemTime) -> Result<(), LogError> {
        // Appenders hold the writer lock, so `next` cannot move meanwhile.
        let base = self.next_offset();
        let path = self.dir.join(segment::file_name(base));
        // A crash right after this leaves an empty newest segment: it reopens as the active one.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .segments
            .push_back(Segment {
                base,
                path: path.clone(),
                positions: Vec::new(),
                newest: now,
            });
        *writer = Writer {
            file,
            path,
            bytes: 0,
            first_at: None,
            // Retention runs after the append that rolled.
            retention_due: now,
        };
        Ok(())
    }

    /// The offset the next record will get.
    pub(super) fn next_offset(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .next
    }

    /// The offset of the oldest record kept.
    pub(super) fn first_offset(&self) -> u64 {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.segments.front().map_or(state.next, |s| s.base)
    }

    /// Deletes, oldest first, closed segments whose newest record is older than the retention
    /// at `now` and whose every record is before `needed` (the lowest position a group still
    /// has to read). Returns how many were deleted.
    pub(super) fn expire(&self, now: SystemTime, needed: u64) -> usize {
        let Some(retention) = self.policy.retention else {
            return 0;
        };
        let mut doomed = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            while state.segments.len() > 1 {
                let expired = now
                    .duration_since(state.segments[0].newest)
                    .is_ok_and(|age| age > retention);
                if !expired || state.segments[1].base > needed {
                    break;
                }
                doomed.extend(state.segments.pop_front().map(|s| s.path));
            }
        }
        for path in &doomed {
            match fs::remove_file(path) {
                Ok(()) => tracing::debug!(path = %path.display(), "deleted an expired segment"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "could not delete an expired segment");
                }
            }
        }
        doomed.len()
    }

    fn lookup(&self, offset: u64) -> Lookup {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if offset >= state.next {
            return Lookup::Ahead;
        }
        let index = state.segments.partition_point(|s| s.base <= offset);
        let Some(segment) = index.checked_sub(1).and_then(|i| state.segments.get(i)) else {
            return Lookup::Skip(state.segments.front().map_or(state.next, |s| s.base));
        };
        let first_cached = state.next - state.tail.len() as u64;
        if offset >= first_cached {
            if let Some((key, value)) = state.tail.get((offset - first_cached) as usize) {
                return Lookup::Cached(key.clone(), value.clone());
            }
        }
        match segment.positions.get((offset - segment.base) as usize) {
            Some(&position) => Lookup::OnDisk(segment.path.clone(), position),
            // A gap after a segment cut short: go on with the next one.
            None => Lookup::Skip(state.segments.get(index).map_or(state.next, |s| s.base)),
        }
    }

    /// The record at `offset`, or if it was deleted the first one kept after it, with its
    /// offset; `None` if `offset` is not appended yet.
    pub(super) async fn read(
        &self,
        mut offset: u64,
    ) -> Result<Option<(u64, Bytes, Bytes)>, LogError> {
        let mut vanished = None;
        loop {
            match self.lookup(offset) {
                Lookup::Ahead => return Ok(None),
                Lookup::Skip(to) => offset = to,
                Lookup::Cached(key, value) => return Ok(Some((offset, key, value))),
                Lookup::OnDisk(path, position) => {
                    let read = {
                        let path = path.clone();
                        tokio::task::spawn_blocking(move || segment::read_at(&path, position))
                            .await
                            .map_err(|_| LogError::Closed)?
                    };
                    match read {
                        Ok((key, value)) => return Ok(Some((offset, key, value))),
                        // Deleted by retention since the lookup: look again, once.
                        Err(LogError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound
                                && vanished.as_ref() != Some(&path) =>
                        {
                            vanished = Some(path);
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        }
    }
}

/// What `PartitionState::load` leaves for the appender when it loads the active segment.
struct Loaded {
    file: File,
    len: u64,
    empty: bool,
    created: SystemTime,
}

impl PartitionState {
    fn push_tail(&mut self, key: &[u8], value: &[u8]) {
        if self.tail.len() == TAIL_CACHE {
            self.tail.pop_front();
        }
        self.tail
            .push_back((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
    }

    /// Scans the segment starting at `base` and adds it after the ones loaded so far.
    fn load(&mut self, dir: &Path, base: u64) -> Result<Loaded, LogError> {
        if base != self.next && !self.segments.is_empty() {
            // Only after a power loss (a closed segment lost its tail) or by hand: offsets
            // stay as the file names say, the cache restarts.
            tracing::warn!(dir = %dir.display(), base, expected = self.next, "segments do not follow each other");
            if let Some(previous) = self.segments.back_mut() {
                previous
                    .positions
                    .truncate(base.saturating_sub(previous.base) as usize);
            }
            self.tail.clear();
        }
        let path = dir.join(segment::file_name(base));
        let mut tail = std::mem::take(&mut self.tail);
        let scanned = segment::scan(&path, |key, value| {
            if tail.len() == TAIL_CACHE {
                tail.pop_front();
            }
            tail.push_back((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
        })?;
        self.tail = tail;
        self.next = base + scanned.positions.len() as u64;
        let loaded = Loaded {
            file: scanned.file,
            len: scanned.len,
            empty: scanned.positions.is_empty(),
            created: scanned.created,
        };
        self.segments.push_back(Segment {
            base,
            path,
            positions: scanned.positions,
            newest: scanned.modified,
        });
        Ok(loaded)
    }
}

/// The base offsets of the segment files in `dir`, ascending.
fn segment_bases(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::base_of) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
