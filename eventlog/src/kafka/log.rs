//! The Kafka-backed [`Log`] and its consumers (feature `kafka`).

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{KafkaConsumer, RebalanceContext};
use super::{KafkaConfig, TopicPlacement};
use crate::{Consumer, Log, LogError, Pending, StartAt, Subscription};
use topics::names::{partition_for, TopicSpec, COMMANDS};

/// The librdkafka settings every client of `config` shares.
fn base(settings: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", &settings.client_id)
        // Small records must leave at once (Nagle plus delayed ACKs adds tens of ms).
        .set("socket.nagle.disable", "true")
        .set("log_level", "3");
    // librdkafka's own debug contexts (e.g. `cgrp,fetch,msg`), for diagnosing a cluster.
    if let Ok(debug) = std::env::var("FAWKES_KAFKA_DEBUG") {
        config.set("debug", debug).set("log_level", "7");
    }
    config
}

/// How long a metadata round trip (`ping`, the live end of a partition) may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`LogError`] for a librdkafka error: [`LogError::Unavailable`] when the broker is
/// unreachable or slow for now, [`LogError::Closed`] when the client is gone, else
/// [`LogError::Kafka`].
pub(super) fn kafka(error: KafkaError) -> LogError {
    match error.rdkafka_error_code() {
        // The consumer is unusable whatever the code says: subscribe again.
        _ if matches!(error, KafkaError::MessageConsumptionFatal(_)) => {
            LogError::Kafka(error.to_string())
        }
        Some(code) if is_transient(code) => LogError::Unavailable(error.to_string()),
        _ if matches!(error, KafkaError::Canceled) => LogError::Closed,
        _ => LogError::Kafka(error.to_string()),
    }
}

/// librdkafka codes that mean "not now" rather than "no": the broker is down, restarting,
/// moving leadership, or did not answer in time. A produce that ended with one of them may
/// still have been stored.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::Resolve
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::QueueFull
            | C::RequestTimedOut
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::WaitingForCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError
    )
}

/// Codes after which the idempotent producer's identity is dead: it keeps failing every
/// record until it is replaced (seen from Tansu after its connections were cut).
fn producer_unusable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::Fatal
            | C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::UnknownProducerId
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerIdMapping
    )
}

/// A fresh idempotent producer for `config`.
fn new_producer(config: &KafkaConfig) -> Result<FutureProducer, LogError> {
    base(config)
        .set("acks", "all")
        // Keeps the order of records per partition across retries.
        .set("enable.idempotence", "true")
        // One produce request at a time per broker: records still batch while the request
        // is out, and a broker that mishandles concurrent requests from one producer
        // (Tansu 0.6 lost records that way in our crash tests) cannot reorder or drop them.
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", config.linger_ms.to_string())
        .set(
            "message.timeout.ms",
            config.produce_timeout.as_millis().to_string(),
        )
        .create()
        .map_err(kafka)
}

/// The Kafka-backed log.
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    /// The idempotent producer; replaced when librdkafka declares it fatally failed (e.g.
    /// fenced after a broker restart), which no retry on the same instance can undo.
    producer: Arc<RwLock<FutureProducer>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
}

/// What the brokers keep, as [`KafkaLog::retention`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The commands topic's `retention.ms` (-1: forever).
    pub commands_ms: Option<i64>,
    /// The brokers' `offsets.retention.minutes`.
    pub offsets_minutes: Option<i64>,
}

/// The result of creating one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The topic was created.
    Created,
    /// It existed already, with the partition count Fawkes expects.
    Existed,
    /// It existed already with another partition count. Fawkes routes records to partitions
    /// itself with the count it was built with, so this cluster cannot be used as it is.
    Mismatch {
        /// The partitions the topic has on the cluster.
        partitions: usize,
    },
}

