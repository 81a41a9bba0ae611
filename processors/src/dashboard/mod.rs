//! `dashboard:live`: a `metrics_batch` broadcast at most every 100 ms, only when something
//! changed, folding what happened in between (donations per campaign, connections).
//!
//! The dashboard reads what the processors already write: the domain events topic (each
//! `donation_created`) and the connectors' heartbeats (each carries its open sockets), from
//! the live end. One processor sends the batches: the owner of the command partition of
//! `dashboard:live`, so however many processors run, the dashboard gets one batch per tick.
//! While ownership moves (a rebalance), a batch may be missed or two sent close together; a
//! live dashboard shows the next one. Replayed domain events count once (by donation id).
//!
//! Layout: `fold` is the pure fold; this module the IO loop around it.

mod fold;

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventlog::{Consumer, Log, StartAt, Subscription};
use tokio_util::sync::CancellationToken;
use topics::events::DomainEvent;
use topics::names::{partition_for, TopicSpec, BROADCASTS, COMMANDS, EVENTS, HEARTBEATS};
use topics::{Broadcast, Heartbeat};

use crate::leases::Owned;
use crate::metrics::ProcessorMetrics;
use fold::Fold;

/// The dashboard's channel topic.
pub(crate) const TOPIC: &str = "dashboard:live";

/// The shortest time between two batches.
pub(crate) const EVERY: Duration = Duration::from_millis(100);

/// Subscribes to `topic` from its live end, all partitions.
async fn live(log: &dyn Log, topic: TopicSpec) -> Result<Box<dyn Consumer>, eventlog::LogError> {
    let partitions = (0..topic.partitions).collect();
    log.subscribe(
        topic,
        Subscription::Partitions {
            partitions,
            start: StartAt::Latest,
        },
    )
    .await
}

/// The next record of `consumer`, or never while there is none.
async fn next(
    consumer: &mut Option<Box<dyn Consumer>>,
) -> Result<eventlog::Record, eventlog::LogError> {
    match consumer {
        Some(consumer) => consumer.next().await,
        None => std::future::pending().await,
    }
}

/// Sends `metrics_batch` on `dashboard:live` while this processor owns its command
/// partition, until `shutdown`; never ends before it (read failures are retried next tick).
pub(crate) async fn run(
    log: Arc<dyn Log>,
    owned: Owned,
    metrics: ProcessorMetrics,
    shutdown: CancellationToken,
) {
    let partition = partition_for(TOPIC.as_bytes(), COMMANDS.partitions);
    // Batch ids only need to differ from every other batch's: a process start and a count.
    let origin = topics::timestamp::now();
    let mut sent = 0u64;
    let mut fold = Fold::default();
    // Read only while sending batches.
    let mut events: Option<Box<dyn Consumer>> = None;
    let mut heartbeats: Option<Box<dyn Consumer>> = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let owner = owned
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&partition);
                if !owner {
                    (events, heartbeats) = (None, None);
                    fold = Fold::default();
                    continue;
                }
                if events.is_none() || heartbeats.is_none() {
                    match (live(&*log, EVENTS).await, live(&*log, HEARTBEATS).await) {
                        (Ok(e), Ok(h)) => (events, heartbeats) = (Some(e), Some(h)),
                        (Err(error), _) | (_, Err(error)) => {
                            metrics.log.failed("read_dashboard", &error);
                            tracing::warn!(%error, "the dashboard cannot read the log; retrying");
                            continue;
                        }
                    }
                }
                let Some(payload) = fold.take(Instant::now(), &topics::timestamp::now()) else {
                    continue;
                };
                sent += 1;
                let batch = Broadcast {
                    id: format!("dashboard:{origin}:{sent}"),
                    topic: TOPIC.to_owned(),
                    event: "metrics_batch".to_owned(),
                    payload,
                    transforms: Vec::new(),
                    position: None,
                };
                match batch.encode() {
                    Ok(bytes) => {
                        // Not awaited: a slow log must not stretch the tick; a lost batch is
                        // followed by the next.
                        let key = Bytes::from_static(TOPIC.as_bytes());
                        if let Err(error) = log.send_all(vec![(BROADCASTS, key, bytes)]) {
                            metrics.log.failed("dashboard", &error);
                        }
                    }
                    Err(error) => tracing::error!(%error, "a metrics batch could not be encoded"),
                }
            }
            record = next(&mut events) => match record {
                Ok(record) => {
                    match DomainEvent::decode(&record.value) {
                        Ok(DomainEvent::DonationCreated(event)) => fold.donation(&event),
                        Ok(DomainEvent::DonationModerated(event)) => fold.moderation(&event),
                        _ => {}
                    }
                }
                Err(error) => {
                    metrics.log.failed("read_dashboard", &error);
                    (events, heartbeats) = (None, None);
                }
            },
            record = next(&mut heartbeats) => match record {
                Ok(record) => {
                    if let Ok(beat) = Heartbeat::decode(&record.value) {
                        fold.heartbeat(&beat, Instant::now());
                    }
                }
                Err(error) => {
                    metrics.log.failed("read_dashboard", &error);
                    (events, heartbeats) = (None, None);
                }
            },
        }
    }
}
