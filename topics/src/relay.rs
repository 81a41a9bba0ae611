//! Long-poll requests relayed between connectors, on [`LONGPOLL`](crate::names::LONGPOLL).
//!
//! A long-poll session lives on the connector that created it (its home). With no sticky
//! routing, a client's next GET or POST may land on any connector: that one relays it to the
//! home through the log, keyed by the home's connector id, and the home answers the same way,
//! keyed by the asking connector's id. A home that holds a request for long (a poll waiting
//! for messages, a slow POST) first says so with [`RelayBody::Accepted`], so the asking
//! connector can tell a slow home from a gone one within a short bound.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::avro;
use crate::envelope::RecordError;

/// One relayed request or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The connector that reads it (the record key): the session's home for a request, the
    /// asking connector for an answer.
    pub to: String,
    /// The connector that wrote it.
    pub from: String,
    /// The asking connector's id for the request; answers echo it.
    pub request_id: u64,
    /// The session's socket id on its home.
    pub session_id: u64,
    /// The request or answer.
    pub body: RelayBody,
}

/// What is relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayBody {
    /// A GET: the buffered messages, or the first to come within `hold_ms`.
    Poll {
        /// How long the home may hold the poll waiting for messages, in milliseconds.
        hold_ms: u64,
    },
    /// A POST: the client's messages, to process in order.
    Post {
        /// The messages as the client sent them.
        lines: Vec<String>,
        /// Whether the lines follow the ndjson rule (`[` text, else base64).
        ndjson: bool,
    },
    /// The home holds the request and answers later.
    Accepted,
    /// A poll's answer: frames for the client, oldest first.
    Messages(Vec<String>),
    /// A poll's answer: nothing came within its hold.
    Empty,
    /// A POST's answer: every message processed.
    Posted,
    /// A POST's answer: a message was not processed within the window; the rest were not.
    TimedOut,
    /// The session is not (or no longer) on the home.
    Gone,
}

/// The Avro enum `RelayKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum RelayKind {
    Poll,
    Post,
    Accepted,
    Messages,
    Empty,
    Posted,
    TimedOut,
    Gone,
}

#[derive(Serialize, Deserialize)]
struct RelayWire {
    to: String,
    from: String,
    request_id: i64,
    session_id: i64,
    kind: RelayKind,
    hold_ms: i64,
    ndjson: bool,
    lines: Vec<String>,
}

impl Relay {
    /// Encodes this record for the log.
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let (kind, hold_ms, ndjson, lines) = match &self.body {
            RelayBody::Poll { hold_ms } => (RelayKind::Poll, *hold_ms, false, Vec::new()),
            RelayBody::Post { lines, ndjson } => (RelayKind::Post, 0, *ndjson, lines.clone()),
            RelayBody::Accepted => (RelayKind::Accepted, 0, false, Vec::new()),
            RelayBody::Messages(lines) => (RelayKind::Messages, 0, false, lines.clone()),
            RelayBody::Empty => (RelayKind::Empty, 0, false, Vec::new()),
            RelayBody::Posted => (RelayKind::Posted, 0, false, Vec::new()),
            RelayBody::TimedOut => (RelayKind::TimedOut, 0, false, Vec::new()),
            RelayBody::Gone => (RelayKind::Gone, 0, false, Vec::new()),
        };
        let wire = RelayWire {
            to: self.to.clone(),
            from: self.from.clone(),
            // Ids are counters and socket ids, far below i64::MAX; the cast keeps their bits
            // either way and `decode` undoes it.
            request_id: self.request_id as i64,
            session_id: self.session_id as i64,
            kind,
            hold_ms: i64::try_from(hold_ms).unwrap_or(i64::MAX),
            ndjson,
            lines,
        };
        avro::encode("LongPollRelay", &wire).map_err(|e| RecordError::encode("relay", e))
    }

    /// Decodes a record read from the log.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let wire: RelayWire =
            avro::decode("LongPollRelay", bytes).map_err(|e| RecordError::decode("relay", e))?;
        let body = match wire.kind {
            RelayKind::Poll => RelayBody::Poll {
                hold_ms: u64::try_from(wire.hold_ms).unwrap_or(0),
            },
            RelayKind::Post => RelayBody::Post {
                lines: wire.lines,
                ndjson: wire.ndjson,
            },
            RelayKind::Accepted => RelayBody::Accepted,
            RelayKind::Messages => RelayBody::Messages(wire.lines),
            RelayKind::Empty => RelayBody::Empty,
            RelayKind::Posted => RelayBody::Posted,
            RelayKind::TimedOut => RelayBody::TimedOut,
            RelayKind::Gone => RelayBody::Gone,
        };
        Ok(Self {
            to: wire.to,
            from: wire.from,
            request_id: wire.request_id as u64,
            session_id: wire.session_id as u64,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let bodies = [
            RelayBody::Poll { hold_ms: 10_000 },
            RelayBody::Post {
                lines: vec!["[null,\"1\",\"t\",\"e\",{}]".into(), "AAEC".into()],
                ndjson: true,
            },
            RelayBody::Post {
                lines: vec!["{}".into()],
                ndjson: false,
            },
            RelayBody::Accepted,
            RelayBody::Messages(vec!["[null,null,\"t\",\"e\",{\"a\":\"é\"}]".into()]),
            RelayBody::Empty,
            RelayBody::Posted,
            RelayBody::TimedOut,
            RelayBody::Gone,
        ];
        for body in bodies {
            let relay = Relay {
                to: "connector-a".into(),
                from: "connector-b".into(),
                request_id: u64::MAX - 3,
                session_id: 17,
                body,
            };
            let back = Relay::decode(&relay.encode().expect("encodes")).expect("decodes");
            assert_eq!(back, relay);
        }
        assert!(Relay::decode(b"nope").is_err());
    }
}
