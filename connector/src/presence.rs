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
//! - is seeded from a full `presence_state` a processor pushed for a join this replica asked
//!   for, plus the diffs that arrived while that join was on its way. Diffs may overlap the
//!   snapshot; the presence algebra ([`topics::presence`]) makes that harmless. A replica asks
//!   once: joins that come while its request is on its way say `presence_known` too and wait
//!   for the seed, so a join storm fetches the list once, not once per join.
//!
//! Diffs are not forwarded one by one: every `window` the diffs of each topic are folded into
//! one and sent once, encoded once per serializer, so a join storm of thousands costs each
//! client a frame per window rather than a frame per join. Folding keeps the result exact.
//! Topics with thousands of local subscribers get proportionally longer windows (see
//! [`SUBSCRIBERS_PER_WINDOW`]): each flush is a write to every one of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use topics::presence::{PresenceDiff, PresenceState, DIFF_EVENT};
use topics::Broadcast;

use crate::fanout;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Sending a diff costs a wakeup and a write per subscriber (about 10 µs each measured on a
/// 2-core VM); per this many subscribers of a topic its window grows by one more window, so
/// writing diffs stays a bounded share of a core (about 40 %) however large the audience.
pub(crate) const SUBSCRIBERS_PER_WINDOW: usize = 1000;

#[derive(Debug, Default)]
struct Replica {
    /// The state after every diff sent to subscribers; `None` until a snapshot arrived.
    state: Option<PresenceState>,
    /// Diffs sent while there was no snapshot yet, to apply on top of the first one.
    before_state: PresenceDiff,
    /// Diffs received since the last flush.
    pending: PresenceDiff,
    /// Joins (socket, join id) sent asking for the full list while this replica existed:
    /// their snapshots may seed it, since it has heard every diff since they were taken.
    requests: HashSet<(u64, String)>,
    /// When diffs were last sent.
    flushed_at: Option<Instant>,
    /// `state` as JSON text, encoded once for every join answered until it changes.
    encoded: Option<Arc<str>>,
}

impl Replica {
    fn encoded(&mut self) -> Option<Arc<str>> {
        if self.encoded.is_none() {
            let text = serde_json::to_string(self.state.as_ref()?).ok()?;
            self.encoded = Some(Arc::from(text));
        }
        self.encoded.clone()
    }
}

/// The presence replicas of one connector, by channel topic.
#[derive(Debug, Default)]
pub(crate) struct Replicas {
    topics: Mutex<HashMap<String, Replica>>,
    /// Woken whenever a replica is seeded.
    seeded: Notify,
}

impl Replicas {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Replica>) -> T) -> T {
        f(&mut self.topics.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes in a diff broadcast for `topic`, which has local subscribers; it is sent at the
    /// next flush.
    pub(crate) fn on_diff(&self, topic: &str, diff: &PresenceDiff) {
        self.with(|topics| {
            topics
                .entry(topic.to_owned())
                .or_default()
                .pending
                .then(diff)
        });
    }

    /// Decides `presence_known` for a join of `topic` by a subscribed socket about to be
    /// sent: true when the state is held or already asked for (the join then waits for it
    /// with [`state_for_join`](Self::state_for_join)); otherwise this join asks for it.
    pub(crate) fn presence_known(&self, topic: &str, socket_id: u64, join_id: &str) -> bool {
        self.with(|topics| {
            let replica = topics.entry(topic.to_owned()).or_default();
            if replica.state.is_some() || !replica.requests.is_empty() {
                return true;
            }
            replica.requests.insert((socket_id, join_id.to_owned()));
            false
        })
    }

    /// A join that asked for the list was not sent after all: let the next one ask.
    pub(crate) fn cancel_request(&self, topic: &str, socket_id: u64, join_id: &str) {
        self.with(|topics| {
            if let Some(replica) = topics.get_mut(topic) {
                replica.requests.remove(&(socket_id, join_id.to_owned()));
            }
        });
    }

    /// Takes in the answer to the join `join_id` of `socket_id`, with the full
    /// `presence_state` it carried, if any. When this replica asked for the list with that
    /// join (so it has heard every diff since the snapshot was taken), the list seeds it; a
    /// topic without presence (no list in the answer) leaves no replica behind. Called in the
    /// order deliveries arrive.
    pub(crate) fn on_join_answer(
        &self,
        topic: &str,
        socket_id: u64,
        join_id: &str,
        snapshot: Option<&Value>,
    ) {
        let seeded = self.with(|topics| {
            let Some(replica) = topics.get_mut(topic) else {
                return false;
            };
            if !replica.requests.remove(&(socket_id, join_id.to_owned())) {
                return false;
            }
            let Some(snapshot) = snapshot else {
                let unused = replica.state.is_none()
                    && replica.pending.is_empty()
                    && replica.before_state.is_empty()
                    && replica.requests.is_empty();
                if unused {
                    topics.remove(topic);
                }
                return false;
            };
            if replica.state.is_none() {
                let mut state = PresenceState::from_value(snapshot);
                state.apply(&std::mem::take(&mut replica.before_state));
                replica.state = Some(state);
            }
            replica.requests.clear();
            true
        });
        if seeded {
            self.seeded.notify_waiters();
        }
    }

    /// The state now as JSON text, if held.
    fn state_now(&self, topic: &str) -> Option<Arc<str>> {
        self.with(|topics| topics.get_mut(topic).and_then(Replica::encoded))
    }

    /// The `presence_state` payload for a join of `topic` that said `presence_known`, waiting
    /// up to `patience` for a seed on its way. `None` if none came: the request behind it was
    /// lost, and the next join asks again.
    pub(crate) async fn state_for_join(&self, topic: &str, patience: Duration) -> Option<Arc<str>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.seeded.notified();
            if let Some(state) = self.state_now(topic) {
                return Some(state);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.with(|topics| {
                    if let Some(replica) = topics.get_mut(topic) {
                        replica.requests.clear();
                    }
                });
                return None;
            }
        }
    }

    /// Takes the diffs to send now, folding them into the replicas, and drops the replicas of
    /// topics nobody here listens to any more.
    ///
    /// A topic's window is `window`, stretched by one more `window` per
    /// [`SUBSCRIBERS_PER_WINDOW`] local subscribers.
    fn flush(&self, registry: &Registry, window: Duration) -> Vec<(String, PresenceDiff)> {
        let now = Instant::now();
        let mut out = Vec::new();
        self.with(|topics| {
            topics.retain(|topic, replica| {
                let subscribers = registry.subscriber_count(topic);
                if subscribers == 0 {
                    return false;
                }
                let windows =
                    u32::try_from(subscribers.div_ceil(SUBSCRIBERS_PER_WINDOW)).unwrap_or(u32::MAX);
                let due = replica
                    .flushed_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= window * windows);
                if replica.pending.is_empty() || !due {
                    return true;
                }
                replica.flushed_at = Some(now);
                let diff = std::mem::take(&mut replica.pending);
                replica.encoded = None;
                match &mut replica.state {
                    Some(state) => state.apply(&diff),
                    None => replica.before_state.then(&diff),
                }
                out.push((topic.clone(), diff));
                true
            });
        });
        out
    }

    /// Number of topics with a replica (for the gauge).
    fn len(&self) -> usize {
        self.with(|topics| topics.len())
    }
}