impl KafkaLog {
    /// Creates the producer (no broker round trip happens until the first call).
    pub fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        let producer = Arc::new(RwLock::new(new_producer(&config)?));
        Ok(Self { config, producer })
    }

    /// The producer in use now.
    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Classifies a produce error of `used`; a producer in a fatal state is replaced by a
    /// fresh one (once, by whoever sees it first), and the error is then transient: the
    /// records it had in flight are unknown, and a retry goes through the new producer.
    fn produce_failed(&self, used: &FutureProducer, error: KafkaError) -> LogError {
        let fenced = error
            .rdkafka_error_code()
            .filter(|code| producer_unusable(*code));
        let Some((code, reason)) = used
            .client()
            .fatal_error()
            .or_else(|| fenced.map(|code| (code, code.to_string())))
        else {
            return kafka(error);
        };
        let mut current = self
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.client().native_ptr() == used.client().native_ptr() {
            match new_producer(&self.config) {
                Ok(fresh) => {
                    tracing::warn!(?code, %reason, "the Kafka producer failed fatally; replaced it");
                    let old = std::mem::replace(&mut *current, fresh);
                    // Dropping a producer flushes it for up to 500 ms: not on this thread.
                    tokio::task::spawn_blocking(move || drop(old));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot replace the failed Kafka producer");
                }
            }
        }
        LogError::Unavailable(format!("the producer failed ({reason}); retry: {error}"))
    }

    /// Creates `topics` with their partitions and settings, replicated as the brokers' defaults
    /// say; existing topics are left alone.
    pub async fn create_topics(
        &self,
        topics: &[TopicSpec],
    ) -> Result<Vec<(String, Created)>, LogError> {
        self.create_topics_placed(topics, TopicPlacement::default())
            .await
    }

    /// Creates `topics` with their partitions and settings, placed as `placement` says;
    /// existing topics are left alone, and reported as [`Created::Mismatch`] when their
    /// partition count differs from the definition's.
    pub async fn create_topics_placed(
        &self,
        topics: &[TopicSpec],
        placement: TopicPlacement,
    ) -> Result<Vec<(String, Created)>, LogError> {
        let admin: AdminClient<DefaultClientContext> =
            base(&self.config).create().map_err(kafka)?;
        let settings: Vec<Vec<(&str, String)>> = topics
            .iter()
            .map(|spec| {
                let mut settings = spec.settings();
                settings.extend(placement.settings());
                settings
            })
            .collect();
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&settings)
            .map(|(spec, settings)| {
                let partitions = i32::try_from(spec.partitions).unwrap_or(i32::MAX);
                let replication = TopicReplication::Fixed(placement.replication());
                settings.iter().fold(
                    NewTopic::new(spec.name, partitions, replication),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(kafka)?;
        let mut outcomes = results
            .into_iter()
            .map(|result| match result {
                Ok(name) => Ok((name, Created::Created)),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((name, Created::Existed)),
                Err((name, code)) => Err(LogError::Kafka(format!(
                    "cannot create topic {name}: {code}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if outcomes.iter().any(|(_, c)| *c == Created::Existed) {
            let on_cluster = self.list_topics().await?;
            check_partitions(&mut outcomes, topics, &on_cluster);
        }
        Ok(outcomes)
    }

    /// The offset the next record appended to `partition` of `topic` will get.
    async fn high_watermark(&self, topic: &'static str, partition: i32) -> Result<i64, LogError> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = base(&config).create().map_err(kafka)?;
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(kafka)?;
            Ok(high)
        })
        .await
        .map_err(|_| LogError::Closed)?
    }

    /// How long the brokers keep what the processors' guarantees lean on: the commands
    /// topic's `retention.ms`, and the brokers' `offsets.retention.minutes` (how long a
    /// committed position of a partition nobody commits to survives). `None` for a value the
    /// broker did not report; an error when it does not answer `DescribeConfigs` at all.
    pub async fn retention(&self) -> Result<Retention, LogError> {
        let admin: AdminClient<DefaultClientContext> =
            base(&self.config).create().map_err(kafka)?;
        let config = self.config.clone();
        let broker = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = base(&config).create().map_err(kafka)?;
            let metadata = consumer
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(kafka)?;
            Ok::<_, LogError>(metadata.brokers().first().map(|b| b.id()))
        })
        .await
        .map_err(|_| LogError::Closed)??;
        let mut resources = vec![ResourceSpecifier::Topic(COMMANDS.name)];
        resources.extend(broker.map(ResourceSpecifier::Broker));
        let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
        let described = admin
            .describe_configs(&resources, &options)
            .await
            .map_err(kafka)?;
        let value = |index: usize, name: &str| -> Option<i64> {
            let resource = described.get(index)?.as_ref().ok()?;
            resource.get(name)?.value.as_deref()?.parse().ok()
        };
        Ok(Retention {
            commands_ms: value(0, "retention.ms"),
            offsets_minutes: value(1, "offsets.retention.minutes"),
        })
    }

    /// Topics on the cluster and their partition counts.
    pub async fn list_topics(&self) -> Result<Vec<(String, usize)>, LogError> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = base(&config).create().map_err(kafka)?;
            let metadata = consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .map_err(kafka)?;
            Ok(metadata
                .topics()
                .iter()
                .map(|t| (t.name().to_owned(), t.partitions().len()))
                .collect())
        })
        .await
        .map_err(|_| LogError::Closed)?
    }
}

