//! Who is connected and who listens to what.
//!
//! [`Sessions`] maps socket ids to their session task (for replies); [`Registry`] maps channel
//! topics to subscribed sockets (for broadcasts). The registry is sharded by topic so fan-out
//! on one busy campaign does not hold up joins on others.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use topics::{names::partition_for, Claims, Delivery};

use crate::close::Close;
use crate::serializer::{Text, Vsn};

const SHARDS: u32 = 32;

/// What a session task is sent.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An encoded broadcast on a topic, shared by every subscriber, with its offset in the
    /// topic's stream if it has one: written as is, or held while the socket's join of the
    /// topic is still being answered.
    Broadcast(Arc<str>, Text, Option<u64>),
    /// A reply and pushes from a processor, for the session state machine.
    Delivery(Delivery),
    /// Close the socket (forced disconnect).
    Close(Close),
}

/// The way to reach one session task.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    /// Bounded queue into the session task.
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled when the session falls too far behind; the task then closes the socket.
    pub overflow: CancellationToken,
    /// Cancelled when this socket's turn to close comes in a drain (the plan in drain.rs):
    /// the task then pushes `shutdown_notice` and closes the socket with 1012.
    pub turn: CancellationToken,
    /// Who the socket belongs to.
    pub claims: Arc<Claims>,
    /// The serializer the socket speaks.
    pub vsn: Vsn,
}

impl SessionHandle {
    /// Queues `item`; a full queue marks the session as too slow (it will be closed).
    /// Returns whether the item was queued.
    pub(crate) fn offer(&self, item: Outbound) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Live sessions of this connector, by socket id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: RwLock<HashMap<u64, SessionHandle>>,
}

impl Sessions {
    /// Registers a session.
    pub(crate) fn insert(&self, socket_id: u64, handle: SessionHandle) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(socket_id, handle);
    }

    /// Forgets a session.
    pub(crate) fn remove(&self, socket_id: u64) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&socket_id);
    }

    /// The session with `socket_id`, if it is still open.
    pub(crate) fn get(&self, socket_id: u64) -> Option<SessionHandle> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&socket_id)
            .cloned()
    }

    /// The turn of every open session, oldest socket first: the order the drain closes them.
    pub(crate) fn turns(&self) -> Vec<CancellationToken> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut turns: Vec<(u64, CancellationToken)> = map
            .iter()
            .map(|(id, handle)| (*id, handle.turn.clone()))
            .collect();
        drop(map);
        turns.sort_unstable_by_key(|(id, _)| *id);
        turns.into_iter().map(|(_, turn)| turn).collect()
    }

    /// Every session of `user_id`.
    pub(crate) fn of_user(&self, user_id: &str) -> Vec<SessionHandle> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|h| h.claims.user_id.as_deref() == Some(user_id))
            .cloned()
            .collect()
    }
}

type Shard = RwLock<HashMap<String, HashMap<u64, SessionHandle>>>;

/// Channel topic → subscribed sessions.
#[derive(Debug)]
pub(crate) struct Registry {
    shards: Vec<Shard>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, topic: &str) -> &Shard {
        // partition_for returns < SHARDS, and there are exactly SHARDS shards.
        &self.shards[partition_for(topic.as_bytes(), SHARDS) as usize]
    }

    /// Subscribes a session to `topic`.
    pub(crate) fn subscribe(&self, topic: &str, socket_id: u64, handle: SessionHandle) {
        self.shard(topic)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_default()
            .insert(socket_id, handle);
    }

    /// Unsubscribes a session from `topic`.
    pub(crate) fn unsubscribe(&self, topic: &str, socket_id: u64) {
        let mut shard = self
            .shard(topic)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(subscribers) = shard.get_mut(topic) {
            subscribers.remove(&socket_id);
            if subscribers.is_empty() {
                shard.remove(topic);
            }
        }
    }

    /// Whether any session here is subscribed to `topic`.
    pub(crate) fn has_subscribers(&self, topic: &str) -> bool {
        self.subscriber_count(topic) > 0
    }

    /// How many sessions here are subscribed to `topic`.
    pub(crate) fn subscriber_count(&self, topic: &str) -> usize {
        self.shard(topic)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .map_or(0, HashMap::len)
    }

    /// The sessions subscribed to `topic` (a snapshot, so no lock is held while sending).
    pub(crate) fn subscribers(&self, topic: &str) -> Vec<SessionHandle> {
        self.shard(topic)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .map(|subs| subs.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(capacity: usize) -> (SessionHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        let handle = SessionHandle {
            tx,
            overflow: CancellationToken::new(),
            turn: CancellationToken::new(),
            claims: Arc::new(Claims::default()),
            vsn: Vsn::V2,
        };
        (handle, rx)
    }

    #[test]
    fn subscribe_and_unsubscribe() {
        let registry = Registry::default();
        let (h, _rx) = handle(1);
        registry.subscribe("t", 1, h.clone());
        registry.subscribe("t", 2, h);
        assert_eq!(registry.subscribers("t").len(), 2);
        registry.unsubscribe("t", 1);
        registry.unsubscribe("t", 2);
        assert!(registry.subscribers("t").is_empty());
    }

    #[test]
    fn turns_come_oldest_socket_first() {
        let sessions = Sessions::default();
        let mut handles = Vec::new();
        for id in [7, 2, 9, 4] {
            let (h, rx) = handle(1);
            sessions.insert(id, h.clone());
            handles.push((id, h, rx));
        }
        sessions.remove(9);
        let turns = sessions.turns();
        assert_eq!(turns.len(), 3);
        // Cancelling the turns in order reaches the sockets by ascending id.
        for (n, turn) in turns.iter().enumerate() {
            turn.cancel();
            let mut cancelled: Vec<u64> = handles
                .iter()
                .filter(|(_, h, _)| h.turn.is_cancelled())
                .map(|(id, _, _)| *id)
                .collect();
            cancelled.sort_unstable();
            assert_eq!(cancelled, [2, 4, 7][..=n].to_vec());
        }
    }

    #[test]
    fn a_full_queue_marks_the_session_slow() {
        let (h, _rx) = handle(1);
        let topic: Arc<str> = Arc::from("t");
        assert!(h.offer(Outbound::Broadcast(
            topic.clone(),
            Text::from_static("a"),
            None
        )));
        assert!(!h.overflow.is_cancelled());
        assert!(!h.offer(Outbound::Broadcast(topic, Text::from_static("b"), None)));
        assert!(h.overflow.is_cancelled());
    }
}
