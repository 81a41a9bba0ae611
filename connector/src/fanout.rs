//! Fan-out of one broadcast to the local subscribers of its topic.
//!
//! A broadcast is encoded once per (serializer, transform mask) and the same bytes are queued
//! to every subscriber that sees that variant, so a campaign with thousands of sockets costs a
//! handful of encodings, not one per socket.

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
        if !handle.offer(Outbound::Broadcast(topic.clone(), frame))
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
        };
        send(&broadcast, &registry, &metrics);
        let mut texts = Vec::new();
        for rx in &mut receivers {
            let Ok(Outbound::Broadcast(_, text)) = rx.try_recv() else {
                panic!("a frame per subscriber")
            };
            texts.push(text);
        }
        texts.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert!(texts[0].as_str().contains("Aisha"));
        assert!(texts[1].as_str().contains("Anonymous"));
        assert_eq!(texts[1], texts[2]);
    }
}
