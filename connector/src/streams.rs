//! Streams from the log back to sockets: deliveries to the one socket they answer, broadcasts
//! routed to the subscribers of their topic (through [`crate::fanout`]), to the
//! topic's presence replica, or to the user's sockets to close.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlog::{Backoff, Consumer, Log, Record, StartAt, Subscription};
use tokio_util::sync::CancellationToken;
use topics::names::{partition_for, TopicSpec, BROADCASTS, DELIVERIES};
use topics::{Broadcast, Delivery};

use topics::presence::{PresenceDiff, DIFF_EVENT, STATE_EVENT};
use topics::routes::disconnected_user;

use crate::close::Close;
use crate::fanout;
use crate::metrics::Metrics;
use crate::ordering::StreamOrder;
use crate::presence::Replicas;
use crate::registry::{Outbound, Registry, Sessions};

/// Remembers recently seen broadcast ids, so a broadcast re-emitted after a processor crash
/// reaches each socket once. Bounded: the oldest ids are forgotten first.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentIds {
    /// Remembers up to `capacity` ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
        }
    }

    /// True the first time `id` is offered (within the window).
    pub(crate) fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }
}

/// Where a broadcast read from the log goes on this connector.
#[derive(Debug)]
pub(crate) struct Targets {
    /// Topic subscriptions.
    pub registry: Arc<Registry>,
    /// Open sessions (for `disconnect`).
    pub sessions: Arc<Sessions>,
    /// Presence replicas, which take `presence_diff`s to fold and send per window.
    pub replicas: Arc<Replicas>,
    /// Metrics.
    pub metrics: Metrics,
}

/// Hands one broadcast to the local subscribers of its topic: `disconnect` on a user's socket
/// topic closes their sockets, presence diffs go to the topic's replica (sent at its next
/// flush), everything else is written at once.
pub(crate) fn route(broadcast: &Broadcast, targets: &Targets) {
    if let Some(user_id) = disconnected_user(&broadcast.topic, &broadcast.event) {
        for handle in targets.sessions.of_user(user_id) {
            handle.offer(Outbound::Close(Close::Disconnected));
        }
        return;
    }
    if broadcast.event == DIFF_EVENT {
        if let Some(diff) = PresenceDiff::from_value(&broadcast.payload) {
            targets.metrics.presence_diffs.inc();
            if targets.registry.has_subscribers(&broadcast.topic) {
                targets.replicas.on_diff(&broadcast.topic, &diff);
            }
            return;
        }
    }
    fanout::send(broadcast, &targets.registry, &targets.metrics);
}

