//! Requests for sessions homed on another connector, relayed through the log
//! ([`LONGPOLL`], keyed by the connector a record is for), so sessions work behind a load
//! balancer without sticky routing.
//!
//! The asking connector appends the request and waits. The home serves it like a local
//! request: at once when it can, else it first answers `ACCEPTED` (it holds the request: a
//! poll waiting for frames, a slow POST), then the final answer. A home that says nothing
//! within the relay timeout is taken for gone (it crashed, or the session's connector is
//! another life of it), as Phoenix takes a session it cannot reach within `pubsub_timeout_ms`.

use std::sync::Arc;
use std::time::Duration;

use eventlog::{Log, Record};
use tokio_util::sync::CancellationToken;
use topics::names::{partition_for, LONGPOLL};
use topics::relay::{Relay, RelayBody};

use super::serve::{self, Answer};
use crate::app::App;
use crate::polls::body::Batch;

/// What the home of a relayed request said.
#[derive(Debug)]
pub(super) enum Relayed {
    /// Its final answer.
    Answer(RelayBody),
    /// It held the request but sent no final answer in time (a poll: nothing to say; a POST:
    /// not processed in time).
    Held,
    /// Nothing within the relay timeout: the session is gone.
    Silent,
}

/// Relays `body` to session `session_id` on connector `home` and waits for its answer.
pub(super) async fn ask(app: &App, home: &str, session_id: u64, body: RelayBody) -> Relayed {
    app.metrics
        .longpoll_relayed
        .with_label_values(&["asked"])
        .inc();
    let (request_id, mut answers) = app.polls.expect();
    let relay = Relay {
        to: home.to_owned(),
        from: app.config.connector_id.clone(),
        request_id,
        session_id,
        body,
    };
    let relayed = async {
        if !append(app, &relay).await {
            return Relayed::Silent;
        }
        let first = app.config.longpoll_relay_timeout;
        match tokio::time::timeout(first, answers.recv()).await {
            Ok(Some(RelayBody::Accepted)) => {}
            Ok(Some(answer)) => return Relayed::Answer(answer),
            Ok(None) | Err(_) => return Relayed::Silent,
        }
        let last = app.config.longpoll_window + app.config.longpoll_relay_timeout;
        match tokio::time::timeout(last, answers.recv()).await {
            Ok(Some(answer)) => Relayed::Answer(answer),
            Ok(None) | Err(_) => Relayed::Held,
        }
    };
    let outcome = relayed.await;
    app.polls.forget(request_id);
    if matches!(outcome, Relayed::Silent) {
        app.metrics.longpoll_relay_unanswered.inc();
        tracing::debug!(%home, session = session_id, "the home of a long-poll session did not answer");
    }
    outcome
}

/// Appends a relay record keyed by the connector it is for; false when the log did not take it
/// within the append timeout.
async fn append(app: &App, relay: &Relay) -> bool {
    let bytes = match relay.encode() {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "a relay record could not be encoded");
            return false;
        }
    };
    let appended = tokio::time::timeout(
        app.config.append_timeout,
        app.log.append(LONGPOLL, relay.to.as_bytes(), bytes),
    )
    .await;
    match appended {
        Ok(Ok(_)) => {
            app.metrics.log.ok();
            true
        }
        Ok(Err(error)) => {
            app.metrics.log.failed("append_relay", &error);
            tracing::warn!(%error, to = %relay.to, "a long-poll relay record was not stored");
            false
        }
        Err(_) => {
            let error = eventlog::LogError::Unavailable("not confirmed in time".into());
            app.metrics.log.failed("append_relay", &error);
            false
        }
    }
}

/// Reads this connector's relay records until `shutdown`: requests for sessions homed here
/// are served (each in a task of the connector's tracker), answers handed to the request
/// waiting for them.
pub(crate) async fn read(app: Arc<App>, log: Arc<dyn Log>, shutdown: CancellationToken) {
    let me = app.config.connector_id.clone();
    let partition = partition_for(me.as_bytes(), LONGPOLL.partitions);
    let metrics = app.metrics.clone();
    let handle = |record: Record| match Relay::decode(&record.value) {
        // Records for other connectors may share the partition.
        Ok(relay) if relay.to == me => match relay.body {
            RelayBody::Poll { .. } | RelayBody::Post { .. } => {
                app.tracker.spawn(serve_relayed(app.clone(), relay));
            }
            answer => {
                app.polls.answer(relay.request_id, answer);
            }
        },
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, offset = record.offset, "skipping an undecodable relay record");
        }
    };
    crate::streams::tail(
        &*log,
        LONGPOLL,
        vec![partition],
        "read_relay",
        &metrics,
        &shutdown,
        handle,
    )
    .await;
}

/// Serves a request relayed from another connector and sends the answers back: `ACCEPTED`
/// first when the answer takes longer than a quarter of the relay timeout.
async fn serve_relayed(app: Arc<App>, relay: Relay) {
    app.metrics
        .longpoll_relayed
        .with_label_values(&["served"])
        .inc();
    let window = app.config.longpoll_window;
    let session = app.polls.session(relay.session_id);
    let answer = async {
        let Some(session) = session else {
            return Answer::Gone;
        };
        match &relay.body {
            RelayBody::Poll { hold_ms } => {
                let hold = Duration::from_millis(*hold_ms).min(window);
                serve::poll(&session, hold).await
            }
            RelayBody::Post { lines, ndjson } => {
                let batch = Batch {
                    lines: lines.clone(),
                    ndjson: *ndjson,
                    dropped: 0,
                };
                serve::post(&session, batch, window).await
            }
            _ => Answer::Gone,
        }
    };
    tokio::pin!(answer);
    let quick = app.config.longpoll_relay_timeout / 4;
    let answer = tokio::select! {
        answer = &mut answer => answer,
        () = tokio::time::sleep(quick) => {
            reply(&app, &relay, RelayBody::Accepted).await;
            answer.await
        }
    };
    let body = match answer {
        Answer::Messages(frames) => RelayBody::Messages(
            frames
                .iter()
                .filter_map(|f| std::str::from_utf8(f.as_bytes()).ok())
                .map(str::to_owned)
                .collect(),
        ),
        Answer::Empty => RelayBody::Empty,
        Answer::Posted => RelayBody::Posted,
        Answer::TimedOut => RelayBody::TimedOut,
        Answer::Gone => RelayBody::Gone,
    };
    reply(&app, &relay, body).await;
}

/// Sends `body` back to the connector that relayed `request`.
async fn reply(app: &App, request: &Relay, body: RelayBody) {
    let answer = Relay {
        to: request.from.clone(),
        from: app.config.connector_id.clone(),
        request_id: request.request_id,
        session_id: request.session_id,
        body,
    };
    append(app, &answer).await;
}
