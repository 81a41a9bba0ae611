//! What `dashboard:live` shows, folded between two `metrics_batch` broadcasts. Pure: the
//! caller passes the instants and the timestamp.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};
use topics::events::{DonationCreated, DonationModerated};
use topics::Heartbeat;

use crate::money::{format_money, parse_decimal};

/// Donation ids remembered to drop a domain event seen twice (a replayed outcome re-sends its
/// events).
const REMEMBERED: usize = 100_000;

/// Donations to one campaign since the last batch.
#[derive(Debug, Clone, PartialEq)]
struct CampaignDelta {
    donations: u64,
    /// Donations rejected by a moderator (their amounts are taken out of `amount`).
    rejected: u64,
    amount: Decimal,
    currency: String,
    new_total: String,
}

/// One connector's last heartbeat.
#[derive(Debug, Clone, Copy)]
struct Connector {
    sockets: u64,
    lapses_at: Instant,
}

/// The dashboard's fold.
#[derive(Debug, Default)]
pub(crate) struct Fold {
    campaigns: BTreeMap<String, CampaignDelta>,
    connectors: BTreeMap<String, Connector>,
    /// The connection count in the last batch sent.
    connections_sent: Option<u64>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

impl Fold {
    /// Whether `key` is new (remembering it), so an event re-sent by a replayed command
    /// counts once.
    fn first_time(&mut self, key: String) -> bool {
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > REMEMBERED {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn campaign(&mut self, campaign_id: &str, currency: &str) -> &mut CampaignDelta {
        self.campaigns
            .entry(campaign_id.to_owned())
            .or_insert_with(|| CampaignDelta {
                donations: 0,
                rejected: 0,
                amount: Decimal::ZERO,
                currency: currency.to_owned(),
                new_total: String::new(),
            })
    }

    /// Counts a donation, once per donation id.
    pub(crate) fn donation(&mut self, event: &DonationCreated) {
        if !self.first_time(format!("created:{}", event.donation_id)) {
            return;
        }
        let amount = parse_decimal(Some(&Value::String(event.amount.clone()))).unwrap_or_default();
        let delta = self.campaign(&event.campaign_id, &event.currency);
        delta.donations += 1;
        delta.amount += amount;
        delta.new_total.clone_from(&event.new_total);
    }

    /// Counts a rejection (it left the campaign's total), once per donation; approvals and
    /// flags change no figure.
    pub(crate) fn moderation(&mut self, event: &DonationModerated) {
        if event.status != "rejected" || !self.first_time(format!("rejected:{}", event.donation_id))
        {
            return;
        }
        let amount = parse_decimal(Some(&Value::String(event.amount.clone()))).unwrap_or_default();
        let delta = self.campaign(&event.campaign_id, &event.currency);
        delta.rejected += 1;
        delta.amount -= amount;
        delta.new_total.clone_from(&event.new_total);
    }

    /// Takes a connector's heartbeat (heard at `now`) for the connection count.
    pub(crate) fn heartbeat(&mut self, beat: &Heartbeat, now: Instant) {
        let lease = Duration::from_millis(beat.lease_ms.max(0).unsigned_abs());
        self.connectors.insert(
            beat.connector_id.clone(),
            Connector {
                sockets: beat.sockets.max(0).unsigned_abs(),
                lapses_at: now + lease,
            },
        );
    }

    /// The `metrics_batch` payload for what happened since the last one, or `None` when
    /// nothing changed; the fold starts over. Connectors whose lease lapsed by `now` no
    /// longer count.
    pub(crate) fn take(&mut self, now: Instant, timestamp: &str) -> Option<Value> {
        self.connectors.retain(|_, c| c.lapses_at > now);
        let connections: u64 = self.connectors.values().map(|c| c.sockets).sum();
        let connections_changed = self.connections_sent != Some(connections);
        if self.campaigns.is_empty() && !connections_changed {
            return None;
        }
        let mut metrics: Vec<Value> = std::mem::take(&mut self.campaigns)
            .into_iter()
            .map(|(campaign_id, delta)| {
                json!({
                    "type": "donations",
                    "campaign_id": campaign_id,
                    "count": delta.donations,
                    "rejected": delta.rejected,
                    "amount": format_money(delta.amount),
                    "currency": delta.currency,
                    "total": delta.new_total,
                })
            })
            .collect();
        if connections_changed {
            metrics.push(json!({
                "type": "connections",
                "count": connections,
                "connectors": self.connectors.len(),
            }));
            self.connections_sent = Some(connections);
        }
        Some(json!({ "metrics": metrics, "timestamp": timestamp }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn donation(id: &str, campaign: &str, amount: &str, total: &str) -> DonationCreated {
        DonationCreated {
            command_id: id.into(),
            donation_id: id.into(),
            campaign_id: campaign.into(),
            amount: amount.into(),
            currency: "USD".into(),
            new_total: total.into(),
            inserted_at: "2026-01-01T00:00:00Z".into(),
            user_id: None,
        }
    }

    fn beat(connector: &str, sockets: i64) -> Heartbeat {
        Heartbeat {
            connector_id: connector.into(),
            lease_ms: 1000,
            sent_at: "2026-01-01T00:00:00Z".into(),
            sockets,
        }
    }

    #[test]
    fn donations_fold_per_campaign_once_each_and_the_fold_starts_over() {
        let t0 = Instant::now();
        let mut fold = Fold::default();
        fold.donation(&donation("a", "1", "10.00", "10.00"));
        fold.donation(&donation("b", "1", "2.50", "12.50"));
        fold.donation(&donation("b", "1", "2.50", "12.50"));
        fold.donation(&donation("c", "2", "1", "1.00"));
        let batch = fold.take(t0, "T1").expect("a batch");
        assert_eq!(batch["timestamp"], "T1");
        assert_eq!(
            batch["metrics"],
            json!([
                {"type": "donations", "campaign_id": "1", "count": 2, "rejected": 0, "amount": "12.50", "currency": "USD", "total": "12.50"},
                {"type": "donations", "campaign_id": "2", "count": 1, "rejected": 0, "amount": "1.00", "currency": "USD", "total": "1.00"},
                {"type": "connections", "count": 0, "connectors": 0},
            ])
        );
        assert_eq!(fold.take(t0, "T2"), None, "nothing changed since");
        fold.donation(&donation("b", "1", "2.50", "12.50"));
        assert_eq!(fold.take(t0, "T3"), None, "a replayed event counts once");

        let rejection = DonationModerated {
            command_id: "m".into(),
            donation_id: "a".into(),
            campaign_id: "1".into(),
            status: "rejected".into(),
            amount: "10.00".into(),
            currency: "USD".into(),
            new_total: "2.50".into(),
            moderated_by: Some("9".into()),
            moderated_at: "2026-01-01T00:00:00Z".into(),
        };
        fold.moderation(&rejection);
        fold.moderation(&rejection);
        fold.moderation(&DonationModerated {
            status: "flagged".into(),
            donation_id: "b".into(),
            ..rejection.clone()
        });
        let batch = fold.take(t0, "T4").expect("a rejection is a change");
        assert_eq!(
            batch["metrics"],
            json!([{"type": "donations", "campaign_id": "1", "count": 0, "rejected": 1, "amount": "-10.00", "currency": "USD", "total": "2.50"}])
        );
    }

    #[test]
    fn connections_are_the_live_connectors_sockets_sent_when_they_change() {
        let t0 = Instant::now();
        let mut fold = Fold::default();
        fold.heartbeat(&beat("c1", 10), t0);
        fold.heartbeat(&beat("c2", 5), t0);
        let batch = fold.take(t0, "T").expect("a batch");
        assert_eq!(
            batch["metrics"],
            json!([{"type": "connections", "count": 15, "connectors": 2}])
        );
        fold.heartbeat(&beat("c1", 10), t0 + Duration::from_millis(900));
        assert_eq!(fold.take(t0 + Duration::from_millis(900), "T"), None);
        // c2 stopped beating: its lease lapsed.
        let batch = fold
            .take(t0 + Duration::from_millis(1500), "T")
            .expect("changed");
        assert_eq!(batch["metrics"][0]["count"], 10);
    }
}
