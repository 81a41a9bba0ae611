//! The processors' projections behind one interface.
//!
//! Processors read a small view (a campaign, a stored outcome) and write the effects of a
//! decision back in one atomic [`Store::apply`], keyed by the command id so a command
//! processed twice changes nothing the second time.
//!
//! Layout:
//! - `model`: the rows: campaigns, donations and presences.
//! - `embedded` (feature `embedded`, default): the embedded backend (SQLite in WAL mode,
//!   shareable by several processes on one machine).
//! - `scylla/`: the ScyllaDB backend (CQL schema in `infra/cql/`): `config` and `schema`
//!   always (settings and `fawkes schema print` need no driver); `statements`, `plan` and
//!   `driver` and `apply` with feature `scylla`.
//! - [`conformance`] (tests, feature `conformance`): the behaviour every backend must show,
//!   run against each of them.
//!
//! The backends are features so crates that only need the rows and the [`Store`] trait
//! build without the drivers; the API is re-exported here.

#[cfg(feature = "embedded")]
mod embedded;
mod model;
mod scylla;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use async_trait::async_trait;
use serde_json::Value;

#[cfg(feature = "embedded")]
pub use embedded::EmbeddedStore;
pub use model::{Campaign, Donation, Presence, PresenceFilter, Visibility};
// `self::`: the module shares its name with the driver crate.
#[cfg(feature = "scylla")]
pub use self::scylla::ScyllaStore;
pub use self::scylla::{schema_statements, Consistency, ScyllaConfig};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation; retrying may succeed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A campaign write named a version that is no longer current (another writer got there
    /// first); deciding again on fresh state resolves it.
    #[error("campaign {0} was changed by another writer")]
    Conflict(String),
    /// Stored data could not be read back; retrying will not help.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

/// One effect of a decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Write {
    /// Create (version 0) or replace a campaign (totals, goal and milestones included), only
    /// if its stored version is still the one given; the stored version then goes up by one.
    PutCampaign(Campaign),
    /// Insert a donation.
    InsertDonation(Donation),
    /// Track a presence (and remember that its connector has presences on its topic).
    Track(Presence),
    /// Stop tracking a presence.
    Untrack(Presence),
    /// Forget that a connector has presences on a topic (after they were all expired).
    ForgetPresenceTopic {
        /// The connector.
        connector_id: String,
        /// The channel topic.
        topic: String,
    },
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The writes were stored together with the outcome.
    Stored,
    /// The command had already been applied; nothing changed. Carries the stored outcome so
    /// the caller can answer exactly as the first time.
    Duplicate(Value),
}

/// The projections store.
///
/// Guarantees:
/// - `apply` is atomic: all writes and the outcome are stored, or none.
/// - Campaign writes are compare-and-set on the campaign's version: a write based on a stale
///   read fails with [`StoreError::Conflict`] and changes nothing.
/// - `apply` is idempotent by command id: a second call with the same id stores nothing and
///   returns [`Applied::Duplicate`] with the first outcome.
/// - Reads after a successful `apply` (from any process sharing the store) see its writes.
/// - No ordering between different campaigns; writers on one campaign are serialised by the
///   log (one processor owns a partition); the version check covers the moments when
///   ownership moves between processors.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The campaign with `id`, if it exists.
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError>;

    /// The most recent donations of a campaign, newest first.
    async fn donations(&self, campaign_id: &str, limit: usize)
        -> Result<Vec<Donation>, StoreError>;

    /// The outcome stored when `command_id` was applied, if it was.
    async fn outcome(&self, command_id: &str) -> Result<Option<Value>, StoreError>;

    /// The next value of a named sequence (1, 2, 3, ...), unique across processes.
    async fn next_id(&self, sequence: &str) -> Result<u64, StoreError>;

    /// The presences on `topic` that pass `filter`, in the order they were tracked where the
    /// backend keeps one.
    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<Presence>, StoreError>;

    /// Connectors that may still have presences somewhere.
    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError>;

    /// Topics on which `connector_id` may still have presences.
    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError>;

    /// Forgets `connector_id` in [`presence_connectors`](Store::presence_connectors) once it
    /// has no topics left; a no-op while it has.
    async fn forget_connector(&self, connector_id: &str) -> Result<(), StoreError>;

    /// Stores `writes` and `outcome` for `command_id` atomically, once.
    async fn apply(
        &self,
        command_id: &str,
        writes: &[Write],
        outcome: &Value,
    ) -> Result<Applied, StoreError>;
}
