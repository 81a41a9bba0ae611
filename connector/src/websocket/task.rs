//! The session task of one socket: a thin `select!` around the sans-IO [`Session`], which
//! reads client frames, queued broadcasts and deliveries, and carries out the session's
//! [`Action`]s (frames to write, commands to store, subscriptions).

use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use topics::names::COMMANDS;
use topics::presence::STATE_EVENT;
use topics::{Claims, Command, CommandKind, SocketRef};

use super::duplex::Duplex;
use super::upgrade::Socket;
use crate::app::App;
use crate::close::Close;
use crate::registry::{Outbound, SessionHandle};
use crate::serializer::{decode_binary, decode_text, encode_push, Frame, Text, Vsn};
use crate::session::{Action, Session};

/// How long a join waits for the presence list another join of the same topic asked for.
const SEED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a closing socket may take to flush its last frames.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a command was not confirmed on the log.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotStored {
    /// The log refused it or is unreachable (for a timeout: it may still land).
    #[error(transparent)]
    Log(#[from] eventlog::LogError),
    /// It could not be encoded (a bug: commands always encode).
    #[error("the command could not be encoded: {0}")]
    Encode(String),
}

/// Waits for `pending` at most `within`; a wait that runs out is [`LogError::Unavailable`]:
/// unknown, not failed.
///
/// [`LogError::Unavailable`]: eventlog::LogError::Unavailable
pub(super) async fn confirm(
    pending: eventlog::Pending,
    within: std::time::Duration,
) -> Result<(), NotStored> {
    match tokio::time::timeout(within, pending).await {
        Ok(confirmed) => Ok(confirmed?),
        Err(_) => Err(NotStored::Log(eventlog::LogError::Unavailable(format!(
            "not confirmed within {within:?}"
        )))),
    }
}

/// Runs the session of one upgraded socket until it closes, then leaves its channels.
pub(super) async fn run(app: Arc<App>, socket: Socket, vsn: Vsn, claims: Claims) {
    let socket_id = app.next_socket_id();
    let (tx, mut rx) = mpsc::channel(app.config.outbound_queue);
    let handle = SessionHandle {
        tx,
        overflow: CancellationToken::new(),
        turn: app.last_call.child_token(),
        claims: Arc::new(claims),
        vsn,
    };
    app.sessions.insert(socket_id, handle.clone());
    app.metrics.connections.inc();
    app.metrics.connections_accepted.inc();
    let mut task = SessionTask {
        app: app.clone(),
        socket_id,
        handle: handle.clone(),
        session: Session::new(vsn, app.config.channel_rate_limit),
        duplex: Duplex::new(socket, app.config.outbound_queue),
        awaited: std::collections::VecDeque::new(),
    };
    let close = task.run(&mut rx).await;
    let mut actions = Vec::new();
    task.session.close(&mut actions);
    // The socket is going away: only subscriptions and leave commands matter now.
    let _ = task.execute(actions).await;
    if let Some(close) = close {
        let frame = CloseFrame {
            code: CloseCode::from(close.code()),
            reason: Utf8Bytes::from_static(close.reason()),
        };
        task.duplex.queue_close(frame);
    }
    // Give the last frames (and the close frame) a moment to leave.
    let flushed = tokio::time::timeout(CLOSE_GRACE, task.duplex.flush_all()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::debug!(socket = socket_id, "closing socket did not flush in time");
    }
    app.sessions.remove(socket_id);
    app.metrics.connections.dec();
}

/// Most queued items handled before the socket is written again.
const OUTBOUND_BATCH: usize = 64;

/// A join or push whose command is on the log and whose reply has not come yet.
#[derive(Debug)]
struct Awaited {
    /// When it is answered `unavailable` if no reply came.
    deadline: Instant,
    topic: String,
    join_id: String,
    msg_ref: String,
    join: bool,
}

/// What the task of one socket holds.
struct SessionTask {
    /// The connector's shared state: config, log, registry, replicas, metrics.
    app: Arc<App>,
    /// This socket's id, in commands and in the session and subscription maps.
    socket_id: u64,
    /// This session's own handle, registered on every topic it subscribes to.
    handle: SessionHandle,
    /// The channel state machine.
    session: Session,
    /// The socket.
    duplex: Duplex,
    /// Joins and pushes waiting for their replies, oldest (soonest deadline) first.
    awaited: std::collections::VecDeque<Awaited>,
}

impl SessionTask {
    /// Runs until the socket ends; returns the close frame to send, if any.
    async fn run(&mut self, rx: &mut mpsc::Receiver<Outbound>) -> Option<Close> {
        let idle = self.app.config.idle_timeout;
        let mut deadline = Instant::now() + idle;
        let mut draining = false;
        loop {
            tokio::select! {
                // The drain started: no new channels here, but the socket is served (pushes
                // taken, owed replies written) until its turn to close, so the connector's
                // clients do not all reconnect at once.
                () = self.app.shutdown.cancelled(), if !draining => {
                    draining = true;
                    self.session.drain();
                }
                () = self.handle.turn.cancelled() => {
                    self.shutdown_notice();
                    return Some(Close::ShuttingDown);
                }
                () = self.handle.overflow.cancelled() => {
                    self.app.metrics.slow_consumers.inc();
                    return Some(Close::TooSlow);
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Some(Close::Idle);
                }
                () = sleep_until_first(&self.awaited) => self.replies_overdue().await,
                incoming = std::future::poll_fn(|cx| self.duplex.poll_next(cx)) => {
                    deadline = Instant::now() + idle;
                    match incoming {
                        None | Some(Ok(WsMessage::Close(_))) => return None,
                        Some(Err(tungstenite::Error::Capacity(_))) => {
                            let close = Close::FrameTooLarge;
                            self.app.metrics.frames_rejected.with_label_values(&[close.reason()]).inc();
                            return Some(close);
                        }
                        Some(Err(_)) => return None,
                        Some(Ok(message)) => self.incoming(message).await,
                    }
                }
                Some(out) = rx.recv() => {
                    if let Some(close) = self.outbound(out).await {
                        return Some(close);
                    }
                    // Take what else is queued before the socket is written, so a burst of
                    // broadcasts leaves in one write rather than one write (and one wakeup)
                    // per frame.
                    for _ in 1..OUTBOUND_BATCH {
                        let Ok(out) = rx.try_recv() else {
                            break;
                        };
                        if let Some(close) = self.outbound(out).await {
                            return Some(close);
                        }
                    }
                }
            }
        }
    }

    /// Handles one queued item; returns a close frame when the item asks to close.
    async fn outbound(&mut self, out: Outbound) -> Option<Close> {
        match out {
            Outbound::Broadcast(topic, frame) => {
                let mut actions = Vec::new();
                self.session.handle_broadcast(&topic, frame, &mut actions);
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

    async fn incoming(&mut self, message: WsMessage) {
        let decoded = match message {
            WsMessage::Text(text) => decode_text(self.session.vsn(), text.as_str()),
            WsMessage::Binary(bytes) if self.session.vsn() == Vsn::V2 => decode_binary(&bytes),
            WsMessage::Binary(_) => {
                self.app
                    .metrics
                    .frames_rejected
                    .with_label_values(&["binary frame on V1"])
                    .inc();
                return;
            }
            // Pings are answered by the WebSocket layer; they only reset the idle timer. Raw
            // frames are never produced when reading.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => {
                return
            }
        };
        self.app.metrics.messages_in.inc();
        let mut actions = Vec::new();
        match decoded {
            Ok(message) => self
                .session
                .handle(message, std::time::Instant::now(), &mut actions),
            Err(error) => {
                self.app
                    .metrics
                    .frames_rejected
                    .with_label_values(&[error.reason])
                    .inc();
                tracing::debug!(socket = self.socket_id, %error, "dropped a malformed frame");
                self.session.handle_decode_error(&error, &mut actions);
            }
        }
        self.execute(actions).await;
    }

    /// Queues a frame for the writer; a full queue marks the socket as too slow (the run loop
    /// then closes it).
    fn write(&mut self, message: WsMessage) {
        if !self.duplex.queue(message) {
            self.handle.overflow.cancel();
        }
    }

    fn send_text(&mut self, text: Utf8Bytes) {
        self.app.metrics.messages_out.inc();
        self.write(WsMessage::Text(text))
    }

    /// Writes a broadcast frame shared with other subscribers.
    fn forward(&mut self, text: Text) {
        // tungstenite takes shared bytes as text only through `TryFrom<Bytes>`, which checks
        // again that they are UTF-8 (tens of ns for a short frame): the price of keeping
        // tungstenite out of the sans-IO core. `Text` is UTF-8 by construction, so this does
        // not fail; if it ever did, the frame is dropped and logged, and the socket carries on.
        match Utf8Bytes::try_from(text.into_bytes()) {
            Ok(text) => self.send_text(text),
            Err(error) => tracing::error!(
                socket = self.socket_id,
                %error,
                "dropped a broadcast frame that is not UTF-8"
            ),
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        let mut actions = std::collections::VecDeque::from(actions);
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(Frame::Text(text)) => self.send_text(Utf8Bytes::from(text)),
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
                    mut kind,
                } => {
                    let asks_presence = match &mut kind {
                        CommandKind::Join { presence_known, .. } => {
                            *presence_known =
                                self.app
                                    .replicas
                                    .presence_known(&topic, self.socket_id, &join_id);
                            !*presence_known
                        }
                        _ => false,
                    };
                    let command = Command {
                        id: uuid::Uuid::new_v4().to_string(),
                        topic,
                        socket: SocketRef {
                            connector_id: self.app.config.connector_id.clone(),
                            socket_id: self.socket_id,
                            join_id: Some(join_id),
                            msg_ref,
                        },
                        claims: (*self.handle.claims).clone(),
                        kind,
                        received_at: topics::timestamp::now(),
                    };
                    // A join's or push's command is confirmed on the log before the next frame
                    // of this socket is read, waiting at most the append timeout; one not
                    // confirmed by then is answered `unavailable` (it may still land: a
                    // timed-out produce is unknown, not failed). Leaves need no answer: they
                    // are confirmed in the background.
                    let read_at = Instant::now();
                    let stored = if command.socket.msg_ref.is_some() {
                        self.store(&command).await
                    } else {
                        self.store_in_background(&command)
                    };
                    if let (Ok(()), Some(msg_ref)) = (&stored, &command.socket.msg_ref) {
                        self.awaited.push_back(Awaited {
                            deadline: read_at + self.app.config.reply_timeout,
                            topic: command.topic.clone(),
                            join_id: command.socket.join_id.clone().unwrap_or_default(),
                            msg_ref: msg_ref.clone(),
                            join: matches!(command.kind, CommandKind::Join { .. }),
                        });
                    }
                    if let Err(error) = stored {
                        tracing::warn!(
                            socket = self.socket_id,
                            topic = %command.topic,
                            command = %command.id,
                            %error,
                            "a command was not confirmed on the log; answering unavailable"
                        );
                        let join_id = command.socket.join_id.as_deref().unwrap_or_default();
                        if asks_presence {
                            self.app.replicas.cancel_request(
                                &command.topic,
                                self.socket_id,
                                join_id,
                            );
                        }
                        let mut more = Vec::new();
                        self.session.not_stored(
                            &command.topic,
                            join_id,
                            command.socket.msg_ref.as_deref(),
                            &command.kind,
                            &mut more,
                        );
                        for action in more.into_iter().rev() {
                            actions.push_front(action);
                        }
                    }
                }
            }
        }
    }

    /// Answers `unavailable` every join or push whose reply is overdue (its command was
    /// stored, but no processor answered in time: the log or the processors are stalled), and
    /// drops their late replies when they come.
    async fn replies_overdue(&mut self) {
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

    /// Puts a command on its way to the log: its records are queued in order before this
    /// returns, so later commands of this socket follow it.
    fn send(&self, command: &Command) -> Result<eventlog::Pending, NotStored> {
        let bytes = command
            .encode()
            .map_err(|e| NotStored::Encode(e.to_string()))?;
        let key = bytes::Bytes::copy_from_slice(command.topic.as_bytes());
        self.app
            .log
            .send_all(vec![(COMMANDS, key, bytes)])
            .map_err(NotStored::Log)
    }

    /// Appends a command and waits until the log confirms it, at most the append timeout.
    async fn store(&mut self, command: &Command) -> Result<(), NotStored> {
        let pending = self.send(command).inspect_err(|e| self.report(e))?;
        let confirmed = confirm(pending, self.app.config.append_timeout).await;
        match &confirmed {
            Ok(()) => self.app.metrics.log.ok(),
            Err(error) => self.report(error),
        }
        confirmed
    }

    /// Appends a command and confirms it in a task of the connector's tracker (so the drain
    /// waits for it), logging one that is not confirmed in time.
    fn store_in_background(&mut self, command: &Command) -> Result<(), NotStored> {
        let pending = self.send(command).inspect_err(|e| self.report(e))?;
        let app = self.app.clone();
        let (topic, id) = (command.topic.clone(), command.id.clone());
        self.app.tracker.spawn(async move {
            match confirm(pending, app.config.append_timeout).await {
                Ok(()) => app.metrics.log.ok(),
                Err(error) => {
                    if let NotStored::Log(error) = &error {
                        app.metrics.log.failed("append_command", error);
                    }
                    tracing::warn!(%topic, command = %id, %error, "a leave was not confirmed on the log; this connector's lease cleans its presence up");
                }
            }
        });
        Ok(())
    }

    fn report(&self, error: &NotStored) {
        if let NotStored::Log(error) = error {
            self.app.metrics.log.failed("append_command", error);
        }
    }

    fn shutdown_notice(&mut self) {
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
            self.send_text(Utf8Bytes::from(text));
        }
    }
}

/// Sleeps until the first of `awaited` is due; forever when nothing is awaited.
async fn sleep_until_first(awaited: &std::collections::VecDeque<Awaited>) {
    match awaited.front() {
        Some(first) => tokio::time::sleep_until(first.deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_append_not_confirmed_in_time_is_unavailable_not_failed() {
        let never: eventlog::Pending = Box::pin(std::future::pending());
        let started = Instant::now();
        let result = confirm(never, Duration::from_millis(50)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2));
        match result {
            Err(NotStored::Log(error)) => assert!(error.is_transient(), "{error}"),
            other => panic!("unexpected {other:?}"),
        }
        let stored: eventlog::Pending = Box::pin(std::future::ready(Ok(())));
        assert!(confirm(stored, Duration::from_secs(5)).await.is_ok());
        let refused: eventlog::Pending = Box::pin(std::future::ready(Err(
            eventlog::LogError::Kafka("no".into()),
        )));
        assert!(matches!(
            confirm(refused, Duration::from_secs(5)).await,
            Err(NotStored::Log(eventlog::LogError::Kafka(_)))
        ));
    }
}
