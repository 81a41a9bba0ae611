//! Domain events for analytics, on [`EVENTS`](crate::names::EVENTS), keyed by campaign id.
//!
//! Each event is its own Avro record (schemas in `topics/schemas/`), so analytics consumers
//! read typed fields; money is an exact decimal string with two places.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::avro::{self, AvroError};

/// A donation was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonationCreated {
    /// The command that caused it.
    pub command_id: String,
    /// The donation.
    pub donation_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// Amount ("12.50").
    pub amount: String,
    /// Currency code.
    pub currency: String,
    /// Campaign total after this donation.
    pub new_total: String,
    /// When it was accepted (RFC 3339).
    pub inserted_at: String,
    /// The donating user, if authenticated (schema v2).
    pub user_id: Option<String>,
}

/// A campaign's goal changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalUpdated {
    /// The command that caused it.
    pub command_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The goal before.
    pub old_goal: String,
    /// The goal after.
    pub new_goal: String,
    /// Who changed it.
    pub updated_by: Option<String>,
    /// When (RFC 3339).
    pub updated_at: String,
}

/// A campaign crossed a percentage of its goal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneReached {
    /// The command that caused it.
    pub command_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// 25, 50, 75 or 100.
    pub milestone: i32,
    /// The goal it is a percentage of.
    pub goal: String,
    /// The total that crossed it.
    pub total: String,
    /// When (RFC 3339).
    pub reached_at: String,
}

/// A campaign was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignCreated {
    /// The command that caused it.
    pub command_id: String,
    /// The new campaign.
    pub campaign_id: String,
    /// Its name.
    pub name: String,
    /// Its goal.
    pub goal: String,
    /// Its currency.
    pub currency: String,
    /// `public` or `private`.
    pub visibility: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// A moderator changed a donation's status (only changes are recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonationModerated {
    /// The command that caused it.
    pub command_id: String,
    /// The donation.
    pub donation_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// `approved`, `flagged` or `rejected`; a rejected donation left the campaign's total.
    pub status: String,
    /// The donation's amount ("12.50").
    pub amount: String,
    /// Currency code.
    pub currency: String,
    /// The campaign's total after the moderation.
    pub new_total: String,
    /// The moderator.
    pub moderated_by: Option<String>,
    /// When (RFC 3339).
    pub moderated_at: String,
}

/// Any domain event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DomainEvent {
    /// See [`DonationCreated`].
    DonationCreated(DonationCreated),
    /// See [`GoalUpdated`].
    GoalUpdated(GoalUpdated),
    /// See [`MilestoneReached`].
    MilestoneReached(MilestoneReached),
    /// See [`CampaignCreated`].
    CampaignCreated(CampaignCreated),
    /// See [`DonationModerated`].
    DonationModerated(DonationModerated),
}

impl DomainEvent {
    /// The campaign the event is about: the record key.
    pub fn campaign_id(&self) -> &str {
        match self {
            DomainEvent::DonationCreated(e) => &e.campaign_id,
            DomainEvent::GoalUpdated(e) => &e.campaign_id,
            DomainEvent::MilestoneReached(e) => &e.campaign_id,
            DomainEvent::CampaignCreated(e) => &e.campaign_id,
            DomainEvent::DonationModerated(e) => &e.campaign_id,
        }
    }

    /// Encodes the event as its own Avro record.
    pub fn encode(&self) -> Result<Bytes, AvroError> {
        match self {
            DomainEvent::DonationCreated(e) => avro::encode("DonationCreated", e),
            DomainEvent::GoalUpdated(e) => avro::encode("GoalUpdated", e),
            DomainEvent::MilestoneReached(e) => avro::encode("MilestoneReached", e),
            DomainEvent::CampaignCreated(e) => avro::encode("CampaignCreated", e),
            DomainEvent::DonationModerated(e) => avro::encode("DonationModerated", e),
        }
    }

    /// Decodes an event of any of the kinds above, written with any known schema version.
    pub fn decode(bytes: &[u8]) -> Result<Self, AvroError> {
        match avro::record_name(bytes)? {
            "DonationCreated" => avro::decode("DonationCreated", bytes).map(Self::DonationCreated),
            "GoalUpdated" => avro::decode("GoalUpdated", bytes).map(Self::GoalUpdated),
            "MilestoneReached" => {
                avro::decode("MilestoneReached", bytes).map(Self::MilestoneReached)
            }
            "CampaignCreated" => avro::decode("CampaignCreated", bytes).map(Self::CampaignCreated),
            "DonationModerated" => {
                avro::decode("DonationModerated", bytes).map(Self::DonationModerated)
            }
            other => Err(AvroError::WrongRecord {
                expected: "a domain event",
                found: other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let events = [
            DomainEvent::DonationCreated(DonationCreated {
                command_id: "c".into(),
                donation_id: "d".into(),
                campaign_id: "1".into(),
                amount: "1.50".into(),
                currency: "USD".into(),
                new_total: "3.00".into(),
                inserted_at: "t".into(),
                user_id: Some("5".into()),
            }),
            DomainEvent::GoalUpdated(GoalUpdated {
                command_id: "c".into(),
                campaign_id: "1".into(),
                old_goal: "1.00".into(),
                new_goal: "2.00".into(),
                updated_by: None,
                updated_at: "t".into(),
            }),
            DomainEvent::MilestoneReached(MilestoneReached {
                command_id: "c".into(),
                campaign_id: "1".into(),
                milestone: 75,
                goal: "4.00".into(),
                total: "3.00".into(),
                reached_at: "t".into(),
            }),
            DomainEvent::CampaignCreated(CampaignCreated {
                command_id: "c".into(),
                campaign_id: "3".into(),
                name: "n".into(),
                goal: "9.00".into(),
                currency: "USD".into(),
                visibility: "public".into(),
                created_at: "t".into(),
            }),
            DomainEvent::DonationModerated(DonationModerated {
                command_id: "c".into(),
                donation_id: "d".into(),
                campaign_id: "1".into(),
                status: "rejected".into(),
                amount: "1.50".into(),
                currency: "USD".into(),
                new_total: "1.50".into(),
                moderated_by: Some("9".into()),
                moderated_at: "t".into(),
            }),
        ];
        for event in events {
            let bytes = event.encode().expect("encodes");
            assert_eq!(DomainEvent::decode(&bytes).expect("decodes"), event);
        }
    }
}
