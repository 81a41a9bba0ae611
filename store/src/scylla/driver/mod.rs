//! The driver side: the [`Tables`] as prepared statements, and [`ScyllaStore`], the protocol
//! over them. Every request runs under a permit, so one process keeps at most
//! `max_in_flight` requests on the cluster.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures_util::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::plan::corrupt;
use super::protocol::Protocol;
use super::schema::without_tablets;
use super::statements::Statements;
use super::{schema_statements, ScyllaConfig};
use crate::{
    Applied, Campaign, Decided, Document, Donation, HistoryEntry, Presence, PresenceFilter, Store,
    StoreError,
};

/// The cluster could not be reached or refused: worth retrying.
pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The store error for a request the cluster failed: [`StoreError::Refused`] when it refused
/// the request itself (retrying cannot help), else retryable, with the consistency named when
/// too few replicas were alive to meet it.
fn execution(error: ExecutionError) -> StoreError {
    let ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, message)) = &error else {
        return unavailable(error);
    };
    match db {
        DbError::SyntaxError
        | DbError::Invalid
        | DbError::AlreadyExists { .. }
        | DbError::AuthenticationError
        | DbError::Unauthorized
        | DbError::ConfigError
        | DbError::FunctionFailure { .. }
        | DbError::ProtocolError => StoreError::Refused(format!("{db}: {message}")),
        DbError::Unavailable {
            consistency,
            required,
            alive,
        } => StoreError::Unavailable(format!(
            "the cluster cannot meet consistency {consistency:?} now: {required} replicas \
             needed, {alive} alive (FAWKES_SCYLLA_CONSISTENCY, the keyspace's replication)"
        )),
        _ => unavailable(error),
    }
}

/// Shards of `presence_connectors`, so the connectors' rows are not one hot partition.
const CONNECTOR_SHARDS: i32 = 16;

/// The shard of a connector's row in `presence_connectors` (FNV-1a of its id).
fn connector_shard(connector_id: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in connector_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::try_from(hash % CONNECTOR_SHARDS.unsigned_abs()).unwrap_or_default()
}

/// Whether a lightweight transaction was applied: its first column, `[applied]`.
///
/// `false` means its condition did not hold (the row existed, or had another version):
/// another writer got there first. No row at all is not applied either.
fn applied(row: Option<&Row>) -> bool {
    matches!(
        row.and_then(|r| r.columns.first()),
        Some(Some(CqlValue::Boolean(true)))
    )
}

/// Column `index` of `row` as text, if it is text.
fn text(row: &Row, index: usize) -> Option<String> {
    match row.columns.get(index) {
        Some(Some(CqlValue::Text(s))) | Some(Some(CqlValue::Ascii(s))) => Some(s.clone()),
        _ => None,
    }
}

/// Column `index` of `row` as a `bigint`, if it is one.
fn bigint(row: &Row, index: usize) -> Option<i64> {
    match row.columns.get(index) {
        Some(Some(CqlValue::BigInt(v))) => Some(*v),
        _ => None,
    }
}

/// Column `index` of `row` as a `map<int, text>` (absent or null: empty).
fn int_text_map(row: &Row, index: usize) -> BTreeMap<i32, String> {
    let Some(Some(CqlValue::Map(entries))) = row.columns.get(index) else {
        return BTreeMap::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (CqlValue::Int(k), CqlValue::Text(v)) => Some((*k, v.clone())),
            _ => None,
        })
        .collect()
}

/// A session on the configured nodes.
async fn open_session(config: &ScyllaConfig) -> Result<Session, StoreError> {
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .build()
        .await
        .map_err(unavailable)
}

/// The Scylla-backed store: the protocol (`super::protocol`) over the cluster's tables.
#[derive(Debug)]
pub struct ScyllaStore {
    protocol: Protocol<CqlTables>,
}

/// The tables on a cluster: a session, the prepared statements and the permits.
#[derive(Debug)]
struct CqlTables {
    session: Session,
    statements: Statements,
    permits: Semaphore,
}

impl ScyllaStore {
    /// Connects and prepares every statement; the schema must exist (`fawkes schema apply`).
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, StoreError> {
        let session = open_session(config).await?;
        let statements = Statements::prepare(&session, config).await?;
        let tables = CqlTables {
            session,
            statements,
            permits: Semaphore::new(config.max_in_flight.max(1)),
        };
        Ok(Self {
            protocol: Protocol { tables },
        })
    }

    /// Creates the keyspace and tables (idempotent).
    pub async fn apply_schema(config: &ScyllaConfig) -> Result<usize, StoreError> {
        let session = open_session(config).await?;
        let statements = schema_statements(&config.keyspace, &config.replication);
        for statement in &statements {
            let mut result = session.query_unpaged(statement.as_str(), ()).await;
            if let (Err(error), Some(older)) = (&result, without_tablets(statement)) {
                // Servers without tablets (ScyllaDB 5, Cassandra) do not know the option.
                if error.to_string().to_lowercase().contains("tablets") {
                    result = session.query_unpaged(older, ()).await;
                }
            }
            if let Err(error) = result {
                // `ALTER TABLE .. ADD` has no `IF NOT EXISTS`: a column added by an earlier
                // run is what re-applying the schema expects.
                let adds = statement.to_uppercase().starts_with("ALTER TABLE");
                if !(adds && error.to_string().to_lowercase().contains("exist")) {
                    return Err(execution(error));
                }
            }
        }
        Ok(statements.len())
    }
}

impl CqlTables {
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
            .map_err(execution)?;
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
            .map_err(execution)?;
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
}
#[async_trait]
impl Store for ScyllaStore {
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        self.protocol.campaign(id).await
    }

    async fn donations(
        &self,
        campaign_id: &str,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError> {
        self.protocol.donations(campaign_id, limit).await
    }

    async fn donation(&self, id: &str) -> Result<Option<Donation>, StoreError> {
        self.protocol.donation(id).await
    }

    async fn user_donations(
        &self,
        user_id: &str,
        year: i32,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError> {
        self.protocol.user_donations(user_id, year, limit).await
    }

    async fn document(&self, kind: &str, id: &str) -> Result<Option<Document>, StoreError> {
        self.protocol.document(kind, id).await
    }

    async fn documents(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        self.protocol.documents(kind, owner, limit).await
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<Value>, StoreError> {
        self.protocol.outcome(command_id).await
    }

    async fn history(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.protocol.history(topic, after, limit).await
    }

    async fn outcomes(&self, command_ids: &[&str]) -> Result<Vec<Option<Value>>, StoreError> {
        self.protocol.outcomes(command_ids).await
    }

    async fn settle(&self, campaign_id: &str, partition: u32) -> Result<(), StoreError> {
        self.protocol.settle(campaign_id, partition).await
    }

    async fn claim_id(&self, sequence: &str, claimant: &str) -> Result<u64, StoreError> {
        self.protocol.claim_id(sequence, claimant).await
    }

    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<Presence>, StoreError> {
        self.protocol.presences(topic, filter).await
    }

    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        self.protocol.presence_connectors().await
    }

    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError> {
        self.protocol.presence_topics(connector_id).await
    }

    async fn forget_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        self.protocol.forget_connector(connector_id).await
    }

    async fn apply_batch(&self, batch: &[Decided<'_>]) -> Result<Vec<Applied>, StoreError> {
        self.protocol.apply_batch(batch).await
    }
}

mod tables;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scylla::Consistency;

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
