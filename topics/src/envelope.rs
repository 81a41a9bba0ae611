//! The records carried on the log.
//!
//! - [`Command`]: a client action that needs a decision, appended by a connector to
//!   [`COMMANDS`](crate::names::COMMANDS), keyed by channel topic.
//! - [`Delivery`]: what goes back to exactly one socket (a reply and the pushes that follow it),
//!   appended by a processor to [`DELIVERIES`](crate::names::DELIVERIES), keyed by connector id.
//! - broadcasts, events for every subscriber of a channel topic, have a module of their own
//!   ([`Broadcast`](crate::Broadcast)), with the per-socket shapes the connector applies.
//!
//! Records are Avro (see [`crate::avro`]) on both log backends; the open-ended JSON parts
//! (payloads, params, responses) travel as JSON text inside the Avro record.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::avro::{self, AvroError};

/// A record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("the {kind} record could not be {action}: {reason}")]
pub struct RecordError {
    kind: &'static str,
    action: &'static str,
    reason: String,
}

impl RecordError {
    pub(crate) fn decode(kind: &'static str, reason: impl std::fmt::Display) -> Self {
        Self {
            kind,
            action: "decoded",
            reason: reason.to_string(),
        }
    }

    pub(crate) fn encode(kind: &'static str, error: AvroError) -> Self {
        Self {
            kind,
            action: "encoded",
            reason: error.to_string(),
        }
    }
}

/// A JSON value as the text carried inside an Avro record.
pub(crate) fn json_text(value: &Value) -> String {
    value.to_string()
}

/// Reads the JSON text of an Avro record's field.
pub(crate) fn parse_json(kind: &'static str, text: &str) -> Result<Value, RecordError> {
    serde_json::from_str(text).map_err(|e| RecordError::decode(kind, e))
}

/// [`SocketRef`] as written in Avro (`long` socket id). The join id travels in the field
/// `join_ref`, its name since schema version 1.
#[derive(Serialize, Deserialize)]
struct SocketWire {
    connector_id: String,
    socket_id: i64,
    join_ref: Option<String>,
    msg_ref: Option<String>,
}

impl From<&SocketRef> for SocketWire {
    fn from(s: &SocketRef) -> Self {
        Self {
            connector_id: s.connector_id.clone(),
            socket_id: i64::try_from(s.socket_id).unwrap_or(i64::MAX),
            join_ref: s.join_id.clone(),
            msg_ref: s.msg_ref.clone(),
        }
    }
}

impl From<SocketWire> for SocketRef {
    fn from(s: SocketWire) -> Self {
        Self {
            connector_id: s.connector_id,
            socket_id: s.socket_id.unsigned_abs(),
            join_id: s.join_ref,
            msg_ref: s.msg_ref,
        }
    }
}

/// Who the socket belongs to, as verified by the connector from the JWT at connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (`sub`), absent for anonymous sockets.
    pub user_id: Option<String>,
    /// Roles such as `admin`, `super_admin`, `service`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Display name, if the token carried one.
    #[serde(default)]
    pub name: Option<String>,
}

impl Claims {
    /// Whether the claims include `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Addresses one socket on one connector, and the join and message a command came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRef {
    /// The connector process that holds the socket.
    pub connector_id: String,
    /// The socket's number on that connector.
    pub socket_id: u64,
    /// The connector's join id of the join the command belongs to (not the client's wire
    /// `join_ref`: see the glossary); `None` for commands no join sent (expiries).
    pub join_id: Option<String>,
    /// The client's message ref, echoed in the reply.
    pub msg_ref: Option<String>,
}

