//! The WebSocket transport: `GET /socket/websocket` checks the origin, the serializer version
//! and the token (`crate::handshake`), then upgrades; each socket then gets a session task.
//!
//! Layout:
//! - this file: the endpoint (vsn and token checks, socket settings);
//! - `upgrade`: the WebSocket handshake;
//! - `duplex`: one socket read and written by one task;
//! - `task`: the session task, a thin `select!` around the sans-IO [`Session`](crate::session::Session).
//!
//! Only this module speaks tungstenite; the core hands it [`Text`](crate::serializer::Text)
//! and [`Frame`](crate::serializer::Frame).

mod duplex;
mod task;
mod upgrade;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::app::App;
use crate::auth::token_from_protocols;
use crate::handshake::{self, HandshakeRefusal};

use upgrade::Upgrade;

/// Per-socket read buffer: Phoenix frames are small, and a large buffer costs memory on every
/// idle socket.
const READ_BUFFER: usize = 4 * 1024;
/// Written frames are buffered up to this size until the batch is flushed.
const WRITE_BUFFER: usize = 16 * 1024;

/// `GET /socket/websocket`: checks the origin, vsn and token, then upgrades.
pub(crate) async fn handler(
    State(app): State<Arc<App>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    // Plug semantics: for a repeated key the last occurrence wins.
    let params: HashMap<String, String> = query.into_iter().collect();
    let refuse = |refusal: HandshakeRefusal| {
        refusal.report(&app, "websocket");
        refusal.status().into_response()
    };
    if let Err(refusal) = handshake::check_origin(&app, &headers) {
        return refuse(refusal);
    }
    let vsn = match handshake::negotiate(params.get("vsn").map(String::as_str)) {
        Ok(vsn) => vsn,
        Err(refusal) => return refuse(refusal),
    };
    let protocol_token = match headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|h| h.to_str().ok())
        .map(token_from_protocols)
        .transpose()
    {
        Ok(token) => token.flatten(),
        Err(_) => return refuse(HandshakeRefusal::MalformedAuthToken),
    };
    let token = protocol_token.or_else(|| params.get("token").cloned());
    let claims = match handshake::claims(&app, token.as_deref()) {
        Ok(claims) => claims,
        Err(refusal) => return refuse(refusal),
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
        tracked.track_future(task::run(app, socket, vsn, claims))
    })
}
