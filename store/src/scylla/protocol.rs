//! The Scylla store's protocol, over any [`Tables`]: how a group of commands is stored
//! exactly once without multi-partition transactions.
//!
//! For each campaign a group writes, one lightweight transaction (single partition: the
//! campaign row) does three things at once: checks the version the group's decisions read,
//! writes the campaign with its fence (`applied[partition]`, the group's last offset) and
//! keeps the group's commands for that campaign in `pending[partition]`. Then come the
//! idempotent rest (donations by sequence number, presence rows) and the outcomes by command
//! id. So:
//! - a command is counted exactly when its campaign's fence covers it: a second owner that
//!   decided on an older version fails its compare-and-set, and one that reads afterwards
//!   sees the fence and does not decide again;
//! - after a crash between the compare-and-set and the rest, whoever meets the fence calls
//!   [`Store::settle`], which finishes `pending[partition]` (the group's writes again, then
//!   its outcomes): the groups of one partition follow each other, so only the last one of
//!   each partition can be unfinished.
//!
//! Commands that write no campaign (presence) are idempotent by their rows' keys and leave
//! their outcome once stored.

use async_trait::async_trait;
use serde_json::Value;

use super::plan::{bucket_of, campaign_cas, corrupt, donation_seq, pending_commands};
use super::tables::{Listed, Tables};
use crate::{
    plan_batch, Applied, Campaign, Decided, Document, Donation, HistoryEntry, Presence,
    PresenceFilter, Store, StoreError, Write,
};

/// The store protocol over the tables `T`.
#[derive(Debug)]
pub(crate) struct Protocol<T> {
    pub(crate) tables: T,
}

impl<T: Tables> Protocol<T> {
    /// The idempotent writes of one command (its campaign's are the compare-and-set's), then
    /// its outcome (under its id, last: an outcome present means the command is finished).
    async fn finish(
        &self,
        command_id: &str,
        writes: &[Write],
        outcome: &str,
    ) -> Result<(), StoreError> {
        for write in writes {
            match write {
                Write::PutCampaign(_) => {}
                Write::OutcomeAlias(alias) => self.tables.put_outcome(alias, outcome).await?,
                Write::InsertDonation(donation) => {
                    // The donation is the campaign's `donation_count`-th; the campaign write
                    // of the same command carries that count.
                    let seq = donation_seq(writes);
                    let body = serde_json::to_string(donation).map_err(corrupt)?;
                    let bucket = i64::try_from(bucket_of(seq)).map_err(corrupt)?;
                    let seq = i64::try_from(seq).map_err(corrupt)?;
                    self.tables
                        .insert_donation(&donation.campaign_id, bucket, seq, &donation.id, &body)
                        .await?;
                    self.index_donation(donation, bucket, seq, &body).await?;
                }
                Write::UpdateDonation(donation) => {
                    // Rewritten where it was inserted: its index says where that is.
                    let Some(index) = self.donation_index(&donation.id).await? else {
                        return Err(StoreError::Corrupt(format!(
                            "donation {} is updated but was never stored",
                            donation.id
                        )));
                    };
                    let body = serde_json::to_string(donation).map_err(corrupt)?;
                    self.tables
                        .insert_donation(
                            &donation.campaign_id,
                            index.bucket,
                            index.seq,
                            &donation.id,
                            &body,
                        )
                        .await?;
                    self.index_donation(donation, index.bucket, index.seq, &body)
                        .await?;
                }
                Write::AppendHistory { entry, .. } => {
                    // Bounded by the table's time to live and the read's limit, not by count.
                    let body = serde_json::to_string(entry).map_err(corrupt)?;
                    let offset = i64::try_from(entry.offset).map_err(corrupt)?;
                    self.tables
                        .put_history(&entry.topic, history_bucket(entry.offset), offset, &body)
                        .await?;
                }
                Write::PutDocument(document) => {
                    let body = serde_json::to_string(document).map_err(corrupt)?;
                    self.tables
                        .put_record(&document.kind, &document.id, &body)
                        .await?;
                    self.tables
                        .put_listed(&Listed {
                            kind: &document.kind,
                            owner: &document.owner,
                            created_at: &document.created_at,
                            id: &document.id,
                            body: &body,
                        })
                        .await?;
                }
                Write::Track(presence) => {
                    let body = serde_json::to_string(presence).map_err(corrupt)?;
                    // The index rows first, so a crash in between never leaves a presence
                    // that the expiry sweep (which walks the indexes) cannot reach.
                    self.tables
                        .add_presence_connector(&presence.connector_id)
                        .await?;
                    self.tables
                        .add_presence_topic(&presence.connector_id, &presence.topic)
                        .await?;
                    self.tables.put_presence(presence, &body).await?;
                }
                // A meta update (untrack the old meta, track the new one of the same join)
                // is one overwrite of the join's row: no tombstone per cursor move.
                Write::Untrack(presence) if replaced(writes, presence) => {}
                Write::Untrack(presence) => self.tables.delete_presence(presence).await?,
                Write::ForgetPresenceTopic {
                    connector_id,
                    topic,
                } => {
                    self.tables
                        .forget_presence_topic(connector_id, topic)
                        .await?
                }
            }
        }
        self.tables.put_outcome(command_id, outcome).await
    }