/// A client action for a processor to decide on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique id; effects are keyed by it so a command processed twice changes nothing.
    pub id: String,
    /// The channel topic, also the record key.
    pub topic: String,
    /// Where the reply goes.
    pub socket: SocketRef,
    /// Who sent it.
    pub claims: Claims,
    /// What was asked.
    pub kind: CommandKind,
    /// When the connector received it (RFC 3339, UTC).
    pub received_at: String,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandKind {
    /// `phx_join` with its params.
    Join {
        /// The join params.
        params: Value,
        /// The connector already holds this topic's presence state (it has other sockets on
        /// it): the processor pushes `presence_state` with a null payload, and the connector
        /// fills it in, so the whole list does not travel the log for every join.
        #[serde(default)]
        presence_known: bool,
    },
    /// A channel event (`handle_in`).
    Event {
        /// The event name.
        event: String,
        /// The event payload.
        payload: Value,
    },
    /// `phx_leave`, or the socket closed while joined; no reply is expected.
    Leave,
    /// Sent by a processor, not a connector: the connector in `socket.connector_id` stopped
    /// heart-beating, so its presences on `topic` are dropped. No reply is expected.
    Expire,
    /// Sent by a processor, not a connector: a follow-up of a command it decided (one row of
    /// an import, a row's result going back to the import). Connectors never produce it, so
    /// a client cannot forge one. `socket` is the socket of the command it follows.
    Derived {
        /// What to do.
        event: String,
        /// Its arguments.
        payload: Value,
    },
}

/// The Avro enum `CommandKind`: the kind of a command, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum WireKind {
    Join,
    Event,
    Leave,
    Expire,
    Derived,
}

#[derive(Serialize, Deserialize)]
struct CommandWire {
    id: String,
    topic: String,
    socket: SocketWire,
    claims: Claims,
    kind: WireKind,
    event: Option<String>,
    payload_json: String,
    received_at: String,
    presence_known: bool,
}

impl Command {
    /// Encodes this command for the log.
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let (kind, event, payload, presence_known) = match &self.kind {
            CommandKind::Join {
                params,
                presence_known,
            } => (WireKind::Join, None, json_text(params), *presence_known),
            CommandKind::Event { event, payload } => (
                WireKind::Event,
                Some(event.clone()),
                json_text(payload),
                false,
            ),
            CommandKind::Leave => (WireKind::Leave, None, "null".to_owned(), false),
            CommandKind::Expire => (WireKind::Expire, None, "null".to_owned(), false),
            CommandKind::Derived { event, payload } => (
                WireKind::Derived,
                Some(event.clone()),
                json_text(payload),
                false,
            ),
        };
        let wire = CommandWire {
            id: self.id.clone(),
            topic: self.topic.clone(),
            socket: SocketWire::from(&self.socket),
            claims: self.claims.clone(),
            kind,
            event,
            payload_json: payload,
            received_at: self.received_at.clone(),
            presence_known,
        };
        avro::encode("Command", &wire).map_err(|e| RecordError::encode("command", e))
    }

    /// Decodes a command read from the log.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let wire: CommandWire =
            avro::decode("Command", bytes).map_err(|e| RecordError::decode("command", e))?;
        let payload = parse_json("command", &wire.payload_json)?;
        let kind = match (wire.kind, wire.event) {
            (WireKind::Join, _) => CommandKind::Join {
                params: payload,
                presence_known: wire.presence_known,
            },
            (WireKind::Event, Some(event)) => CommandKind::Event { event, payload },
            (WireKind::Leave, _) => CommandKind::Leave,
            (WireKind::Expire, _) => CommandKind::Expire,
            (WireKind::Derived, Some(event)) => CommandKind::Derived { event, payload },
            (kind @ (WireKind::Event | WireKind::Derived), None) => {
                return Err(RecordError::decode(
                    "command",
                    format!("a {kind:?} command without its event"),
                ))
            }
        };
        Ok(Self {
            id: wire.id,
            topic: wire.topic,
            socket: wire.socket.into(),
            claims: wire.claims,
            kind,
            received_at: wire.received_at,
        })
    }
}

/// The status of a reply (`phx_reply`'s `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    /// The message was accepted (a join succeeded, an event was done).
    Ok,
    /// The message was refused or invalid; the response says why.
    Error,
}

impl ReplyStatus {
    /// The status as written on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Error => "error",
        }
    }

    fn parse(text: &str) -> Result<Self, RecordError> {
        match text {
            "ok" => Ok(ReplyStatus::Ok),
            "error" => Ok(ReplyStatus::Error),
            other => Err(RecordError::decode(
                "delivery",
                format!("unknown reply status {other:?}"),
            )),
        }
    }
}

/// The reply part of a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyBody {
    /// Whether the message was accepted.
    pub status: ReplyStatus,
    /// The reply payload.
    pub response: Value,
}

