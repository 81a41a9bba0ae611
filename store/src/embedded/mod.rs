//! The embedded store: SQLite in WAL mode in the data directory.
//!
//! SQLite was picked because several processes on one machine may share one data directory
//! (processors on Kafka without Scylla do), which SQLite's file locking supports and
//! single-process engines do not. Rows are stored as JSON bodies beside the columns the
//! queries need. Every call runs on tokio's blocking pool so the runtime never waits on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

mod schema;
mod writes;

use schema::{add_donation_owners, add_outcome_ages, now_ms, prune_outcomes, PRUNE_EVERY, SCHEMA};
use writes::{apply_write, put_campaign};

use crate::{
    plan_batch, Applied, Campaign, Decided, Document, Donation, HistoryEntry, Presence,
    PresenceFilter, Store, StoreError, Write,
};

const OUTCOME_SQL: &str = "SELECT outcome FROM processed_commands WHERE command_id = ?1";

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Reads one JSON column of the row `sql` selects by `key`, if there is one.
fn read_json<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let body: Option<String> = conn
        .query_row(sql, [key], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    body.map(|b| serde_json::from_str(&b).map_err(corrupt))
        .transpose()
}

/// The SQLite-backed store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    // One connection per process: SQLite serialises writers anyway, and WAL lets readers in
    // other processes proceed.
    conn: Arc<Mutex<Connection>>,
    /// Batches stored by this handle, so old outcomes are pruned every [`PRUNE_EVERY`].
    batches: Arc<AtomicU64>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store file `store.sqlite` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let path = dir.join("store.sqlite");
        let conn = Connection::open(&path).map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(unavailable)?;
        // WAL + NORMAL: a committed transaction survives the crash of any process; only a
        // power loss may drop the last transactions (the same promise as the embedded log).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        add_outcome_ages(&conn)?;
        add_donation_owners(&conn)?;
        prune_outcomes(&conn, now_ms())?;
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
            batches: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let row: Option<(String, i64)> = conn
                .query_row(
                    "SELECT body, version FROM campaigns WHERE id = ?1",
                    [&id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(body, version)| {
                let mut campaign: Campaign = serde_json::from_str(&body).map_err(corrupt)?;
                campaign.version = version.unsigned_abs();
                Ok(campaign)
            })
            .transpose()
        })
        .await
    }

    async fn donations(
        &self,
        campaign_id: &str,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError> {
        let campaign_id = campaign_id.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM donations WHERE campaign_id = ?1 ORDER BY seq DESC LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![campaign_id, limit as i64], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(unavailable)?;
            rows.map(|body| {
                let body = body.map_err(unavailable)?;
                serde_json::from_str(&body).map_err(corrupt)
            })
            .collect()
        })
        .await
    }

    async fn donation(&self, id: &str) -> Result<Option<Donation>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| read_json(conn, "SELECT body FROM donations WHERE id = ?1", &id))
            .await
    }

    async fn user_donations(
        &self,
        user_id: &str,
        year: i32,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError> {
        let user_id = user_id.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM donations WHERE user_id = ?1 AND year = ?2
                     ORDER BY rowid DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![user_id, year, limit as i64], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(unavailable)?;
            rows.map(|body| serde_json::from_str(&body.map_err(unavailable)?).map_err(corrupt))
                .collect()
        })
        .await
    }

    async fn document(&self, kind: &str, id: &str) -> Result<Option<Document>, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.with_conn(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM documents WHERE kind = ?1 AND id = ?2",
                    [&kind, &id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            body.map(|b| serde_json::from_str(&b).map_err(corrupt))
                .transpose()
        })
        .await
    }

    async fn documents(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        let (kind, owner) = (kind.to_owned(), owner.to_owned());
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM documents WHERE kind = ?1 AND owner = ?2
                     ORDER BY created_at DESC, id DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![kind, owner, limit as i64], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(unavailable)?;
            rows.map(|body| serde_json::from_str(&body.map_err(unavailable)?).map_err(corrupt))
                .collect()
        })
        .await
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<Value>, StoreError> {
        let command_id = command_id.to_owned();
        self.with_conn(move |conn| read_json(conn, OUTCOME_SQL, &command_id))
            .await
    }

    async fn history(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let topic = topic.to_owned();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM history WHERE topic = ?1 AND offset > ?2
                     ORDER BY offset LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![topic, after, limit as i64], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(unavailable)?;
            rows.map(|body| serde_json::from_str(&body.map_err(unavailable)?).map_err(corrupt))
                .collect()
        })
        .await
    }

    async fn outcomes(&self, command_ids: &[&str]) -> Result<Vec<Option<Value>>, StoreError> {
        let command_ids: Vec<String> = command_ids.iter().map(|id| (*id).to_owned()).collect();
        self.with_conn(move |conn| {
            command_ids
                .iter()
                .map(|id| read_json(conn, OUTCOME_SQL, id))
                .collect()
        })
        .await
    }

    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<Presence>, StoreError> {
        let topic = topic.to_owned();
        let filter = filter.clone();
        self.with_conn(move |conn| {
            // The filters narrow by indexed columns; `admits` keeps the SQL to one statement.
            let connector = match &filter {
                PresenceFilter::All => None,
                PresenceFilter::Socket { connector_id, .. }
                | PresenceFilter::Connector(connector_id) => Some(connector_id.clone()),
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM presences
                     WHERE topic = ?1 AND (?2 IS NULL OR connector_id = ?2) ORDER BY seq",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![topic, connector], |row| row.get::<_, String>(0))
                .map_err(unavailable)?;
            let mut found = Vec::new();
            for body in rows {
                let presence: Presence =
                    serde_json::from_str(&body.map_err(unavailable)?).map_err(corrupt)?;
                if filter.admits(&presence) {
                    found.push(presence);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT connector_id FROM presence_topics")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError> {
        let connector_id = connector_id.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT topic FROM presence_topics WHERE connector_id = ?1")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([connector_id], |row| row.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn forget_connector(&self, _connector_id: &str) -> Result<(), StoreError> {
        // Connectors are listed from their topics here, so one without topics is already gone.
        Ok(())
    }

    async fn settle(&self, _campaign_id: &str, _partition: u32) -> Result<(), StoreError> {
        // A group is one transaction here: nothing is ever left half-done.
        Ok(())
    }

    async fn claim_id(&self, sequence: &str, claimant: &str) -> Result<u64, StoreError> {
        let sequence = sequence.to_owned();
        let claimant = claimant.to_owned();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let held: Option<i64> = tx
                .query_row(
                    "SELECT value FROM claims WHERE sequence = ?1 AND claimant = ?2",
                    params![sequence, claimant],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            if let Some(value) = held {
                return Ok(value.unsigned_abs());
            }
            let value: i64 = tx
                .query_row(
                    "INSERT INTO sequences (name, value) VALUES (?1, 1)
                     ON CONFLICT (name) DO UPDATE SET value = value + 1
                     RETURNING value",
                    [&sequence],
                    |row| row.get(0),
                )
                .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO claims (sequence, claimant, value) VALUES (?1, ?2, ?3)",
                params![sequence, claimant, value],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(value.unsigned_abs())
        })
        .await
    }

    async fn apply_batch(&self, batch: &[Decided<'_>]) -> Result<Vec<Applied>, StoreError> {
        let plan = plan_batch(batch)?;
        let commands: Vec<(String, Vec<Write>, String)> = batch
            .iter()
            .map(|d| {
                (
                    d.command_id.to_owned(),
                    d.writes.to_vec(),
                    d.outcome.to_string(),
                )
            })
            .collect();
        let stored_at = now_ms();
        let prune = self.batches.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1;
        self.with_conn(move |conn| {
            // IMMEDIATE takes the write lock up front, so the duplicate checks and the writes
            // cannot interleave with another process (or a second owner) doing the same.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            for (command_id, _, _) in &commands {
                if let Some(previous) = read_json(&tx, OUTCOME_SQL, command_id)? {
                    if commands.len() == 1 {
                        return Ok(vec![Applied::Duplicate(previous)]);
                    }
                    // The group's later decisions did not see this one: decide them again.
                    return Err(StoreError::AppliedMeanwhile(command_id.clone()));
                }
            }
            for write in &plan.campaigns {
                put_campaign(&tx, &write.campaign)?;
            }
            for (command_id, writes, outcome) in &commands {
                for write in writes {
                    match write {
                        Write::OutcomeAlias(alias) => {
                            tx.execute(
                                "INSERT INTO processed_commands (command_id, outcome, stored_at)
                                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                                params![alias, outcome, stored_at],
                            )
                            .map_err(unavailable)?;
                        }
                        write => apply_write(&tx, write)?,
                    }
                }
                tx.execute(
                    "INSERT INTO processed_commands (command_id, outcome, stored_at)
                     VALUES (?1, ?2, ?3)",
                    params![command_id, outcome, stored_at],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            if prune {
                prune_outcomes(conn, stored_at)?;
            }
            Ok(vec![Applied::Stored; commands.len()])
        })
        .await
    }
}

#[cfg(test)]
mod tests;