/// Every `window`, sends each topic's folded diffs to its subscribers, until `shutdown`.
pub(crate) async fn flush_every(
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
        for (topic, diff) in replicas.flush(&registry, window) {
            let broadcast = Broadcast {
                id: String::new(),
                topic,
                event: DIFF_EVENT.to_owned(),
                payload: diff.to_value(),
                transforms: Vec::new(),
                position: None,
            };
            metrics.presence_flushes.inc();
            fanout::send(&broadcast, &registry, &metrics);
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
            turn: CancellationToken::new(),
            claims: Arc::new(Claims::default()),
            vsn: Vsn::V2,
        };
        registry.subscribe(topic, 1, handle);
        rx
    }

    fn seed(replicas: &Replicas, topic: &str) {
        assert!(!replicas.presence_known(topic, 1, "1"));
        replicas.on_join_answer(topic, 1, "1", Some(&json!({})));
    }

    fn parsed(state: Option<Arc<str>>) -> Value {
        state
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    fn keys(state: Option<Arc<str>>) -> usize {
        parsed(state).as_object().map_or(0, |o| o.len())
    }

    #[test]
    fn a_snapshot_plus_the_diffs_around_it_is_the_state() {
        let registry = Registry::default();
        let _rx = subscribed(&registry, "t");
        let replicas = Replicas::default();
        // u joined before the snapshot was taken, v after; the snapshot already has u.
        replicas.on_diff("t", &diff(&[("u", "a")], &[]));
        assert_eq!(replicas.flush(&registry, Duration::ZERO).len(), 1);
        assert!(!replicas.presence_known("t", 1, "1"), "the first join asks");
        assert!(
            replicas.presence_known("t", 2, "1"),
            "the next ones wait for it"
        );
        replicas.on_diff("t", &diff(&[("v", "b")], &[]));
        let snapshot = json!({"u": {"metas": [{"phx_ref": "a"}]}});
        replicas.on_join_answer("t", 2, "1", Some(&snapshot));
        assert!(
            replicas.state_now("t").is_none(),
            "only an asked-for snapshot seeds"
        );
        replicas.on_join_answer("t", 1, "1", Some(&snapshot));
        // v's diff is still pending: the state served to a joiner does not have it yet, and
        // the joiner receives it at the flush like everybody else.
        assert_eq!(keys(replicas.state_now("t")), 1);
        assert_eq!(replicas.flush(&registry, Duration::ZERO).len(), 1);
        let state = parsed(replicas.state_now("t"));
        assert_eq!(state["v"]["metas"][0]["phx_ref"], "b");
        assert_eq!(state["u"]["metas"][0]["phx_ref"], "a");
    }

    #[test]
    fn diffs_fold_per_window_and_unheard_topics_are_dropped() {
        let registry = Registry::default();
        let _rx = subscribed(&registry, "t");
        let replicas = Replicas::default();
        seed(&replicas, "t");
        for i in 0..100 {
            replicas.on_diff("t", &diff(&[(&i.to_string(), &format!("r{i}"))], &[]));
        }
        replicas.on_diff("t", &diff(&[], &[("5", "r5")]));
        let flushed = replicas.flush(&registry, Duration::ZERO);
        assert_eq!(flushed.len(), 1, "one frame for the whole window");
        let payload = flushed[0].1.to_value();
        assert_eq!(payload["joins"].as_object().map(|o| o.len()), Some(99));
        assert_eq!(keys(replicas.state_now("t")), 99);
        assert!(
            replicas.flush(&registry, Duration::ZERO).is_empty(),
            "nothing new, nothing sent"
        );

        seed(&replicas, "gone");
        replicas.flush(&registry, Duration::ZERO);
        assert!(replicas.state_now("gone").is_none());
        assert_eq!(replicas.len(), 1);
    }

    #[tokio::test]
    async fn a_waiting_join_gets_the_seed_or_gives_up_and_lets_the_next_ask() {
        let replicas = Arc::new(Replicas::default());
        assert!(!replicas.presence_known("t", 1, "1"));
        assert!(replicas.presence_known("t", 2, "1"));
        let waiter = {
            let replicas = replicas.clone();
            tokio::spawn(async move { replicas.state_for_join("t", Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        replicas.on_join_answer(
            "t",
            1,
            "1",
            Some(&json!({"u": {"metas": [{"phx_ref": "a"}]}})),
        );
        let state = parsed(waiter.await.ok().flatten());
        assert_eq!(state["u"]["metas"][0]["phx_ref"], "a");

        assert!(!replicas.presence_known("lost", 1, "1"));
        assert!(replicas.presence_known("lost", 2, "1"));
        let none = replicas
            .state_for_join("lost", Duration::from_millis(20))
            .await;
        assert!(none.is_none());
        assert!(
            !replicas.presence_known("lost", 3, "1"),
            "the next join asks again"
        );
    }
}
