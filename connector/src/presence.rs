//! Presence at the connector: a replica of each joined topic's presences, and diffs coalesced
//! into one frame per topic per short window.
//!
//! Processors are the source of truth: they track, persist and announce every change as a
//! `presence_diff` broadcast. A connector keeps, for every topic one of its sockets has joined
//! (or is joining), the state those diffs add up to. That replica
//!
//! - answers `presence_state` for joins on topics the connector already holds (the join says
//!   so with `presence_known`, and the processor pushes a null payload to fill in), so the
//!   whole list does not cross the log for every join of a storm;
//! - is seeded from the first full `presence_state` a processor pushes to one of its sockets,
//!   plus the diffs that arrived while that join was on its way. Diffs may overlap the
//!   snapshot; the presence algebra ([`topics::presence`]) makes that harmless.
//!
//! Diffs are not forwarded one by one: every `window` the diffs of each topic are folded into
//! one and sent once, encoded once per serializer, so a join storm of thousands costs each
//! client a frame per window rather than a frame per join. Folding keeps the result exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use topics::presence::{PresenceDiff, PresenceState};
use topics::Broadcast;

use crate::fanout::deliver;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// The event that carries a full list.
pub const STATE: &str = "presence_state";
/// The event that carries changes.
pub const DIFF: &str = "presence_diff";

#[derive(Debug, Default)]
struct Replica {
    /// The state after every diff sent to subscribers; `None` until a snapshot arrived.
    state: Option<PresenceState>,
    /// Diffs sent while there was no snapshot yet, to apply on top of the first one.
    before_state: PresenceDiff,
    /// Diffs received since the last flush.
    pending: PresenceDiff,
}

/// The presence replicas of one connector, by channel topic.
#[derive(Debug, Default)]
pub struct Replicas {
    topics: Mutex<HashMap<String, Replica>>,
}

