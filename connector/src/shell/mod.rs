//! The IO shell around the sans-IO [`Session`], shared by both transports.
//!
//! A WebSocket task and a long-poll session differ only in how frames come in and go out; what
//! they do with them is the same: decode a client message and hand it to the state machine,
//! carry out its [`Action`]s (commands confirmed on the log, subscriptions, frames queued),
//! hand it deliveries and broadcasts, answer overdue replies `unavailable`, push
//! `shutdown_notice`, and leave every channel when the socket ends. That is [`Shell`]; each
//! transport gives it an [`Outlet`] (its bounded queue of outgoing frames) and drives it from
//! its own `select!`.
//!
//! Layout: this file the shell and its outlet; `commands` appending a session's commands to
//! the log and waiting for their confirmation.

mod commands;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use topics::presence::STATE_EVENT;
use topics::{Claims, CommandKind};

use crate::app::App;
use crate::close::Close;
use crate::registry::{Outbound, SessionHandle};
use crate::serializer::{
    decode_binary, decode_text, encode_push, DecodeError, Frame, Message, Text, Vsn,
};
use crate::session::{Action, Session};

use commands::Awaited;

/// How long a join waits for the presence list another join of the same topic asked for.
const SEED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a session's frames go: the transport's bounded queue of outgoing frames.
pub(crate) trait Outlet {
    /// Queues a frame encoded for this socket alone; false when the queue is full (the client
    /// reads too slowly).
    fn send(&mut self, text: String) -> bool;
    /// Queues a broadcast frame shared as is with other subscribers; false when full.
    fn forward(&mut self, text: Text) -> bool;
}

/// One client's session with everything around it that is not the transport.
#[derive(Debug)]
pub(crate) struct Shell<O> {
    /// The connector's shared state: config, log, registry, replicas, metrics.
    pub(crate) app: Arc<App>,
    /// This socket's id, in commands and in the session and subscription maps.
    pub(crate) socket_id: u64,
    /// This session's own handle, registered on every topic it subscribes to.
    pub(crate) handle: SessionHandle,
    /// The channel state machine.
    session: Session,
    /// Where frames go.
    pub(crate) outlet: O,
    /// Joins and pushes waiting for their replies, oldest (soonest deadline) first.
    awaited: VecDeque<Awaited>,
}

impl<O: Outlet> Shell<O> {
    /// Opens a session for a client speaking `vsn` with `claims`, registered for deliveries,
    /// disconnects and the drain; the receiver is what the streams send it.
    pub(crate) fn open(
        app: Arc<App>,
        vsn: Vsn,
        claims: Claims,
        outlet: O,
    ) -> (Self, mpsc::Receiver<Outbound>) {
        let socket_id = app.next_socket_id();
        Self::open_as(app, socket_id, vsn, claims, outlet)
    }

    /// [`open`](Self::open) with a socket id the caller took already (a long-poll session
    /// names it in its token before the session runs).
    pub(crate) fn open_as(
        app: Arc<App>,
        socket_id: u64,
        vsn: Vsn,
        claims: Claims,
        outlet: O,
    ) -> (Self, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(app.config.outbound_queue);
        let handle = SessionHandle {
            tx,
            overflow: tokio_util::sync::CancellationToken::new(),
            turn: app.last_call.child_token(),
            claims: Arc::new(claims),
            vsn,
        };
        app.sessions.insert(socket_id, handle.clone());
        app.metrics.connections.inc();
        app.metrics.connections_accepted.inc();
        let session = Session::new(vsn, app.config.channel_rate_limit);
        let shell = Self {
            app,
            socket_id,
            handle,
            session,
            outlet,
            awaited: VecDeque::new(),
        };
        (shell, rx)
    }

    /// The socket is going away: leaves every channel (the leaves are confirmed in the
    /// background, tracked by the drain) and forgets the session. Frames still queued in the
    /// outlet are the transport's to flush.
    pub(crate) async fn close(&mut self) {
        let mut actions = Vec::new();
        self.session.close(&mut actions);
        self.execute(actions).await;
        self.app.sessions.remove(self.socket_id);
        self.app.metrics.connections.dec();
    }

    /// The connector started draining: joins are refused from now on.
    pub(crate) fn drain(&mut self) {
        self.session.drain();
    }

    /// When the oldest awaited reply is overdue, if any is awaited.
    pub(crate) fn next_overdue(&self) -> Option<Instant> {
        self.awaited.front().map(|a| a.deadline)
    }

    /// Handles a client text frame.
    pub(crate) async fn text(&mut self, text: &str) {
        let decoded = decode_text(self.session.vsn(), text);
        self.incoming(decoded).await;
    }

    /// Handles a client binary frame (V2 only; V1 has no binary frames, so it is dropped).
    pub(crate) async fn binary(&mut self, bytes: &Bytes) {
        if self.session.vsn() != Vsn::V2 {
            self.reject("binary frame on V1");
            return;
        }
        let decoded = decode_binary(bytes);
        self.incoming(decoded).await;
    }

    /// Counts a client frame dropped before decoding, by reason.
    pub(crate) fn reject(&self, reason: &str) {
        self.app
            .metrics
            .frames_rejected
            .with_label_values(&[reason])
            .inc();
    }

    async fn incoming(&mut self, decoded: Result<Message, DecodeError>) {
        self.app.metrics.messages_in.inc();
        let mut actions = Vec::new();
        match decoded {
            Ok(message) => self
                .session
                .handle(message, std::time::Instant::now(), &mut actions),
            Err(error) => {
                self.reject(error.reason);
                tracing::debug!(socket = self.socket_id, %error, "dropped a malformed frame");
                self.session.handle_decode_error(&error, &mut actions);
            }
        }
        self.execute(actions).await;
    }