#[async_trait]
impl Log for KafkaLog {
    async fn append(
        &self,
        topic: TopicSpec,
        key: &[u8],
        value: Bytes,
    ) -> Result<(u32, u64), LogError> {
        let producer = self.producer();
        let delivery = producer
            .send(record(topic, key, &value), self.config.produce_timeout)
            .await
            .map_err(|(error, _)| self.produce_failed(&producer, error))?;
        Ok((
            delivery.partition.unsigned_abs(),
            delivery.offset.unsigned_abs(),
        ))
    }

    async fn flush(&self, within: Duration) -> Result<(), LogError> {
        let producer = self.producer();
        // librdkafka's flush blocks its thread: not a runtime worker.
        tokio::task::spawn_blocking(move || producer.flush(within).map_err(kafka))
            .await
            .map_err(|_| LogError::Closed)?
    }

    async fn ping(&self) -> Result<(), LogError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(COMMANDS.name), METADATA_TIMEOUT)
                .map(|_| ())
                .map_err(kafka)
        })
        .await
        .map_err(|_| LogError::Closed)?
    }

    fn send_all(&self, records: Vec<(TopicSpec, Bytes, Bytes)>) -> Result<Pending, LogError> {
        // Enqueue now, in order (the idempotent producer keeps that order per partition, also
        // across calls); the future waits for the acknowledgements.
        let producer = self.producer();
        let mut pending = Vec::with_capacity(records.len());
        let mut rest = records.into_iter();
        while let Some((topic, key, value)) = rest.next() {
            match producer.send_result(record(topic, &key, &value)) {
                Ok(delivery) => pending.push(delivery),
                Err((error, _)) => {
                    // The local queue is full: send this and the remaining records with
                    // backpressure, after the ones already queued.
                    tracing::debug!(%error, "producer queue busy; sending with backpressure");
                    let log = self.clone();
                    let remaining: Vec<_> =
                        std::iter::once((topic, key, value)).chain(rest).collect();
                    return Ok(Box::pin(async move {
                        await_all(&log, &producer, pending).await?;
                        for (topic, key, value) in remaining {
                            log.append(topic, &key, value).await?;
                        }
                        Ok(())
                    }));
                }
            }
        }
        let log = self.clone();
        Ok(Box::pin(async move {
            await_all(&log, &producer, pending).await
        }))
    }

    async fn subscribe(
        &self,
        topic: TopicSpec,
        subscription: Subscription,
    ) -> Result<Box<dyn Consumer>, LogError> {
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let context = RebalanceContext {
            topic: topic.name,
            revoked: revoked.clone(),
        };
        let mut config = base(&self.config);
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait_max_ms.to_string(),
            )
            .set(
                "session.timeout.ms",
                self.config.session_timeout_ms.to_string(),
            )
            // Heartbeat well inside the session timeout, or a short timeout expires live members.
            .set(
                "heartbeat.interval.ms",
                (self.config.session_timeout_ms / 3).max(100).to_string(),
            )
            // Sent as the rebalance timeout: how long a rebalance waits for members to rejoin.
            // The runner polls continuously (work happens in other tasks), so it can be short.
            .set(
                "max.poll.interval.ms",
                self.config.session_timeout_ms.max(1000).to_string(),
            )
            .set("auto.offset.reset", "earliest")
            // Fawkes writes no transactions; read_committed would also make offset fetches
            // wait for "stable" offsets.
            .set("isolation.level", "read_uncommitted");
        // Group members subscribe (the broker assigns partitions); everybody else assigns
        // fixed partitions at chosen offsets, which joins no group and never rebalances.
        let (group, assignment) = match &subscription {
            Subscription::Group(group) => {
                if let Some(instance) = &self.config.group_instance_id {
                    config.set("group.instance.id", instance);
                }
                (group.clone(), None)
            }
            // The group id only names where positions are committed.
            Subscription::Owned { group, partitions } => (
                group.clone(),
                Some(
                    partitions
                        .iter()
                        .map(|p| (*p, Offset::Stored))
                        .collect::<Vec<_>>(),
                ),
            ),
            Subscription::Partitions { partitions, start } => {
                let mut offsets = Vec::with_capacity(partitions.len());
                for p in partitions {
                    let offset = match start {
                        StartAt::Earliest => Offset::Beginning,
                        // Resolve the live end now rather than leaving `Offset::End` to the
                        // fetcher: a record appended between subscribing and the first fetch
                        // (a reply to the first command, say) must not be skipped.
                        StartAt::Latest => Offset::Offset(
                            self.high_watermark(topic.name, i32::try_from(*p).unwrap_or(0))
                                .await?,
                        ),
                    };
                    offsets.push((*p, offset));
                }
                // A private group id: partition readers never commit.
                let group = format!("{}-reader-{}", self.config.client_id, std::process::id());
                (group, Some(offsets))
            }
        };
        let consumer: StreamConsumer<RebalanceContext> = config
            .set("group.id", group)
            .create_with_context(context)
            .map_err(kafka)?;
        match assignment {
            None => consumer.subscribe(&[topic.name]).map_err(kafka)?,
            Some(offsets) => {
                let mut list = TopicPartitionList::new();
                for (partition, offset) in offsets {
                    list.add_partition_offset(
                        topic.name,
                        i32::try_from(partition).unwrap_or(0),
                        offset,
                    )
                    .map_err(kafka)?;
                }
                consumer.assign(&list).map_err(kafka)?;
            }
        }
        Ok(Box::new(KafkaConsumer {
            topic: topic.name,
            consumer,
            revoked,
        }))
    }
}

