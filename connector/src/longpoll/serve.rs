//! Serving one request of a session homed here, for a client's own HTTP request or for one
//! relayed from another connector: hand it to the session's task and wait, bounded by the
//! window, for what it answers.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::polls::body::Batch;
use crate::polls::{Polled, Request};
use crate::serializer::Text;

/// Beyond its hold, how long a poll waits for its session's answer (the session answers at
/// the end of the hold; this only covers a session stuck in a slow step).
const POLL_SLACK: Duration = Duration::from_secs(1);

/// What a session answered a request.
#[derive(Debug)]
pub(super) enum Answer {
    /// A poll's frames, oldest first.
    Messages(Vec<Text>),
    /// A poll that nothing came for.
    Empty,
    /// A POST's messages all processed.
    Posted,
    /// A POST message not processed within the window; the rest were not.
    TimedOut,
    /// The session does not run (any more).
    Gone,
}

/// A poll of `session`, held at most `hold`.
pub(super) async fn poll(session: &mpsc::Sender<Request>, hold: Duration) -> Answer {
    let (answer, answered) = oneshot::channel();
    match session.try_send(Request::Poll { answer, hold }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Closed(_)) => return Answer::Gone,
        // A client flooding its session with polls: this one gets nothing.
        Err(mpsc::error::TrySendError::Full(_)) => return Answer::Empty,
    }
    match tokio::time::timeout(hold + POLL_SLACK, answered).await {
        Ok(Ok(Polled::Messages(frames))) => Answer::Messages(frames),
        // Nothing came, or the session ended while the poll was held: the next poll finds
        // it gone (Phoenix answers 204 at the end of the window there too).
        Ok(Ok(Polled::Empty)) | Ok(Err(_)) | Err(_) => Answer::Empty,
    }
}

/// A POST of `batch` to `session`: each message must be processed within `window`, else the
/// answer is [`Answer::TimedOut`] and the remaining ones are not processed (Phoenix waits
/// `window_ms` per message).
pub(super) async fn post(
    session: &mpsc::Sender<Request>,
    batch: Batch,
    window: Duration,
) -> Answer {
    let count = batch.lines.len();
    let (progress, mut done) = mpsc::channel(count.max(1));
    let cancel = CancellationToken::new();
    let request = Request::Post {
        batch,
        progress,
        cancel: cancel.clone(),
    };
    match session.try_send(request) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Closed(_)) => return Answer::Gone,
        Err(mpsc::error::TrySendError::Full(_)) => return Answer::TimedOut,
    }
    for _ in 0..count {
        match tokio::time::timeout(window, done.recv()).await {
            Ok(Some(())) => {}
            // The session ended before processing everything.
            Ok(None) => return Answer::Gone,
            Err(_) => {
                cancel.cancel();
                return Answer::TimedOut;
            }
        }
    }
    Answer::Posted
}
