//! A long-poll session's task on its home connector: a thin `select!`, like a WebSocket's,
//! around the shared [`Shell`]. Its frames wait in a bounded [`Inbox`] until a poll takes
//! them; POSTed messages are handed to the shell in order; a session not polled for 1.5
//! windows ends (Phoenix's inactivity shutdown), leaving its channels.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use topics::Claims;

use crate::app::App;
use crate::close::Close;
use crate::polls::body::{Batch, Line};
use crate::polls::{Polled, Request, REQUEST_QUEUE};
use crate::registry::Outbound;
use crate::serializer::{Text, Vsn};
use crate::shell::{sleep_until, Outlet, Shell};

/// Most bytes of frames one poll answer carries (at least one frame): the rest goes with the
/// next poll, which the client sends at once. Keeps a relayed answer within one log record.
pub(super) const ANSWER_BYTES: usize = 256 * 1024;

/// How long a draining session waits for a poll to take its `shutdown_notice`.
const NOTICE_GRACE: Duration = Duration::from_secs(2);

/// Most queued items handled before a held poll is answered.
const OUTBOUND_BATCH: usize = 64;

/// Frames waiting for the next poll, at most `limit` of them (`FAWKES_OUTBOUND_QUEUE`): a
/// client that stops polling while frames keep coming is closed like a slow WebSocket.
#[derive(Debug)]
pub(super) struct Inbox {
    frames: VecDeque<Text>,
    limit: usize,
}

impl Inbox {
    fn new(limit: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            limit,
        }
    }

    fn push(&mut self, text: Text) -> bool {
        if self.frames.len() >= self.limit {
            return false;
        }
        self.frames.push_back(text);
        true
    }

    /// The oldest frames, up to [`ANSWER_BYTES`] (at least one).
    fn take(&mut self) -> Vec<Text> {
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some(front) = self.frames.front() {
            let size = front.as_bytes().len();
            if !taken.is_empty() && bytes + size > ANSWER_BYTES {
                break;
            }
            bytes += size;
            if let Some(frame) = self.frames.pop_front() {
                taken.push(frame);
            }
        }
        taken
    }

    /// Puts frames a poll could not deliver back in front, in order.
    fn put_back(&mut self, frames: Vec<Text>) {
        for frame in frames.into_iter().rev() {
            self.frames.push_front(frame);
        }
    }
}

impl Outlet for Inbox {
    fn send(&mut self, text: String) -> bool {
        self.push(Text::from(text))
    }

    fn forward(&mut self, text: Text) -> bool {
        self.push(text)
    }
}

/// Why a session ended (the label of `fawkes_longpoll_sessions_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Not polled for 1.5 windows.
    Inactive,
    /// Closed as a WebSocket would be (disconnect, too slow, drain).
    Closed(Close),
}

impl Ended {
    fn reason(self) -> &'static str {
        match self {
            Ended::Inactive => "inactive",
            Ended::Closed(close) => close.reason(),
        }
    }
}

/// A poll waiting for frames.
#[derive(Debug)]
struct Held {
    answer: oneshot::Sender<Polled>,
    until: Instant,
}

/// Starts a session for a client speaking `vsn` with `claims`; returns its session id.
pub(super) fn start(app: &Arc<App>, vsn: Vsn, claims: Claims) -> u64 {
    let session_id = app.next_socket_id();
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    // Registered before the client hears of it, so its first request finds it.
    app.polls.insert(session_id, tx);
    app.tracker
        .spawn(run(app.clone(), session_id, vsn, claims, rx));
    session_id
}

async fn run(
    app: Arc<App>,
    session_id: u64,
    vsn: Vsn,
    claims: Claims,
    mut requests: mpsc::Receiver<Request>,
) {
    app.metrics.longpoll_sessions.inc();
    let inbox = Inbox::new(app.config.outbound_queue);
    let (shell, mut rx) = Shell::open_as(app.clone(), session_id, vsn, claims, inbox);
    let mut task = Task {
        shell,
        held: None,
        last_poll: Instant::now(),
    };
    let ended = task.serve(&mut requests, &mut rx).await;
    // No new request reaches it; queued ones see it gone when they are dropped.
    app.polls.remove(session_id);
    drop(requests);
    drop(task.held.take());
    task.shell.close().await;
    app.metrics.longpoll_sessions.dec();
    app.metrics
        .longpoll_sessions_ended
        .with_label_values(&[ended.reason()])
        .inc();
    tracing::debug!(
        session = session_id,
        reason = ended.reason(),
        "long-poll session ended"
    );
}

/// What the task of one session holds.
struct Task {
    /// The session and its inbox.
    shell: Shell<Inbox>,
    /// The poll waiting for frames, if one is (a newer poll replaces it).
    held: Option<Held>,
    /// When the last poll came: the session ends 1.5 windows after it.
    last_poll: Instant,
}

