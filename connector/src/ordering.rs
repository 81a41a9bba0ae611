//! The order of each topic's stream on this connector (sans IO): broadcasts with a position
//! are handed on in position order, once each, whatever order and however often the log
//! brings them (a processor that retried a group re-sends its outputs; a record of another
//! partition may overtake).
//!
//! A broadcast ahead of the next expected one waits for the gap to fill, at most
//! [`StreamOrder::max_wait`] or [`StreamOrder::max_held`] broadcasts; then the gap is taken
//! as lost (an output the log refused) and the stream moves on, so one lost broadcast never
//! stalls a topic. A topic first seen mid-stream starts where it is; a new epoch (the topic's
//! history was lost) starts again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use topics::StreamPosition;

/// One topic's place.
#[derive(Debug)]
struct Topic<T> {
    epoch: String,
    /// The next offset to hand on.
    next: u64,
    /// Broadcasts ahead of `next`, by offset, with when they arrived.
    held: BTreeMap<u64, (T, Instant)>,
    /// When the topic last saw a broadcast (idle topics are forgotten).
    seen: Instant,
}

/// Every topic's place in its stream.
#[derive(Debug)]
pub(crate) struct StreamOrder<T> {
    topics: HashMap<String, Topic<T>>,
    /// Longest a broadcast waits for an earlier one.
    pub(crate) max_wait: Duration,
    /// Most broadcasts held for one topic.
    pub(crate) max_held: usize,
    /// Topics silent this long are forgotten (their next broadcast starts them again).
    pub(crate) forget_after: Duration,
}

impl<T> StreamOrder<T> {
    /// An empty order with these bounds.
    pub(crate) fn new(max_wait: Duration, max_held: usize, forget_after: Duration) -> Self {
        Self {
            topics: HashMap::new(),
            max_wait,
            max_held,
            forget_after,
        }
    }

    /// Takes `item`, the broadcast at `position` of `topic` arrived at `now`; returns what
    /// may be handed on now, in order.
    pub(crate) fn offer(
        &mut self,
        topic: &str,
        position: &StreamPosition,
        item: T,
        now: Instant,
    ) -> Vec<T> {
        let state = match self.topics.get_mut(topic) {
            Some(state) if state.epoch == position.epoch => state,
            _ => {
                // First seen here, or a new epoch: start at this broadcast.
                self.topics.insert(
                    topic.to_owned(),
                    Topic {
                        epoch: position.epoch.clone(),
                        next: position.offset.saturating_add(1),
                        held: BTreeMap::new(),
                        seen: now,
                    },
                );
                return vec![item];
            }
        };
        state.seen = now;
        if position.offset < state.next || state.held.contains_key(&position.offset) {
            return Vec::new(); // a duplicate
        }
        if position.offset > state.next {
            state.held.insert(position.offset, (item, now));
            if state.held.len() > self.max_held {
                return skip_gap(state);
            }
            return Vec::new();
        }
        state.next += 1;
        let mut out = vec![item];
        out.extend(drain_ready(state));
        out
    }

    /// What waited too long for a gap to fill, handed on now (the gap taken as lost); and
    /// topics idle past [`forget_after`](Self::forget_after) forgotten.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        for state in self.topics.values_mut() {
            let overdue = state
                .held
                .values()
                .next()
                .is_some_and(|(_, at)| now.duration_since(*at) >= self.max_wait);
            if overdue {
                out.extend(skip_gap(state));
            }
        }
        let forget_after = self.forget_after;
        self.topics
            .retain(|_, s| !s.held.is_empty() || now.duration_since(s.seen) < forget_after);
        out
    }

    /// Topics with broadcasts held.
    #[cfg(test)]
    fn holding(&self) -> usize {
        self.topics.values().filter(|s| !s.held.is_empty()).count()
    }
}

/// Moves past the gap before the first held broadcast, handing on what follows in order.
fn skip_gap<T>(state: &mut Topic<T>) -> Vec<T> {
    if let Some(first) = state.held.keys().next() {
        state.next = *first;
    }
    drain_ready(state)
}

/// The held broadcasts that follow on from `next` without a gap.
fn drain_ready<T>(state: &mut Topic<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(entry) = state.held.first_entry() {
        if *entry.key() != state.next {
            break;
        }
        out.push(entry.remove().0);
        state.next += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    }

    fn order() -> StreamOrder<u64> {
        StreamOrder::new(Duration::from_millis(500), 4, Duration::from_secs(60))
    }

    #[test]
    fn in_order_once_each_whatever_the_arrival() {
        let t0 = Instant::now();
        let mut o = order();
        let mut out = Vec::new();
        // 5 first (the topic starts there), then 7 early, 6, 6 again, 5 again, 8.
        for offset in [5, 7, 6, 6, 5, 8, 7] {
            out.extend(o.offer("t", &at("e", offset), offset, t0));
        }
        assert_eq!(out, [5, 6, 7, 8]);
        assert_eq!(o.holding(), 0);
    }

    #[test]
    fn duplicates_are_dropped_even_while_held() {
        let t0 = Instant::now();
        let mut o = order();
        o.offer("t", &at("e", 1), 1, t0);
        assert!(o.offer("t", &at("e", 3), 3, t0).is_empty());
        assert!(o.offer("t", &at("e", 3), 3, t0).is_empty());
        assert_eq!(o.offer("t", &at("e", 2), 2, t0), [2, 3]);
    }

    #[test]
    fn a_gap_that_does_not_fill_is_skipped_after_the_wait_or_when_too_much_is_held() {
        let t0 = Instant::now();
        let mut o = order();
        o.offer("t", &at("e", 1), 1, t0);
        assert!(o.offer("t", &at("e", 3), 3, t0).is_empty());
        assert!(o.expire(t0 + Duration::from_millis(100)).is_empty());
        assert_eq!(o.expire(t0 + Duration::from_millis(500)), [3]);
        // 2 arriving after all is late: dropped, the stream has moved on.
        assert!(o.offer("t", &at("e", 2), 2, t0).is_empty());
        assert_eq!(o.offer("t", &at("e", 4), 4, t0), [4]);
        // Five ahead of a gap at 5 (max 4 held): the gap is skipped at once.
        for offset in 6..=9 {
            assert!(o.offer("t", &at("e", offset), offset, t0).is_empty());
        }
        assert_eq!(o.offer("t", &at("e", 10), 10, t0), [6, 7, 8, 9, 10]);
    }

    #[test]
    fn topics_are_independent_and_a_new_epoch_starts_again() {
        let t0 = Instant::now();
        let mut o = order();
        assert_eq!(o.offer("a", &at("e", 9), 9, t0), [9]);
        assert_eq!(o.offer("b", &at("e", 1), 1, t0), [1]);
        assert_eq!(o.offer("a", &at("e2", 1), 1, t0), [1], "a new epoch");
        assert!(o.offer("a", &at("e2", 1), 1, t0).is_empty());
    }

    #[test]
    fn idle_topics_are_forgotten() {
        let t0 = Instant::now();
        let mut o = order();
        o.offer("t", &at("e", 1), 1, t0);
        o.expire(t0 + Duration::from_secs(61));
        assert_eq!(o.offer("t", &at("e", 1), 1, t0), [1], "starts again");
    }
}
