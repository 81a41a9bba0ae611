//! The WebSocket transport: the handshake (vsn, token) and the session task, a thin `select!`
//! around the [`Session`] state machine.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use topics::names::COMMANDS;
use topics::presence::STATE_EVENT;
use topics::{Claims, Command, CommandKind, SocketRef};

use crate::auth::token_from_protocols;
use crate::close;
use crate::registry::{Outbound, SessionHandle};
use crate::serializer::{decode_binary, decode_text, encode_push, Frame, Text, Vsn};
use crate::session::{Action, Session};
use crate::upgrade::{Socket, Upgrade};
use crate::App;

/// Per-socket read buffer: Phoenix frames are small, and a large buffer costs memory on every
/// idle socket.
const READ_BUFFER: usize = 4 * 1024;
/// Written frames are buffered up to this size until the batch is flushed.
const WRITE_BUFFER: usize = 16 * 1024;
/// Text messages longer than this are sent as several frames, so no socket's write buffer
/// grows past about two of them (tungstenite never shrinks it).
const FRAGMENT: usize = 16 * 1024;

/// `GET /socket/websocket`: checks vsn and token, then upgrades.
pub(crate) async fn handler(
    State(app): State<Arc<App>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    // Plug semantics: for a repeated key the last occurrence wins.
    let params: HashMap<String, String> = query.into_iter().collect();
    let refuse = |reason: &'static str| {
        app.metrics
            .connections_refused
            .with_label_values(&[reason])
            .inc();
        tracing::info!(reason, "refused a socket");
        StatusCode::FORBIDDEN.into_response()
    };
    let Some(vsn) = Vsn::negotiate(params.get("vsn").map(String::as_str)) else {
        return refuse("unsupported vsn");
    };
    let protocol_token = match headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|h| h.to_str().ok())
        .map(token_from_protocols)
        .transpose()
    {
        Ok(token) => token.flatten(),
        Err(_) => return refuse("malformed auth token"),
    };
    let claims = match protocol_token.or_else(|| params.get("token").cloned()) {
        None => Claims::default(),
        Some(token) => match app.auth.verify(&token) {
            Ok(claims) => claims,
            Err(_) => return refuse("invalid token"),
        },
    };
    if app.shutdown.is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let upgrade = match Upgrade::from_request(&mut request) {
        Ok(upgrade) => upgrade,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    let max = app.config.max_frame_bytes;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let tracked = app.tracker.clone();
    upgrade.accept(config, move |socket| {
        tracked.track_future(run_session(app, socket, vsn, claims))
    })
}

async fn run_session(app: Arc<App>, socket: Socket, vsn: Vsn, claims: Claims) {
    let socket_id = app.next_socket_id();
    let (tx, mut rx) = mpsc::channel(app.config.outbound_queue);
    let handle = SessionHandle {
        tx,
        overflow: CancellationToken::new(),
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
    };
    let close = task.run(&mut rx).await;
    let mut actions = Vec::new();
    task.session.close(&mut actions);
    // The socket is going away: only subscriptions and leave commands matter now.
    let _ = task.execute(actions).await;
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        };
        task.duplex
            .outgoing
            .push_back(WsMessage::Close(Some(frame)));
    }
    // Give the last frames (and the close frame) a moment to leave.
    let flushed = tokio::time::timeout(CLOSE_GRACE, task.duplex.flush_all()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::debug!(socket = socket_id, "closing socket did not flush in time");
    }
    app.sessions.remove(socket_id);
    app.metrics.connections.dec();
}

/// How long a join waits for the presence list another join of the same topic asked for.
const SEED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a closing socket may take to flush its last frames.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// One WebSocket, read and written by one task without either side blocking the other.
///
/// Frames to send wait in a bounded queue; every poll first pushes as many as the socket
/// takes, then flushes, then reads. Doing both in one poll with one waker means a client that
/// stops reading cannot stop the server reading it (no deadlock), and no wakeup is lost
/// between a reader and a writer sharing the socket.
struct Duplex {
    socket: Socket,
    outgoing: VecDeque<WsMessage>,
    unflushed: bool,
    limit: usize,
}

impl Duplex {
    fn new(socket: Socket, limit: usize) -> Self {
        Self {
            socket,
            outgoing: VecDeque::new(),
            unflushed: false,
            limit,
        }
    }

    /// Queues a message, long texts as several frames; false when the queue is full (the
    /// client reads too slowly).
    fn queue(&mut self, message: WsMessage) -> bool {
        if self.outgoing.len() >= self.limit {
            return false;
        }
        match message {
            WsMessage::Text(text) if text.len() > FRAGMENT => {
                let bytes = bytes::Bytes::from(text);
                let mut start = 0;
                while start < bytes.len() {
                    let end = (start + FRAGMENT).min(bytes.len());
                    let opcode = if start == 0 {
                        Data::Text
                    } else {
                        Data::Continue
                    };
                    let chunk = bytes.slice(start..end);
                    let frame = WsFrame::message(chunk, OpCode::Data(opcode), end == bytes.len());
                    self.outgoing.push_back(WsMessage::Frame(frame));
                    start = end;
                }
            }
            message => self.outgoing.push_back(message),
        }
        true
    }

