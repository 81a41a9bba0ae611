//! The checks both transports run before a client's session starts (PROTOCOL.md §1): the
//! origin, the serializer version, and the JWT. Their refusals are one catalog (docs/ERRORS.md,
//! "Handshake"), the counterpart of the channels' [`topics::Refusal`]: a WebSocket gets the
//! HTTP status, a long-poll GET the same status in its `{"status": ...}` body.

use axum::http::{header, HeaderMap, StatusCode};
use topics::Claims;

use crate::app::App;
use crate::serializer::Vsn;

/// Why a client was refused before its session started. The reason is the label of
/// `fawkes_connections_refused_total` and the word in the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeRefusal {
    /// The `Origin` header is not one of `FAWKES_CHECK_ORIGIN`.
    OriginNotAllowed,
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
    const ALL: [HandshakeRefusal; 4] = [
        HandshakeRefusal::OriginNotAllowed,
        HandshakeRefusal::UnsupportedVsn,
        HandshakeRefusal::MalformedAuthToken,
        HandshakeRefusal::InvalidToken,
    ];

    /// The reason, as the metric label and the log line say it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            HandshakeRefusal::OriginNotAllowed => "origin not allowed",
            HandshakeRefusal::UnsupportedVsn => "unsupported vsn",
            HandshakeRefusal::MalformedAuthToken => "malformed auth token",
            HandshakeRefusal::InvalidToken => "invalid token",
        }
    }

    /// The HTTP status of a refused upgrade, and the `status` of a refused long-poll request
    /// (Phoenix answers 403 to a refused origin, version or `connect`).
    pub(crate) fn status(self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    /// Counts and logs the refusal.
    pub(crate) fn report(self, app: &App, transport: &'static str) {
        let reason = self.reason();
        app.metrics
            .connections_refused
            .with_label_values(&[reason])
            .inc();
        tracing::info!(reason, transport, "refused a client");
    }
}

/// The origin check: allowed when no origins are configured, or the request has no `Origin`
/// header (not a browser), or its origin is listed.
pub(crate) fn check_origin(app: &App, headers: &HeaderMap) -> Result<(), HandshakeRefusal> {
    let Some(allowed) = &app.config.check_origin else {
        return Ok(());
    };
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""));
    if allowed.allows(origin) {
        Ok(())
    } else {
        Err(HandshakeRefusal::OriginNotAllowed)
    }
}

/// The serializer the `vsn` connect param asks for.
pub(crate) fn negotiate(vsn: Option<&str>) -> Result<Vsn, HandshakeRefusal> {
    Vsn::negotiate(vsn).ok_or(HandshakeRefusal::UnsupportedVsn)
}

/// Who the client is: anonymous without a token, the token's claims with a valid one.
pub(crate) fn claims(app: &App, token: Option<&str>) -> Result<Claims, HandshakeRefusal> {
    match token {
        None => Ok(Claims::default()),
        Some(token) => app
            .auth
            .verify(token)
            .map_err(|_| HandshakeRefusal::InvalidToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn errors_md_lists_exactly_the_handshake_refusals() {
        // Rows of the handshake table: `| 403 | when | `reason` |`.
        let documented: BTreeSet<(String, String)> = include_str!("../../docs/ERRORS.md")
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
