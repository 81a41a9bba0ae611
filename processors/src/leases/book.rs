//! The bookkeeping of leases, with no IO and no clock.
//!
//! [`LeaseBook`] remembers the last heartbeat of every connector and the expiries already sent,
//! and answers the two questions of a sweep: has this connector's lease lapsed, and is an
//! expiry for this (connector, topic) due again. Time is always an argument, so the sweep reads
//! the clock once per tick and the tests can step time forward without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use topics::Heartbeat;

/// Epoch of a connector never heard from since this processor started: it has no heartbeat
/// to name in the expiry command id.
pub(crate) const UNSEEN: &str = "unseen";

/// What the sweeper knows of one connector: its last heartbeat.
#[derive(Debug)]
struct Seen {
    /// When that heartbeat was read.
    at: Instant,
    /// The lease it announced.
    lease: Duration,
    /// Its `sent_at`, part of expiry command ids.
    epoch: String,
}

/// The leases of connectors and the expiries sent for them, as of the instants it is given.
#[derive(Debug)]
pub(crate) struct LeaseBook {
    /// The lease of a connector never heard from, counted from `started`; also how long an
    /// expiry is not re-sent.
    default_lease: Duration,
    /// When this processor started reading heartbeats.
    started: Instant,
    /// Connector → its last heartbeat.
    seen: HashMap<String, Seen>,
    /// (connector, topic) → when its expiry was last sent, so one is not sent every sweep
    /// while the topic's owner works through a backlog.
    sent: HashMap<(String, String), Instant>,
    /// When the last sweep ran, to notice that this processor itself was stopped.
    last_sweep: Option<Instant>,
    /// Since when this processor has been running without a stall: leases are judged only
    /// over time it spent reading heartbeats, so one that wakes from a stall longer than a
    /// lease does not take every connector for dead before reading their heartbeats.
    awake_since: Instant,
}

impl LeaseBook {
    /// A book with nothing heard yet, for a processor that started reading heartbeats at
    /// `started`.
    pub(crate) fn new(default_lease: Duration, started: Instant) -> Self {
        Self {
            default_lease,
            started,
            seen: HashMap::new(),
            sent: HashMap::new(),
            last_sweep: None,
            awake_since: started,
        }
    }

    /// A sweep runs at `now`; sweeps are meant to run every `every`. A gap of more than four
    /// of them means this processor was stopped (a pause, a stall, a suspended VM): its
    /// view of the heartbeats is stale, so every lease runs afresh from `now`.
    pub(crate) fn sweeping(&mut self, now: Instant, every: Duration) {
        if let Some(last) = self.last_sweep {
            if now.saturating_duration_since(last) > every * 4 {
                self.awake_since = now;
            }
        }
        self.last_sweep = Some(now);
    }

    /// Records `beat`, read at `now`: its connector's lease now runs for the heartbeat's own
    /// lease from `now` (read time, not `sent_at`, so clock skew between hosts does not matter).
    pub(crate) fn heard(&mut self, beat: Heartbeat, now: Instant) {
        let lease = Duration::from_millis(beat.lease_ms.unsigned_abs());
        let seen = Seen {
            at: now,
            lease,
            epoch: beat.sent_at,
        };
        self.seen.insert(beat.connector_id, seen);
    }

    /// The epoch to expire `connector` under if its lease has lapsed at `now`, else `None`.
    ///
    /// A connector never heard from counts from `started` with the default lease, so a
    /// restarted processor gives live connectors a full lease to show up; its epoch is
    /// [`UNSEEN`]. After a stall (see [`sweeping`](Self::sweeping)) every lease counts from
    /// the waking.
    pub(crate) fn lapsed(&self, connector: &str, now: Instant) -> Option<String> {
        match self.seen.get(connector) {
            Some(seen) => {
                let since = seen.at.max(self.awake_since);
                (now.saturating_duration_since(since) > seen.lease).then(|| seen.epoch.clone())
            }
            None => {
                let since = self.started.max(self.awake_since);
                (now.saturating_duration_since(since) > self.default_lease)
                    .then(|| UNSEEN.to_owned())
            }
        }
    }

    /// Whether an expiry for (`connector`, `topic`) should be sent at `now`: not if one was
    /// sent less than a default lease ago (the owner may still be working through a backlog).
    pub(crate) fn due(&self, connector: &str, topic: &str, now: Instant) -> bool {
        let key = (connector.to_owned(), topic.to_owned());
        self.sent
            .get(&key)
            .is_none_or(|at| now.saturating_duration_since(*at) >= self.default_lease)
    }