    /// Writes a donation's two indexes: by id (with where it lives in its campaign's
    /// partitions) and, when a user made it, under that user and its year.
    async fn index_donation(
        &self,
        donation: &Donation,
        bucket: i64,
        seq: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        let index = DonationIndex {
            bucket,
            seq,
            donation: donation.clone(),
        };
        let text = serde_json::to_string(&index).map_err(corrupt)?;
        self.tables
            .put_record(DONATION_INDEX, &donation.id, &text)
            .await?;
        if let Some(user_id) = &donation.user_id {
            self.tables
                .put_listed(&Listed {
                    kind: &user_donations_kind(donation.year()),
                    owner: user_id,
                    created_at: &donation.inserted_at,
                    id: &donation.id,
                    body,
                })
                .await?;
        }
        Ok(())
    }

    async fn donation_index(&self, id: &str) -> Result<Option<DonationIndex>, StoreError> {
        match self.tables.record(DONATION_INDEX, id).await? {
            Some(text) => parse(&text).map(Some),
            None => Ok(None),
        }
    }

    /// The next value of a sequence, taken with a compare-and-set.
    async fn next_value(&self, sequence: &str) -> Result<i64, StoreError> {
        loop {
            match self.tables.sequence(sequence).await? {
                None => {
                    if self.tables.create_sequence(sequence).await? {
                        return Ok(1);
                    }
                }
                Some(current) => {
                    if self
                        .tables
                        .advance_sequence(sequence, current, current + 1)
                        .await?
                    {
                        return Ok(current + 1);
                    }
                }
            }
        }
    }
}

/// Whether `writes` also track a presence in `untracked`'s row (same topic, socket and join):
/// then that write overwrites the row and the untrack needs no delete.
fn replaced(writes: &[Write], untracked: &Presence) -> bool {
    writes.iter().any(|w| {
        matches!(w, Write::Track(p) if p.topic == untracked.topic
            && p.connector_id == untracked.connector_id
            && p.socket_id == untracked.socket_id
            && p.join_id == untracked.join_id)
    })
}

/// Offsets per partition of the `history` table.
const HISTORY_BUCKET: u64 = 1000;

/// The `history` partition of `offset`.
fn history_bucket(offset: u64) -> i64 {
    i64::try_from(offset / HISTORY_BUCKET).unwrap_or(i64::MAX)
}

/// The `records` kind of the donation index. Document kinds starting with `fawkes.` are the
/// store's own.
const DONATION_INDEX: &str = "fawkes.donation";

/// The `records_by_owner` kind under which a user's donations of `year` are listed.
fn user_donations_kind(year: i32) -> String {
    format!("fawkes.donations@{year}")
}

/// A donation's row in the index by id: the donation, and where it lives in
/// `donations_by_campaign`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DonationIndex {
    bucket: i64,
    seq: i64,
    donation: Donation,
}

fn parse<V: serde::de::DeserializeOwned>(text: &str) -> Result<V, StoreError> {
    serde_json::from_str(text).map_err(corrupt)
}

