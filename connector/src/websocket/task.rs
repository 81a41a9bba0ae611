//! The session task of one socket: a thin `select!` that reads client frames, queued
//! broadcasts and deliveries, and hands them to the transport-independent
//! [`Shell`](crate::shell::Shell) around the sans-IO session.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, Utf8Bytes};
use topics::Claims;

use super::duplex::Duplex;
use super::upgrade::Socket;
use crate::app::App;
use crate::close::Close;
use crate::registry::Outbound;
use crate::serializer::{Text, Vsn};
use crate::shell::{sleep_until, Outlet, Shell};

/// How long a closing socket may take to flush its last frames.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Most queued items handled before the socket is written again.
const OUTBOUND_BATCH: usize = 64;

impl Outlet for Duplex {
    fn send(&mut self, text: String) -> bool {
        self.queue(WsMessage::Text(Utf8Bytes::from(text)))
    }

    fn forward(&mut self, text: Text) -> bool {
        // tungstenite takes shared bytes as text only through `TryFrom<Bytes>`, which checks
        // again that they are UTF-8 (tens of ns for a short frame): the price of keeping
        // tungstenite out of the sans-IO core. `Text` is UTF-8 by construction, so this does
        // not fail; if it ever did, the frame is dropped and logged, and the socket carries on.
        match Utf8Bytes::try_from(text.into_bytes()) {
            Ok(text) => self.queue(WsMessage::Text(text)),
            Err(error) => {
                tracing::error!(%error, "dropped a broadcast frame that is not UTF-8");
                true
            }
        }
    }
}

/// Runs the session of one upgraded socket until it closes, then leaves its channels.
pub(super) async fn run(app: Arc<App>, socket: Socket, vsn: Vsn, claims: Claims) {
    let duplex = Duplex::new(socket, app.config.outbound_queue);
    let (mut shell, mut rx) = Shell::open(app, vsn, claims, duplex);
    let close = serve(&mut shell, &mut rx).await;
    shell.close().await;
    if let Some(close) = close {
        let frame = CloseFrame {
            code: CloseCode::from(close.code()),
            reason: Utf8Bytes::from_static(close.reason()),
        };
        shell.outlet.queue_close(frame);
    }
    // Give the last frames (and the close frame) a moment to leave.
    let flushed = tokio::time::timeout(CLOSE_GRACE, shell.outlet.flush_all()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::debug!(
            socket = shell.socket_id,
            "closing socket did not flush in time"
        );
    }
}

/// Serves the socket until it ends; returns the close frame to send, if any.
async fn serve(shell: &mut Shell<Duplex>, rx: &mut mpsc::Receiver<Outbound>) -> Option<Close> {
    let app = shell.app.clone();
    let handle = shell.handle.clone();
    let idle = app.config.idle_timeout;
    let mut deadline = Instant::now() + idle;
    let mut draining = false;
    loop {
        let overdue = shell.next_overdue();
        tokio::select! {
            // The drain started: no new channels here, but the socket is served (pushes
            // taken, owed replies written) until its turn to close, so the connector's
            // clients do not all reconnect at once.
            () = app.shutdown.cancelled(), if !draining => {
                draining = true;
                shell.drain();
            }
            () = handle.turn.cancelled() => {
                shell.shutdown_notice();
                return Some(Close::ShuttingDown);
            }
            () = handle.overflow.cancelled() => {
                app.metrics.slow_consumers.inc();
                return Some(Close::TooSlow);
            }
            () = tokio::time::sleep_until(deadline) => {
                return Some(Close::Idle);
            }
            () = sleep_until(overdue) => shell.replies_overdue().await,
            incoming = std::future::poll_fn(|cx| shell.outlet.poll_next(cx)) => {
                deadline = Instant::now() + idle;
                match incoming {
                    None | Some(Ok(WsMessage::Close(_))) => return None,
                    Some(Err(tungstenite::Error::Capacity(_))) => {
                        let close = Close::FrameTooLarge;
                        shell.reject(close.reason());
                        return Some(close);
                    }
                    Some(Err(_)) => return None,
                    Some(Ok(message)) => incoming_frame(shell, message).await,
                }
            }
            Some(out) = rx.recv() => {
                if let Some(close) = shell.outbound(out).await {
                    return Some(close);
                }
                // Take what else is queued before the socket is written, so a burst of
                // broadcasts leaves in one write rather than one write (and one wakeup)
                // per frame.
                for _ in 1..OUTBOUND_BATCH {
                    let Ok(out) = rx.try_recv() else {
                        break;
                    };
                    if let Some(close) = shell.outbound(out).await {
                        return Some(close);
                    }
                }
            }
        }
    }
}

/// Hands one WebSocket message to the shell.
async fn incoming_frame(shell: &mut Shell<Duplex>, message: WsMessage) {
    match message {
        WsMessage::Text(text) => shell.text(text.as_str()).await,
        WsMessage::Binary(bytes) => shell.binary(&bytes).await,
        // Pings are answered by the WebSocket layer; they only reset the idle timer. Raw
        // frames are never produced when reading.
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => {}
    }
}
