//! The WebSocket transport: `GET /socket/websocket` checks the serializer version and the
//! token, then upgrades; each socket then gets a session task.
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
use topics::Claims;

use crate::app::App;
use crate::auth::token_from_protocols;
use crate::serializer::Vsn;

use upgrade::Upgrade;

/// Per-socket read buffer: Phoenix frames are small, and a large buffer costs memory on every
/// idle socket.
const READ_BUFFER: usize = 4 * 1024;
/// Written frames are buffered up to this size until the batch is flushed.
const WRITE_BUFFER: usize = 16 * 1024;

/// Why a socket was refused before its upgrade: the handshake's catalog (docs/ERRORS.md,
/// "Handshake"), the counterpart of the channels' [`topics::Refusal`]. The reason is the label
/// of `fawkes_connections_refused_total` and the word in the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandshakeRefusal {
    /// `vsn` is not `1.0.x` or `2.0.x`.
    UnsupportedVsn,
    /// The `authToken` sub-protocol is not valid base64.
    MalformedAuthToken,
    /// The token has a bad signature, is expired, malformed or lacks `sub`.
    InvalidToken,
}

impl HandshakeRefusal {
    /// Every handshake refusal, for the catalog check.
    #[cfg(test)]
    const ALL: [HandshakeRefusal; 3] = [
        HandshakeRefusal::UnsupportedVsn,
        HandshakeRefusal::MalformedAuthToken,
        HandshakeRefusal::InvalidToken,
    ];

    fn reason(self) -> &'static str {
        match self {
            HandshakeRefusal::UnsupportedVsn => "unsupported vsn",
            HandshakeRefusal::MalformedAuthToken => "malformed auth token",
            HandshakeRefusal::InvalidToken => "invalid token",
        }
    }

    /// The HTTP status of the refused upgrade (Phoenix answers 403 to a refused `connect`).
    fn status(self) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

/// `GET /socket/websocket`: checks vsn and token, then upgrades.
pub(crate) async fn handler(
    State(app): State<Arc<App>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    // Plug semantics: for a repeated key the last occurrence wins.
    let params: HashMap<String, String> = query.into_iter().collect();
    let refuse = |refusal: HandshakeRefusal| {
        let reason = refusal.reason();
        app.metrics
            .connections_refused
            .with_label_values(&[reason])
            .inc();
        tracing::info!(reason, "refused a socket");
        refusal.status().into_response()
    };
    let Some(vsn) = Vsn::negotiate(params.get("vsn").map(String::as_str)) else {
        return refuse(HandshakeRefusal::UnsupportedVsn);
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
    let claims = match protocol_token.or_else(|| params.get("token").cloned()) {
        None => Claims::default(),
        Some(token) => match app.auth.verify(&token) {
            Ok(claims) => claims,
            Err(_) => return refuse(HandshakeRefusal::InvalidToken),
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
        tracked.track_future(task::run(app, socket, vsn, claims))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn errors_md_lists_exactly_the_handshake_refusals() {
        // Rows of the handshake table: `| 403 | when | `reason` |`.
        let documented: BTreeSet<(String, String)> = include_str!("../../../docs/ERRORS.md")
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let status = cells.get(1)?.parse::<u16>().ok()?;
                let reason = cells.get(3)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status.to_string(), reason.to_owned()))
            })
            .collect();
        let code: BTreeSet<(String, String)> = HandshakeRefusal::ALL
            .iter()
            .map(|r| (r.status().as_u16().to_string(), r.reason().to_owned()))
            .collect();
        assert_eq!(documented, code);
    }
}
