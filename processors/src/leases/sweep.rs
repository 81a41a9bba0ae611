//! The IO shell of leases: the `select!` loop over heartbeats and sweep ticks, the store reads
//! and the log appends. Every decision is the [`LeaseBook`]'s; this side only reads the clock,
//! once per heartbeat and once per sweep, and hands the instant over.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventlog::{Backoff, Consumer, Log, StartAt, Subscription};
use store::Store;
use tokio_util::sync::CancellationToken;
use topics::names::{partition_for, COMMANDS, HEARTBEATS};
use topics::{Claims, Command, CommandKind, Heartbeat, SocketRef};

use super::book::LeaseBook;
use crate::metrics::ProcessorMetrics;

/// The command partitions this processor owns now, kept current by the runner.
pub(crate) type Owned = Arc<RwLock<Vec<u32>>>;

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

/// Sweeps for lapsed leases until `shutdown`, and never stops before it. Failures are logged
/// and retried next sweep: expiry is a cleanup, and nothing is lost by doing it a sweep
/// later; a lost heartbeat subscription is retried with backoff.
pub(crate) async fn sweep(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    owned: Owned,
    default_lease: Duration,
    metrics: ProcessorMetrics,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut book = LeaseBook::new(default_lease, started);
    // Often enough that a lapsed lease is acted on within half a second; each sweep is one
    // small read (the list of connectors with presences).
    let every = (default_lease / 4).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Heartbeats are read from the live end; after a lost subscription, from the live end
    // again (beats missed meanwhile only make a lease look older, and the next beat of a live
    // connector lands within a quarter lease). Meanwhile sweeping goes on.
    let mut heartbeats: Option<Box<dyn Consumer>> = None;
    let mut backoff = Backoff::default();
    let mut retry_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(retry_at), if heartbeats.is_none() => {
                let subscription = Subscription::Partitions {
                    partitions: (0..HEARTBEATS.partitions).collect(),
                    start: StartAt::Latest,
                };
                match log.subscribe(HEARTBEATS, subscription).await {
                    Ok(consumer) => heartbeats = Some(consumer),
                    Err(error) => {
                        metrics.log.failed("read_heartbeats", &error);
                        tracing::warn!(%error, "cannot read connector heartbeats; retrying");
                        retry_at = tokio::time::Instant::now() + backoff.next_delay();
                    }
                }
            }
            record = next(&mut heartbeats) => match record.map(|r| Heartbeat::decode(&r.value)) {
                Ok(Ok(beat)) => {
                    backoff.reset();
                    metrics.log.ok();
                    book.heard(beat, Instant::now());
                }
                Ok(Err(error)) => tracing::warn!(%error, "skipping an undecodable heartbeat"),
                Err(error) => {
                    metrics.log.failed("read_heartbeats", &error);
                    let delay = backoff.next_delay();
                    if !error.is_transient() {
                        tracing::warn!(%error, "lost the heartbeat topic; subscribing again from the live end");
                        heartbeats = None;
                    }
                    retry_at = tokio::time::Instant::now() + delay;
                    if heartbeats.is_some() {
                        // Transient: the same consumer goes on after the delay.
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep_until(retry_at) => {}
                        }
                    }
                }
            },
            _ = tick.tick() => {
                let owned = owned.read().unwrap_or_else(PoisonError::into_inner).clone();
                let sweep = Sweep { log: &*log, store: &*store, owned: &owned, metrics: &metrics };
                let now = Instant::now();
                book.sweeping(now, every);
                if let Err(error) = sweep.run(&mut book, now).await {
                    tracing::warn!(%error, "lease sweep failed; trying again next sweep");
                }
            }
        }
    }
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
            join_id: None,
            msg_ref: None,
        },
        claims: Claims::default(),
        kind: CommandKind::Expire,
        received_at: topics::timestamp::now(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventlog::EmbeddedLog;
    use serde_json::json;
    use store::Presence;
    use store::{EmbeddedStore, Write};

    const LEASE: Duration = Duration::from_secs(10);

    /// A log and a store in a fresh directory, with `connector` present on `topics`, and the
    /// metrics a sweep counts its expiries in.
    struct Fixture {
        _dir: tempfile::TempDir,
        log: EmbeddedLog,
        store: EmbeddedStore,
        metrics: ProcessorMetrics,
    }

    impl Fixture {
        async fn new(connector: &str, topics: &[&str]) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = EmbeddedLog::open(dir.path().join("log")).expect("log");
            let store = EmbeddedStore::open(dir.path()).expect("store");
            let writes: Vec<Write> = topics
                .iter()
                .map(|topic| {
                    Write::Track(Presence {
                        topic: (*topic).to_owned(),
                        key: "u1".to_owned(),
                        phx_ref: "r1".to_owned(),
                        meta: json!({"phx_ref": "r1"}),
                        connector_id: connector.to_owned(),
                        socket_id: 1,
                        join_id: "j1".to_owned(),
                    })
                })
                .collect();
            store
                .apply("track", &writes, &json!({}))
                .await
                .expect("track");
            let metrics = ProcessorMetrics::new(&prometheus::Registry::new());
            Self {
                _dir: dir,
                log,
                store,
                metrics,
            }
        }

        /// A sweep by a processor owning `owned`.
        fn sweep<'a>(&'a self, owned: &'a [u32]) -> Sweep<'a> {
            Sweep {
                log: &self.log,
                store: &self.store,
                owned,
                metrics: &self.metrics,
            }
        }
    }

    /// The expiry commands appended so far, read from the start of the command topic.
    async fn expiries(log: &EmbeddedLog, want: usize) -> Vec<Command> {
        let partitions = (0..COMMANDS.partitions).collect();
        let start = StartAt::Earliest;
        let mut consumer = log
            .subscribe(COMMANDS, Subscription::Partitions { partitions, start })
            .await
            .expect("subscribe");
        let mut commands = Vec::new();
        while commands.len() < want {
            let record = tokio::time::timeout(Duration::from_secs(5), consumer.next())
                .await
                .expect("a command in time")
                .expect("read");
            commands.push(Command::decode(&record.value).expect("decodes"));
        }
        commands
    }

    #[test]
    fn expiry_id_names_connector_epoch_and_topic() {
        let bytes = expiry("c1", "2024-01-01T00:00:00.000Z", "room:1").expect("encodes");
        let command = Command::decode(&bytes).expect("decodes");
        assert_eq!(command.id, "expire:c1:2024-01-01T00:00:00.000Z:room:1");
        assert_eq!(command.topic, "room:1");
        assert_eq!(command.socket.connector_id, "c1");
        assert_eq!(command.kind, CommandKind::Expire);
    }

    #[tokio::test]
    async fn a_lapsed_connector_is_expired_once_per_topic_until_the_window_passes() {
        let fixture = Fixture::new("c1", &["room:1", "room:2"]).await;
        let owned: Vec<u32> = (0..COMMANDS.partitions).collect();
        let sweep = fixture.sweep(&owned);
        let metrics = &fixture.metrics;
        let t0 = Instant::now();
        let mut book = LeaseBook::new(LEASE, t0);

        sweep.run(&mut book, t0 + LEASE).await.expect("sweep");
        assert_eq!(metrics.expiries.get(), 0, "still within the grace period");

        let lapsed = t0 + LEASE * 2;
        sweep.run(&mut book, lapsed).await.expect("sweep");
        assert_eq!(metrics.expiries.get(), 2, "one expiry per topic");
        let mut ids: Vec<String> = expiries(&fixture.log, 2)
            .await
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["expire:c1:unseen:room:1", "expire:c1:unseen:room:2"]);

        sweep
            .run(&mut book, lapsed + LEASE / 2)
            .await
            .expect("sweep");
        assert_eq!(metrics.expiries.get(), 2, "not re-sent within the window");
        sweep.run(&mut book, lapsed + LEASE).await.expect("sweep");
        assert_eq!(metrics.expiries.get(), 4, "re-sent once the window passed");
    }

    #[tokio::test]
    async fn only_owned_partitions_are_expired() {
        let fixture = Fixture::new("c1", &["room:1"]).await;
        let theirs = partition_for(b"room:1", COMMANDS.partitions);
        let owned: Vec<u32> = (0..COMMANDS.partitions).filter(|p| *p != theirs).collect();
        let sweep = fixture.sweep(&owned);
        let metrics = &fixture.metrics;
        let t0 = Instant::now();
        let mut book = LeaseBook::new(LEASE, t0);
        sweep.run(&mut book, t0 + LEASE * 2).await.expect("sweep");
        assert_eq!(metrics.expiries.get(), 0);
    }

    #[tokio::test]
    async fn a_live_connector_is_not_expired_and_a_crashed_one_is_under_its_epoch() {
        let fixture = Fixture::new("c1", &["room:1"]).await;
        let owned: Vec<u32> = (0..COMMANDS.partitions).collect();
        let sweep = fixture.sweep(&owned);
        let metrics = &fixture.metrics;
        let t0 = Instant::now();
        let mut book = LeaseBook::new(LEASE, t0);
        let beat = Heartbeat {
            connector_id: "c1".to_owned(),
            lease_ms: 30_000,
            sent_at: "e1".to_owned(),
            sockets: 0,
        };
        book.heard(beat, t0);
        sweep.run(&mut book, t0 + LEASE * 2).await.expect("sweep");
        assert_eq!(metrics.expiries.get(), 0, "its own 30 s lease still runs");
        sweep.run(&mut book, t0 + LEASE * 4).await.expect("sweep");
        assert_eq!(metrics.expiries.get(), 1);
        let ids: Vec<String> = expiries(&fixture.log, 1)
            .await
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["expire:c1:e1:room:1"]);
    }
}
