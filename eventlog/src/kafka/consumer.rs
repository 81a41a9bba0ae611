//! The Kafka consumer: one rdkafka stream consumer per subscription, and the rebalance
//! context that records partitions a group member lost.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message as _;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::log::kafka;
use crate::{Consumer, LogError, Record};

/// Records partitions taken away by a rebalance, for [`Consumer::take_revoked`].
pub(super) struct RebalanceContext {
    pub(super) topic: &'static str,
    pub(super) revoked: Arc<Mutex<Vec<u32>>>,
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
pub(super) struct KafkaConsumer {
    pub(super) topic: &'static str,
    pub(super) consumer: StreamConsumer<RebalanceContext>,
    pub(super) revoked: Arc<Mutex<Vec<u32>>>,
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