#[async_trait]
impl<T: Tables> Store for Protocol<T> {
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        let Some(row) = self.tables.campaign(id).await? else {
            return Ok(None);
        };
        let mut campaign: Campaign = parse(&row.body)?;
        campaign.version = row.version.unsigned_abs();
        Ok(Some(campaign))
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
            let wanted = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let bucket_key = i64::try_from(bucket).map_err(corrupt)?;
            for body in self
                .tables
                .donations(campaign_id, bucket_key, wanted)
                .await?
            {
                found.push(parse(&body)?);
            }
            if found.len() >= limit || bucket == 0 {
                return Ok(found);
            }
            bucket -= 1;
        }
    }

    async fn donation(&self, id: &str) -> Result<Option<Donation>, StoreError> {
        Ok(self.donation_index(id).await?.map(|index| index.donation))
    }

    async fn user_donations(
        &self,
        user_id: &str,
        year: i32,
        limit: usize,
    ) -> Result<Vec<Donation>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let bodies = self
            .tables
            .listed(&user_donations_kind(year), user_id, limit)
            .await?;
        bodies.iter().map(|body| parse(body)).collect()
    }

    async fn document(&self, kind: &str, id: &str) -> Result<Option<Document>, StoreError> {
        match self.tables.record(kind, id).await? {
            Some(text) => parse(&text).map(Some),
            None => Ok(None),
        }
    }

    async fn documents(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let bodies = self.tables.listed(kind, owner, limit).await?;
        bodies.iter().map(|body| parse(body)).collect()
    }

    async fn history(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut found: Vec<HistoryEntry> = Vec::new();
        let mut bucket = history_bucket(after.saturating_add(1));
        let mut from = i64::try_from(after).unwrap_or(i64::MAX);
        while found.len() < limit {
            let wanted = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let bodies = self.tables.history(topic, bucket, from, wanted).await?;
            if bodies.is_empty() {
                return Ok(found);
            }
            for body in bodies {
                found.push(parse(&body)?);
            }
            // A bucket read to its end: the next one starts after its last offset.
            from = found
                .last()
                .map_or(from, |e| i64::try_from(e.offset).unwrap_or(i64::MAX));
            bucket += 1;
        }
        Ok(found)
    }

    async fn outcomes(&self, command_ids: &[&str]) -> Result<Vec<Option<Value>>, StoreError> {
        // Concurrently: one partition each, and a group's check should cost one round trip,
        // not one per command.
        futures_util::future::try_join_all(command_ids.iter().map(|id| self.outcome(id))).await
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<Value>, StoreError> {
        match self.tables.outcome(command_id).await? {
            Some(text) => parse(&text).map(Some),
            None => Ok(None),
        }
    }

    async fn settle(&self, campaign_id: &str, partition: u32) -> Result<(), StoreError> {
        let Some(row) = self.tables.campaign(campaign_id).await? else {
            return Ok(());
        };
        let key = i32::try_from(partition).map_err(corrupt)?;
        let Some(text) = row.pending.get(&key) else {
            return Ok(());
        };
        let commands = pending_commands(text)?;
        // Outcomes are written last and in order: the last one stored means done.
        if let Some(last) = commands.last() {
            if self.tables.outcome(&last.id).await?.is_some() {
                return Ok(());
            }
        }
        for command in commands {
            self.finish(&command.id, &command.writes, &command.outcome.to_string())
                .await?;
        }
        Ok(())
    }

    async fn claim_id(&self, sequence: &str, claimant: &str) -> Result<u64, StoreError> {
        if let Some(value) = self.tables.claim(sequence, claimant).await? {
            return Ok(value.unsigned_abs());
        }
        let value = self.next_value(sequence).await?;
        if self.tables.put_claim(sequence, claimant, value).await? {
            return Ok(value.unsigned_abs());
        }
        // Another attempt of the same claimant got there first (the value taken here is
        // skipped, which sequences allow).
        match self.tables.claim(sequence, claimant).await? {
            Some(value) => Ok(value.unsigned_abs()),
            None => Err(StoreError::Unavailable(format!(
                "the claim of {claimant} on {sequence} was refused but cannot be read"
            ))),
        }
    }

    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<Presence>, StoreError> {
        let bodies = self.tables.presences(topic, filter).await?;
        bodies.iter().map(|body| parse(body)).collect()
    }

    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        self.tables.presence_connectors().await
    }

    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError> {
        self.tables.presence_topics(connector_id).await
    }

    async fn forget_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        if self.tables.presence_topics(connector_id).await?.is_empty() {
            self.tables.forget_presence_connector(connector_id).await?;
        }
        Ok(())
    }

    async fn apply_batch(&self, batch: &[Decided<'_>]) -> Result<Vec<Applied>, StoreError> {
        if let [one] = batch {
            // Alone, a command applied already is answered; in a group the campaigns'
            // compare-and-sets catch it (the group's decisions read a version it changed).
            if let Some(stored) = self.outcome(one.command_id).await? {
                return Ok(vec![Applied::Duplicate(stored)]);
            }
        }
        let plan = plan_batch(batch)?;
        for write in &plan.campaigns {
            let cas = campaign_cas(write, batch, plan.partition)?;
            if !self.tables.write_campaign(&cas).await? {
                return Err(StoreError::Conflict(write.campaign.id.clone()));
            }
        }
        for decided in batch {
            self.finish(
                decided.command_id,
                decided.writes,
                &decided.outcome.to_string(),
            )
            .await?;
        }
        Ok(vec![Applied::Stored; batch.len()])
    }
}

#[cfg(test)]
mod tests;
