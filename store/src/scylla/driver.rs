//! [`ScyllaStore`]: connect, the driver calls and the reads. Every request runs under a
//! permit, so one process keeps at most `max_in_flight` requests on the cluster; `apply`
//! is in `super::apply`.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::Row;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::plan::{applied, bigint, bucket_of, key_state, text, KeyState};
use super::statements::Statements;
use super::{schema_statements, ScyllaConfig};
use crate::{Applied, Campaign, Donation, Presence, PresenceFilter, Store, StoreError, Write};

/// The cluster could not be reached or refused: worth retrying.
pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A row could not be read back or a value does not fit its column: retrying will not help.
pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
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

/// The Scylla-backed store.
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    session: Arc<Session>,
    pub(super) statements: Arc<Statements>,
    permits: Arc<Semaphore>,
}

impl ScyllaStore {
    /// Connects and prepares every statement; the schema must exist (`fawkes schema apply`).
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, StoreError> {
        let session = open_session(config).await?;
        let statements = Statements::prepare(&session, config).await?;
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
    pub(super) async fn first_row(
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
    pub(super) async fn run(
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
    pub(super) async fn lwt(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<bool, StoreError> {
        let row = self.first_row(statement, values).await?;
        Ok(applied(row.as_ref()))
    }

    /// The campaign `id` with the last command that wrote it (step 3 of that command).
    pub(super) async fn campaign_row(
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
        let mut bucket = bucket_of(campaign.donation_count);
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
        if key_state(&row) != KeyState::Done {
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
        self.apply_command(command_id, writes, outcome).await
    }
}

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
