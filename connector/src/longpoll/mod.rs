//! Phoenix's long-poll transport at `/socket/longpoll` (PROTOCOL.md §7), for clients whose
//! WebSockets are blocked (phoenix.js `transport: LongPoll`, or `longPollFallbackMs`).
//!
//! A GET without a usable session token runs the same checks as a WebSocket handshake
//! (origin, vsn, JWT) and starts a session on this connector, its home, answering
//! `{"status":410,"token":T,"messages":[]}`. Later GETs take the session's buffered frames
//! (or wait up to the window for some), POSTs hand it ndjson batches of messages. A request
//! whose token names a session homed on another connector is relayed there through the log
//! (`relay`), so consecutive requests may land on any connector.
//!
//! Layout: this file the endpoint; `envelope` the responses; `session` a session's task on its
//! home; `serve` one request of a session homed here; `relay` requests relayed between
//! connectors.

mod envelope;
mod relay;
mod serve;
mod session;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use topics::relay::RelayBody;

use crate::app::App;
use crate::handshake::{self, HandshakeRefusal};
use crate::polls::body;
use crate::polls::token::{is_session_token, SessionRef};

use envelope::{common_headers, Envelope};
use relay::Relayed;
use serve::Answer;

pub(crate) use relay::read as read_relays;

/// The header newer phoenix.js clients send their session token in (Phoenix ≥ 1.8.10 reads
/// it before the `token` query param).
const TOKEN_HEADER: &str = "x-phoenix-longpoll-token";

/// The header the LongPoll transport sends phoenix.js's `authToken` in.
const AUTH_TOKEN_HEADER: &str = "x-phoenix-authtoken";

/// The routes of `/socket/longpoll`: GET polls, POST sends, OPTIONS answers CORS preflights,
/// any other method gets 400 (as Phoenix).
pub(crate) fn routes() -> MethodRouter<Arc<App>> {
    get(poll)
        .post(publish)
        .options(preflight)
        .fallback(|| async { StatusCode::BAD_REQUEST })
}

type Params = Query<Vec<(String, String)>>;

/// The last value of `key` in the query (Plug: a repeated key's last occurrence wins).
fn last<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The session token: the header first, else the query's last `token`.
fn session_token<'a>(headers: &'a HeaderMap, query: &'a [(String, String)]) -> Option<&'a str> {
    match headers.get(TOKEN_HEADER) {
        Some(value) => value.to_str().ok(),
        None => last(query, "token"),
    }
}

/// Answers `envelope` and counts it.
fn answer(app: &App, method: &'static str, envelope: Envelope<'_>) -> Response {
    app.metrics
        .longpoll_requests
        .with_label_values(&[method, &envelope.status().to_string()])
        .inc();
    envelope.into_response()
}

/// A refused request: counted, logged, answered `{"status":403}`.
fn refuse(app: &App, method: &'static str, refusal: HandshakeRefusal) -> Response {
    refusal.report(app, "longpoll");
    answer(app, method, Envelope::Refused)
}

/// `GET /socket/longpoll`: the session's frames, or a new session.
async fn poll(State(app): State<Arc<App>>, Query(query): Params, headers: HeaderMap) -> Response {
    if let Err(refusal) = handshake::check_origin(&app, &headers) {
        return refuse(&app, "GET", refusal);
    }
    let token = session_token(&headers, &query);
    if let Some((token, session)) = token.and_then(|t| Some((t, app.polls.key.verify(t)?))) {
        let window = app.config.longpoll_window;
        let frames: Vec<String> = match resume(&app, &session, Resume::Poll).await {
            Resumed::Frames(frames) => frames,
            Resumed::Nothing => return answer(&app, "GET", Envelope::NoMessages(token)),
            Resumed::Gone => {
                tracing::debug!(
                    session = session.session_id,
                    ?window,
                    "a polled session is gone"
                );
                return new_session(&app, &query, &headers);
            }
            Resumed::Posted | Resumed::TimedOut => {
                return answer(&app, "GET", Envelope::NoMessages(token))
            }
        };
        let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
        return answer(&app, "GET", Envelope::Messages(token, &frames));
    }
    new_session(&app, &query, &headers)
}

/// Starts a session after the handshake's checks: `{"status":410,"token":T,...}`, or
/// `{"status":403}`; HTTP 503 while the connector drains (as WebSocket handshakes).
fn new_session(app: &Arc<App>, query: &[(String, String)], headers: &HeaderMap) -> Response {
    if app.shutdown.is_cancelled() {
        let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
        common_headers(&mut response);
        return response;
    }
    let vsn = match handshake::negotiate(last(query, "vsn")) {
        Ok(vsn) => vsn,
        Err(refusal) => return refuse(app, "GET", refusal),
    };
    // The JWT: phoenix.js's `authToken` header, else the query's `token`. phoenix.js ≤ 1.8.16
    // appends its session token as a second `token`, told apart by its prefix, so a client
    // whose session is gone reconnects with its own token.
    let jwt = match headers.get(AUTH_TOKEN_HEADER) {
        Some(value) => Some(value.to_str().unwrap_or_default()),
        None => query
            .iter()
            .rev()
            .find(|(k, v)| k == "token" && !v.is_empty() && !is_session_token(v))
            .map(|(_, v)| v.as_str()),
    };
    let claims = match handshake::claims(app, jwt) {
        Ok(claims) => claims,
        Err(refusal) => return refuse(app, "GET", refusal),
    };
    let session_id = session::start(app, vsn, claims);
    let token = app.polls.key.sign(&app.config.connector_id, session_id);
    answer(app, "GET", Envelope::NewSession(&token))
}

