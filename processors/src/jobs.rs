//! The job runner: work read from the jobs topic and done beside the command partitions, so a
//! slow job (a `complex_calculation` waiting on the price feed) never holds up the commands
//! behind it.
//!
//! The processors share the jobs topic's partitions through their own consumer group. Each
//! job runs as its own task (at most [`MAX_RUNNING`] at once); its result goes back to the
//! command topic as a derived command with an id derived from the job's, and a job's position
//! is committed only once every job before it on its partition has put its result there. So a
//! processor killed mid-job runs it again on restart (or another processor does), and the
//! result, counted by its id, is applied once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Backoff, Consumer, LogError, Record, Subscription};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use topics::names::{COMMANDS, JOBS};
use topics::routes::{route, Route};
use topics::{Command, CommandKind};

use crate::channels::zakat::complex;
use crate::group::Shared;
use crate::prices::PriceFeed;

/// Most jobs one processor runs at once.
pub(crate) const MAX_RUNNING: usize = 16;

/// The result of a job, as the derived command that carries it back; `None` for a record
/// that is not a job this processor knows (a newer processor's, or not a command at all).
async fn work(record: &Record, prices: &PriceFeed) -> Option<Command> {
    let job = Command::decode(&record.value).ok()?;
    let CommandKind::Derived { event, payload } = &job.kind else {
        return None;
    };
    let Some(Route::Zakat(user_id)) = route(&job.topic) else {
        return None;
    };
    if event != complex::JOB {
        return None;
    }
    let request = payload.get("request").cloned().unwrap_or_default();
    let quote = match complex::prices_needed(&request) {
        Some(currency) => Some(prices.quote(&currency).await),
        None => None,
    };
    let result = complex::work(&job, &user_id, quote, &topics::timestamp::now());
    let id = payload
        .get("id")
        .and_then(|v| v.as_str())
        .unwrap_or(&job.id);
    Some(Command {
        id: format!("{id}:done"),
        kind: CommandKind::Derived {
            event: complex::DONE.to_owned(),
            payload: result,
        },
        ..job
    })
}

/// Runs one job to the end: worked out, its result appended (retried until the log takes
/// it, or shutdown).
async fn run_one(record: Record, shared: Arc<Shared>) -> Option<Record> {
    let Some(done) = work(&record, &shared.prices).await else {
        tracing::warn!(
            partition = record.partition,
            offset = record.offset,
            "skipping a record of the jobs topic that is no known job"
        );
        return Some(record);
    };
    let bytes = match done.encode() {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "a job's result could not be encoded; skipping the job");
            return Some(record);
        }
    };
    let mut backoff = Backoff::default();
    loop {
        match shared
            .log
            .append(COMMANDS, done.topic.as_bytes(), bytes.clone())
            .await
        {
            Ok(_) => return Some(record),
            Err(error) => {
                tracing::warn!(%error, "a job's result was not stored; retrying");
                tokio::select! {
                    () = shared.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// Jobs started per partition, by offset: `Some` once finished, committed in offset order.
#[derive(Debug, Default)]
struct Positions {
    partitions: HashMap<u32, BTreeMap<u64, Option<Record>>>,
}

impl Positions {
    fn started(&mut self, record: &Record) {
        self.partitions
            .entry(record.partition)
            .or_default()
            .insert(record.offset, None);
    }

    /// Marks `record` finished; returns the last record of the partition whose every job
    /// up to it has finished, if that moved.
    fn finished(&mut self, record: Record) -> Option<Record> {
        let jobs = self.partitions.get_mut(&record.partition)?;
        let slot = jobs.get_mut(&record.offset)?;
        *slot = Some(record);
        let mut last = None;
        while let Some(entry) = jobs.first_entry() {
            if entry.get().is_none() {
                break;
            }
            last = entry.remove();
        }
        last
    }

    fn revoke(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }
}

/// Runs the jobs of this processor's share of the jobs topic until `shutdown`; never ends
/// before it (read failures are retried with backoff). Jobs still running at shutdown are
/// left uncommitted and run again later.
pub(crate) async fn run(shared: Arc<Shared>, group: String, shutdown: CancellationToken) {
    let (log, metrics) = (shared.log.clone(), &shared.metrics);
    let mut consumer: Option<Box<dyn Consumer>> = None;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut retry_at = tokio::time::Instant::now();
    let mut running: JoinSet<Option<Record>> = JoinSet::new();
    let mut positions = Positions::default();
    loop {
        let room = running.len() < MAX_RUNNING;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(retry_at), if consumer.is_none() => {
                match log.subscribe(JOBS, Subscription::Group(group.clone())).await {
                    Ok(subscribed) => consumer = Some(subscribed),
                    Err(error) => {
                        metrics.log.failed("read_jobs", &error);
                        retry_at = tokio::time::Instant::now() + backoff.next_delay();
                    }
                }
            }
            Some(finished) = running.join_next(), if !running.is_empty() => {
                let Ok(Some(record)) = finished else { continue };
                if let (Some(last), Some(consumer)) = (positions.finished(record), consumer.as_mut()) {
                    if let Err(error) = consumer.commit(&last).await {
                        tracing::warn!(%error, "a job's position was not committed; it may run again");
                    }
                }
            }
            record = next(&mut consumer), if room => match record {
                Ok(record) => {
                    backoff.reset();
                    if let Some(c) = consumer.as_mut() {
                        for partition in c.take_revoked() {
                            positions.revoke(partition);
                        }
                    }
                    positions.started(&record);
                    running.spawn(run_one(record, shared.clone()));
                }
                Err(LogError::Closed) => return,
                Err(error) => {
                    metrics.log.failed("read_jobs", &error);
                    if !error.is_transient() {
                        consumer = None;
                    }
                    retry_at = tokio::time::Instant::now() + backoff.next_delay();
                    if consumer.is_some() {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep_until(retry_at) => {}
                        }
                    }
                }
            },
        }
    }
}

/// The next record of `consumer`, or never while there is none.
async fn next(consumer: &mut Option<Box<dyn Consumer>>) -> Result<Record, LogError> {
    match consumer {
        Some(consumer) => consumer.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(partition: u32, offset: u64) -> Record {
        Record {
            partition,
            offset,
            key: Bytes::new(),
            value: Bytes::new(),
        }
    }

    #[test]
    fn positions_are_committed_in_order_once_every_earlier_job_finished() {
        let mut positions = Positions::default();
        for offset in [5, 6, 7] {
            positions.started(&record(0, offset));
        }
        positions.started(&record(1, 0));
        assert_eq!(positions.finished(record(0, 6)), None, "5 still runs");
        assert_eq!(positions.finished(record(1, 0)), Some(record(1, 0)));
        assert_eq!(positions.finished(record(0, 5)), Some(record(0, 6)));
        assert_eq!(positions.finished(record(0, 7)), Some(record(0, 7)));
        positions.started(&record(0, 8));
        positions.revoke(0);
        assert_eq!(
            positions.finished(record(0, 8)),
            None,
            "revoked: not ours to commit"
        );
    }
}
