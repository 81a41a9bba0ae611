//! `Store::apply` on Scylla: the command-keyed protocol described in the `scylla` module
//! docs, run with the statements the plan names.

use serde_json::Value;

use super::driver::corrupt;
use super::plan::{bucket_of, campaign_cas, campaign_write, donation_seq, key_state, text};
use super::plan::{CampaignCas, KeyState};
use super::ScyllaStore;
use crate::{Applied, Campaign, Donation, StoreError, Write};

impl ScyllaStore {
    /// `Store::apply` on Scylla: the four steps of the protocol (see the module docs of
    /// `scylla`).
    pub(super) async fn apply_command(
        &self,
        command_id: &str,
        writes: &[Write],
        outcome: &Value,
    ) -> Result<Applied, StoreError> {
        // 1. Done already, or half-done before a crash?
        if let Some(row) = self.first_row(&self.statements.key, (command_id,)).await? {
            let stored_outcome = || -> Result<Value, StoreError> {
                serde_json::from_str(&text(&row, 2).unwrap_or_default()).map_err(corrupt)
            };
            match key_state(&row) {
                KeyState::Done => return Ok(Applied::Duplicate(stored_outcome()?)),
                KeyState::Pending => {
                    let pending: Vec<Write> =
                        serde_json::from_str(&text(&row, 1).unwrap_or_default())
                            .map_err(corrupt)?;
                    let written = match campaign_write(&pending)? {
                        Some(c) => self
                            .campaign_row(&c.id)
                            .await?
                            .is_some_and(|(_, last)| last.as_deref() == Some(command_id)),
                        None => true,
                    };
                    if written {
                        self.finish(command_id, &pending).await?;
                        return Ok(Applied::Duplicate(stored_outcome()?));
                    }
                }
                KeyState::Unknown => {}
            }
        }
        // 2. Record what is about to be written.
        let writes_json = serde_json::to_string(writes).map_err(corrupt)?;
        self.run(
            &self.statements.put_pending,
            (command_id, &writes_json, outcome.to_string()),
        )
        .await?;
        // 3. The campaign, compare-and-set.
        if let Some(campaign) = campaign_write(writes)? {
            if !self.write_campaign(command_id, campaign).await? {
                return Err(StoreError::Conflict(campaign.id.clone()));
            }
        }
        // 4. The rest, then done.
        self.finish(command_id, writes).await?;
        Ok(Applied::Stored)
    }

    /// Step 3: the campaign compare-and-set; false when another writer got there first.
    async fn write_campaign(
        &self,
        command_id: &str,
        campaign: &Campaign,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(campaign).map_err(corrupt)?;
        match campaign_cas(campaign.version)? {
            CampaignCas::Create => {
                self.lwt(
                    &self.statements.create_campaign,
                    (&campaign.id, command_id, &body),
                )
                .await
            }
            CampaignCas::Update { expected, next } => {
                self.lwt(
                    &self.statements.update_campaign,
                    (&body, next, command_id, &campaign.id, expected),
                )
                .await
            }
        }
    }

    /// Step 4: the idempotent rest of the writes, then the key marked done.
    async fn finish(&self, command_id: &str, writes: &[Write]) -> Result<(), StoreError> {
        for write in writes {
            match write {
                // Written by the compare-and-set step.
                Write::PutCampaign(_) => {}
                Write::InsertDonation(donation) => {
                    // The donation is the campaign's `donation_count`-th; the campaign write
                    // of the same command carries that count.
                    self.insert_donation(donation, donation_seq(writes)).await?;
                }
                Write::Track(p) => {
                    let body = serde_json::to_string(p).map_err(corrupt)?;
                    let socket = i64::try_from(p.socket_id).map_err(corrupt)?;
                    let s = &self.statements;
                    // The index rows first, so a crash in between never leaves a presence
                    // that the expiry sweep (which walks the indexes) cannot reach.
                    self.run(&s.add_presence_connector, (&p.connector_id,))
                        .await?;
                    self.run(&s.add_presence_topic, (&p.connector_id, &p.topic))
                        .await?;
                    self.run(
                        &s.track,
                        (&p.topic, &p.connector_id, socket, &p.phx_ref, &body),
                    )
                    .await?;
                }
                Write::Untrack(p) => {
                    let socket = i64::try_from(p.socket_id).map_err(corrupt)?;
                    self.run(
                        &self.statements.untrack,
                        (&p.topic, &p.connector_id, socket, &p.phx_ref),
                    )
                    .await?;
                }
                Write::ForgetPresenceTopic {
                    connector_id,
                    topic,
                } => {
                    self.run(
                        &self.statements.forget_presence_topic,
                        (connector_id, topic),
                    )
                    .await?;
                }
            }
        }
        self.run(&self.statements.mark_done, (command_id,)).await
    }

    /// A donation, as the campaign's `seq`-th, in the partition of its bucket.
    async fn insert_donation(&self, donation: &Donation, seq: u64) -> Result<(), StoreError> {
        let body = serde_json::to_string(donation).map_err(corrupt)?;
        let bucket = i64::try_from(bucket_of(seq)).map_err(corrupt)?;
        let seq = i64::try_from(seq).map_err(corrupt)?;
        self.run(
            &self.statements.insert_donation,
            (&donation.campaign_id, bucket, seq, &donation.id, &body),
        )
        .await
    }
}
