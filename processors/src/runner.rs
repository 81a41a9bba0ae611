//! The IO shell around [`decide`](crate::decide): consume, hand each partition's commands to
//! its worker (which decides, persists and emits them in groups, see `group`), commit.
//!
//! The consumption algorithm (one for every log backend):
//! - One ordered worker per partition, fed by a bounded queue; when a queue is full the
//!   runner stops reading until there is room (commits keep flowing meanwhile), so memory
//!   stays bounded. (Pausing only the full partition is a planned refinement: librdkafka's
//!   pause/resume lost records under load in our tests.)
//! - A command's offset is committed only after its effects are stored and its outcome is on
//!   the log, so a crash at any point leads to the command being processed again; the
//!   store's idempotency (outcomes by command id, campaign fences by position) turns that
//!   into a re-emit of the stored outcome, and broadcast ids let connectors drop the repeat.
//! - Transient failures (store or log unavailable, a campaign changed by another writer) are
//!   retried with capped exponential backoff, never skipped.
//! - A poison command (undecodable, or failing permanently) goes to the dead-letter topic with
//!   a counter, and consumption moves on.
//! - Partitions revoked by a rebalance stop at once: queued commands are dropped uncommitted
//!   (the new owner processes them) and nothing more is committed for them. Campaign writes
//!   are compare-and-set and fenced by position, so a command still in flight here can
//!   neither lose the new owner's update nor be counted twice.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use eventlog::{Backoff, Consumer, Log, LogError, Record, Subscription};
use store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use topics::names::COMMANDS;

use crate::group::{spawn_worker, Shared, Worker};
use crate::leases;
use crate::metrics::ProcessorMetrics;
use crate::prices::{PriceFeed, PriceFeedConfig};

/// Processor runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Consumer group shared by the processors.
    pub group: String,
    /// First retry delay after a transient failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Commands queued per partition before the runner stops reading.
    pub partition_queue: usize,
    /// Static assignment: own exactly these command partitions (positions committed under
    /// `group`, no group membership). `None`: share the partitions through the consumer group.
    pub partitions: Option<Vec<u32>>,
    /// Lease of a connector never heard from since this processor started (heartbeats carry
    /// their connector's own lease): its presences expire after this long.
    pub lease: Duration,
    /// The price feed `calculate_nisab` and `calculate_zakat` ask when a client gives no
    /// prices (none by default), and its circuit breaker.
    pub prices: PriceFeedConfig,
    /// How much history each topic keeps, and for how long, for clients to recover.
    pub history: crate::streams::HistoryLimits,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            group: "fawkes-processors".into(),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            partition_queue: 256,
            partitions: None,
            lease: Duration::from_secs(10),
            prices: PriceFeedConfig::default(),
            history: crate::streams::HistoryLimits::default(),
        }
    }
}

/// The runner stopped because of an error it cannot retry.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The log failed.
    #[error("the command log failed: {0}")]
    Log(#[from] LogError),
    /// The store failed permanently.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A task the runner cannot work without (a partition's worker, the lease sweeper, the
    /// log probe) ended or panicked: the process stops rather than run with a part missing.
    #[error("the processor's {0} stopped unexpectedly")]
    TaskEnded(String),
}

