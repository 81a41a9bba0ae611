//! The Kafka-backed [`Log`] and its consumers (feature `kafka`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{KafkaConfig, TopicPlacement};
use crate::{Consumer, Log, LogError, Pending, Record, StartAt, Subscription};
use topics::names::{partition_for, TopicSpec};

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

fn kafka(error: KafkaError) -> LogError {
    LogError::Kafka(error.to_string())
}

/// The Kafka-backed log.
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
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
        let producer: FutureProducer = base(&config)
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
            .map_err(kafka)?;
        Ok(Self { config, producer })
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
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    Ok((name, Created::Existed))
                }
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
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(kafka)?;
            Ok(high)
        })
        .await
        .map_err(|_| LogError::Closed)?
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
        let delivery = self
            .producer
            .send(record(topic, key, &value), self.config.produce_timeout)
            .await
            .map_err(|(error, _)| kafka(error))?;
        Ok((
            delivery.partition.unsigned_abs(),
            delivery.offset.unsigned_abs(),
        ))
    }

    fn send_all(&self, records: Vec<(TopicSpec, Bytes, Bytes)>) -> Result<Pending, LogError> {
        // Enqueue now, in order (the idempotent producer keeps that order per partition, also
        // across calls); the future waits for the acknowledgements.
        let mut pending = Vec::with_capacity(records.len());
        let mut rest = records.into_iter();
        while let Some((topic, key, value)) = rest.next() {
            match self.producer.send_result(record(topic, &key, &value)) {
                Ok(delivery) => pending.push(delivery),
                Err((error, _)) => {
                    // The local queue is full: send this and the remaining records with
                    // backpressure, after the ones already queued.
                    tracing::debug!(%error, "producer queue busy; sending with backpressure");
                    let log = self.clone();
                    let remaining: Vec<_> =
                        std::iter::once((topic, key, value)).chain(rest).collect();
                    return Ok(Box::pin(async move {
                        await_all(pending).await?;
                        for (topic, key, value) in remaining {
                            log.append(topic, &key, value).await?;
                        }
                        Ok(())
                    }));
                }
            }
        }
        Ok(Box::pin(await_all(pending)))
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

async fn await_all(pending: Vec<rdkafka::producer::DeliveryFuture>) -> Result<(), LogError> {
    for delivery in pending {
        delivery
            .await
            .map_err(|_| LogError::Closed)?
            .map_err(|(error, _)| kafka(error))?;
    }
    Ok(())
}

/// Records partitions taken away by a rebalance, for [`Consumer::take_revoked`].
struct RebalanceContext {
    topic: &'static str,
    revoked: Arc<Mutex<Vec<u32>>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
            for element in partitions.elements_for_topic(self.topic) {
                revoked.push(element.partition().unsigned_abs());
            }
            tracing::info!(
                topic = self.topic,
                count = partitions.count(),
                "partitions revoked"
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(
                topic = self.topic,
                count = partitions.count(),
                "partitions assigned"
            );
        }
    }
}

/// A Kafka consumer of one topic.
struct KafkaConsumer {
    topic: &'static str,
    consumer: StreamConsumer<RebalanceContext>,
    revoked: Arc<Mutex<Vec<u32>>>,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    fn one(&self, partition: u32, offset: Offset) -> Result<TopicPartitionList, LogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(self.topic, i32::try_from(partition).unwrap_or(0), offset)
            .map_err(kafka)?;
        Ok(list)
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn next(&mut self) -> Result<Record, LogError> {
        let message = self.consumer.recv().await.map_err(kafka)?;
        Ok(Record {
            partition: message.partition().unsigned_abs(),
            offset: message.offset().unsigned_abs(),
            key: Bytes::copy_from_slice(message.key().unwrap_or_default()),
            value: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        })
    }

    async fn commit(&mut self, record: &Record) -> Result<(), LogError> {
        let next = i64::try_from(record.offset + 1).unwrap_or(i64::MAX);
        let list = self.one(record.partition, Offset::Offset(next))?;
        // Async: the commit is sent in the background; a lost commit only means the command
        // is processed again, which is idempotent.
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(kafka)
    }

    fn assigned(&self) -> Vec<u32> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .filter_map(|e| u32::try_from(e.partition()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn take_revoked(&mut self) -> Vec<u32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(PoisonError::into_inner))
    }
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
}