impl Task {
    async fn serve(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Ended {
        let app = self.shell.app.clone();
        let handle = self.shell.handle.clone();
        let window = app.config.longpoll_window;
        let inactive_after = window + window / 2;
        let mut draining = false;
        let mut noticed: Option<Instant> = None;
        loop {
            self.answer_held();
            if noticed.is_some() && self.shell.outlet.frames.is_empty() {
                // The drain's notice was taken by a poll: the client reconnects elsewhere.
                return Ended::Closed(Close::ShuttingDown);
            }
            let overdue = self.shell.next_overdue();
            let held_until = self.held.as_ref().map(|h| h.until);
            let idle_at = self
                .held
                .is_none()
                .then_some(self.last_poll + inactive_after);
            let notice_ends = noticed.map(|at| at + NOTICE_GRACE);
            tokio::select! {
                () = app.shutdown.cancelled(), if !draining => {
                    draining = true;
                    self.shell.drain();
                }
                () = handle.turn.cancelled(), if noticed.is_none() => {
                    self.shell.shutdown_notice();
                    noticed = Some(Instant::now());
                }
                () = handle.overflow.cancelled() => {
                    app.metrics.slow_consumers.inc();
                    return Ended::Closed(Close::TooSlow);
                }
                () = sleep_until(idle_at) => return Ended::Inactive,
                () = sleep_until(notice_ends) => return Ended::Closed(Close::ShuttingDown),
                () = sleep_until(held_until) => {
                    if let Some(held) = self.held.take() {
                        let _ = held.answer.send(Polled::Empty);
                    }
                }
                () = sleep_until(overdue) => self.shell.replies_overdue().await,
                request = requests.recv() => match request {
                    // Every sender is gone: nothing can reach the session any more.
                    None => return Ended::Inactive,
                    Some(Request::Poll { answer, hold }) => {
                        let now = Instant::now();
                        self.last_poll = now;
                        let until = now + hold.min(window);
                        // One held poll per session: a newer one replaces it.
                        if let Some(old) = self.held.replace(Held { answer, until }) {
                            let _ = old.answer.send(Polled::Empty);
                        }
                    }
                    Some(Request::Post { batch, progress, cancel }) => {
                        self.post(batch, &progress, &cancel).await;
                    }
                },
                Some(out) = rx.recv() => {
                    if let Some(close) = self.shell.outbound(out).await {
                        return Ended::Closed(close);
                    }
                    for _ in 1..OUTBOUND_BATCH {
                        let Ok(out) = rx.try_recv() else {
                            break;
                        };
                        if let Some(close) = self.shell.outbound(out).await {
                            return Ended::Closed(close);
                        }
                    }
                }
            }
        }
    }

    /// Answers the held poll when frames are waiting; frames it could not take (the client
    /// went away) stay for the next poll.
    fn answer_held(&mut self) {
        if self.shell.outlet.frames.is_empty() {
            return;
        }
        let Some(held) = self.held.take() else {
            return;
        };
        let frames = self.shell.outlet.take();
        if let Err(Polled::Messages(frames)) = held.answer.send(Polled::Messages(frames)) {
            self.shell.outlet.put_back(frames);
        }
    }

    /// Processes a POST's messages in order, one `progress` per message, until the request
    /// gives up (`cancel`).
    async fn post(
        &mut self,
        batch: Batch,
        progress: &mpsc::Sender<()>,
        cancel: &CancellationToken,
    ) {
        for _ in 0..batch.dropped {
            self.shell.reject("not utf-8");
        }
        for line in batch.messages() {
            if cancel.is_cancelled() {
                return;
            }
            match line {
                Line::Text(text) => self.shell.text(text).await,
                Line::Binary(bytes) => self.shell.binary(&bytes).await,
                Line::Malformed => self.shell.reject("malformed base64"),
            }
            // The channel has room for every message of the batch.
            let _ = progress.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_is_bounded_and_answers_in_slices() {
        let mut inbox = Inbox::new(3);
        assert!(inbox.send("a".into()));
        assert!(inbox.forward(Text::from_static("b")));
        assert!(inbox.send("c".into()));
        assert!(!inbox.send("d".into()), "full: the session is too slow");
        let taken = inbox.take();
        assert_eq!(taken.len(), 3);
        inbox.put_back(taken);
        assert_eq!(inbox.frames.front(), Some(&Text::from_static("a")));
        let big = "x".repeat(ANSWER_BYTES);
        let mut inbox = Inbox::new(10);
        inbox.send(big.clone());
        inbox.send(big);
        inbox.send("small".into());
        assert_eq!(inbox.take().len(), 1, "one large frame per answer");
        assert_eq!(inbox.take().len(), 1);
        assert_eq!(inbox.take().len(), 1);
        assert!(inbox.take().is_empty());
    }
}
