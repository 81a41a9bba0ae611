//! The ScyllaDB store: the same [`Store`] on a Scylla (or Cassandra) cluster.
//!
//! Statements are prepared once at connect, rows are typed tuples, and a semaphore bounds
//! how many requests one process has in flight. Consistency is configurable (default
//! `LOCAL_QUORUM`, LWTs at `LOCAL_SERIAL`).
//!
//! Scylla has no multi-partition transactions, so [`Store::apply`] keeps its guarantees with a
//! small protocol keyed by the command id:
//! 1. a `done` key means the command was applied: return its outcome;
//! 2. write a `pending` key holding the writes and the outcome;
//! 3. compare-and-set the campaign row on its version, recording the command id in it;
//! 4. insert the donations and presence rows (idempotent by key), then mark the key `done`.
//!
//! After a crash between 3 and 4, the next attempt finds the `pending` key, sees from the
//! campaign row that step 3 happened, and finishes the stored writes instead of deciding again,
//! so nothing is counted twice; if step 3 did not happen, the attempt starts over. One command
//! writes at most one campaign (all Fawkes decisions do).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
pub use scylla::statement::Consistency;
use scylla::statement::SerialConsistency;
use scylla::value::{CqlValue, Row};
use serde_json::Value;
use tokio::sync::Semaphore;

use futures_util::StreamExt;

use crate::{Applied, Campaign, Donation, Presence, PresenceFilter, Store, StoreError, Write};

/// Donations per partition of `donations_by_campaign`.
pub const BUCKET_SIZE: u64 = 10_000;

/// The schema files, in the order they are applied.
pub const SCHEMA_FILES: [(&str, &str); 2] = [
    (
        "001_keyspace.cql",
        include_str!("../../infra/cql/001_keyspace.cql"),
    ),
    (
        "002_tables.cql",
        include_str!("../../infra/cql/002_tables.cql"),
    ),
];

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// The keyspace holding the tables.
    pub keyspace: String,
    /// Replication for `fawkes schema apply`, as CQL (e.g.
    /// `{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}`).
    pub replication: String,
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Most requests in flight from this process.
    pub max_in_flight: usize,
}

impl ScyllaConfig {
    /// Defaults for `nodes`: keyspace `fawkes`, replication factor 3, `LOCAL_QUORUM`.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: "fawkes".into(),
            replication: "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}".into(),
            consistency: Consistency::LocalQuorum,
            max_in_flight: 256,
        }
    }
}