    /// Handles one item the streams queued for this session; returns a close when the item
    /// asks to close.
    pub(crate) async fn outbound(&mut self, out: Outbound) -> Option<Close> {
        match out {
            Outbound::Broadcast(topic, frame, offset) => {
                let mut actions = Vec::new();
                self.session
                    .handle_broadcast(&topic, frame, offset, &mut actions);
                self.execute(actions).await;
            }
            Outbound::Delivery(delivery) => {
                if let Some(reply) = &delivery.reply {
                    let label = reply.status.as_str();
                    self.app.metrics.replies.with_label_values(&[label]).inc();
                    let (topic, join_id) = (&delivery.topic, delivery.socket.join_id.as_deref());
                    let msg_ref = delivery.socket.msg_ref.as_deref();
                    self.awaited.retain(|a| {
                        !(a.topic == *topic
                            && Some(a.join_id.as_str()) == join_id
                            && Some(a.msg_ref.as_str()) == msg_ref)
                    });
                }
                let list = self.presence_list(&delivery).await;
                let mut actions = Vec::new();
                self.session
                    .handle_delivery(delivery, list.as_deref(), &mut actions);
                self.execute(actions).await;
            }
            Outbound::Close(close) => return Some(close),
        }
        None
    }

    /// The presence list for a join's `presence_state` pushed with a null payload (the join
    /// said this connector holds the topic's presence), from the replica, waiting for a seed
    /// on its way. Full lists have already seeded the replica where deliveries are read.
    async fn presence_list(&mut self, delivery: &topics::Delivery) -> Option<Arc<str>> {
        let wanted = delivery
            .pushes
            .iter()
            .any(|p| p.event == STATE_EVENT && p.payload.is_null());
        if !wanted || !self.session.answers_pending_join(delivery) {
            return None;
        }
        let list = self
            .app
            .replicas
            .state_for_join(&delivery.topic, SEED_PATIENCE)
            .await;
        Some(list.unwrap_or_else(|| {
            // The join that asked for the list never got it back (it was lost). An empty
            // list plus the diffs that follow is the best answer left; the next join asks
            // again.
            tracing::warn!(topic = %delivery.topic, "no presence list to answer a join with");
            self.app.metrics.presence_fallbacks.inc();
            Arc::from("{}")
        }))
    }

    /// Queues a frame for this socket alone; a full queue marks the session too slow (the
    /// transport's loop then closes it).
    fn send_text(&mut self, text: String) {
        self.app.metrics.messages_out.inc();
        if !self.outlet.send(text) {
            self.handle.overflow.cancel();
        }
    }

    /// Queues a broadcast frame shared with other subscribers.
    fn forward(&mut self, text: Text) {
        self.app.metrics.messages_out.inc();
        if !self.outlet.forward(text) {
            self.handle.overflow.cancel();
        }
    }

    /// Carries out the session's actions, in order.
    pub(crate) async fn execute(&mut self, actions: Vec<Action>) {
        let mut actions = VecDeque::from(actions);
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(Frame::Text(text)) => self.send_text(text),
                Action::Forward(text) => self.forward(text),
                Action::Overflow => self.handle.overflow.cancel(),
                Action::JoinAnswered(status) => {
                    let label = status.as_str();
                    self.app.metrics.joins.with_label_values(&[label]).inc();
                }
                Action::Subscribe(topic) => {
                    self.app
                        .registry
                        .subscribe(&topic, self.socket_id, self.handle.clone());
                }
                Action::Unsubscribe(topic) => self.app.registry.unsubscribe(&topic, self.socket_id),
                Action::Command {
                    topic,
                    join_id,
                    msg_ref,
                    kind,
                } => {
                    let more = self.command(topic, join_id, msg_ref, kind).await;
                    for action in more.into_iter().rev() {
                        actions.push_front(action);
                    }
                }
            }
        }
    }

    /// Answers `unavailable` every join or push whose reply is overdue (its command was
    /// stored, but no processor answered in time: the log or the processors are stalled), and
    /// drops their late replies when they come.
    pub(crate) async fn replies_overdue(&mut self) {
        let now = Instant::now();
        let mut actions = Vec::new();
        while self.awaited.front().is_some_and(|a| a.deadline <= now) {
            let Some(overdue) = self.awaited.pop_front() else {
                break;
            };
            tracing::warn!(
                socket = self.socket_id,
                topic = %overdue.topic,
                msg_ref = %overdue.msg_ref,
                "no reply in time; answering unavailable"
            );
            // Only which kind it was matters to the session.
            let kind = if overdue.join {
                CommandKind::Join {
                    params: serde_json::Value::Null,
                    presence_known: false,
                }
            } else {
                CommandKind::Event {
                    event: String::new(),
                    payload: serde_json::Value::Null,
                }
            };
            self.session.not_stored(
                &overdue.topic,
                &overdue.join_id,
                Some(&overdue.msg_ref),
                &kind,
                &mut actions,
            );
        }
        self.execute(actions).await;
    }

    /// Pushes `shutdown_notice` on every joined channel (the drain's turn of this socket).
    pub(crate) fn shutdown_notice(&mut self) {
        let payload = json!({
            "reason": "server shutting down",
            "reconnect_delay": self.app.config.reconnect_delay_ms,
        });
        let vsn = self.session.vsn();
        let frames: Vec<Frame> = self
            .session
            .joined()
            .map(|(topic, join_ref)| encode_push(vsn, join_ref, topic, "shutdown_notice", &payload))
            .collect();
        for Frame::Text(text) in frames {
            self.send_text(text);
        }
    }
}

/// Sleeps until `deadline`; forever when there is none.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
