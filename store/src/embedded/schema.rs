//! The embedded store's tables, what opening brings up to date, and the pruning of old
//! outcomes.

use rusqlite::Connection;

use super::unavailable;
use crate::StoreError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS donations (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS donations_by_campaign ON donations (campaign_id, seq);
CREATE TABLE IF NOT EXISTS processed_commands (
    command_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    sequence TEXT NOT NULL,
    claimant TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (sequence, claimant)
);
CREATE TABLE IF NOT EXISTS presences (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    socket_id INTEGER NOT NULL,
    phx_ref TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (topic, connector_id, socket_id, phx_ref)
);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS documents_by_owner ON documents (kind, owner, created_at);
CREATE TABLE IF NOT EXISTS history (
    topic TEXT NOT NULL,
    offset INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (topic, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS presence_topics (
    connector_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    PRIMARY KEY (connector_id, topic)
);
";

/// [`OUTCOME_RETENTION`](crate::OUTCOME_RETENTION) in milliseconds (on Scylla it is the
/// outcomes table's TTL).
pub(super) const OUTCOME_RETENTION_MS: i64 = crate::OUTCOME_RETENTION.as_millis() as i64;

/// Outcomes older than [`OUTCOME_RETENTION_MS`] are deleted once every this many batches (and
/// at open): one indexed range delete, rare enough to cost nothing per donation.
pub(super) const PRUNE_EVERY: u64 = 4096;

/// Milliseconds since the epoch, the age of stored outcomes.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Gives `processed_commands` its `stored_at` column (stores made before it had none): rows
/// already there count from now, so none is pruned before its command has left the log.
pub(super) fn add_outcome_ages(conn: &Connection) -> Result<(), StoreError> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('processed_commands') WHERE name = 'stored_at'")
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(unavailable)?;
    if !has_column {
        conn.execute_batch(&format!(
            "ALTER TABLE processed_commands ADD COLUMN stored_at INTEGER NOT NULL DEFAULT {}",
            now_ms()
        ))
        .map_err(unavailable)?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS processed_commands_by_age ON processed_commands (stored_at)",
    )
    .map_err(unavailable)
}

/// Deletes the outcomes stored more than [`OUTCOME_RETENTION_MS`] before `now`.
pub(super) fn prune_outcomes(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM processed_commands WHERE stored_at < ?1",
        [now - OUTCOME_RETENTION_MS],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Gives `donations` the `user_id` and `year` columns the per-user listing reads (stores made
/// before them had neither), filled in from the rows' bodies.
pub(super) fn add_donation_owners(conn: &Connection) -> Result<(), StoreError> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('donations') WHERE name = 'user_id'")
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(unavailable)?;
    if !has_column {
        conn.execute_batch(
            "ALTER TABLE donations ADD COLUMN user_id TEXT;
             ALTER TABLE donations ADD COLUMN year INTEGER NOT NULL DEFAULT 0;
             UPDATE donations SET user_id = json_extract(body, '$.user_id'),
               year = CAST(substr(json_extract(body, '$.inserted_at'), 1, 4) AS INTEGER);",
        )
        .map_err(unavailable)?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS donations_by_user ON donations (user_id, year) \
         WHERE user_id IS NOT NULL",
    )
    .map_err(unavailable)
}