/// `POST /socket/longpoll`: the session processes the body's messages in order.
async fn publish(
    State(app): State<Arc<App>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = handshake::check_origin(&app, &headers) {
        return refuse(&app, "POST", refusal);
    }
    let Some(session) = session_token(&headers, &query).and_then(|t| app.polls.key.verify(t))
    else {
        return answer(&app, "POST", Envelope::Gone);
    };
    // A batch travels whole in one relay record: its body is bounded like a WebSocket frame.
    let Ok(bytes) = axum::body::to_bytes(body, app.config.max_frame_bytes).await else {
        let mut response = StatusCode::BAD_REQUEST.into_response();
        common_headers(&mut response);
        return response;
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let batch = body::parse(content_type, &bytes);
    let envelope = match resume(&app, &session, Resume::Post(batch)).await {
        Resumed::Posted => Envelope::Posted,
        Resumed::TimedOut => Envelope::TimedOut,
        Resumed::Gone | Resumed::Frames(_) | Resumed::Nothing => Envelope::Gone,
    };
    answer(&app, "POST", envelope)
}

/// What a request asks of its session.
enum Resume {
    Poll,
    Post(body::Batch),
}

/// What came of it.
enum Resumed {
    Frames(Vec<String>),
    Nothing,
    Posted,
    TimedOut,
    Gone,
}

/// Hands a request to its session, here or, relayed, on its home.
async fn resume(app: &App, session: &SessionRef, request: Resume) -> Resumed {
    let window = app.config.longpoll_window;
    if session.home == app.config.connector_id {
        let Some(tx) = app.polls.session(session.session_id) else {
            return Resumed::Gone;
        };
        let answer = match request {
            Resume::Poll => serve::poll(&tx, window).await,
            Resume::Post(batch) => {
                for _ in 0..batch.dropped {
                    reject_line(app);
                }
                serve::post(&tx, batch, window).await
            }
        };
        return match answer {
            Answer::Messages(frames) => Resumed::Frames(
                frames
                    .iter()
                    .filter_map(|f| std::str::from_utf8(f.as_bytes()).ok())
                    .map(str::to_owned)
                    .collect(),
            ),
            Answer::Empty => Resumed::Nothing,
            Answer::Posted => Resumed::Posted,
            Answer::TimedOut => Resumed::TimedOut,
            Answer::Gone => Resumed::Gone,
        };
    }
    let (body, poll) = match request {
        Resume::Poll => (
            RelayBody::Poll {
                hold_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            },
            true,
        ),
        Resume::Post(batch) => {
            for _ in 0..batch.dropped {
                reject_line(app);
            }
            let body = RelayBody::Post {
                lines: batch.lines,
                ndjson: batch.ndjson,
            };
            (body, false)
        }
    };
    match relay::ask(app, &session.home, session.session_id, body).await {
        Relayed::Answer(RelayBody::Messages(frames)) => Resumed::Frames(frames),
        Relayed::Answer(RelayBody::Empty) => Resumed::Nothing,
        Relayed::Answer(RelayBody::Posted) => Resumed::Posted,
        Relayed::Answer(RelayBody::TimedOut) => Resumed::TimedOut,
        Relayed::Held if poll => Resumed::Nothing,
        Relayed::Held => Resumed::TimedOut,
        Relayed::Answer(_) | Relayed::Silent => Resumed::Gone,
    }
}

/// Counts a POST line dropped before it reached its session (not UTF-8).
fn reject_line(app: &App) {
    app.metrics
        .frames_rejected
        .with_label_values(&["not utf-8"])
        .inc();
}

/// `OPTIONS /socket/longpoll`: the CORS preflight browsers send before a cross-origin POST
/// of ndjson, after the origin check.
async fn preflight(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = handshake::check_origin(&app, &headers) {
        return refuse(&app, "OPTIONS", refusal);
    }
    let requested: Vec<&str> = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if let Ok(value) = HeaderValue::from_str(&requested.join(", ")) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("get, post, options"),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3600"),
    );
    app.metrics
        .longpoll_requests
        .with_label_values(&[Method::OPTIONS.as_str(), "200"])
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_token_header_wins_over_the_query_and_the_last_query_token_wins() {
        let q = query(&[("token", "jwt"), ("vsn", "2.0.0"), ("token", "lp1.session")]);
        assert_eq!(session_token(&HeaderMap::new(), &q), Some("lp1.session"));
        let mut headers = HeaderMap::new();
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("lp1.header"));
        assert_eq!(session_token(&headers, &q), Some("lp1.header"));
        assert_eq!(session_token(&HeaderMap::new(), &query(&[])), None);
        assert_eq!(last(&q, "vsn"), Some("2.0.0"));
    }
}
