//! The pure part of storing a group of decided commands: which campaign writes the group
//! collapses to, on which version, with which fence. Both backends store what this plans.

use std::collections::BTreeMap;

use crate::{Campaign, Decided, StoreError, Write};

/// One campaign's write for a whole group: its last state, the version every decision of the
/// group read, and the fence moved past the group's commands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CampaignWrite {
    /// The campaign as the group's last decision left it, with [`Campaign::applied`] moved to
    /// the group's last position on its partition; `version` is the base version.
    pub(crate) campaign: Campaign,
    /// Which commands of the group (indices into the batch) wrote it, in order.
    pub(crate) commands: Vec<usize>,
}

/// What a group of decided commands stores.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct BatchPlan {
    /// One compare-and-set per campaign the group writes, in the order first written.
    pub(crate) campaigns: Vec<CampaignWrite>,
    /// The command partition of the group, when its commands came from the log.
    pub(crate) partition: Option<u32>,
}

fn invalid(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

/// Document kinds the store keeps for itself (the Scylla store's donation indexes live in its
/// documents tables).
pub(crate) const RESERVED_KIND_PREFIX: &str = "fawkes.";

/// Plans the campaign writes of `batch`.
///
/// Refuses (as [`StoreError::Corrupt`]: a bug in the caller, not a state to retry) a group
/// whose commands come from more than one partition, a document of a reserved kind, a command writing two campaigns, and two
/// writes of one campaign based on different versions.
pub(crate) fn plan_batch(batch: &[Decided<'_>]) -> Result<BatchPlan, StoreError> {
    let mut partition = None;
    for position in batch.iter().filter_map(|d| d.position) {
        match partition {
            None => partition = Some(position.partition),
            Some(p) if p != position.partition => {
                return Err(invalid(format!(
                    "a group mixes command partitions {p} and {}",
                    position.partition
                )))
            }
            Some(_) => {}
        }
    }
    let mut campaigns: Vec<CampaignWrite> = Vec::new();
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, decided) in batch.iter().enumerate() {
        if let Some(Write::PutDocument(document)) = decided.writes.iter().find(
            |w| matches!(w, Write::PutDocument(d) if d.kind.starts_with(RESERVED_KIND_PREFIX)),
        ) {
            return Err(invalid(format!(
                "command {} writes a document of the store's own kind {}",
                decided.command_id, document.kind
            )));
        }
        let mut written = decided.writes.iter().filter_map(|w| match w {
            Write::PutCampaign(c) => Some(c),
            _ => None,
        });
        let Some(campaign) = written.next() else {
            continue;
        };
        if written.next().is_some() {
            return Err(invalid(format!(
                "command {} writes more than one campaign",
                decided.command_id
            )));
        }
        match by_id.get(campaign.id.as_str()) {
            Some(&slot) => {
                let write = &mut campaigns[slot];
                if write.campaign.version != campaign.version {
                    return Err(invalid(format!(
                        "the group's writes of campaign {} were based on versions {} and {}",
                        campaign.id, write.campaign.version, campaign.version
                    )));
                }
                let applied = std::mem::take(&mut write.campaign.applied);
                write.campaign = campaign.clone();
                write.campaign.applied = applied;
                write.commands.push(index);
            }
            None => {
                by_id.insert(campaign.id.as_str(), campaigns.len());
                campaigns.push(CampaignWrite {
                    campaign: campaign.clone(),
                    commands: vec![index],
                });
            }
        }
        if let Some(position) = decided.position {
            let slot = by_id[campaign.id.as_str()];
            let last = campaigns[slot]
                .campaign
                .applied
                .entry(position.partition)
                .or_default();
            *last = (*last).max(position.offset);
        }
    }
    Ok(BatchPlan {
        campaigns,
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::sample_campaign;
    use crate::Position;
    use rust_decimal::Decimal;
    use serde_json::{json, Value};

    fn at(offset: u64) -> Option<Position> {
        Some(Position {
            partition: 3,
            offset,
        })
    }

    fn with_total(id: &str, cents: i64, version: u64) -> Write {
        let mut campaign = sample_campaign(id);
        campaign.total = Decimal::new(cents, 2);
        campaign.version = version;
        campaign.applied.insert(3, 9);
        Write::PutCampaign(campaign)
    }

    const OUTCOME: Value = Value::Null;

    #[test]
    fn one_write_per_campaign_with_the_last_state_and_the_fence_moved() {
        let writes = [
            vec![with_total("a", 100, 4)],
            vec![with_total("b", 50, 1)],
            vec![with_total("a", 300, 4)],
            vec![],
        ];
        let ids = ["c10", "c11", "c12", "c13"];
        let batch: Vec<Decided<'_>> = (0..4)
            .map(|i| Decided {
                command_id: ids[i],
                position: at(10 + i as u64),
                writes: &writes[i],
                outcome: &OUTCOME,
            })
            .collect();
        let plan = plan_batch(&batch).expect("a plan");
        assert_eq!(plan.partition, Some(3));
        assert_eq!(plan.campaigns.len(), 2);
        let a = &plan.campaigns[0];
        assert_eq!(a.campaign.id, "a");
        assert_eq!(a.campaign.total, Decimal::new(300, 2), "the last state");
        assert_eq!(a.campaign.version, 4, "the base version");
        assert_eq!(a.campaign.applied.get(&3), Some(&12), "fenced past c12");
        assert_eq!(a.commands, vec![0, 2]);
        assert_eq!(plan.campaigns[1].campaign.applied.get(&3), Some(&11));
    }

    #[test]
    fn writes_without_positions_leave_the_fence() {
        let writes = vec![with_total("a", 1, 0)];
        let batch = [Decided {
            command_id: "seed",
            position: None,
            writes: &writes,
            outcome: &OUTCOME,
        }];
        let plan = plan_batch(&batch).expect("a plan");
        assert_eq!(plan.partition, None);
        assert_eq!(plan.campaigns[0].campaign.applied.get(&3), Some(&9));
    }

    #[test]
    fn refuses_what_cannot_be_one_compare_and_set() {
        let two = vec![with_total("a", 1, 1), with_total("b", 1, 1)];
        let batch = [Decided {
            command_id: "x",
            position: at(1),
            writes: &two,
            outcome: &OUTCOME,
        }];
        assert!(plan_batch(&batch).is_err(), "one command, two campaigns");
        let first = vec![with_total("a", 1, 1)];
        let second = vec![with_total("a", 2, 2)];
        let batch = [
            Decided {
                command_id: "x",
                position: at(1),
                writes: &first,
                outcome: &OUTCOME,
            },
            Decided {
                command_id: "y",
                position: at(2),
                writes: &second,
                outcome: &OUTCOME,
            },
        ];
        assert!(plan_batch(&batch).is_err(), "two base versions");
        let mixed = [
            Decided {
                command_id: "x",
                position: at(1),
                writes: &[],
                outcome: &json!({}),
            },
            Decided {
                command_id: "y",
                position: Some(Position {
                    partition: 4,
                    offset: 1,
                }),
                writes: &[],
                outcome: &json!({}),
            },
        ];
        assert!(plan_batch(&mixed).is_err(), "two partitions");
    }
}
