//! What the Scylla protocol asks of the cluster: one method per statement, with the
//! semantics of its single-partition conditional write stated where it has one. The driver
//! runs them as prepared CQL (`driver`); the model runs them in memory (`model`, tests), so
//! the protocol above them is tested here without a server.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::{Presence, PresenceFilter, StoreError};

/// A campaign row as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CampaignRow {
    /// The campaign as JSON (its fence, `applied`, included).
    pub(crate) body: String,
    /// The stored version.
    pub(crate) version: i64,
    /// Per command partition, the commands of the last group from it that wrote the row.
    pub(crate) pending: BTreeMap<i32, String>,
}

/// A campaign's conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CampaignCas {
    /// `INSERT INTO campaigns (id, version, body, pending) VALUES (?, 1, ?, ?) IF NOT EXISTS`:
    /// applied only if no row has this id.
    Create {
        /// The campaign id.
        id: String,
        /// Its body.
        body: String,
        /// `pending[partition] = commands`, when the write came from the log.
        pending: Option<(i32, String)>,
    },
    /// `UPDATE campaigns SET body = ?, version = ? + 1, pending[?] = ? WHERE id = ?
    /// IF version = ?`: applied only if the stored version is still `expected`.
    Update {
        /// The campaign id.
        id: String,
        /// Its new body.
        body: String,
        /// The version the write was based on.
        expected: i64,
        /// `pending[partition] = commands`, when the write came from the log.
        pending: Option<(i32, String)>,
    },
}

/// The statements of the Scylla store. Every call is one request on one partition; the
/// conditional ones (`-> bool`) are lightweight transactions that report whether their
/// condition held and they were applied.
#[async_trait]
pub(crate) trait Tables: Send + Sync + std::fmt::Debug + 'static {
    /// `SELECT body, version, pending FROM campaigns WHERE id = ?`.
    async fn campaign(&self, id: &str) -> Result<Option<CampaignRow>, StoreError>;

    /// A campaign's conditional write (see [`CampaignCas`]).
    async fn write_campaign(&self, cas: &CampaignCas) -> Result<bool, StoreError>;

    /// `INSERT INTO donations_by_campaign (campaign_id, bucket, seq, id, body)`: idempotent.
    async fn insert_donation(
        &self,
        campaign_id: &str,
        bucket: i64,
        seq: i64,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError>;

    /// `SELECT body FROM donations_by_campaign WHERE campaign_id = ? AND bucket = ? LIMIT ?`,
    /// newest first.
    async fn donations(
        &self,
        campaign_id: &str,
        bucket: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError>;

    /// `SELECT outcome FROM outcomes WHERE command_id = ?`.
    async fn outcome(&self, command_id: &str) -> Result<Option<String>, StoreError>;

    /// `INSERT INTO outcomes (command_id, outcome)` (with the table's time to live):
    /// idempotent, every writer of one command writes the same outcome.
    async fn put_outcome(&self, command_id: &str, outcome: &str) -> Result<(), StoreError>;

    /// `SELECT value FROM sequences WHERE name = ?`.
    async fn sequence(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// `INSERT INTO sequences (name, value) VALUES (?, 1) IF NOT EXISTS`.
    async fn create_sequence(&self, name: &str) -> Result<bool, StoreError>;

    /// `UPDATE sequences SET value = ? WHERE name = ? IF value = ?`.
    async fn advance_sequence(&self, name: &str, from: i64, to: i64) -> Result<bool, StoreError>;

    /// `SELECT value FROM claims WHERE sequence = ? AND claimant = ?`.
    async fn claim(&self, sequence: &str, claimant: &str) -> Result<Option<i64>, StoreError>;

    /// `INSERT INTO claims (sequence, claimant, value) VALUES (?, ?, ?) IF NOT EXISTS`.
    async fn put_claim(
        &self,
        sequence: &str,
        claimant: &str,
        value: i64,
    ) -> Result<bool, StoreError>;

    /// The presence bodies of `topic` that pass `filter` (one partition: the topic).
    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<String>, StoreError>;

    /// `INSERT INTO presence_connectors (shard, connector_id)`: idempotent.
    async fn add_presence_connector(&self, connector_id: &str) -> Result<(), StoreError>;

    /// `INSERT INTO presence_by_connector (connector_id, topic)`: idempotent.
    async fn add_presence_topic(&self, connector_id: &str, topic: &str) -> Result<(), StoreError>;

    /// `INSERT INTO presence (topic, connector_id, socket_id, phx_ref, body)`: idempotent.
    async fn put_presence(&self, presence: &Presence, body: &str) -> Result<(), StoreError>;

    /// `DELETE FROM presence WHERE topic = ? AND connector_id = ? AND socket_id = ? AND
    /// phx_ref = ?`: idempotent.
    async fn delete_presence(&self, presence: &Presence) -> Result<(), StoreError>;

    /// `DELETE FROM presence_by_connector WHERE connector_id = ? AND topic = ?`.
    async fn forget_presence_topic(
        &self,
        connector_id: &str,
        topic: &str,
    ) -> Result<(), StoreError>;

    /// `SELECT topic FROM presence_by_connector WHERE connector_id = ?`.
    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError>;

    /// `SELECT connector_id FROM presence_connectors WHERE shard = ?` over every shard.
    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError>;

    /// `DELETE FROM presence_connectors WHERE shard = ? AND connector_id = ?`.
    async fn forget_presence_connector(&self, connector_id: &str) -> Result<(), StoreError>;

    /// `INSERT INTO records (kind, id, body)`: idempotent, the last write wins.
    async fn put_record(&self, kind: &str, id: &str, body: &str) -> Result<(), StoreError>;

    /// `SELECT body FROM records WHERE kind = ? AND id = ?`.
    async fn record(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError>;

    /// `INSERT INTO records_by_owner (kind, owner, created_at, id, body)`: idempotent, the
    /// last write wins.
    async fn put_listed(&self, listed: &Listed<'_>) -> Result<(), StoreError>;

    /// `INSERT INTO history (topic, bucket, offset, body)`: idempotent.
    async fn put_history(
        &self,
        topic: &str,
        bucket: i64,
        offset: i64,
        body: &str,
    ) -> Result<(), StoreError>;

    /// `SELECT body FROM history WHERE topic = ? AND bucket = ? AND offset > ? LIMIT ?`,
    /// oldest first.
    async fn history(
        &self,
        topic: &str,
        bucket: i64,
        after: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError>;

    /// `SELECT body FROM records_by_owner WHERE kind = ? AND owner = ? LIMIT ?`, newest first.
    async fn listed(&self, kind: &str, owner: &str, limit: i32) -> Result<Vec<String>, StoreError>;
}

/// A row of `records_by_owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listed<'a> {
    /// What it is (a document kind, or `fawkes.donations@<year>`).
    pub(crate) kind: &'a str,
    /// The user it is listed under.
    pub(crate) owner: &'a str,
    /// The listing's order (newest first).
    pub(crate) created_at: &'a str,
    /// Its id.
    pub(crate) id: &'a str,
    /// The record.
    pub(crate) body: &'a str,
}