    /// Records that an expiry for (`connector`, `topic`) was sent at `now`.
    pub(crate) fn sent(&mut self, connector: &str, topic: &str, now: Instant) {
        self.sent
            .insert((connector.to_owned(), topic.to_owned()), now);
    }

    /// Forgets expiries sent four default leases or more before `now`, so the map stays as
    /// small as the set of recently dead connectors. An expiry forgotten is simply due again.
    pub(crate) fn forget_old_sends(&mut self, now: Instant) {
        let keep = self.default_lease * 4;
        self.sent
            .retain(|_, at| now.saturating_duration_since(*at) < keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);
    const MS: Duration = Duration::from_millis(1);

    fn beat(connector: &str, lease_ms: i64, sent_at: &str) -> Heartbeat {
        Heartbeat {
            connector_id: connector.to_owned(),
            lease_ms,
            sent_at: sent_at.to_owned(),
            sockets: 0,
        }
    }

    /// A book started at a fixed instant `t0`, so tests speak in offsets from it.
    fn book() -> (LeaseBook, Instant) {
        let t0 = Instant::now();
        (LeaseBook::new(LEASE, t0), t0)
    }

    #[test]
    fn unseen_connector_gets_the_default_lease_from_start_then_lapses_as_unseen() {
        let (book, t0) = book();
        assert_eq!(book.lapsed("c1", t0), None);
        assert_eq!(
            book.lapsed("c1", t0 + LEASE),
            None,
            "lapses only after the lease"
        );
        assert_eq!(book.lapsed("c1", t0 + LEASE + MS).as_deref(), Some(UNSEEN));
        assert_eq!(
            book.lapsed("c1", t0 + LEASE * 100).as_deref(),
            Some("unseen")
        );
    }

    #[test]
    fn seen_connector_lapses_after_its_own_lease_not_the_default() {
        let (mut book, t0) = book();
        let heard = t0 + Duration::from_secs(1);
        book.heard(beat("c1", 2_000, "2024-01-01T00:00:00.000Z"), heard);
        let own = Duration::from_secs(2);
        assert_eq!(book.lapsed("c1", heard + own), None);
        assert_eq!(
            book.lapsed("c1", heard + own + MS).as_deref(),
            Some("2024-01-01T00:00:00.000Z"),
            "lapses after its own 2 s lease, well before the default 10 s one"
        );
    }

    #[test]
    fn seen_connector_with_a_longer_lease_outlives_the_default() {
        let (mut book, t0) = book();
        book.heard(beat("c1", 30_000, "e1"), t0);
        assert_eq!(book.lapsed("c1", t0 + LEASE * 2), None);
        assert_eq!(
            book.lapsed("c1", t0 + Duration::from_secs(30) + MS)
                .as_deref(),
            Some("e1")
        );
    }

    #[test]
    fn a_heartbeat_during_the_grace_period_replaces_it() {
        let (mut book, t0) = book();
        book.heard(beat("c1", 20_000, "e1"), t0 + MS);
        assert_eq!(book.lapsed("c1", t0 + LEASE + MS * 2), None);
        assert_eq!(
            book.lapsed("c2", t0 + LEASE + MS * 2).as_deref(),
            Some(UNSEEN)
        );
    }

    #[test]
    fn a_new_heartbeat_renews_the_lease_and_changes_the_epoch() {
        let (mut book, t0) = book();
        let lease = Duration::from_secs(5);
        book.heard(beat("c1", 5_000, "e1"), t0);
        assert_eq!(book.lapsed("c1", t0 + lease + MS).as_deref(), Some("e1"));
        let renewed = t0 + Duration::from_secs(4);
        book.heard(beat("c1", 5_000, "e2"), renewed);
        assert_eq!(
            book.lapsed("c1", t0 + lease + MS),
            None,
            "renewed from the new heartbeat"
        );
        assert_eq!(book.lapsed("c1", renewed + lease), None);
        assert_eq!(
            book.lapsed("c1", renewed + lease + MS).as_deref(),
            Some("e2"),
            "a later crash expires under the new epoch, so its command id is new"
        );
    }

    #[test]
    fn a_new_heartbeat_takes_its_own_lease() {
        let (mut book, t0) = book();
        book.heard(beat("c1", 30_000, "e1"), t0);
        book.heard(beat("c1", 1_000, "e2"), t0);
        assert_eq!(
            book.lapsed("c1", t0 + Duration::from_secs(1) + MS)
                .as_deref(),
            Some("e2")
        );
    }

    #[test]
    fn connectors_are_kept_apart() {
        let (mut book, t0) = book();
        book.heard(beat("c1", 1_000, "e1"), t0);
        book.heard(beat("c2", 60_000, "e2"), t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(book.lapsed("c1", later).as_deref(), Some("e1"));
        assert_eq!(book.lapsed("c2", later), None);
    }

    #[test]
    fn a_heartbeat_read_after_now_does_not_lapse() {
        // `now` values come from different reads of the clock; one taken before a heartbeat
        // was recorded must not panic or count as lapsed.
        let (mut book, t0) = book();
        book.heard(beat("c1", 1_000, "e1"), t0 + LEASE);
        assert_eq!(book.lapsed("c1", t0), None);
    }

    #[test]
    fn an_expiry_is_not_resent_within_the_default_lease() {
        let (mut book, t0) = book();
        assert!(book.due("c1", "room:1", t0), "never sent: due");
        book.sent("c1", "room:1", t0);
        assert!(!book.due("c1", "room:1", t0));
        assert!(!book.due("c1", "room:1", t0 + LEASE - MS));
        assert!(
            book.due("c1", "room:1", t0 + LEASE),
            "re-sent once a lease has passed"
        );
    }

    #[test]
    fn resend_suppression_is_per_connector_and_topic() {
        let (mut book, t0) = book();
        book.sent("c1", "room:1", t0);
        assert!(!book.due("c1", "room:1", t0 + MS));
        assert!(book.due("c1", "room:2", t0 + MS));
        assert!(book.due("c2", "room:1", t0 + MS));
    }

    #[test]
    fn sending_again_restarts_the_window() {
        let (mut book, t0) = book();
        book.sent("c1", "room:1", t0);
        let again = t0 + LEASE;
        book.sent("c1", "room:1", again);
        assert!(!book.due("c1", "room:1", again + LEASE - MS));
        assert!(book.due("c1", "room:1", again + LEASE));
    }

    #[test]
    fn old_sends_are_forgotten_after_four_leases() {
        let (mut book, t0) = book();
        book.sent("c1", "room:1", t0);
        book.sent("c2", "room:1", t0 + LEASE * 2);
        book.forget_old_sends(t0 + LEASE * 4 - MS);
        assert_eq!(
            book.sent.len(),
            2,
            "nothing is forgotten before four leases"
        );
        book.forget_old_sends(t0 + LEASE * 4);
        assert_eq!(book.sent.len(), 1, "the first send is forgotten");
        assert!(book
            .sent
            .contains_key(&("c2".to_owned(), "room:1".to_owned())));
        book.forget_old_sends(t0 + LEASE * 6);
        assert!(
            book.sent.is_empty(),
            "the map stays as small as the recent sends"
        );
    }

    #[test]
    fn forgetting_sends_leaves_heartbeats_alone() {
        let (mut book, t0) = book();
        book.heard(beat("c1", 1_000_000, "e1"), t0);
        book.forget_old_sends(t0 + LEASE * 10);
        assert_eq!(book.lapsed("c1", t0 + LEASE * 10), None);
    }

    #[test]
    fn a_processor_waking_from_a_stall_gives_every_connector_a_fresh_lease() {
        let every = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut book = LeaseBook::new(LEASE, t0);
        book.heard(beat("alive", 10_000, "e1"), t0);
        book.sweeping(t0 + every, every);
        // Stopped for 30 s: the heartbeats sent meanwhile are still queued, unread.
        let woke = t0 + Duration::from_secs(30);
        book.sweeping(woke, every);
        assert_eq!(book.lapsed("alive", woke), None, "judged from the waking");
        assert_eq!(book.lapsed("never-heard", woke), None);
        // A connector that stays silent for a whole lease after the waking is expired.
        assert_eq!(
            book.lapsed("alive", woke + LEASE + MS),
            Some("e1".to_owned())
        );
        assert_eq!(
            book.lapsed("never-heard", woke + LEASE + MS),
            Some(UNSEEN.to_owned())
        );
    }

    #[test]
    fn sweeps_on_time_keep_leases_counting_from_their_heartbeats() {
        let every = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut book = LeaseBook::new(LEASE, t0);
        book.heard(beat("c", 10_000, "e1"), t0);
        let mut now = t0;
        while now < t0 + LEASE + every {
            now += every;
            book.sweeping(now, every);
        }
        assert_eq!(
            book.lapsed("c", now),
            Some("e1".to_owned()),
            "no stall, no reprieve"
        );
    }
}
