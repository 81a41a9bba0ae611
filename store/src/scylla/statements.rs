//! Every statement the store runs: its CQL by name, and the set prepared once at connect.

use std::collections::HashMap;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::SerialConsistency;

use super::driver::unavailable;
use super::ScyllaConfig;
use crate::StoreError;

/// Every statement the store runs, prepared once.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) campaign: PreparedStatement,
    pub(super) create_campaign: PreparedStatement,
    pub(super) update_campaign: PreparedStatement,
    pub(super) insert_donation: PreparedStatement,
    pub(super) donations: PreparedStatement,
    pub(super) outcome: PreparedStatement,
    pub(super) put_outcome: PreparedStatement,
    pub(super) sequence: PreparedStatement,
    pub(super) create_sequence: PreparedStatement,
    pub(super) advance_sequence: PreparedStatement,
    pub(super) claim: PreparedStatement,
    pub(super) put_claim: PreparedStatement,
    pub(super) presences: PreparedStatement,
    pub(super) presences_of_connector: PreparedStatement,
    pub(super) presences_of_socket: PreparedStatement,
    pub(super) track: PreparedStatement,
    pub(super) untrack: PreparedStatement,
    pub(super) add_presence_topic: PreparedStatement,
    pub(super) forget_presence_topic: PreparedStatement,
    pub(super) presence_topics: PreparedStatement,
    pub(super) add_presence_connector: PreparedStatement,
    pub(super) presence_connectors: PreparedStatement,
    pub(super) forget_presence_connector: PreparedStatement,
    pub(super) put_record: PreparedStatement,
    pub(super) record: PreparedStatement,
    pub(super) put_listed: PreparedStatement,
    pub(super) listed: PreparedStatement,
    pub(super) put_history: PreparedStatement,
    pub(super) history: PreparedStatement,
}

/// The CQL of every statement, with `{keyspace}` to substitute.
pub(super) const CQL: [(&str, &str); 29] = [
    ("campaign", "SELECT body, version, pending FROM {keyspace}.campaigns WHERE id = ?"),
    (
        "create_campaign",
        "INSERT INTO {keyspace}.campaigns (id, version, body, pending) VALUES (?, 1, ?, ?) IF NOT EXISTS",
    ),
    (
        "update_campaign",
        "UPDATE {keyspace}.campaigns SET body = ?, version = ?, pending = pending + ? WHERE id = ? IF version = ?",
    ),
    (
        "insert_donation",
        "INSERT INTO {keyspace}.donations_by_campaign (campaign_id, bucket, seq, id, body) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "donations",
        "SELECT body FROM {keyspace}.donations_by_campaign WHERE campaign_id = ? AND bucket = ? LIMIT ?",
    ),
    ("outcome", "SELECT outcome FROM {keyspace}.outcomes WHERE command_id = ?"),
    ("put_outcome", "INSERT INTO {keyspace}.outcomes (command_id, outcome) VALUES (?, ?)"),
    ("sequence", "SELECT value FROM {keyspace}.sequences WHERE name = ?"),
    (
        "create_sequence",
        "INSERT INTO {keyspace}.sequences (name, value) VALUES (?, 1) IF NOT EXISTS",
    ),
    (
        "advance_sequence",
        "UPDATE {keyspace}.sequences SET value = ? WHERE name = ? IF value = ?",
    ),
    ("claim", "SELECT value FROM {keyspace}.claims WHERE sequence = ? AND claimant = ?"),
    (
        "put_claim",
        "INSERT INTO {keyspace}.claims (sequence, claimant, value) VALUES (?, ?, ?) IF NOT EXISTS",
    ),
    ("presences", "SELECT body FROM {keyspace}.presences WHERE topic = ?"),
    (
        "presences_of_connector",
        "SELECT body FROM {keyspace}.presences WHERE topic = ? AND connector_id = ?",
    ),
    (
        "presences_of_socket",
        "SELECT body FROM {keyspace}.presences WHERE topic = ? AND connector_id = ? AND socket_id = ?",
    ),
    (
        "track",
        "INSERT INTO {keyspace}.presences (topic, connector_id, socket_id, join_id, body) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "untrack",
        "DELETE FROM {keyspace}.presences WHERE topic = ? AND connector_id = ? AND socket_id = ? AND join_id = ?",
    ),
    (
        "add_presence_topic",
        "INSERT INTO {keyspace}.presence_by_connector (connector_id, topic) VALUES (?, ?)",
    ),
    (
        "forget_presence_topic",
        "DELETE FROM {keyspace}.presence_by_connector WHERE connector_id = ? AND topic = ?",
    ),
    ("presence_topics", "SELECT topic FROM {keyspace}.presence_by_connector WHERE connector_id = ?"),
    (
        "add_presence_connector",
        "INSERT INTO {keyspace}.presence_connectors (shard, connector_id) VALUES (?, ?)",
    ),
    ("presence_connectors", "SELECT connector_id FROM {keyspace}.presence_connectors WHERE shard = ?"),
    (
        "forget_presence_connector",
        "DELETE FROM {keyspace}.presence_connectors WHERE shard = ? AND connector_id = ?",
    ),
    (
        "put_record",
        "INSERT INTO {keyspace}.records (kind, id, body) VALUES (?, ?, ?)",
    ),
    ("record", "SELECT body FROM {keyspace}.records WHERE kind = ? AND id = ?"),
    (
        "put_listed",
        "INSERT INTO {keyspace}.records_by_owner (kind, owner, created_at, id, body) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "listed",
        "SELECT body FROM {keyspace}.records_by_owner WHERE kind = ? AND owner = ? LIMIT ?",
    ),
    (
        "put_history",
        "INSERT INTO {keyspace}.history (topic, bucket, offset, body) VALUES (?, ?, ?, ?)",
    ),
    (
        "history",
        "SELECT body FROM {keyspace}.history WHERE topic = ? AND bucket = ? AND offset > ? LIMIT ?",
    ),
];