/// Reads `partitions` of `topic` from the live end until `shutdown`, handing each record to
/// `handle`. It never gives up: a transient error (the broker unreachable) is retried with
/// capped backoff on the same consumer, which resumes where it was; any other error drops the
/// consumer and subscribes again from the live end, so records appended meanwhile are lost
/// to this connector (logged; broadcasts are then missed until sockets rejoin).
pub(crate) async fn tail(
    log: &dyn Log,
    topic: TopicSpec,
    partitions: Vec<u32>,
    op: &'static str,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    mut handle: impl FnMut(Record),
) {
    let mut backoff = Backoff::default();
    let mut consumer: Option<Box<dyn Consumer>> = None;
    let mut resubscribed = false;
    loop {
        let current = match &mut consumer {
            Some(current) => current,
            None => {
                let subscription = Subscription::Partitions {
                    partitions: partitions.clone(),
                    start: StartAt::Latest,
                };
                let subscribed = tokio::select! {
                    () = shutdown.cancelled() => return,
                    subscribed = log.subscribe(topic, subscription) => subscribed,
                };
                match subscribed {
                    Ok(fresh) => {
                        if resubscribed {
                            tracing::warn!(
                                topic = topic.name,
                                "subscribed again from the live end: records appended while the \
                                 log was lost are not delivered by this connector"
                            );
                        }
                        consumer.insert(fresh)
                    }
                    Err(error) => {
                        metrics.log.failed(op, &error);
                        tracing::debug!(%error, topic = topic.name, "cannot subscribe; retrying");
                        resubscribed = true;
                        if pause(backoff.next_delay(), shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = current.next() => next,
        };
        match next {
            Ok(record) => {
                backoff.reset();
                metrics.log.ok();
                handle(record);
            }
            Err(error) => {
                metrics.log.failed(op, &error);
                if error.is_transient() {
                    tracing::debug!(%error, topic = topic.name, "reading the log failed; retrying");
                } else {
                    tracing::warn!(%error, topic = topic.name, "the consumer failed; subscribing again");
                    consumer = None;
                    resubscribed = true;
                }
                if pause(backoff.next_delay(), shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Waits `delay`; true if `shutdown` fired meanwhile.
async fn pause(delay: std::time::Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// Reads this connector's deliveries from the log and hands each to its session. A full
/// `presence_state` in a join's delivery seeds the topic's presence replica first, here, in
/// log order, so joins answered after it can be filled from the replica.
pub(crate) async fn deliveries(
    log: Arc<dyn Log>,
    connector_id: String,
    sessions: Arc<Sessions>,
    replicas: Arc<Replicas>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let partition = partition_for(connector_id.as_bytes(), DELIVERIES.partitions);
    let op = "read_deliveries";
    tail(&*log, DELIVERIES, vec![partition], op, &metrics, &shutdown, |record| {
        match Delivery::decode(&record.value) {
            // Other connectors' deliveries may share the partition.
            Ok(delivery) if delivery.socket.connector_id == connector_id => {
                if delivery.reply.is_some() {
                    let socket = &delivery.socket;
                    let list = delivery
                        .pushes
                        .iter()
                        .find(|p| p.event == STATE_EVENT && p.payload.is_object());
                    replicas.on_join_answer(
                        &delivery.topic,
                        socket.socket_id,
                        socket.join_id.as_deref().unwrap_or_default(),
                        list.map(|p| &p.payload),
                    );
                }
                if let Some(handle) = sessions.get(delivery.socket.socket_id) {
                    handle.offer(Outbound::Delivery(delivery));
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, offset = record.offset, "skipping an undecodable delivery");
            }
        }
    })
    .await
}

/// How long a broadcast waits for an earlier one of its topic before the gap is taken as
/// lost.
const GAP_WAIT: Duration = Duration::from_millis(500);

/// Reads every broadcast from the live end of the log and routes it locally (see [`route`]):
/// those with a stream position in their topic's order, once each ([`StreamOrder`]); the
/// others (API broadcasts, the dashboard's batches) once per id.
pub(crate) async fn broadcasts(log: Arc<dyn Log>, targets: Targets, shutdown: CancellationToken) {
    let recent = Mutex::new(RecentIds::new(65_536));
    let order = Mutex::new(StreamOrder::new(GAP_WAIT, 1024, Duration::from_secs(600)));
    let partitions = (0..BROADCASTS.partitions).collect();
    let metrics = targets.metrics.clone();
    let op = "read_broadcasts";
    let reading = tail(
        &*log,
        BROADCASTS,
        partitions,
        op,
        &metrics,
        &shutdown,
        |record| match Broadcast::decode(&record.value) {
            Ok(broadcast) => match broadcast.position.clone() {
                Some(position) => {
                    let topic = broadcast.topic.clone();
                    let ready = lock(&order).offer(&topic, &position, broadcast, Instant::now());
                    for broadcast in ready {
                        route(&broadcast, &targets);
                    }
                }
                None if lock(&recent).first_time(&broadcast.id) => route(&broadcast, &targets),
                None => {}
            },
            Err(error) => {
                tracing::error!(%error, offset = record.offset, "skipping an undecodable broadcast");
            }
        },
    );
    let gaps = async {
        let mut tick = tokio::time::interval(GAP_WAIT / 5);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let ready = lock(&order).expire(Instant::now());
                    if !ready.is_empty() {
                        tracing::warn!(broadcasts = ready.len(), "a topic's stream had a gap that did not fill; moving on");
                    }
                    for broadcast in ready {
                        route(&broadcast, &targets);
                    }
                }
            }
        }
    };
    tokio::join!(reading, gaps);
}

/// The lock of `state` (a poisoned one is still consistent: every step leaves it so).
fn lock<T>(state: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded() {
        let mut recent = RecentIds::new(2);
        assert!(recent.first_time("a"));
        assert!(!recent.first_time("a"));
        assert!(recent.first_time("b"));
        assert!(recent.first_time("c"));
        assert!(recent.first_time("a"), "a was forgotten");
    }
}
