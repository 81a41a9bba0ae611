//! Connector leases: a connector that stops heart-beating loses its presences.
//!
//! Connectors append a [`Heartbeat`] to [`HEARTBEATS`] several times per lease. Every
//! processor reads them from the live end and, every sweep, looks for connectors that still
//! have presences but whose last heartbeat is older than their lease. For each of their topics
//! whose command partition this processor owns, it appends an `EXPIRE` command; the topic's
//! owner then drops the presences and broadcasts the leaves in order with everything else on
//! the topic, like any other command.
//!
//! A connector never heard from since this processor started counts from the start, so a
//! restarted processor gives live connectors a full lease to show up. Expiry commands are
//! idempotent (their id names the connector, its last heartbeat and the topic), so two
//! processors sweeping at once cost nothing but a duplicate read.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::Store;
use tokio_util::sync::CancellationToken;
use topics::names::{partition_for, COMMANDS, HEARTBEATS};
use eventlog::{Log, StartAt, Subscription};
use topics::{Claims, Command, CommandKind, Heartbeat, SocketRef};

use crate::metrics::ProcessorMetrics;

/// The command partitions this processor owns now, kept current by the runner.
pub type Owned = Arc<RwLock<Vec<u32>>>;

/// Why a sweep stopped short (it is tried again at the next one).
#[derive(Debug, thiserror::Error)]
enum SweepError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Log(#[from] eventlog::LogError),
    #[error(transparent)]
    Record(#[from] topics::RecordError),
}

/// What the sweeper knows of one connector.
#[derive(Debug)]
struct Seen {
    at: Instant,
    lease: Duration,
    /// `sent_at` of its last heartbeat, part of expiry command ids.
    epoch: String,
}

/// Sweeps for lapsed leases until `shutdown`. Failures are logged and retried next sweep:
/// expiry is a cleanup, and nothing is lost by doing it a sweep later.
pub async fn sweep(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    owned: Owned,
    default_lease: Duration,
    metrics: ProcessorMetrics,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let subscription = Subscription::Partitions {
        partitions: (0..HEARTBEATS.partitions).collect(),
        start: StartAt::Latest,
    };
    let mut heartbeats = match log.subscribe(HEARTBEATS, subscription).await {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(%error, "cannot read connector heartbeats; presences of crashed connectors will not expire");
            return;
        }
    };
    let mut seen: HashMap<String, Seen> = HashMap::new();
    // (connector, topic) → when its expiry was last sent, so one is not sent every sweep
    // while the owner works through a backlog.
    let mut sent: HashMap<(String, String), Instant> = HashMap::new();
    // Often enough that a lapsed lease is acted on within half a second; each sweep is one
    // small read (the list of connectors with presences).
    let every = (default_lease / 4).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            record = heartbeats.next() => match record.map(|r| Heartbeat::decode(&r.value)) {
                Ok(Ok(beat)) => {
                    let lease = Duration::from_millis(beat.lease_ms.unsigned_abs());
                    seen.insert(beat.connector_id, Seen { at: Instant::now(), lease, epoch: beat.sent_at });
                }
                Ok(Err(error)) => tracing::warn!(%error, "skipping an undecodable heartbeat"),
                Err(error) => {
                    tracing::error!(%error, "lost the heartbeat topic; presences of crashed connectors will not expire");
                    return;
                }
            },
            _ = tick.tick() => {
                let lapsed = |connector: &str| match seen.get(connector) {
                    Some(s) => (s.at.elapsed() > s.lease).then(|| s.epoch.clone()),
                    None => (started.elapsed() > default_lease).then(|| "unseen".to_owned()),
                };
                let owned = owned.read().unwrap_or_else(PoisonError::into_inner).clone();
                let sweep = Sweep { log: &*log, store: &*store, owned: &owned, metrics: &metrics };
                if let Err(error) = sweep.run(lapsed, &mut sent, default_lease).await {
                    tracing::warn!(%error, "lease sweep failed; trying again next sweep");
                }
            }
        }
    }
}

struct Sweep<'a> {
    log: &'a dyn Log,
    store: &'a dyn Store,
    owned: &'a [u32],
    metrics: &'a ProcessorMetrics,
}

impl Sweep<'_> {
    async fn run(
        &self,
        lapsed: impl Fn(&str) -> Option<String>,
        sent: &mut HashMap<(String, String), Instant>,
        resend_after: Duration,
    ) -> Result<(), SweepError> {
        for connector in self.store.presence_connectors().await? {
            let Some(epoch) = lapsed(&connector) else {
                continue;
            };
            let topics = self.store.presence_topics(&connector).await?;
            if topics.is_empty() {
                self.store.forget_connector(&connector).await?;
                continue;
            }
            for topic in topics {
                let partition = partition_for(topic.as_bytes(), COMMANDS.partitions);
                let key = (connector.clone(), topic);
                let recently = sent.get(&key).is_some_and(|at| at.elapsed() < resend_after);
                if !self.owned.contains(&partition) || recently {
                    continue;
                }
                let (connector, topic) = &key;
                tracing::info!(%connector, %topic, "connector lease lapsed: expiring its presences");
                self.log
                    .append(
                        COMMANDS,
                        topic.as_bytes(),
                        expiry(connector, &epoch, topic)?,
                    )
                    .await?;
                self.metrics.expiries.inc();
                sent.insert(key, Instant::now());
            }
        }
        // Forget what was sent long ago, so the map stays as small as the set of dead ones.
        sent.retain(|_, at| at.elapsed() < resend_after * 4);
        Ok(())
    }
}

/// The `EXPIRE` command for `connector`'s presences on `topic`.
fn expiry(connector: &str, epoch: &str, topic: &str) -> Result<Bytes, topics::RecordError> {
    Command {
        id: format!("expire:{connector}:{epoch}:{topic}"),
        topic: topic.to_owned(),
        socket: SocketRef {
            connector_id: connector.to_owned(),
            socket_id: 0,
            join_id: None,
            msg_ref: None,
        },
        claims: Claims::default(),
        kind: CommandKind::Expire,
        received_at: topics::timestamp::now(),
    }
    .encode()
}