impl Statements {
    /// Prepares every statement in `config.keyspace`, at its consistency; lightweight
    /// transactions run their Paxos round at `LOCAL_SERIAL`.
    pub(super) async fn prepare(
        session: &Session,
        config: &ScyllaConfig,
    ) -> Result<Self, StoreError> {
        let mut prepared = HashMap::with_capacity(CQL.len());
        for (name, cql) in CQL {
            let mut statement = session
                .prepare(cql.replace("{keyspace}", &config.keyspace))
                .await
                .map_err(unavailable)?;
            statement.set_consistency(config.consistency.into());
            statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            prepared.insert(name, statement);
        }
        // By name, so the order of `CQL` cannot swap two statements.
        let mut take = |name: &str| {
            prepared
                .remove(name)
                .ok_or_else(|| unavailable(format!("statement {name} missing")))
        };
        Ok(Statements {
            campaign: take("campaign")?,
            create_campaign: take("create_campaign")?,
            update_campaign: take("update_campaign")?,
            insert_donation: take("insert_donation")?,
            donations: take("donations")?,
            outcome: take("outcome")?,
            put_outcome: take("put_outcome")?,
            sequence: take("sequence")?,
            create_sequence: take("create_sequence")?,
            advance_sequence: take("advance_sequence")?,
            claim: take("claim")?,
            put_claim: take("put_claim")?,
            presences: take("presences")?,
            presences_of_connector: take("presences_of_connector")?,
            presences_of_socket: take("presences_of_socket")?,
            track: take("track")?,
            untrack: take("untrack")?,
            add_presence_topic: take("add_presence_topic")?,
            forget_presence_topic: take("forget_presence_topic")?,
            presence_topics: take("presence_topics")?,
            add_presence_connector: take("add_presence_connector")?,
            presence_connectors: take("presence_connectors")?,
            forget_presence_connector: take("forget_presence_connector")?,
            put_record: take("put_record")?,
            record: take("record")?,
            put_listed: take("put_listed")?,
            listed: take("listed")?,
            put_history: take("put_history")?,
            history: take("history")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_hits_one_partition() {
        for (name, cql) in CQL {
            assert!(!cql.to_uppercase().contains("ALLOW FILTERING"), "{name}");
            if cql.starts_with("SELECT") {
                assert!(cql.contains(" WHERE "), "{name} must name its partition");
            }
        }
        let donations = CQL
            .iter()
            .find(|(n, _)| *n == "donations")
            .map(|(_, c)| *c)
            .unwrap_or_default();
        assert!(
            donations.contains("campaign_id = ? AND bucket = ?"),
            "full partition key"
        );
    }
}
