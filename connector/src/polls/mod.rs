//! What the long-poll transport shares across one connector: the sessions homed here (by
//! socket id, the way their HTTP requests reach them), the requests this connector relayed to
//! other connectors and is waiting on, and the signing key of session tokens. Plus the pure
//! parts of the transport: `token` (session tokens) and `body` (POST bodies).
//!
//! A long-poll session lives on the connector that created it, its *home*, which runs it like
//! a WebSocket's session task. A request for it that lands on another connector is relayed
//! through the log (`longpoll::relay`); both ends meet here.

pub(crate) mod body;
pub(crate) mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use topics::relay::RelayBody;

use crate::serializer::Text;

use body::Batch;
use token::TokenKey;

/// Requests queued for one session beyond the one it handles: phoenix.js has at most a GET
/// and a POST in flight.
pub(crate) const REQUEST_QUEUE: usize = 8;

/// An HTTP request for a long-poll session, handed to its session task.
#[derive(Debug)]
pub(crate) enum Request {
    /// A GET: answered with the buffered messages at once, or with the first ones to come
    /// within the window, or [`Polled::Empty`] at its end.
    Poll {
        /// Where the answer goes.
        answer: oneshot::Sender<Polled>,
        /// How long it may be held (at most the window).
        hold: std::time::Duration,
    },
    /// A POST: its messages processed in order; one `()` sent on `progress` per message done.
    Post {
        /// The messages.
        batch: Batch,
        /// One `()` per message processed.
        progress: mpsc::Sender<()>,
        /// Cancelled when the request gave up (a message took longer than the window): the
        /// remaining messages are not processed.
        cancel: CancellationToken,
    },
}

/// What a poll gets.
#[derive(Debug)]
pub(crate) enum Polled {
    /// Buffered frames, oldest first.
    Messages(Vec<Text>),
    /// Nothing came within the window.
    Empty,
}

/// The long-poll state of one connector.
#[derive(Debug)]
pub(crate) struct Polls {
    /// Sessions homed here, by socket id.
    homes: RwLock<HashMap<u64, mpsc::Sender<Request>>>,
    /// Requests relayed to other connectors, by request id: where their answers go.
    pending: Mutex<HashMap<u64, mpsc::Sender<RelayBody>>>,
    /// The next relayed request's id.
    next_request: AtomicU64,
    /// Signs and verifies session tokens.
    pub(crate) key: TokenKey,
}

impl Polls {
    /// Long-poll state signing tokens with `key`.
    pub(crate) fn new(key: TokenKey) -> Self {
        Self {
            homes: RwLock::default(),
            pending: Mutex::default(),
            next_request: AtomicU64::new(1),
            key,
        }
    }

    /// Registers a session homed here.
    pub(crate) fn insert(&self, session_id: u64, requests: mpsc::Sender<Request>) {
        self.homes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id, requests);
    }

    /// Forgets a session that ended.
    pub(crate) fn remove(&self, session_id: u64) {
        self.homes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session_id);
    }

    /// The way to a session homed here, if it still runs.
    pub(crate) fn session(&self, session_id: u64) -> Option<mpsc::Sender<Request>> {
        self.homes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session_id)
            .filter(|tx| !tx.is_closed())
            .cloned()
    }

    /// Registers a relayed request; its answers arrive on the receiver (an `ACCEPTED` first
    /// when the home holds it, then the final answer).
    pub(crate) fn expect(&self) -> (u64, mpsc::Receiver<RelayBody>) {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(2);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        (id, rx)
    }

    /// Stops waiting for request `id`'s answers.
    pub(crate) fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Hands an answer read from the log to the request waiting for it; false when none is
    /// (it gave up, or the answer is for another life of this connector).
    pub(crate) fn answer(&self, id: u64, body: RelayBody) -> bool {
        let waiting = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        waiting.is_some_and(|tx| tx.try_send(body).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_reach_the_request_waiting_for_them_only() {
        let polls = Polls::new(TokenKey::derive(b"s"));
        let (id, mut rx) = polls.expect();
        let (other, _other_rx) = polls.expect();
        assert_ne!(id, other);
        assert!(polls.answer(id, RelayBody::Accepted));
        assert!(polls.answer(id, RelayBody::Posted));
        assert_eq!(rx.recv().await, Some(RelayBody::Accepted));
        assert_eq!(rx.recv().await, Some(RelayBody::Posted));
        polls.forget(id);
        assert!(!polls.answer(id, RelayBody::Posted), "forgotten");
        assert!(!polls.answer(999, RelayBody::Posted), "never asked");
    }

    #[test]
    fn sessions_come_and_go() {
        let polls = Polls::new(TokenKey::derive(b"s"));
        let (tx, rx) = mpsc::channel(1);
        polls.insert(3, tx);
        assert!(polls.session(3).is_some());
        drop(rx);
        assert!(polls.session(3).is_none(), "its task ended");
        let (tx, _rx) = mpsc::channel(1);
        polls.insert(4, tx);
        polls.remove(4);
        assert!(polls.session(4).is_none(), "removed");
    }
}