/// Consumes commands until `shutdown` fires.
pub async fn run(
    config: RunnerConfig,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    metrics: ProcessorMetrics,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let subscription = match &config.partitions {
        Some(partitions) => Subscription::Owned {
            group: config.group.clone(),
            partitions: partitions.clone(),
        },
        None => Subscription::Group(config.group.clone()),
    };
    let Some(mut consumer) = subscribe(&*log, &subscription, &metrics, &shutdown).await? else {
        return Ok(()); // shut down before the log answered
    };
    tracing::info!(group = %config.group, "processor runner started");
    let owned = leases::Owned::default();
    let parts_stop = shutdown.child_token();
    let sweeper = tokio::spawn(leases::sweep(
        log.clone(),
        store.clone(),
        owned.clone(),
        config.lease,
        metrics.clone(),
        parts_stop.clone(),
    ));
    let dashboard = tokio::spawn(crate::dashboard::run(
        log.clone(),
        owned.clone(),
        metrics.clone(),
        parts_stop.clone(),
    ));
    // Keeps `fawkes_log_up` current while nothing else reads the log.
    let probe = tokio::spawn(eventlog::watch(
        log.clone(),
        metrics.log.clone(),
        parts_stop.clone(),
    ));
    let prices = PriceFeed::new(&config.prices, metrics.price_feed.clone());
    let shared = Arc::new(Shared {
        log,
        store,
        prices,
        history: config.history,
        metrics,
        shutdown: shutdown.clone(),
        retry_initial: config.retry_initial,
        retry_max: config.retry_max,
        partition_queue: config.partition_queue,
    });
    let jobs = tokio::spawn(crate::jobs::run(
        shared.clone(),
        format!("{}.jobs", config.group),
        parts_stop.clone(),
    ));
    // Bounded: at most one completion per queued command is ever outstanding.
    let (done_tx, mut done_rx) = mpsc::channel::<Record>(1024);
    let mut workers: HashMap<u32, Worker> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // After a failed read: when to read again, and whether the consumer must be replaced.
    let mut backoff = Backoff::new(shared.retry_initial, shared.retry_max);
    let mut resume_at: Option<tokio::time::Instant> = None;
    let mut resubscribe = false;
    let result = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            _ = tick.tick() => {
                let assigned = consumer.assigned();
                shared.metrics.partitions.set(i64::try_from(assigned.len()).unwrap_or(i64::MAX));
                *owned.write().unwrap_or_else(PoisonError::into_inner) = assigned;
                // Every part runs until shutdown: one that ended panicked.
                if let Some(part) = ended(&[("lease sweeper", &sweeper), ("log probe", &probe), ("dashboard", &dashboard), ("job runner", &jobs)], &workers) {
                    break Err(RunnerError::TaskEnded(part));
                }
            }
            Some(record) = done_rx.recv() => commit(&mut *consumer, &workers, &record).await,
            () = sleep_until(resume_at) => {
                resume_at = None;
                if resubscribe {
                    match shared.log.subscribe(COMMANDS, subscription.clone()).await {
                        Ok(fresh) => {
                            // Queued commands are redone from the committed positions by the
                            // new consumer: drop them, as on a revoke.
                            for (partition, worker) in workers.drain() {
                                worker.task.abort();
                                tracing::info!(partition, "consumer replaced: dropping its queued commands");
                            }
                            consumer = fresh;
                            resubscribe = false;
                            tracing::info!("subscribed to the commands again");
                        }
                        Err(error) => {
                            shared.metrics.log.failed("subscribe_commands", &error);
                            tracing::warn!(%error, "cannot subscribe to the commands; retrying");
                            resume_at = Some(tokio::time::Instant::now() + backoff.next_delay());
                        }
                    }
                }
            }
            record = consumer.next(), if resume_at.is_none() => {
                let record = match record {
                    Ok(record) => {
                        backoff.reset();
                        shared.metrics.log.ok();
                        record
                    }
                    // The log itself was shut down: nothing left to read.
                    Err(LogError::Closed) => break Err(LogError::Closed.into()),
                    Err(error) => {
                        shared.metrics.log.failed("read_commands", &error);
                        let delay = backoff.next_delay();
                        if error.is_transient() {
                            // librdkafka reconnects by itself; the consumer keeps its place.
                            tracing::debug!(%error, ?delay, "reading commands failed; retrying");
                        } else {
                            tracing::warn!(%error, ?delay, "the command consumer failed; subscribing again");
                            resubscribe = true;
                        }
                        resume_at = Some(tokio::time::Instant::now() + delay);
                        continue;
                    }
                };
                for partition in consumer.take_revoked() {
                    if let Some(worker) = workers.remove(&partition) {
                        worker.task.abort();
                        tracing::info!(partition, "partition revoked: dropping its queued commands");
                    }
                }
                let partition = record.partition;
                let worker = workers
                    .entry(partition)
                    .or_insert_with(|| spawn_worker(shared.clone(), done_tx.clone()));
                match worker.queue.try_send(record) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        break Err(RunnerError::TaskEnded(format!("worker of partition {partition}")));
                    }
                    Err(mpsc::error::TrySendError::Full(record)) => {
                        // Backpressure: wait for room, committing what finishes meanwhile.
                        let queue = worker.queue.clone();
                        let mut send = std::pin::pin!(queue.send(record));
                        loop {
                            tokio::select! {
                                sent = &mut send => {
                                    if sent.is_err() {
                                        tracing::warn!(partition, "worker stopped; its command is redone later");
                                    }
                                    break;
                                }
                                Some(done) = done_rx.recv() => commit(&mut *consumer, &workers, &done).await,
                            }
                        }
                    }
                }
            }
        }
    };
    parts_stop.cancel();
    // Shutdown is bounded whatever the broker does: in-flight commands get until the
    // deadline to finish (their offsets stay uncommitted and are redone if needed), the
    // commands finished by then are committed, and the rest is abandoned.
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    for task in [sweeper, probe, dashboard, jobs] {
        stop_by(deadline, task).await;
    }
    let mut finishing = Vec::new();
    for (partition, worker) in &mut workers {
        let (queue, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut worker.queue, queue));
        finishing.push((*partition, &mut worker.task));
    }
    for (partition, task) in finishing {
        if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
            tracing::warn!(
                partition,
                "a command did not finish before the shutdown deadline; it is redone later"
            );
            task.abort();
        }
    }
    while let Ok(record) = done_rx.try_recv() {
        commit(&mut *consumer, &workers, &record).await;
    }
    tracing::info!("processor runner stopped");
    result
}

