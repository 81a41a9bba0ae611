//! One WebSocket read and written by one task: a bounded queue of frames to send, long texts
//! split into fragments.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use super::upgrade::Socket;

/// Text messages longer than this are sent as several frames, so no socket's write buffer
/// grows past about two of them (tungstenite never shrinks it).
const FRAGMENT: usize = 16 * 1024;

/// One WebSocket, read and written by one task without either side blocking the other.
///
/// Frames to send wait in a bounded queue; every poll first pushes as many as the socket
/// takes, then flushes, then reads. Doing both in one poll with one waker means a client that
/// stops reading cannot stop the server reading it (no deadlock), and no wakeup is lost
/// between a reader and a writer sharing the socket.
pub(super) struct Duplex {
    socket: Socket,
    outgoing: VecDeque<WsMessage>,
    unflushed: bool,
    limit: usize,
}

impl Duplex {
    pub(super) fn new(socket: Socket, limit: usize) -> Self {
        Self {
            socket,
            outgoing: VecDeque::new(),
            unflushed: false,
            limit,
        }
    }

    /// Queues a message, long texts as several frames; false when the queue is full (the
    /// client reads too slowly).
    pub(super) fn queue(&mut self, message: WsMessage) -> bool {
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

    /// Queues the close frame, last, even when the queue is full: a socket closed for reading
    /// too slowly still gets its code.
    pub(super) fn queue_close(&mut self, frame: CloseFrame) {
        self.outgoing.push_back(WsMessage::Close(Some(frame)));
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
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WsMessage, tungstenite::Error>>> {
        if let Err(error) = self.poll_write(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        Pin::new(&mut self.socket).poll_next(cx)
    }

    /// Waits until every queued frame is written and flushed.
    pub(super) async fn flush_all(&mut self) -> Result<(), tungstenite::Error> {
        std::future::poll_fn(|cx| match self.poll_write(cx) {
            Err(error) => Poll::Ready(Err(error)),
            Ok(()) if self.outgoing.is_empty() && !self.unflushed => Poll::Ready(Ok(())),
            Ok(()) => Poll::Pending,
        })
        .await
    }
}