/// Marks topics that existed with another partition count than their definition as
/// [`Created::Mismatch`]; `on_cluster` lists the cluster's topics and their partition counts.
fn check_partitions(
    outcomes: &mut [(String, Created)],
    specs: &[TopicSpec],
    on_cluster: &[(String, usize)],
) {
    for (name, created) in outcomes {
        let spec = specs.iter().find(|t| t.name == name.as_str());
        let found = on_cluster.iter().find(|(n, _)| n == name);
        if let (Created::Existed, Some(spec), Some((_, partitions))) = (&created, spec, found) {
            if u32::try_from(*partitions).ok() != Some(spec.partitions) {
                *created = Created::Mismatch {
                    partitions: *partitions,
                };
            }
        }
    }
}

/// The producer record for `key` on its partition of `topic` (Fawkes picks partitions itself).
fn record<'a>(topic: TopicSpec, key: &'a [u8], value: &'a [u8]) -> FutureRecord<'a, [u8], [u8]> {
    let partition = partition_for(key, topic.partitions);
    FutureRecord::to(topic.name)
        .key(key)
        .payload(value)
        .partition(i32::try_from(partition).unwrap_or(0))
}

/// Waits for the acknowledgements of records sent through `producer`, in order.
async fn await_all(
    log: &KafkaLog,
    producer: &FutureProducer,
    pending: Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), LogError> {
    for delivery in pending {
        delivery
            .await
            .map_err(|_| LogError::Closed)?
            .map_err(|(error, _)| log.produce_failed(producer, error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use topics::names::{COMMANDS, HEARTBEATS};

    #[test]
    fn existing_topics_with_other_partition_counts_are_reported() {
        let mut outcomes = vec![
            (COMMANDS.name.to_owned(), Created::Existed),
            (HEARTBEATS.name.to_owned(), Created::Existed),
        ];
        let on_cluster = vec![
            (COMMANDS.name.to_owned(), 32),
            (HEARTBEATS.name.to_owned(), 1),
        ];
        check_partitions(&mut outcomes, &[COMMANDS, HEARTBEATS], &on_cluster);
        assert_eq!(outcomes[0].1, Created::Mismatch { partitions: 32 });
        assert_eq!(outcomes[1].1, Created::Existed);
    }

    #[test]
    fn unreachable_brokers_and_timeouts_are_transient() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::OperationTimedOut,
        ] {
            let error = kafka(KafkaError::MessageProduction(code));
            assert!(error.is_transient(), "{code:?} -> {error}");
            let error = kafka(KafkaError::MessageConsumption(code));
            assert!(error.is_transient(), "{code:?} -> {error}");
        }
    }

    #[test]
    fn refusals_and_a_dropped_client_are_not() {
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            let error = kafka(KafkaError::MessageProduction(code));
            assert!(!error.is_transient(), "{code:?} -> {error}");
        }
        assert!(matches!(kafka(KafkaError::Canceled), LogError::Closed));
    }
}