/// How long shutdown waits for in-flight commands and the runner's tasks.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Subscribes to the commands, retrying transient failures (the broker may be restarting as
/// the processor starts); `None` if `shutdown` fires first.
async fn subscribe(
    log: &dyn Log,
    subscription: &Subscription,
    metrics: &ProcessorMetrics,
    shutdown: &CancellationToken,
) -> Result<Option<Box<dyn Consumer>>, RunnerError> {
    let mut backoff = Backoff::default();
    loop {
        match log.subscribe(COMMANDS, subscription.clone()).await {
            Ok(consumer) => return Ok(Some(consumer)),
            Err(error) if error.is_transient() => {
                metrics.log.failed("subscribe_commands", &error);
                tracing::warn!(%error, "cannot subscribe to the commands yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The name of a part of the runner that has ended, if one has.
fn ended(parts: &[(&str, &JoinHandle<()>)], workers: &HashMap<u32, Worker>) -> Option<String> {
    if let Some((name, _)) = parts.iter().find(|(_, task)| task.is_finished()) {
        return Some((*name).to_owned());
    }
    workers
        .iter()
        .find(|(_, worker)| worker.task.is_finished())
        .map(|(partition, _)| format!("worker of partition {partition}"))
}

/// Waits for `task` until `deadline`, then aborts it.
async fn stop_by(deadline: tokio::time::Instant, mut task: JoinHandle<()>) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        task.abort();
    }
}

/// Commits a finished command, unless its partition was revoked meanwhile (the new owner
/// processes it again). A failed commit only means it may be processed again.
async fn commit(consumer: &mut dyn Consumer, workers: &HashMap<u32, Worker>, record: &Record) {
    if !workers.contains_key(&record.partition) {
        return;
    }
    if let Err(error) = consumer.commit(record).await {
        tracing::warn!(%error, partition = record.partition, "commit failed; the command may be processed again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::test_support::{claims, event};
    use crate::testing::{from_start, next, seeded, seeded_store};
    use bytes::Bytes;
    use eventlog::EmbeddedLog;
    use serde_json::json;
    use topics::names::{TopicSpec, DEAD_LETTERS, DELIVERIES};
    use topics::Delivery;

    /// A runner on `log` and `store`, running until [`Running::stop`].
    struct Running {
        metrics: ProcessorMetrics,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), RunnerError>>,
    }

    impl Running {
        fn start(config: RunnerConfig, log: &Arc<dyn Log>, store: &Arc<dyn Store>) -> Self {
            let metrics = ProcessorMetrics::new(&prometheus::Registry::new());
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(run(
                config,
                log.clone(),
                store.clone(),
                metrics.clone(),
                shutdown.clone(),
            ));
            Self {
                metrics,
                shutdown,
                task,
            }
        }

        /// Shuts the runner down and checks it stopped cleanly.
        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.expect("joins").expect("clean stop");
        }
    }

    #[tokio::test]
    async fn poison_commands_go_to_the_dead_letter_topic_and_consumption_moves_on() {
        let (_dir, log, store) = seeded().await;
        let store: Arc<dyn Store> = Arc::new(store);
        let mut dead = from_start(&*log, DEAD_LETTERS).await;
        let mut deliveries = from_start(&*log, DELIVERIES).await;
        let topic = "donations:campaign:1";
        log.append(
            COMMANDS,
            topic.as_bytes(),
            Bytes::from_static(b"not a command"),
        )
        .await
        .expect("append");
        let good = event(
            topic,
            claims(None, &[]),
            "new_donation",
            json!({"amount": "3", "donor_name": "X"}),
        );
        log.append(COMMANDS, topic.as_bytes(), good.encode().expect("encodes"))
            .await
            .expect("append");

        let runner = Running::start(RunnerConfig::default(), &log, &store);
        let poisoned = tokio::time::timeout(Duration::from_secs(5), dead.next())
            .await
            .expect("dead letter in time")
            .expect("read");
        assert_eq!(&poisoned.value[..], b"not a command");
        // The command after it is processed as usual.
        let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        assert_eq!(
            delivery.reply.expect("reply").status,
            topics::ReplyStatus::Ok
        );
        assert_eq!(runner.metrics.dead_letters.get(), 1);
        runner.stop().await;
    }

    #[tokio::test]
    async fn a_full_partition_queue_loses_nothing() {
        let (_dir, log, store) = seeded().await;
        let store: Arc<dyn Store> = Arc::new(store);
        let topic = "donations:campaign:1";
        const COMMANDS_SENT: usize = 600;
        for i in 0..COMMANDS_SENT {
            let mut cmd = event(
                topic,
                claims(None, &[]),
                "new_donation",
                json!({"amount": "1", "donor_name": format!("d{i}")}),
            );
            cmd.id = format!("cmd-{i}");
            log.append(COMMANDS, topic.as_bytes(), cmd.encode().expect("encodes"))
                .await
                .expect("append");
        }
        let config = RunnerConfig {
            partition_queue: 2,
            ..RunnerConfig::default()
        };
        let runner = Running::start(config, &log, &store);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let campaign = store.campaign("1").await.expect("read").expect("exists");
            if campaign.donation_count == COMMANDS_SENT as u64 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {COMMANDS_SENT} applied",
                campaign.donation_count
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        runner.stop().await;
    }

    /// The embedded log with a broker's record size limit: a batch holding a larger record is
    /// refused when its acknowledgement is awaited, as Kafka refuses it.
    #[derive(Debug)]
    struct Limited {
        inner: EmbeddedLog,
        max: usize,
    }

    #[async_trait::async_trait]
    impl Log for Limited {
        async fn append(
            &self,
            topic: TopicSpec,
            key: &[u8],
            value: Bytes,
        ) -> Result<(u32, u64), LogError> {
            self.inner.append(topic, key, value).await
        }

        fn send_all(
            &self,
            records: Vec<(TopicSpec, Bytes, Bytes)>,
        ) -> Result<eventlog::Pending, LogError> {
            if records.iter().any(|(_, _, value)| value.len() > self.max) {
                return Ok(Box::pin(std::future::ready(Err(LogError::Kafka(
                    "Message production error: MessageSizeTooLarge".into(),
                )))));
            }
            self.inner.send_all(records)
        }

        async fn subscribe(
            &self,
            topic: TopicSpec,
            subscription: Subscription,
        ) -> Result<Box<dyn Consumer>, LogError> {
            self.inner.subscribe(topic, subscription).await
        }
    }

    #[tokio::test]
    async fn outputs_too_large_for_the_log_are_dead_lettered_not_retried_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = EmbeddedLog::open(dir.path().join("log")).expect("log");
        let log: Arc<dyn Log> = Arc::new(Limited { inner, max: 460 });
        let store: Arc<dyn Store> = Arc::new(seeded_store(dir.path()).await);
        let mut dead = from_start(&*log, DEAD_LETTERS).await;
        let mut deliveries = from_start(&*log, DELIVERIES).await;
        let mut broadcasts = from_start(&*log, topics::names::BROADCASTS).await;
        // In one group: a donation whose broadcast is over the limit, and one whose outputs
        // fit. Then a small command on another topic.
        let big = event(
            "donations:campaign:1",
            claims(None, &[]),
            "new_donation",
            json!({"amount": "1", "donor_name": "x".repeat(100)}),
        );
        let mut fits = event(
            "donations:campaign:1",
            claims(None, &[]),
            "new_donation",
            json!({"amount": "2", "donor_name": "y"}),
        );
        fits.id = "fits".into();
        for command in [&big, &fits] {
            log.append(
                COMMANDS,
                b"donations:campaign:1",
                command.encode().expect("encodes"),
            )
            .await
            .expect("append");
        }
        let runner = Running::start(RunnerConfig::default(), &log, &store);
        let refused = tokio::time::timeout(Duration::from_secs(5), dead.next())
            .await
            .expect("a dead letter in time")
            .expect("read");
        assert_eq!(refused.value, big.encode().expect("encodes"));
        // Both were applied and both answered (the big one's reply fits); only the big
        // broadcast is lost, not its group-mate's.
        for id in [&big.id, &fits.id] {
            let reply: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
            let body = reply.reply.expect("a reply");
            assert_eq!(body.status, topics::ReplyStatus::Ok);
            assert_eq!(body.response["donation_id"], id.as_str());
        }
        // (The dashboard's batches share the topic.)
        let sent = loop {
            let sent: topics::Broadcast =
                next(&mut broadcasts, |b| topics::Broadcast::decode(b).ok()).await;
            if sent.event == "donation_created" {
                break sent;
            }
        };
        assert_eq!(sent.payload["donation"]["id"], "fits");
        let mut small = event("donations:lobby", claims(None, &[]), "ping", json!({}));
        small.id = "small".into();
        log.append(
            COMMANDS,
            b"donations:lobby",
            small.encode().expect("encodes"),
        )
        .await
        .expect("append");
        let answered: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        assert_eq!(answered.topic, "donations:lobby", "consumption went on");
        assert_eq!(
            runner.metrics.dead_letters.get(),
            1,
            "refused once, not retried forever"
        );
        // A reply over the limit (it echoes a long currency) is replaced by a refusal.
        let mut long_reply = event(
            "zakat:user:1",
            claims(Some("1"), &[]),
            "calculate_nisab",
            json!({"currency": "X".repeat(500), "gold_price": "1"}),
        );
        long_reply.id = "long".into();
        log.append(
            COMMANDS,
            b"zakat:user:1",
            long_reply.encode().expect("encodes"),
        )
        .await
        .expect("append");
        let refused: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        assert_eq!(
            refused.reply.expect("a reply").response,
            json!({"reason": "reply too large"})
        );
        let campaign = store.campaign("1").await.expect("read").expect("seeded");
        assert_eq!(
            campaign.total,
            rust_decimal::Decimal::new(300, 2),
            "both counted once"
        );
        runner.stop().await;
    }

    #[tokio::test]
    async fn a_command_that_fails_for_good_is_set_aside_and_its_client_told() {
        let (_dir, log, store) = seeded().await;
        // An outcome that cannot be read back: answering from it fails, whatever the retries.
        store
            .apply("unreadable", &[], &json!("not an outcome"))
            .await
            .expect("apply");
        let store: Arc<dyn Store> = Arc::new(store);
        let mut dead = from_start(&*log, DEAD_LETTERS).await;
        let mut deliveries = from_start(&*log, DELIVERIES).await;
        let mut cmd = event(
            "donations:campaign:1",
            claims(None, &[]),
            "new_donation",
            json!({"amount": "1", "donor_name": "X"}),
        );
        cmd.id = "unreadable".into();
        log.append(
            COMMANDS,
            cmd.topic.as_bytes(),
            cmd.encode().expect("encodes"),
        )
        .await
        .expect("append");
        let runner = Running::start(RunnerConfig::default(), &log, &store);
        let set_aside = tokio::time::timeout(Duration::from_secs(5), dead.next())
            .await
            .expect("a dead letter in time")
            .expect("read");
        assert_eq!(set_aside.value, cmd.encode().expect("encodes"));
        let told: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        let reply = told.reply.expect("a reply");
        assert_eq!(reply.status, topics::ReplyStatus::Error);
        assert_eq!(reply.response, json!({"reason": "command failed"}));
        assert_eq!(told.socket.msg_ref, cmd.socket.msg_ref);
        runner.stop().await;
    }
}
