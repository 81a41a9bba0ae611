//! The embedded store's writes inside a group's transaction.

use rusqlite::params;

use super::{corrupt, unavailable};
use crate::{Campaign, StoreError, Write};

/// A topic's history is cut back to its `keep` newest entries once every this many entries.
const HISTORY_PRUNE_EVERY: u64 = 64;

/// A campaign's compare-and-set: created at version 1 if new (version 0), else replaced if
/// its stored version is still the one it was based on. Dropping the transaction after a
/// conflict rolls back everything before it.
pub(super) fn put_campaign(
    tx: &rusqlite::Transaction<'_>,
    campaign: &Campaign,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(campaign).map_err(corrupt)?;
    let changed = if campaign.version == 0 {
        tx.execute(
            "INSERT INTO campaigns (id, version, body) VALUES (?1, 1, ?2)
             ON CONFLICT (id) DO NOTHING",
            params![campaign.id, body],
        )
    } else {
        tx.execute(
            "UPDATE campaigns SET body = ?2, version = version + 1
             WHERE id = ?1 AND version = ?3",
            params![campaign.id, body, campaign.version as i64],
        )
    }
    .map_err(unavailable)?;
    if changed == 0 {
        return Err(StoreError::Conflict(campaign.id.clone()));
    }
    Ok(())
}

/// One write other than a campaign's (those are [`put_campaign`]'s) or an outcome alias
/// (stored with the outcome), idempotent by key.
pub(super) fn apply_write(tx: &rusqlite::Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::PutCampaign(_) | Write::OutcomeAlias(_) => {}
        Write::InsertDonation(donation) => {
            let body = serde_json::to_string(donation).map_err(corrupt)?;
            tx.execute(
                "INSERT INTO donations (id, campaign_id, seq, body, user_id, year)
                 VALUES (?1, ?2,
                   (SELECT COALESCE(MAX(seq), 0) + 1 FROM donations WHERE campaign_id = ?2),
                   ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
                params![
                    donation.id,
                    donation.campaign_id,
                    body,
                    donation.user_id,
                    donation.year()
                ],
            )
            .map_err(unavailable)?;
        }
        Write::UpdateDonation(donation) => {
            let body = serde_json::to_string(donation).map_err(corrupt)?;
            tx.execute(
                "UPDATE donations SET body = ?2 WHERE id = ?1",
                params![donation.id, body],
            )
            .map_err(unavailable)?;
        }
        Write::AppendHistory { entry, keep } => {
            let body = serde_json::to_string(entry).map_err(corrupt)?;
            let offset = i64::try_from(entry.offset).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO history (topic, offset, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![entry.topic, offset, body],
            )
            .map_err(unavailable)?;
            // Pruned every so many entries, not at each: one indexed delete per 64 broadcasts.
            if entry.offset % HISTORY_PRUNE_EVERY == 0 {
                let oldest_kept = offset.saturating_sub(i64::try_from(*keep).unwrap_or(i64::MAX));
                tx.execute(
                    "DELETE FROM history WHERE topic = ?1 AND offset <= ?2",
                    params![entry.topic, oldest_kept],
                )
                .map_err(unavailable)?;
            }
        }
        Write::PutDocument(document) => {
            let body = serde_json::to_string(document).map_err(corrupt)?;
            tx.execute(
                "INSERT INTO documents (kind, id, owner, created_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, id) DO UPDATE SET
                   owner = excluded.owner, created_at = excluded.created_at, body = excluded.body",
                params![
                    document.kind,
                    document.id,
                    document.owner,
                    document.created_at,
                    body
                ],
            )
            .map_err(unavailable)?;
        }
        Write::Track(presence) => {
            let body = serde_json::to_string(presence).map_err(corrupt)?;
            tx.execute(
                "INSERT INTO presences (topic, connector_id, socket_id, phx_ref, body)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    presence.topic,
                    presence.connector_id,
                    presence.socket_id as i64,
                    presence.phx_ref,
                    body
                ],
            )
            .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO presence_topics (connector_id, topic) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                params![presence.connector_id, presence.topic],
            )
            .map_err(unavailable)?;
        }
        Write::Untrack(presence) => {
            tx.execute(
                "DELETE FROM presences WHERE topic = ?1 AND connector_id = ?2
                 AND socket_id = ?3 AND phx_ref = ?4",
                params![
                    presence.topic,
                    presence.connector_id,
                    presence.socket_id as i64,
                    presence.phx_ref
                ],
            )
            .map_err(unavailable)?;
        }
        Write::ForgetPresenceTopic {
            connector_id,
            topic,
        } => {
            tx.execute(
                "DELETE FROM presence_topics WHERE connector_id = ?1 AND topic = ?2",
                params![connector_id, topic],
            )
            .map_err(unavailable)?;
        }
    }
    Ok(())
}
