//! The pure parts of the Scylla protocol: where a donation goes, what a campaign's write is,
//! and what the campaign row carries so a group cut short by a crash can be finished.
//! Tested without a server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tables::CampaignCas;
use crate::batch::CampaignWrite;
use crate::{Decided, StoreError, Write};

/// Donations per partition of `donations_by_campaign`.
pub(super) const BUCKET_SIZE: u64 = 10_000;

/// The partition (bucket) of a campaign's `seq`-th donation.
///
/// The newest donations are in the bucket of the campaign's `donation_count`; reads walk
/// down from there, so no partition grows without bound.
pub(super) fn bucket_of(seq: u64) -> u64 {
    seq / BUCKET_SIZE
}

/// The sequence number of a command's donation: the campaign's `donation_count` as the
/// same command writes it (0 when it writes no campaign).
pub(super) fn donation_seq(writes: &[Write]) -> u64 {
    writes
        .iter()
        .find_map(|w| match w {
            Write::PutCampaign(c) => Some(c.donation_count),
            _ => None,
        })
        .unwrap_or_default()
}

/// One command of a group, as the campaign row keeps it until the group's other writes and
/// outcomes are stored: enough to finish them after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingCommand {
    /// The command id.
    pub(super) id: String,
    /// Its writes (the campaign's included, skipped when finishing).
    pub(super) writes: Vec<Write>,
    /// Its outcome.
    pub(super) outcome: Value,
}

/// The compare-and-set that stores one campaign's write of a group: created if new, else
/// replaced on its version; with the group's commands that wrote it, kept in the row under
/// the group's command partition (`pending[partition]`) in the same conditional write, so
/// whoever sees the fence can also finish what the group left undone.
pub(super) fn campaign_cas(
    write: &CampaignWrite,
    batch: &[Decided<'_>],
    partition: Option<u32>,
) -> Result<CampaignCas, StoreError> {
    let body = serde_json::to_string(&write.campaign).map_err(corrupt)?;
    let pending = match partition {
        Some(partition) => {
            let commands: Vec<PendingCommand> = write
                .commands
                .iter()
                .map(|&i| PendingCommand {
                    id: batch[i].command_id.to_owned(),
                    writes: batch[i].writes.to_vec(),
                    outcome: batch[i].outcome.clone(),
                })
                .collect();
            let text = serde_json::to_string(&commands).map_err(corrupt)?;
            Some((i32::try_from(partition).map_err(corrupt)?, text))
        }
        None => None,
    };
    let id = write.campaign.id.clone();
    if write.campaign.version == 0 {
        return Ok(CampaignCas::Create { id, body, pending });
    }
    let expected = i64::try_from(write.campaign.version).map_err(corrupt)?;
    Ok(CampaignCas::Update {
        id,
        body,
        expected,
        pending,
    })
}

/// The commands a campaign row keeps for a partition.
pub(super) fn pending_commands(text: &str) -> Result<Vec<PendingCommand>, StoreError> {
    serde_json::from_str(text).map_err(corrupt)
}

/// A value that cannot be stored or read back: retrying will not help.
pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::sample_campaign;
    use crate::{plan_batch, Position};
    use serde_json::json;

    #[test]
    fn donations_go_to_the_bucket_of_their_sequence_number() {
        let mut campaign = sample_campaign("1");
        campaign.donation_count = BUCKET_SIZE + 1;
        let writes = [Write::PutCampaign(campaign)];
        assert_eq!(donation_seq(&writes), BUCKET_SIZE + 1);
        assert_eq!(bucket_of(donation_seq(&writes)), 1);
        assert_eq!(donation_seq(&[]), 0);
        assert_eq!(bucket_of(BUCKET_SIZE - 1), 0);
    }

    #[test]
    fn a_campaign_write_is_one_conditional_write_carrying_its_commands() {
        let mut campaign = sample_campaign("7");
        campaign.version = 3;
        let writes = [Write::PutCampaign(campaign.clone())];
        let outcome = json!({"n": 1});
        let batch = [Decided {
            command_id: "c1",
            position: Some(Position {
                partition: 2,
                offset: 40,
            }),
            writes: &writes,
            outcome: &outcome,
        }];
        let plan = plan_batch(&batch).expect("plan");
        let cas = campaign_cas(&plan.campaigns[0], &batch, plan.partition).expect("cas");
        let CampaignCas::Update {
            id,
            expected,
            pending: Some((partition, text)),
            body,
        } = cas
        else {
            panic!("an update with pending commands: {cas:?}")
        };
        assert_eq!((id.as_str(), expected, partition), ("7", 3, 2));
        assert!(
            body.contains("\"applied\":{\"2\":40}"),
            "the fence is in the body: {body}"
        );
        let pending = pending_commands(&text).expect("reads back");
        assert_eq!(pending[0].id, "c1");
        assert_eq!(pending[0].outcome, outcome);

        campaign.version = 0;
        let writes = [Write::PutCampaign(campaign)];
        let batch = [Decided {
            command_id: "seed",
            position: None,
            writes: &writes,
            outcome: &outcome,
        }];
        let plan = plan_batch(&batch).expect("plan");
        assert!(matches!(
            campaign_cas(&plan.campaigns[0], &batch, plan.partition).expect("cas"),
            CampaignCas::Create { pending: None, .. }
        ));
    }
}
