//! Fan-out of one broadcast to the local subscribers of its topic.
//!
//! A broadcast is encoded once per (serializer, transform mask) and the same bytes are queued
//! to every subscriber that sees that variant, so a campaign with thousands of sockets costs a
//! handful of encodings, not one per socket. The mask is the socket's audience: which of the
//! broadcast's redactions and reveals apply to its claims (`topics::broadcast`).

use std::collections::HashMap;
use std::sync::Arc;

use topics::Broadcast;

use crate::metrics::Metrics;
use crate::registry::{Outbound, Registry};
use crate::serializer::{encode_push, Frame, Text, Vsn};

/// Writes one broadcast to every local subscriber of its topic, encoded once per variant.
pub(crate) fn send(broadcast: &Broadcast, registry: &Registry, metrics: &Metrics) {
    let subscribers = registry.subscribers(&broadcast.topic);
    if subscribers.is_empty() {
        return;
    }
    metrics.broadcasts.inc();
    let topic: Arc<str> = Arc::from(broadcast.topic.as_str());
    let mut encoded: HashMap<(Vsn, u64), Text> = HashMap::new();
    let offset = broadcast.position.as_ref().map(|p| p.offset);
    for handle in subscribers {
        let mask = broadcast.mask_for(&handle.claims);
        let frame = encoded
            .entry((handle.vsn, mask))
            .or_insert_with(|| {
                let payload = broadcast.payload_with(mask);
                match encode_push(
                    handle.vsn,
                    None,
                    &broadcast.topic,
                    &broadcast.event,
                    &payload,
                ) {
                    Frame::Text(text) => Text::from(text),
                }
            })
            .clone();
        if !handle.offer(Outbound::Broadcast(topic.clone(), frame, offset))
            && handle.overflow.is_cancelled()
        {
            metrics.slow_consumers.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SessionHandle;
    use serde_json::json;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use topics::{Audience, Claims, Transform};

    #[test]
    fn one_encoding_per_variant_shared_by_subscribers() {
        let registry = Registry::default();
        let metrics = Metrics::new(prometheus::Registry::new());
        let mut receivers = Vec::new();
        for (id, user) in [(1, "1"), (2, "7"), (3, "8")] {
            let (tx, rx) = mpsc::channel(4);
            let claims = Claims {
                user_id: Some(user.into()),
                ..Claims::default()
            };
            registry.subscribe(
                "t",
                id,
                SessionHandle {
                    tx,
                    overflow: CancellationToken::new(),
                    turn: CancellationToken::new(),
                    claims: Arc::new(claims),
                    vsn: Vsn::V2,
                },
            );
            receivers.push(rx);
        }
        let broadcast = Broadcast {
            id: "b".into(),
            topic: "t".into(),
            event: "donation_created".into(),
            payload: json!({"donation": {"donor_name": "Aisha"}}),
            transforms: vec![Transform::Redact {
                path: vec!["donation".into(), "donor_name".into()],
                replacement: json!("Anonymous"),
                visible_to: Audience {
                    user_ids: vec!["1".into()],
                    roles: vec![],
                },
            }],
            position: None,
        };
        send(&broadcast, &registry, &metrics);
        let mut texts = Vec::new();
        for rx in &mut receivers {
            let Ok(Outbound::Broadcast(_, text, _)) = rx.try_recv() else {
                panic!("a frame per subscriber")
            };
            texts.push(text);
        }
        texts.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert!(texts[0].as_str().contains("Aisha"));
        assert!(texts[1].as_str().contains("Anonymous"));
        assert_eq!(texts[1], texts[2]);
    }

    /// Subscribes a V2 socket of `user` (anonymous when `None`) to `topic`.
    fn subscriber(
        registry: &Registry,
        topic: &str,
        id: u64,
        user: Option<&str>,
    ) -> mpsc::Receiver<Outbound> {
        let (tx, rx) = mpsc::channel(4);
        let claims = Claims {
            user_id: user.map(str::to_owned),
            ..Claims::default()
        };
        registry.subscribe(
            topic,
            id,
            SessionHandle {
                tx,
                overflow: CancellationToken::new(),
                turn: CancellationToken::new(),
                claims: Arc::new(claims),
                vsn: Vsn::V2,
            },
        );
        rx
    }

    #[test]
    fn each_audience_of_a_waqf_gets_its_own_variant_encoded_once() {
        let registry = Registry::default();
        let metrics = Metrics::new(prometheus::Registry::new());
        let topic = "waqf:public";
        // Two sockets of the trustee, two of one beneficiary, one of another, two strangers.
        let users = [
            Some("t"),
            Some("t"),
            Some("b1"),
            Some("b1"),
            Some("b2"),
            Some("x"),
            None,
        ];
        let mut receivers: Vec<_> = users
            .iter()
            .zip(1..)
            .map(|(user, id)| subscriber(&registry, topic, id, *user))
            .collect();
        let full = json!({"id": "w1", "beneficiaries": [
            {"user_id": "b1", "allocation": "10.00"}, {"user_id": "b2", "allocation": "20.00"}]});
        let reveal = |path: &str, value: serde_json::Value, user: &str| Transform::Reveal {
            path: vec![path.into()],
            value,
            visible_to: Audience::users([user.to_owned()]),
        };
        let broadcast = Broadcast {
            id: "w1:0".into(),
            topic: topic.into(),
            event: "waqf_created".into(),
            payload: json!({"id": "w1", "type": "khayri"}),
            transforms: vec![
                reveal("waqf", full.clone(), "t"),
                reveal("benefit_amount", json!("10.00"), "b1"),
                reveal("benefit_amount", json!("20.00"), "b2"),
            ],
            position: None,
        };
        send(&broadcast, &registry, &metrics);
        let frames: Vec<bytes::Bytes> = receivers
            .iter_mut()
            .map(|rx| match rx.try_recv() {
                Ok(Outbound::Broadcast(_, text, _)) => text.into_bytes(),
                _ => panic!("a frame per subscriber"),
            })
            .collect();
        let payload = |frame: &bytes::Bytes| -> serde_json::Value {
            let message: serde_json::Value = serde_json::from_slice(frame).expect("json");
            message[4].clone()
        };
        assert_eq!(payload(&frames[0])["waqf"], full);
        assert_eq!(
            payload(&frames[2]),
            json!({"id": "w1", "type": "khayri", "benefit_amount": "10.00"})
        );
        assert_eq!(
            payload(&frames[4]),
            json!({"id": "w1", "type": "khayri", "benefit_amount": "20.00"})
        );
        for stranger in &frames[5..] {
            assert_eq!(payload(stranger), json!({"id": "w1", "type": "khayri"}));
        }
        // One encoding per audience, shared (the same bytes) by its sockets.
        let shared = |a: usize, b: usize| frames[a].as_ptr() == frames[b].as_ptr();
        assert!(shared(0, 1) && shared(2, 3) && shared(5, 6));
        let distinct: std::collections::BTreeSet<usize> =
            frames.iter().map(|f| f.as_ptr() as usize).collect();
        assert_eq!(distinct.len(), 4, "trustee, two beneficiaries, the public");
    }
}
