//! The tables as prepared CQL statements: one request per method, on one partition.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{bigint, connector_shard, int_text_map, text, CqlTables, CONNECTOR_SHARDS};
use crate::scylla::plan::corrupt;
use crate::scylla::tables::{CampaignCas, CampaignRow, Listed, Tables};
use crate::{Presence, PresenceFilter, StoreError};

#[async_trait]
impl Tables for CqlTables {
    async fn campaign(&self, id: &str) -> Result<Option<CampaignRow>, StoreError> {
        let Some(row) = self.first_row(&self.statements.campaign, (id,)).await? else {
            return Ok(None);
        };
        Ok(Some(CampaignRow {
            body: text(&row, 0).ok_or_else(|| corrupt("campaign without body"))?,
            version: bigint(&row, 1).unwrap_or_default(),
            pending: int_text_map(&row, 2),
        }))
    }

    async fn write_campaign(&self, cas: &CampaignCas) -> Result<bool, StoreError> {
        let pending =
            |p: &Option<(i32, String)>| -> HashMap<i32, String> { p.iter().cloned().collect() };
        match cas {
            CampaignCas::Create {
                id,
                body,
                pending: p,
            } => {
                self.lwt(&self.statements.create_campaign, (id, body, pending(p)))
                    .await
            }
            CampaignCas::Update {
                id,
                body,
                expected,
                pending: p,
            } => {
                self.lwt(
                    &self.statements.update_campaign,
                    (body, expected + 1, pending(p), id, expected),
                )
                .await
            }
        }
    }

    async fn insert_donation(
        &self,
        campaign_id: &str,
        bucket: i64,
        seq: i64,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.insert_donation,
            (campaign_id, bucket, seq, id, body),
        )
        .await
    }

    async fn donations(
        &self,
        campaign_id: &str,
        bucket: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        self.rows(&self.statements.donations, (campaign_id, bucket, limit))
            .await
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .first_row(&self.statements.outcome, (command_id,))
            .await?;
        Ok(row.and_then(|row| text(&row, 0)))
    }

    async fn put_outcome(&self, command_id: &str, outcome: &str) -> Result<(), StoreError> {
        self.run(&self.statements.put_outcome, (command_id, outcome))
            .await
    }

    async fn sequence(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = self.first_row(&self.statements.sequence, (name,)).await?;
        Ok(row.and_then(|row| bigint(&row, 0)))
    }

    async fn create_sequence(&self, name: &str) -> Result<bool, StoreError> {
        self.lwt(&self.statements.create_sequence, (name,)).await
    }

    async fn advance_sequence(&self, name: &str, from: i64, to: i64) -> Result<bool, StoreError> {
        self.lwt(&self.statements.advance_sequence, (to, name, from))
            .await
    }

    async fn claim(&self, sequence: &str, claimant: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .first_row(&self.statements.claim, (sequence, claimant))
            .await?;
        Ok(row.and_then(|row| bigint(&row, 0)))
    }

    async fn put_claim(
        &self,
        sequence: &str,
        claimant: &str,
        value: i64,
    ) -> Result<bool, StoreError> {
        self.lwt(&self.statements.put_claim, (sequence, claimant, value))
            .await
    }

    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<String>, StoreError> {
        let s = &self.statements;
        match filter {
            PresenceFilter::All => self.rows(&s.presences, (topic,)).await,
            PresenceFilter::Connector(c) => self.rows(&s.presences_of_connector, (topic, c)).await,
            PresenceFilter::Socket {
                connector_id,
                socket_id,
            } => {
                let socket = i64::try_from(*socket_id).map_err(corrupt)?;
                self.rows(&s.presences_of_socket, (topic, connector_id, socket))
                    .await
            }
        }
    }

    async fn add_presence_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        let shard = connector_shard(connector_id);
        self.run(
            &self.statements.add_presence_connector,
            (shard, connector_id),
        )
        .await
    }

    async fn add_presence_topic(&self, connector_id: &str, topic: &str) -> Result<(), StoreError> {
        self.run(&self.statements.add_presence_topic, (connector_id, topic))
            .await
    }

    async fn put_presence(&self, presence: &Presence, body: &str) -> Result<(), StoreError> {
        let socket = i64::try_from(presence.socket_id).map_err(corrupt)?;
        self.run(
            &self.statements.track,
            (
                &presence.topic,
                &presence.connector_id,
                socket,
                &presence.join_id,
                body,
            ),
        )
        .await
    }

    async fn delete_presence(&self, presence: &Presence) -> Result<(), StoreError> {
        let socket = i64::try_from(presence.socket_id).map_err(corrupt)?;
        self.run(
            &self.statements.untrack,
            (
                &presence.topic,
                &presence.connector_id,
                socket,
                &presence.join_id,
            ),
        )
        .await
    }

    async fn forget_presence_topic(
        &self,
        connector_id: &str,
        topic: &str,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.forget_presence_topic,
            (connector_id, topic),
        )
        .await
    }

    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError> {
        self.rows(&self.statements.presence_topics, (connector_id,))
            .await
    }

    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        for shard in 0..CONNECTOR_SHARDS {
            found.extend(
                self.rows(&self.statements.presence_connectors, (shard,))
                    .await?,
            );
        }
        Ok(found)
    }

    async fn forget_presence_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        let shard = connector_shard(connector_id);
        self.run(
            &self.statements.forget_presence_connector,
            (shard, connector_id),
        )
        .await
    }

    async fn put_record(&self, kind: &str, id: &str, body: &str) -> Result<(), StoreError> {
        self.run(&self.statements.put_record, (kind, id, body))
            .await
    }

    async fn put_history(
        &self,
        topic: &str,
        bucket: i64,
        offset: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        self.run(&self.statements.put_history, (topic, bucket, offset, body))
            .await
    }

    async fn history(
        &self,
        topic: &str,
        bucket: i64,
        after: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        self.rows(&self.statements.history, (topic, bucket, after, limit))
            .await
    }

    async fn record(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row = self.first_row(&self.statements.record, (kind, id)).await?;
        Ok(row.and_then(|row| text(&row, 0)))
    }

    async fn put_listed(&self, listed: &Listed<'_>) -> Result<(), StoreError> {
        self.run(
            &self.statements.put_listed,
            (
                listed.kind,
                listed.owner,
                listed.created_at,
                listed.id,
                listed.body,
            ),
        )
        .await
    }

    async fn listed(&self, kind: &str, owner: &str, limit: i32) -> Result<Vec<String>, StoreError> {
        self.rows(&self.statements.listed, (kind, owner, limit))
            .await
    }
}
