//! What a group reads for a decision besides campaigns, presences and outcomes: fresh
//! campaign ids, donations (as the group's own writes left them) and a user's records.
//!
//! Donations the group wrote are folded in memory, as campaigns are, so a command reading
//! one sees it; listings (a user's records) are not, so a command that lists the records of
//! a user the group wrote for starts a new group instead (see [`Group::writes_records_of`]).

use std::collections::{HashMap, HashSet};

use store::{Campaign, Donation, Position, Store, Write};
use topics::Command;

use super::{AttemptError, Group};
use crate::decision::{RecordsNeeded, UserRecords};

/// The donations and documents the unstored decisions of a group wrote.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Donations as the group's decisions left them, by id.
    donations: HashMap<String, Donation>,
    /// Users whose listed records (donations by donor, documents by owner) the group wrote.
    owners: HashSet<String>,
}

impl Written {
    /// Notes `write`, made by a decision of the group.
    pub(super) fn note(&mut self, write: &Write) {
        match write {
            Write::InsertDonation(donation) | Write::UpdateDonation(donation) => {
                self.owners.extend(donation.user_id.clone());
                self.donations.insert(donation.id.clone(), donation.clone());
            }
            Write::PutDocument(document) => {
                self.owners.insert(document.owner.clone());
            }
            _ => {}
        }
    }

    /// Forgets what was noted, once it is stored.
    pub(super) fn clear(&mut self) {
        self.donations.clear();
        self.owners.clear();
    }
}

impl Group {
    /// Whether the group's unstored decisions wrote records that `needed` lists: then they
    /// must be stored before it is read.
    pub(super) fn writes_records_of(&self, needed: &RecordsNeeded) -> bool {
        self.written.owners.contains(&needed.user_id)
    }

    /// The donation `id` as the group left it, or as stored.
    pub(super) async fn donation(
        &self,
        store: &dyn Store,
        id: &str,
    ) -> Result<Option<Donation>, AttemptError> {
        match self.written.donations.get(id) {
            Some(folded) => Ok(Some(folded.clone())),
            None => Ok(store.donation(id).await?),
        }
    }

    /// The donation `id` read again after its `campaign` was read and every partition that
    /// wrote the campaign was settled, so its status is the one that campaign version
    /// counts. (On Scylla a donation is written after its campaign's compare-and-set; a
    /// rejection whose donation is not written yet would otherwise be taken out twice. A
    /// rejection stored after this read changes the campaign's version, and the group's
    /// compare-and-set fails.)
    pub(super) async fn settled_donation(
        &mut self,
        store: &dyn Store,
        id: &str,
        campaign: &Campaign,
    ) -> Result<Option<Donation>, AttemptError> {
        if let Some(folded) = self.written.donations.get(id) {
            return Ok(Some(folded.clone()));
        }
        for partition in campaign.applied.keys() {
            self.settle(store, campaign, *partition).await?;
        }
        Ok(store.donation(id).await?)
    }
}

/// Reads the records `needed` names.
pub(super) async fn user_records(
    store: &dyn Store,
    needed: &RecordsNeeded,
) -> Result<UserRecords, AttemptError> {
    let user = &needed.user_id;
    let donations = store
        .user_donations(user, needed.year, needed.donation_limit)
        .await?;
    let mut documents = Vec::with_capacity(needed.documents.len());
    for (kind, limit) in &needed.documents {
        documents.push((*kind, store.documents(kind, user, *limit).await?));
    }
    Ok(UserRecords {
        donations,
        documents,
    })
}

/// The id of the campaign `command` creates: claimed by the command, so every attempt (and a
/// second owner) names the same one; ids taken by other campaigns (seeded ones have fixed
/// ids) are skipped the same way on every attempt.
pub(super) async fn free_campaign_id(
    store: &dyn Store,
    command: &Command,
    position: Position,
) -> Result<String, AttemptError> {
    let mut attempt = 0u32;
    loop {
        let claimant = format!("{}#{attempt}", command.id);
        let id = store.claim_id("campaign", &claimant).await?.to_string();
        match store.campaign(&id).await? {
            None => return Ok(id),
            // Created by this very command (another owner got there first): deciding again
            // makes a create that conflicts, and the retry answers from the stored outcome.
            Some(existing) if existing.has_applied(position) => return Ok(id),
            Some(_) => attempt += 1,
        }
    }
}
