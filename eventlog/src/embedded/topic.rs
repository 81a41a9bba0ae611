//! One topic: its partitions, the committed positions of the groups reading it, and retention
//! held back by those positions.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use tokio::sync::watch;

use super::io_err;
use super::partition::{Partition, Policy};
use crate::LogError;
use topics::names::TopicSpec;

#[derive(Debug)]
pub(super) struct TopicLog {
    dir: PathBuf,
    partitions: Vec<Partition>,
    // Bumped on every append so a consumer of several partitions can wait on one signal.
    pub(super) appended: watch::Sender<u64>,
}

impl TopicLog {
    /// Opens the topic in `dir` (partition `p` in `dir/p/`) and deletes what expired while
    /// the log was closed.
    pub(super) fn open(
        dir: PathBuf,
        spec: TopicSpec,
        segment_bytes: u64,
        now: SystemTime,
    ) -> Result<Self, LogError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let policy = Policy::new(spec.retention_ms, segment_bytes);
        let partitions = (0..spec.partitions)
            .map(|p| {
                let legacy = dir.join(format!("{p}.log"));
                Partition::open(dir.join(p.to_string()), &legacy, policy, now)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (appended, _) = watch::channel(0);
        let topic = Self {
            dir,
            partitions,
            appended,
        };
        topic.expire(now)?;
        Ok(topic)
    }

    pub(super) fn partition(&self, topic: &str, partition: u32) -> Result<&Partition, LogError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::NoSuchPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// Appends to `partition` at time `now`, then deletes expired segments if it is time to.
    pub(super) fn append(
        &self,
        topic: &str,
        partition: u32,
        key: &[u8],
        value: &[u8],
        now: SystemTime,
    ) -> Result<u64, LogError> {
        let part = self.partition(topic, partition)?;
        let (offset, retention_due) = part.append(key, value, now)?;
        if retention_due {
            part.expire(now, self.needed_from(partition)?);
        }
        Ok(offset)
    }

    /// Deletes the expired segments of every partition; how many.
    pub(super) fn expire(&self, now: SystemTime) -> Result<usize, LogError> {
        let mut deleted = 0;
        for (p, partition) in (0u32..).zip(&self.partitions) {
            deleted += partition.expire(now, self.needed_from(p)?);
        }
        Ok(deleted)
    }

    /// The lowest offset of `partition` some group has not committed yet (`u64::MAX` when no
    /// group reads the topic). Read from the groups' files: a commit still in memory is
    /// newer, so this errs on the side of keeping.
    fn needed_from(&self, partition: u32) -> Result<u64, LogError> {
        let mut needed = u64::MAX;
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("group-") && name.ends_with(".json") {
                let committed = read_positions(&entry.path())?;
                needed = needed.min(committed.get(&partition).copied().unwrap_or(0));
            }
        }
        Ok(needed)
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

    /// The committed positions of `group`, registering the group if it is new: from then on
    /// retention keeps what it has not committed.
    pub(super) fn join_group(&self, group: &str) -> Result<BTreeMap<u32, u64>, LogError> {
        let path = self.group_path(group);
        if !path.exists() {
            self.store_group(group, &BTreeMap::new())?;
        }
        read_positions(&path)
    }

    pub(super) fn store_group(
        &self,
        group: &str,
        positions: &BTreeMap<u32, u64>,
    ) -> Result<(), LogError> {
        let path = self.group_path(group);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(positions).unwrap_or_default();
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

/// A group's positions file; unreadable JSON counts as nothing committed (keeps everything).
fn read_positions(path: &std::path::Path) -> Result<BTreeMap<u32, u64>, LogError> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(io_err(path)(e)),
    }
}