    /// Sends what the socket takes now and flushes; an error means the socket is gone.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), tungstenite::Error> {
        while !self.outgoing.is_empty() {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(message) = self.outgoing.pop_front() {
                        Pin::new(&mut self.socket).start_send(message)?;
                        self.unflushed = true;
                    }
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => break,
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Drives writes, then waits for the next frame from the client.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WsMessage, tungstenite::Error>>> {
        if let Err(error) = self.poll_write(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        Pin::new(&mut self.socket).poll_next(cx)
    }

    /// Waits until every queued frame is written and flushed.
    async fn flush_all(&mut self) -> Result<(), tungstenite::Error> {
        std::future::poll_fn(|cx| match self.poll_write(cx) {
            Err(error) => Poll::Ready(Err(error)),
            Ok(()) if self.outgoing.is_empty() && !self.unflushed => Poll::Ready(Ok(())),
            Ok(()) => Poll::Pending,
        })
        .await
    }
}

struct SessionTask {
    app: Arc<App>,
    socket_id: u64,
    handle: SessionHandle,
    session: Session,
    duplex: Duplex,
}

impl SessionTask {
    /// Runs until the socket ends; returns the close frame to send, if any.
    async fn run(&mut self, rx: &mut mpsc::Receiver<Outbound>) -> Option<(u16, &'static str)> {
        let idle = self.app.config.idle_timeout;
        let mut deadline = Instant::now() + idle;
        loop {
            tokio::select! {
                () = self.app.shutdown.cancelled() => {
                    self.shutdown_notice();
                    return Some((close::RESTART, "server restarting"));
                }
                () = self.handle.overflow.cancelled() => {
                    self.app.metrics.slow_consumers.inc();
                    return Some((close::TRY_AGAIN_LATER, "too slow to keep up"));
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Some((close::GOING_AWAY, "idle timeout"));
                }
                incoming = std::future::poll_fn(|cx| self.duplex.poll_next(cx)) => {
                    deadline = Instant::now() + idle;
                    match incoming {
                        None | Some(Ok(WsMessage::Close(_))) => return None,
                        Some(Err(tungstenite::Error::Capacity(_))) => {
                            self.app.metrics.frames_rejected.with_label_values(&["frame too large"]).inc();
                            return Some((close::TOO_BIG, "frame too large"));
                        }
                        Some(Err(_)) => return None,
                        Some(Ok(message)) => self.incoming(message).await,
                    }
                }
                Some(out) = rx.recv() => {
                    if let Some(close) = self.outbound(out).await {
                        return Some(close);
                    }
                }
            }
        }
    }

    /// Handles one queued item; returns a close frame when the item asks to close.
    async fn outbound(&mut self, out: Outbound) -> Option<(u16, &'static str)> {
        match out {
            Outbound::Broadcast(topic, frame) => {
                let mut actions = Vec::new();
                self.session.handle_broadcast(&topic, frame, &mut actions);
                self.execute(actions).await;
            }
            Outbound::Delivery(delivery) => {
                if let Some(reply) = &delivery.reply {
                    let label = crate::metrics::Metrics::status_label(&reply.status);
                    self.app.metrics.replies.with_label_values(&[label]).inc();
                }
                let list = self.presence_list(&delivery).await;
                let mut actions = Vec::new();
                self.session
                    .handle_delivery(delivery, list.as_deref(), &mut actions);
                self.execute(actions).await;
            }
            Outbound::Close(code, reason) => return Some((code, reason)),
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
        for action in actions {
            match action {
                Action::Send(Frame::Text(text)) => self.send_text(Utf8Bytes::from(text)),
                Action::Forward(text) => self.forward(text),
                Action::Overflow => self.handle.overflow.cancel(),
                Action::JoinAnswered(status) => {
                    let label = crate::metrics::Metrics::status_label(&status);
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
                            join_ref: Some(join_id),
                            msg_ref,
                        },
                        claims: (*self.handle.claims).clone(),
                        kind,
                        received_at: now(),
                    };
                    // Each command is stored before the next frame of this socket is read, so
                    // at most one is in flight per socket (some Kafka-protocol brokers lost
                    // records under many in-flight requests); on failure the client's push
                    // times out and it retries, and nothing was half-done.
                    if !self.store(&command).await && asks_presence {
                        let join_id = command.socket.join_ref.as_deref().unwrap_or_default();
                        self.app
                            .replicas
                            .cancel_request(&command.topic, self.socket_id, join_id);
                    }
                }
            }
        }
    }

    /// Appends a command to the log and waits until it is stored; false if it was not.
    async fn store(&mut self, command: &Command) -> bool {
        let topic = &command.topic;
        let sent = command
            .encode()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let key = bytes::Bytes::copy_from_slice(topic.as_bytes());
                self.app
                    .log
                    .send_all(vec![(COMMANDS, key, bytes)])
                    .map_err(|e| e.to_string())
            });
        let stored = match sent {
            Ok(pending) => pending.await.map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        if let Err(error) = &stored {
            tracing::error!(%error, %topic, "a command was not stored");
        }
        stored.is_ok()
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

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