/// The schema statements for `keyspace` with `replication`, in order.
pub fn schema_statements(keyspace: &str, replication: &str) -> Vec<String> {
    SCHEMA_FILES
        .iter()
        .flat_map(|(_, text)| {
            let without_comments: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            without_comments
                .split(';')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .map(|s| {
            s.replace("{keyspace}", keyspace)
                .replace("{replication}", replication)
        })
        .collect()
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A session on the configured nodes.
async fn open_session(config: &ScyllaConfig) -> Result<Session, StoreError> {
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .build()
        .await
        .map_err(unavailable)
}

/// Every statement the store runs, prepared once.
#[derive(Debug)]
struct Statements {
    campaign: PreparedStatement,
    create_campaign: PreparedStatement,
    update_campaign: PreparedStatement,
    insert_donation: PreparedStatement,
    donations: PreparedStatement,
    key: PreparedStatement,
    put_pending: PreparedStatement,
    mark_done: PreparedStatement,
    sequence: PreparedStatement,
    create_sequence: PreparedStatement,
    advance_sequence: PreparedStatement,
    presences: PreparedStatement,
    presences_of_connector: PreparedStatement,
    presences_of_socket: PreparedStatement,
    track: PreparedStatement,
    untrack: PreparedStatement,
    add_presence_topic: PreparedStatement,
    forget_presence_topic: PreparedStatement,
    presence_topics: PreparedStatement,
    add_presence_connector: PreparedStatement,
    presence_connectors: PreparedStatement,
    forget_presence_connector: PreparedStatement,
}

/// The CQL of every statement, with `{keyspace}` to substitute.
pub const CQL: [(&str, &str); 22] = [
    ("campaign", "SELECT body, version, last_command FROM {keyspace}.campaigns WHERE id = ?"),
    (
        "create_campaign",
        "INSERT INTO {keyspace}.campaigns (id, version, last_command, body) VALUES (?, 1, ?, ?) IF NOT EXISTS",
    ),
    (
        "update_campaign",
        "UPDATE {keyspace}.campaigns SET body = ?, version = ?, last_command = ? WHERE id = ? IF version = ?",
    ),
    (
        "insert_donation",
        "INSERT INTO {keyspace}.donations_by_campaign (campaign_id, bucket, seq, id, body) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "donations",
        "SELECT body FROM {keyspace}.donations_by_campaign WHERE campaign_id = ? AND bucket = ? LIMIT ?",
    ),
    ("key", "SELECT state, writes, outcome FROM {keyspace}.processed_commands WHERE command_id = ?"),
    (
        "put_pending",
        "INSERT INTO {keyspace}.processed_commands (command_id, state, writes, outcome) VALUES (?, 'pending', ?, ?)",
    ),
    ("mark_done", "UPDATE {keyspace}.processed_commands SET state = 'done' WHERE command_id = ?"),
    ("sequence", "SELECT value FROM {keyspace}.sequences WHERE name = ?"),
    (
        "create_sequence",
        "INSERT INTO {keyspace}.sequences (name, value) VALUES (?, 1) IF NOT EXISTS",
    ),
    (
        "advance_sequence",
        "UPDATE {keyspace}.sequences SET value = ? WHERE name = ? IF value = ?",
    ),
    ("presences", "SELECT body FROM {keyspace}.presence WHERE topic = ?"),
    (
        "presences_of_connector",
        "SELECT body FROM {keyspace}.presence WHERE topic = ? AND connector_id = ?",
    ),
    (
        "presences_of_socket",
        "SELECT body FROM {keyspace}.presence WHERE topic = ? AND connector_id = ? AND socket_id = ?",
    ),
    (
        "track",
        "INSERT INTO {keyspace}.presence (topic, connector_id, socket_id, phx_ref, body) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "untrack",
        "DELETE FROM {keyspace}.presence WHERE topic = ? AND connector_id = ? AND socket_id = ? AND phx_ref = ?",
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
        "INSERT INTO {keyspace}.presence_connectors (shard, connector_id) VALUES (0, ?)",
    ),
    ("presence_connectors", "SELECT connector_id FROM {keyspace}.presence_connectors WHERE shard = 0"),
    (
        "forget_presence_connector",
        "DELETE FROM {keyspace}.presence_connectors WHERE shard = 0 AND connector_id = ?",
    ),
];

/// The Scylla-backed store.
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    session: Arc<Session>,
    statements: Arc<Statements>,
    permits: Arc<Semaphore>,
}

impl ScyllaStore {
    /// Connects and prepares every statement; the schema must exist (`fawkes schema apply`).
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, StoreError> {
        let session = open_session(config).await?;
        let mut prepared = HashMap::with_capacity(CQL.len());
        for (name, cql) in CQL {
            let mut statement = session
                .prepare(cql.replace("{keyspace}", &config.keyspace))
                .await
                .map_err(unavailable)?;
            statement.set_consistency(config.consistency);
            statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            prepared.insert(name, statement);
        }
        // By name, so the order of `CQL` cannot swap two statements.
        let mut take = |name: &str| {
            prepared
                .remove(name)
                .ok_or_else(|| unavailable(format!("statement {name} missing")))
        };
        let statements = Statements {
            campaign: take("campaign")?,
            create_campaign: take("create_campaign")?,
            update_campaign: take("update_campaign")?,
            insert_donation: take("insert_donation")?,
            donations: take("donations")?,
            key: take("key")?,
            put_pending: take("put_pending")?,
            mark_done: take("mark_done")?,
            sequence: take("sequence")?,
            create_sequence: take("create_sequence")?,
            advance_sequence: take("advance_sequence")?,
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
        };
        Ok(Self {
            session: Arc::new(session),
            statements: Arc::new(statements),
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        })
    }

    /// Creates the keyspace and tables (idempotent).
    pub async fn apply_schema(config: &ScyllaConfig) -> Result<usize, StoreError> {
        let session = open_session(config).await?;
        let statements = schema_statements(&config.keyspace, &config.replication);
        for statement in &statements {
            session
                .query_unpaged(statement.as_str(), ())
                .await
                .map_err(unavailable)?;
        }
        Ok(statements.len())
    }

    /// Runs a prepared statement and returns its first row, if any.
    async fn first_row(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<Row>, StoreError> {
        let _permit = self.permits.acquire().await.map_err(unavailable)?;
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(unavailable)?;
        if !result.is_rows() {
            return Ok(None);
        }
        result
            .into_rows_result()
            .map_err(corrupt)?
            .maybe_first_row::<Row>()
            .map_err(corrupt)
    }

    /// Runs a query whose rows have one text column, reading every page.
    async fn rows(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<String>, StoreError> {
        let _permit = self.permits.acquire().await.map_err(unavailable)?;
        let mut rows = self
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(unavailable)?
            .rows_stream::<(String,)>()
            .map_err(corrupt)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().await {
            found.push(row.map_err(unavailable)?.0);
        }
        Ok(found)
    }

    /// Runs a statement that returns no rows (or whose rows do not matter).
    async fn run(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<(), StoreError> {
        let _permit = self.permits.acquire().await.map_err(unavailable)?;
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Runs a lightweight transaction; true when it was applied.
    async fn lwt(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<bool, StoreError> {
        let row = self.first_row(statement, values).await?;
        Ok(applied(row.as_ref()))
    }

    async fn campaign_row(
        &self,
        id: &str,
    ) -> Result<Option<(Campaign, Option<String>)>, StoreError> {
        let Some(row) = self.first_row(&self.statements.campaign, (id,)).await? else {
            return Ok(None);
        };
        let body = text(&row, 0).ok_or_else(|| corrupt("campaign without body"))?;
        let mut campaign: Campaign = serde_json::from_str(&body).map_err(corrupt)?;
        campaign.version = bigint(&row, 1).unwrap_or_default().unsigned_abs();
        Ok(Some((campaign, text(&row, 2))))
    }

    /// Step 3: the campaign compare-and-set; false when another writer got there first.
    async fn write_campaign(
        &self,
        command_id: &str,
        campaign: &Campaign,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(campaign).map_err(corrupt)?;
        if campaign.version == 0 {
            self.lwt(
                &self.statements.create_campaign,
                (&campaign.id, command_id, &body),
            )
            .await
        } else {
            let version = i64::try_from(campaign.version).map_err(corrupt)?;
            self.lwt(
                &self.statements.update_campaign,
                (&body, version + 1, command_id, &campaign.id, version),
            )
            .await
        }
    }

    /// Step 4: the idempotent rest of the writes, then the key marked done.
    async fn finish(&self, command_id: &str, writes: &[Write]) -> Result<(), StoreError> {
        let count = writes.iter().find_map(|w| match w {
            Write::PutCampaign(c) => Some(c.donation_count),
            _ => None,
        });
        for write in writes {
            match write {
                // Written by the compare-and-set step.
                Write::PutCampaign(_) => {}
                Write::InsertDonation(donation) => {
                    // The donation is the campaign's `donation_count`-th; the campaign write
                    // of the same command carries that count.
                    let seq = count.unwrap_or_default();
                    self.insert_donation(donation, seq).await?;
                }
                Write::Track(p) => {
                    let body = serde_json::to_string(p).map_err(corrupt)?;
                    let socket = i64::try_from(p.socket_id).map_err(corrupt)?;
                    let s = &self.statements;
                    self.run(&s.add_presence_connector, (&p.connector_id,))
                        .await?;
                    self.run(&s.add_presence_topic, (&p.connector_id, &p.topic))
                        .await?;
                    self.run(
                        &s.track,
                        (&p.topic, &p.connector_id, socket, &p.phx_ref, &body),
                    )
                    .await?;
                }
                Write::Untrack(p) => {
                    let socket = i64::try_from(p.socket_id).map_err(corrupt)?;
                    self.run(
                        &self.statements.untrack,
                        (&p.topic, &p.connector_id, socket, &p.phx_ref),
                    )
                    .await?;
                }
                Write::ForgetPresenceTopic {
                    connector_id,
                    topic,
                } => {
                    self.run(
                        &self.statements.forget_presence_topic,
                        (connector_id, topic),
                    )
                    .await?;
                }
            }
        }
        self.run(&self.statements.mark_done, (command_id,)).await
    }

    async fn insert_donation(&self, donation: &Donation, seq: u64) -> Result<(), StoreError> {
        let body = serde_json::to_string(donation).map_err(corrupt)?;
        let bucket = i64::try_from(seq / BUCKET_SIZE).map_err(corrupt)?;
        let seq = i64::try_from(seq).map_err(corrupt)?;
        self.run(
            &self.statements.insert_donation,
            (&donation.campaign_id, bucket, seq, &donation.id, &body),
        )
        .await
    }
}

fn applied(row: Option<&Row>) -> bool {
    matches!(
        row.and_then(|r| r.columns.first()),
        Some(Some(CqlValue::Boolean(true)))
    )
}

fn text(row: &Row, index: usize) -> Option<String> {
    match row.columns.get(index) {
        Some(Some(CqlValue::Text(s))) | Some(Some(CqlValue::Ascii(s))) => Some(s.clone()),
        _ => None,
    }
}

fn bigint(row: &Row, index: usize) -> Option<i64> {
    match row.columns.get(index) {
        Some(Some(CqlValue::BigInt(v))) => Some(*v),
        _ => None,
    }
}

/// The campaign a command writes; Scylla commands write at most one.
fn campaign_write(writes: &[Write]) -> Result<Option<&Campaign>, StoreError> {
    let mut campaigns = writes.iter().filter_map(|w| match w {
        Write::PutCampaign(c) => Some(c),
        _ => None,
    });
    let first = campaigns.next();
    if campaigns.next().is_some() {
        return Err(StoreError::Corrupt(
            "a command may write at most one campaign on Scylla".into(),
        ));
    }
    Ok(first)
}

#[async_trait]
impl Store for ScyllaStore {
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        Ok(self.campaign_row(id).await?.map(|(campaign, _)| campaign))
    }

    async fn donations(
        &self,
        campaign_id: &str,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError> {
        let Some(campaign) = self.campaign(campaign_id).await? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut bucket = campaign.donation_count / BUCKET_SIZE;
        loop {
            let _permit = self.permits.acquire().await.map_err(unavailable)?;
            let wanted = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let result = self
                .session
                .execute_unpaged(
                    &self.statements.donations,
                    (campaign_id, i64::try_from(bucket).map_err(corrupt)?, wanted),
                )
                .await
                .map_err(unavailable)?
                .into_rows_result()
                .map_err(corrupt)?;
            for row in result.rows::<(String,)>().map_err(corrupt)? {
                let (body,) = row.map_err(corrupt)?;
                found.push(serde_json::from_str(&body).map_err(corrupt)?);
            }
            if found.len() >= limit || bucket == 0 {
                return Ok(found);
            }
            bucket -= 1;
        }
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<Value>, StoreError> {
        let Some(row) = self.first_row(&self.statements.key, (command_id,)).await? else {
            return Ok(None);
        };
        if text(&row, 0).as_deref() != Some("done") {
            return Ok(None);
        }
        let outcome = text(&row, 2).ok_or_else(|| corrupt("key without outcome"))?;
        serde_json::from_str(&outcome).map(Some).map_err(corrupt)
    }

    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<Presence>, StoreError> {
        let s = &self.statements;
        let result = match filter {
            PresenceFilter::All => self.rows(&s.presences, (topic,)).await?,
            PresenceFilter::Connector(c) => {
                self.rows(&s.presences_of_connector, (topic, c)).await?
            }
            PresenceFilter::Socket {
                connector_id,
                socket_id,
            } => {
                let socket = i64::try_from(*socket_id).map_err(corrupt)?;
                self.rows(&s.presences_of_socket, (topic, connector_id, socket))
                    .await?
            }
        };
        result
            .iter()
            .map(|body| serde_json::from_str(body).map_err(corrupt))
            .collect()
    }

    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        self.rows(&self.statements.presence_connectors, ()).await
    }

    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError> {
        self.rows(&self.statements.presence_topics, (connector_id,))
            .await
    }

    async fn forget_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        if self.presence_topics(connector_id).await?.is_empty() {
            self.run(&self.statements.forget_presence_connector, (connector_id,))
                .await?;
        }
        Ok(())
    }

    async fn next_id(&self, sequence: &str) -> Result<u64, StoreError> {
        loop {
            match self
                .first_row(&self.statements.sequence, (sequence,))
                .await?
            {
                None => {
                    if self
                        .lwt(&self.statements.create_sequence, (sequence,))
                        .await?
                    {
                        return Ok(1);
                    }
                }
                Some(row) => {
                    let current = bigint(&row, 0).unwrap_or_default();
                    if self
                        .lwt(
                            &self.statements.advance_sequence,
                            (current + 1, sequence, current),
                        )
                        .await?
                    {
                        return Ok((current + 1).unsigned_abs());
                    }
                }
            }
        }
    }

    async fn apply(
        &self,
        command_id: &str,
        writes: &[Write],
        outcome: &Value,
    ) -> Result<Applied, StoreError> {
        // 1. Done already, or half-done before a crash?
        if let Some(row) = self.first_row(&self.statements.key, (command_id,)).await? {
            let stored_outcome = || -> Result<Value, StoreError> {
                serde_json::from_str(&text(&row, 2).unwrap_or_default()).map_err(corrupt)
            };
            match text(&row, 0).as_deref() {
                Some("done") => return Ok(Applied::Duplicate(stored_outcome()?)),
                Some("pending") => {
                    let pending: Vec<Write> =
                        serde_json::from_str(&text(&row, 1).unwrap_or_default())
                            .map_err(corrupt)?;
                    let written = match campaign_write(&pending)? {
                        Some(c) => self
                            .campaign_row(&c.id)
                            .await?
                            .is_some_and(|(_, last)| last.as_deref() == Some(command_id)),
                        None => true,
                    };
                    if written {
                        self.finish(command_id, &pending).await?;
                        return Ok(Applied::Duplicate(stored_outcome()?));
                    }
                }
                _ => {}
            }
        }
        // 2. Record what is about to be written.
        let writes_json = serde_json::to_string(writes).map_err(corrupt)?;
        self.run(
            &self.statements.put_pending,
            (command_id, &writes_json, outcome.to_string()),
        )
        .await?;
        // 3. The campaign, compare-and-set.
        if let Some(campaign) = campaign_write(writes)? {
            if !self.write_campaign(command_id, campaign).await? {
                return Err(StoreError::Conflict(campaign.id.clone()));
            }
        }
        // 4. The rest, then done.
        self.finish(command_id, writes).await?;
        Ok(Applied::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_statements_substitute_and_split() {
        let statements =
            schema_statements("fk", "{'class': 'SimpleStrategy', 'replication_factor': 1}");
        assert_eq!(statements.len(), 8, "{statements:#?}");
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS fk"));
        assert!(statements[0].contains("'replication_factor': 1"));
        for statement in &statements {
            assert!(
                statement.contains("IF NOT EXISTS"),
                "idempotent: {statement}"
            );
            assert!(
                !statement.contains('{') || statement.contains("replication"),
                "substituted: {statement}"
            );
        }
    }

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

    #[test]
    fn lwt_results_and_rows_map() {
        let yes = Row {
            columns: vec![Some(CqlValue::Boolean(true))],
        };
        let no = Row {
            columns: vec![Some(CqlValue::Boolean(false)), Some(CqlValue::BigInt(4))],
        };
        assert!(applied(Some(&yes)));
        assert!(!applied(Some(&no)));
        assert!(!applied(None));
        assert_eq!(bigint(&no, 1), Some(4));
        let row = Row {
            columns: vec![Some(CqlValue::Text("done".into())), None],
        };
        assert_eq!(text(&row, 0).as_deref(), Some("done"));
        assert_eq!(text(&row, 1), None);
    }

    #[test]
    fn one_campaign_per_command() {
        use crate::conformance::sample_campaign;
        let one = [Write::PutCampaign(sample_campaign("1"))];
        assert!(campaign_write(&one).expect("ok").is_some());
        let two = [
            Write::PutCampaign(sample_campaign("1")),
            Write::PutCampaign(sample_campaign("2")),
        ];
        assert!(campaign_write(&two).is_err());
    }

    /// The conformance suite on a real cluster, when `FAWKES_SCYLLA_NODES` names one.
    #[tokio::test]
    async fn conformance_on_scylla() {
        let Ok(nodes) = std::env::var("FAWKES_SCYLLA_NODES") else {
            eprintln!("NOTICE: FAWKES_SCYLLA_NODES is not set: the Scylla leg of the store conformance suite was skipped");
            return;
        };
        let mut config = ScyllaConfig::new(nodes.split(',').map(str::to_owned).collect());
        config.keyspace =
            std::env::var("FAWKES_SCYLLA_KEYSPACE").unwrap_or_else(|_| "fawkes_test".into());
        config.replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}".into();
        config.consistency = Consistency::One;
        ScyllaStore::apply_schema(&config).await.expect("schema");
        let store = ScyllaStore::connect(&config).await.expect("connect");
        crate::conformance::run_all(&store).await;
    }
}
