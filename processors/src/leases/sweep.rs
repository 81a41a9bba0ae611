//! The IO shell of leases: the `select!` loop over heartbeats and sweep ticks, the store reads
//! and the log appends. Every decision is the [`LeaseBook`]'s; this side only reads the clock,
//! once per heartbeat and once per sweep, and hands the instant over.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::Store;
use tokio_util::sync::CancellationToken;
use topics::names::{partition_for, COMMANDS, HEARTBEATS};
use topics::{Claims, Command, CommandKind, Heartbeat, Log, SocketRef, StartAt, Subscription};

use super::book::LeaseBook;
use crate::metrics::ProcessorMetrics;

/// The command partitions this processor owns now, kept current by the runner.
pub type Owned = Arc<RwLock<Vec<u32>>>;

/// Why a sweep stopped short (it is tried again at the next one).
#[derive(Debug, thiserror::Error)]
enum SweepError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Log(#[from] topics::LogError),
    #[error(transparent)]
    Record(#[from] topics::RecordError),
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
    let mut book = LeaseBook::new(default_lease, started);
    // Often enough that a lapsed lease is acted on within half a second; each sweep is one
    // small read (the list of connectors with presences).
    let every = (default_lease / 4).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            record = heartbeats.next() => match record.map(|r| Heartbeat::decode(&r.value)) {
                Ok(Ok(beat)) => book.heard(beat, Instant::now()),
                Ok(Err(error)) => tracing::warn!(%error, "skipping an undecodable heartbeat"),
                Err(error) => {
                    tracing::error!(%error, "lost the heartbeat topic; presences of crashed connectors will not expire");
                    return;
                }
            },
            _ = tick.tick() => {
                let owned = owned.read().unwrap_or_else(PoisonError::into_inner).clone();
                let sweep = Sweep { log: &*log, store: &*store, owned: &owned, metrics: &metrics };
                if let Err(error) = sweep.run(&mut book, Instant::now()).await {
                    tracing::warn!(%error, "lease sweep failed; trying again next sweep");
                }
            }
        }
    }
}

/// One sweep's view of the world: where to read and write, and which partitions are ours.
struct Sweep<'a> {
    log: &'a dyn Log,
    store: &'a dyn Store,
    owned: &'a [u32],
    metrics: &'a ProcessorMetrics,
}

impl Sweep<'_> {
    /// Appends an expiry for every topic we own of every connector lapsed at `now`, unless
    /// the book says one was sent recently. An error stops the sweep short; the next one
    /// redoes it (expiry ids are idempotent).
    async fn run(&self, book: &mut LeaseBook, now: Instant) -> Result<(), SweepError> {
        for connector in self.store.presence_connectors().await? {
            let Some(epoch) = book.lapsed(&connector, now) else {
                continue;
            };
            let topics = self.store.presence_topics(&connector).await?;
            if topics.is_empty() {
                self.store.forget_connector(&connector).await?;
                continue;
            }
            for topic in topics {
                let partition = partition_for(topic.as_bytes(), COMMANDS.partitions);
                if !self.owned.contains(&partition) || !book.due(&connector, &topic, now) {
                    continue;
                }
                tracing::info!(%connector, %topic, "connector lease lapsed: expiring its presences");
                self.log
                    .append(
                        COMMANDS,
                        topic.as_bytes(),
                        expiry(&connector, &epoch, &topic)?,
                    )
                    .await?;
                self.metrics.expiries.inc();
                book.sent(&connector, &topic, now);
            }
        }
        // Only after a whole sweep: one cut short forgets nothing, and is redone next tick.
        book.forget_old_sends(now);
        Ok(())
    }
}

/// The `EXPIRE` command for `connector`'s presences on `topic`. Its id must stay
/// `expire:{connector}:{epoch}:{topic}`: processors of different versions sweeping at once
/// must produce the same id for the same lapse, so the owner applies it once.
fn expiry(connector: &str, epoch: &str, topic: &str) -> Result<Bytes, topics::RecordError> {
    Command {
        id: format!("expire:{connector}:{epoch}:{topic}"),
        topic: topic.to_owned(),
        socket: SocketRef {
            connector_id: connector.to_owned(),
            socket_id: 0,
            join_ref: None,
            msg_ref: None,
        },
        claims: Claims::default(),
        kind: CommandKind::Expire,
        received_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
    .encode()
}