impl Replicas {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Replica>) -> T) -> T {
        f(&mut self.topics.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes in a diff broadcast for `topic`, which has local subscribers; it is sent at the
    /// next flush.
    pub fn on_diff(&self, topic: &str, diff: &PresenceDiff) {
        self.with(|topics| {
            topics
                .entry(topic.to_owned())
                .or_default()
                .pending
                .then(diff)
        });
    }

    /// Whether this connector holds the full state of `topic` (a join may then skip it).
    pub fn has_state(&self, topic: &str) -> bool {
        self.with(|topics| topics.get(topic).is_some_and(|r| r.state.is_some()))
    }

    /// The `presence_state` payload for a socket joining `topic`, if the state is held.
    pub fn state_of(&self, topic: &str) -> Option<Value> {
        self.with(|topics| {
            topics
                .get(topic)
                .and_then(|r| r.state.as_ref())
                .map(PresenceState::to_value)
        })
    }

    /// Seeds the replica of `topic` from a snapshot a processor pushed to a socket that has
    /// been subscribed to `topic` since before the snapshot was taken (so every later diff
    /// reached this replica). A replica that already holds a state keeps it.
    pub fn on_state(&self, topic: &str, snapshot: &Value) {
        self.with(|topics| {
            let replica = topics.entry(topic.to_owned()).or_default();
            if replica.state.is_none() {
                let mut state = PresenceState::from_value(snapshot);
                state.apply(&std::mem::take(&mut replica.before_state));
                replica.state = Some(state);
            }
        });
    }

    /// Takes the diffs to send now, folding them into the replicas, and drops the replicas of
    /// topics nobody here listens to any more.
    fn flush(&self, registry: &Registry) -> Vec<(String, PresenceDiff)> {
        self.with(|topics| {
            topics.retain(|topic, _| registry.has_subscribers(topic));
            let mut out = Vec::new();
            for (topic, replica) in topics.iter_mut() {
                if replica.pending.is_empty() {
                    continue;
                }
                let diff = std::mem::take(&mut replica.pending);
                match &mut replica.state {
                    Some(state) => state.apply(&diff),
                    None => replica.before_state.then(&diff),
                }
                out.push((topic.clone(), diff));
            }
            out
        })
    }

    /// Number of topics with a replica.
    pub fn len(&self) -> usize {
        self.with(|topics| topics.len())
    }

    /// Whether no topic has a replica.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every `window`, sends each topic's folded diffs to its subscribers, until `shutdown`.
pub async fn flush_every(
    window: Duration,
    replicas: Arc<Replicas>,
    registry: Arc<Registry>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (topic, diff) in replicas.flush(&registry) {
            let broadcast = Broadcast {
                id: String::new(),
                topic,
                event: DIFF.to_owned(),
                payload: diff.to_value(),
                transforms: Vec::new(),
            };
            metrics.presence_flushes.inc();
            deliver(&broadcast, &registry, &metrics);
        }
        metrics
            .presence_topics
            .set(i64::try_from(replicas.len()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SessionHandle;
    use crate::serializer::Vsn;
    use serde_json::json;
    use tokio::sync::mpsc;
    use topics::Claims;

    fn diff(joins: &[(&str, &str)], leaves: &[(&str, &str)]) -> PresenceDiff {
        let mut d = PresenceDiff::default();
        for (k, r) in joins {
            d.join(k, json!({"phx_ref": r}));
        }
        for (k, r) in leaves {
            d.leave(k, json!({"phx_ref": r}));
        }
        d
    }

    fn subscribed(registry: &Registry, topic: &str) -> mpsc::Receiver<crate::registry::Outbound> {
        let (tx, rx) = mpsc::channel(8);
        let handle = SessionHandle {
            tx,
            overflow: CancellationToken::new(),
            claims: Arc::new(Claims::default()),
            vsn: Vsn::V2,
        };
        registry.subscribe(topic, 1, handle);
        rx
    }

    #[test]
    fn a_snapshot_plus_the_diffs_around_it_is_the_state() {
        let registry = Registry::default();
        let _rx = subscribed(&registry, "t");
        let replicas = Replicas::default();
        // u joined before the snapshot was taken, v after; the snapshot already has u.
        replicas.on_diff("t", &diff(&[("u", "a")], &[]));
        assert_eq!(replicas.flush(&registry).len(), 1);
        assert!(!replicas.has_state("t"));
        replicas.on_diff("t", &diff(&[("v", "b")], &[]));
        replicas.on_state("t", &json!({"u": {"metas": [{"phx_ref": "a"}]}}));
        assert!(replicas.has_state("t"));
        // v's diff is still pending: the state served to a joiner does not have it yet, and
        // the joiner receives it at the flush like everybody else.
        assert_eq!(
            replicas
                .state_of("t")
                .map(|s| s.as_object().map(|o| o.len())),
            Some(Some(1))
        );
        let flushed = replicas.flush(&registry);
        assert_eq!(flushed.len(), 1);
        let state = replicas.state_of("t").unwrap_or_default();
        assert_eq!(state["v"]["metas"][0]["phx_ref"], "b");
        assert_eq!(state["u"]["metas"][0]["phx_ref"], "a");
    }

    #[test]
    fn diffs_fold_per_window_and_unheard_topics_are_dropped() {
        let registry = Registry::default();
        let _rx = subscribed(&registry, "t");
        let replicas = Replicas::default();
        replicas.on_state("t", &json!({}));
        for i in 0..100 {
            replicas.on_diff("t", &diff(&[(&i.to_string(), &format!("r{i}"))], &[]));
        }
        replicas.on_diff("t", &diff(&[], &[("5", "r5")]));
        let flushed = replicas.flush(&registry);
        assert_eq!(flushed.len(), 1, "one frame for the whole window");
        let payload = flushed[0].1.to_value();
        assert_eq!(payload["joins"].as_object().map(|o| o.len()), Some(99));
        let state = replicas.state_of("t").unwrap_or_default();
        assert_eq!(state.as_object().map(|o| o.len()), Some(99));
        assert!(
            replicas.flush(&registry).is_empty(),
            "nothing new, nothing sent"
        );

        replicas.on_state("gone", &json!({}));
        replicas.flush(&registry);
        assert!(!replicas.has_state("gone"));
        assert_eq!(replicas.len(), 1);
    }
}
