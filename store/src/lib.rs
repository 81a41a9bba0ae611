//! The processors' projections behind one interface.
//!
//! Processors read a small view (a campaign, a stored outcome) and write the effects of a
//! decision back in one atomic [`Store::apply`], keyed by the command id so a command
//! processed twice changes nothing the second time.
//!
//! Layout:
//! - `model`: the rows: campaigns, donations, presences and documents (records without a
//!   table of their own: zakat calculations, waqfs, reports, imports).
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

mod batch;
#[cfg(feature = "embedded")]
mod embedded;
mod model;
mod scylla;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use async_trait::async_trait;
use serde_json::Value;

use batch::plan_batch;
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedStore;
pub use model::{
    Campaign, Document, Donation, DonationStatus, HistoryEntry, Position, Presence, PresenceFilter,
    Visibility,
};
// `self::`: the module shares its name with the driver crate.
#[cfg(feature = "scylla")]
pub use self::scylla::ScyllaStore;
pub use self::scylla::{schema_statements, Consistency, ScyllaConfig};

/// How long a command's outcome is kept after it was stored: longer than the command topic's
/// retention (7 days), so a command that can still be read is answered as the first time.
/// (The campaigns' fences, which keep counting exact, never expire.)
pub const OUTCOME_RETENTION: std::time::Duration = std::time::Duration::from_secs(8 * 24 * 3600);

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
    /// A command of a group was applied by another writer (a second owner) after the group
    /// was decided; deciding the group again on fresh state resolves it.
    #[error("command {0} was applied by another writer meanwhile")]
    AppliedMeanwhile(String),
    /// The backend refused the request itself (a missing table, an invalid or unauthorized
    /// request): retrying will not help; the configuration or the schema needs fixing.
    #[error("the store refused the request: {0}")]
    Refused(String),
    /// Stored data could not be read back; retrying will not help.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::AppliedMeanwhile(_)
        )
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
    /// Replace a stored donation (same id, same campaign): its moderation status changed.
    UpdateDonation(Donation),
    /// Insert or replace a document by its kind and id.
    PutDocument(Document),
    /// Keep a broadcast in its topic's history (idempotent by topic and offset), dropping the
    /// topic's entries `keep` or more offsets older where the backend prunes by count (the
    /// embedded store, every 64 entries: at most `keep` + 64 are kept).
    AppendHistory {
        /// The entry.
        entry: HistoryEntry,
        /// How many of the topic's newest entries to keep.
        keep: u64,
    },
    /// Track a presence (and remember that its connector has presences on its topic).
    Track(Presence),
    /// Stop tracking a presence.
    Untrack(Presence),
    /// Store the command's outcome under this id too: a client's idempotency key, so a retry
    /// of the same request (a new command) finds the first one's answer.
    OutcomeAlias(String),
    /// Forget that a connector has presences on a topic (after they were all expired).
    ForgetPresenceTopic {
        /// The connector.
        connector_id: String,
        /// The channel topic.
        topic: String,
    },
}

/// What storing one command did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The writes were stored together with the outcome.
    Stored,
    /// The command had already been applied; nothing changed. Carries the stored outcome so
    /// the caller can answer exactly as the first time.
    Duplicate(Value),
}

/// One decided command, ready to be stored by [`Store::apply_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    /// The command's id: the idempotency key of its outcome.
    pub command_id: &'a str,
    /// Where the command was read from the log; `None` for writes that did not come from it
    /// (demo seeds, tests). Campaign writes record it as the campaign's fence.
    pub position: Option<Position>,
    /// Its effects.
    pub writes: &'a [Write],
    /// What it sends, stored so a command processed again sends the same.
    pub outcome: &'a Value,
}

