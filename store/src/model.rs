//! The rows the processors read and write.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Who may join a campaign's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone.
    Public,
    /// Organizers, members and admins.
    Private,
}

/// A campaign and its running totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// The campaign id (the `<id>` of `donations:campaign:<id>`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Fundraising goal, > 0.
    pub goal: Decimal,
    /// ISO currency code every donation must use.
    pub currency: String,
    /// Who may join.
    pub visibility: Visibility,
    /// Users who run the campaign: they see donor names and may change the goal.
    pub organizer_ids: Vec<String>,
    /// Users who may join a private campaign.
    pub member_ids: Vec<String>,
    /// Sum of accepted donations.
    pub total: Decimal,
    /// Number of accepted donations.
    pub donation_count: u64,
    /// Milestones already announced, as `"<goal>@<percent>"`, so one threshold of one goal is
    /// announced once.
    pub milestones_reached: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// How many times the row was written; a write must name the version it read (0 for a
    /// new campaign), so two writers that raced on one campaign cannot lose an update.
    #[serde(default)]
    pub version: u64,
    /// The offset of the last command applied to this campaign, per command partition: the
    /// fence that makes campaign commands exactly once. Written by the store in the same
    /// compare-and-set as the campaign, so a command is in the campaign's state exactly when
    /// its position is at or below this; decisions never set it.
    #[serde(default)]
    pub applied: BTreeMap<u32, u64>,
}

impl Campaign {
    /// Whether the command read at `position` is already in this campaign's state.
    pub fn has_applied(&self, position: Position) -> bool {
        self.applied
            .get(&position.partition)
            .is_some_and(|last| *last >= position.offset)
    }
}

/// Where a command was read: its partition of the command topic and its offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The command partition.
    pub partition: u32,
    /// The offset in it.
    pub offset: u64,
}

/// One accepted donation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donation {
    /// Donation id.
    pub id: String,
    /// The campaign it went to.
    pub campaign_id: String,
    /// Amount, exact, in the campaign's currency.
    pub amount: Decimal,
    /// Currency code.
    pub currency: String,
    /// The name the donor gave.
    pub donor_name: String,
    /// The user who donated, when the socket was authenticated.
    pub user_id: Option<String>,
    /// When it was accepted (RFC 3339).
    pub inserted_at: String,
    /// What moderation made of it; only [`DonationStatus::Rejected`] leaves the campaign's
    /// total.
    #[serde(default)]
    pub status: DonationStatus,
}

impl Donation {
    /// The year it was accepted in (the first four digits of `inserted_at`), which reports
    /// and the per-user listing go by.
    pub fn year(&self) -> i32 {
        self.inserted_at
            .get(..4)
            .and_then(|y| y.parse().ok())
            .unwrap_or_default()
    }
}

/// A donation's moderation state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DonationStatus {
    /// Accepted and counted; not looked at by a moderator.
    #[default]
    Accepted,
    /// A moderator confirmed it.
    Approved,
    /// A moderator marked it for a closer look; still counted.
    Flagged,
    /// A moderator rejected it: it no longer counts in its campaign's total.
    Rejected,
}

impl DonationStatus {
    /// The name clients see (`"accepted"`, `"approved"`, `"flagged"`, `"rejected"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DonationStatus::Accepted => "accepted",
            DonationStatus::Approved => "approved",
            DonationStatus::Flagged => "flagged",
            DonationStatus::Rejected => "rejected",
        }
    }
}

/// One broadcast kept in its topic's history, so a client that missed it can recover it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The channel topic.
    pub topic: String,
    /// Its offset in the topic's stream.
    pub offset: u64,
    /// The stream's epoch when it was made.
    pub epoch: String,
    /// When it was made (RFC 3339), for the history's age limit.
    pub at: String,
    /// The broadcast itself.
    pub broadcast: serde_json::Value,
}

/// A domain record that needs no table of its own: a zakat calculation, a waqf, a report, an
/// import's progress. Read by `(kind, id)`, listed by `(kind, owner)` newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// What it is (`"zakat_calculation"`, `"waqf"`, ...): documents of different kinds never
    /// meet. Kinds starting with `fawkes.` are the store's own and refused.
    pub kind: String,
    /// Its id, unique within its kind.
    pub id: String,
    /// The user it is listed under.
    pub owner: String,
    /// When it was made (RFC 3339); listings are newest first by it.
    pub created_at: String,
    /// The record itself.
    pub body: serde_json::Value,
}

/// One tracked presence: a socket's join of a channel topic, listed under `key` with `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The channel topic.
    pub topic: String,
    /// The presence key (the user id).
    pub key: String,
    /// The meta's unique reference (also inside `meta`).
    pub phx_ref: String,
    /// The meta as clients see it (`phx_ref` included).
    pub meta: serde_json::Value,
    /// The connector holding the socket; its presences go when its lease lapses.
    pub connector_id: String,
    /// The socket on that connector.
    pub socket_id: u64,
    /// The join (the connector's join id) that tracked it, so a leave removes only its own.
    pub join_id: String,
}

/// Which presences of a topic to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceFilter {
    /// Every presence on the topic.
    All,
    /// Those of one socket.
    Socket {
        /// The connector holding the socket.
        connector_id: String,
        /// The socket.
        socket_id: u64,
    },
    /// Those of every socket of one connector.
    Connector(String),
}

impl PresenceFilter {
    /// Whether `presence` passes the filter.
    pub fn admits(&self, presence: &Presence) -> bool {
        match self {
            PresenceFilter::All => true,
            PresenceFilter::Socket {
                connector_id,
                socket_id,
            } => presence.connector_id == *connector_id && presence.socket_id == *socket_id,
            PresenceFilter::Connector(connector_id) => presence.connector_id == *connector_id,
        }
    }
}