/// A push to one socket's channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// The event name.
    pub event: String,
    /// The payload (a JSON object).
    pub payload: Value,
}

/// What goes back to one socket: an optional reply, then pushes, in that order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The socket, join and message the delivery answers.
    pub socket: SocketRef,
    /// The channel topic.
    pub topic: String,
    /// The reply to `socket.msg_ref`, if any.
    pub reply: Option<ReplyBody>,
    /// Pushes written after the reply, in order.
    #[serde(default)]
    pub pushes: Vec<Push>,
}

#[derive(Serialize, Deserialize)]
struct ReplyWire {
    status: String,
    response_json: String,
}

#[derive(Serialize, Deserialize)]
struct PushWire {
    event: String,
    payload_json: String,
}

#[derive(Serialize, Deserialize)]
struct DeliveryWire {
    socket: SocketWire,
    topic: String,
    reply: Option<ReplyWire>,
    pushes: Vec<PushWire>,
}

impl Delivery {
    /// Encodes this delivery for the log.
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let wire = DeliveryWire {
            socket: SocketWire::from(&self.socket),
            topic: self.topic.clone(),
            reply: self.reply.as_ref().map(|r| ReplyWire {
                status: r.status.as_str().to_owned(),
                response_json: json_text(&r.response),
            }),
            pushes: self
                .pushes
                .iter()
                .map(|p| PushWire {
                    event: p.event.clone(),
                    payload_json: json_text(&p.payload),
                })
                .collect(),
        };
        avro::encode("Delivery", &wire).map_err(|e| RecordError::encode("delivery", e))
    }

    /// Decodes a delivery read from the log.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let wire: DeliveryWire =
            avro::decode("Delivery", bytes).map_err(|e| RecordError::decode("delivery", e))?;
        let reply = match wire.reply {
            Some(r) => Some(ReplyBody {
                status: ReplyStatus::parse(&r.status)?,
                response: parse_json("delivery", &r.response_json)?,
            }),
            None => None,
        };
        let pushes = wire
            .pushes
            .into_iter()
            .map(|p| {
                Ok(Push {
                    event: p.event,
                    payload: parse_json("delivery", &p.payload_json)?,
                })
            })
            .collect::<Result<_, RecordError>>()?;
        Ok(Self {
            socket: wire.socket.into(),
            topic: wire.topic,
            reply,
            pushes,
        })
    }
}

/// A connector saying it is alive, appended to [`HEARTBEATS`](crate::names::HEARTBEATS)
/// several times per lease. Processors drop the presences of a connector whose lease lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The connector (the `connector_id` of its sockets' [`SocketRef`]s).
    pub connector_id: String,
    /// How long after this heartbeat the connector counts as gone, in milliseconds.
    pub lease_ms: i64,
    /// When it was sent (RFC 3339, UTC).
    pub sent_at: String,
    /// Open sockets on the connector when it was sent (0 in heartbeats from before the
    /// field).
    #[serde(default)]
    pub sockets: i64,
}

impl Heartbeat {
    /// Encodes this heartbeat for the log.
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        avro::encode("Heartbeat", self).map_err(|e| RecordError::encode("heartbeat", e))
    }

    /// Decodes a heartbeat read from the log.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        avro::decode("Heartbeat", bytes).map_err(|e| RecordError::decode("heartbeat", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip() {
        let c = Command {
            id: "x".into(),
            topic: "t".into(),
            socket: SocketRef {
                connector_id: "c".into(),
                socket_id: 3,
                join_id: Some("1".into()),
                msg_ref: None,
            },
            claims: Claims::default(),
            kind: CommandKind::Event {
                event: "e".into(),
                payload: json!({"amount": 10.50}),
            },
            received_at: "2026-01-01T00:00:00Z".into(),
        };
        let back = Command::decode(&c.encode().expect("encodes")).expect("decodes");
        assert_eq!(back, c);
        let derived = Command {
            kind: CommandKind::Derived {
                event: "import_row".into(),
                payload: json!({"row": 3}),
            },
            ..c
        };
        let back = Command::decode(&derived.encode().expect("encodes")).expect("decodes");
        assert_eq!(back, derived);
        assert!(Command::decode(b"{").is_err());
    }
}