/// The projections store.
///
/// Guarantees:
/// - `apply_batch` stores a group of commands read in order from one command partition. For
///   each campaign the group writes, its last [`Write::PutCampaign`] is stored with one
///   compare-and-set on the version every write of that campaign in the group was based on
///   (decisions fold the group's state but keep the version they read); a stale base fails
///   the whole call with [`StoreError::Conflict`] and changes no campaign.
/// - The same compare-and-set records the group's last position on the campaign's command
///   partition in [`Campaign::applied`]: a campaign command is in the campaign's state
///   exactly when [`Campaign::has_applied`] says so, whoever applied it. Two processors that
///   both believe they own a partition therefore cannot both apply a campaign command: the
///   second either fails its compare-and-set or sees the fence when it reads again.
/// - Outcomes are idempotent by command id: a command already applied is not applied again;
///   [`outcome`](Store::outcome) returns what it sent the first time.
/// - On the embedded store a whole call is one transaction. On Scylla each campaign's write
///   is one lightweight transaction and the rest (donations, presences, outcomes) follows,
///   idempotently; a crash in between is finished by [`settle`](Store::settle).
/// - Reads after a successful call (from any process sharing the store) see its writes.
/// - No ordering between different campaigns; writers on one campaign are serialised by the
///   log (one processor owns a partition), and the fence covers the moments when two do.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The campaign with `id`, if it exists.
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError>;

    /// The most recent donations of a campaign, newest first.
    async fn donations(&self, campaign_id: &str, limit: usize)
        -> Result<Vec<Donation>, StoreError>;

    /// The donation with `id`, if there is one.
    async fn donation(&self, id: &str) -> Result<Option<Donation>, StoreError>;

    /// The donations `user_id` made in `year`, newest first, at most `limit`.
    async fn user_donations(
        &self,
        user_id: &str,
        year: i32,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError>;

    /// The document of `kind` with `id`, if there is one.
    async fn document(&self, kind: &str, id: &str) -> Result<Option<Document>, StoreError>;

    /// The documents of `kind` listed under `owner`, newest first, at most `limit`.
    async fn documents(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError>;

    /// The entries of `topic`'s history after `after`, oldest first, at most `limit`.
    async fn history(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    /// The outcome stored when `command_id` was applied, if it was.
    async fn outcome(&self, command_id: &str) -> Result<Option<Value>, StoreError>;

    /// [`outcome`](Store::outcome) of each of `command_ids`, in order: a group's commands
    /// checked in one call (on the embedded store, one trip to its thread instead of one per
    /// command).
    async fn outcomes(&self, command_ids: &[&str]) -> Result<Vec<Option<Value>>, StoreError> {
        let mut found = Vec::with_capacity(command_ids.len());
        for id in command_ids {
            found.push(self.outcome(id).await?);
        }
        Ok(found)
    }

    /// Finishes what the last group applied to `campaign_id` from `partition` left undone
    /// (a crash between its compare-and-set and the rest), so the outcomes of every command
    /// the campaign's fence covers can be read. A no-op where groups are atomic.
    async fn settle(&self, campaign_id: &str, partition: u32) -> Result<(), StoreError>;

    /// The id `claimant` holds in a named sequence (1, 2, 3, ...): the first call takes the
    /// next value, unique across processes; every later call by the same claimant gets the
    /// same value, so a command processed twice (or by two processors) names one new
    /// campaign, not two.
    async fn claim_id(&self, sequence: &str, claimant: &str) -> Result<u64, StoreError>;

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

    /// Stores a group of decided commands (see the guarantees above); one [`Applied`] per
    /// command, in order. A command of the group that was applied already makes the whole
    /// call fail with [`StoreError::AppliedMeanwhile`] unless it is alone (then it is
    /// [`Applied::Duplicate`]): the group's later decisions were made on a state that did not
    /// include it, so they must be made again.
    async fn apply_batch(&self, batch: &[Decided<'_>]) -> Result<Vec<Applied>, StoreError>;

    /// Stores one command that did not come from the log (seeds, tests): `apply_batch` of one.
    async fn apply(
        &self,
        command_id: &str,
        writes: &[Write],
        outcome: &Value,
    ) -> Result<Applied, StoreError> {
        let decided = Decided {
            command_id,
            position: None,
            writes,
            outcome,
        };
        let mut applied = self.apply_batch(&[decided]).await?;
        applied
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a batch of one stored nothing".into()))
    }
}
