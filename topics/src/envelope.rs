//! The records carried on the log.
//!
//! - [`Command`]: a client action that needs a decision, appended by a connector to
//!   [`COMMANDS`](crate::names::COMMANDS), keyed by channel topic.
//! - [`Delivery`]: what goes back to exactly one socket (a reply and the pushes that follow it),
//!   appended by a processor to [`DELIVERIES`](crate::names::DELIVERIES), keyed by connector id.
//! - [`Broadcast`]: an event for every subscriber of a channel topic, appended to
//!   [`BROADCASTS`](crate::names::BROADCASTS), with per-socket [`Transform`]s the connector
//!   applies at fan-out time.
//!
//! Records are JSON on the embedded log.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A record could not be decoded from its bytes.
#[derive(Debug, thiserror::Error)]
#[error("the {kind} record could not be decoded: {source}")]
pub struct DecodeError {
    kind: &'static str,
    #[source]
    source: serde_json::Error,
}

macro_rules! json_record {
    ($ty:ty, $kind:literal) => {
        impl $ty {
            /// Encodes this record for the log.
            pub fn encode(&self) -> Bytes {
                // Serializing these plain structs cannot fail: every map key is a string.
                Bytes::from(serde_json::to_vec(self).unwrap_or_default())
            }

            /// Decodes a record read from the log.
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                serde_json::from_slice(bytes).map_err(|source| DecodeError {
                    kind: $kind,
                    source,
                })
            }
        }
    };
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
    /// The join the command belongs to (`join_ref` on the wire).
    pub join_ref: Option<String>,
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
}

json_record!(Command, "command");

/// The reply part of a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyBody {
    /// `ok`, `error`, or any other status string.
    pub status: String,
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

json_record!(Delivery, "delivery");

/// Who may see a field that a [`Transform`] hides from everybody else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// Users who may see it.
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// Roles whose holders may see it.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Audience {
    /// Whether a socket with these claims belongs to the audience.
    pub fn admits(&self, claims: &Claims) -> bool {
        claims
            .user_id
            .as_ref()
            .is_some_and(|id| self.user_ids.contains(id))
            || claims.roles.iter().any(|role| self.roles.contains(role))
    }
}

/// A per-socket change to a broadcast, applied by the connector at fan-out time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transform {
    /// Replace the value at `path` with `replacement` for every socket outside `visible_to`.
    Redact {
        /// Object keys leading to the field, e.g. `["donation", "donor_name"]`.
        path: Vec<String>,
        /// What everybody else sees instead.
        replacement: Value,
        /// Who sees the real value.
        visible_to: Audience,
    },
}

impl Transform {
    /// Whether the transform changes the payload for a socket with `claims`.
    pub fn applies_to(&self, claims: &Claims) -> bool {
        match self {
            Transform::Redact { visible_to, .. } => !visible_to.admits(claims),
        }
    }

    /// Applies the transform to `payload` unconditionally.
    pub fn apply(&self, payload: &mut Value) {
        match self {
            Transform::Redact {
                path, replacement, ..
            } => {
                let mut target = payload;
                for key in path {
                    match target.get_mut(key) {
                        Some(next) => target = next,
                        None => return,
                    }
                }
                *target = replacement.clone();
            }
        }
    }
}

/// An event for every subscriber of `topic` on every connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Unique id, derived from the command that caused it so a re-emitted broadcast can be
    /// recognised and delivered once.
    pub id: String,
    /// The channel topic.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// The payload (a JSON object).
    pub payload: Value,
    /// Per-socket transforms, applied in order.
    #[serde(default)]
    pub transforms: Vec<Transform>,
}

json_record!(Broadcast, "broadcast");

impl Broadcast {
    /// Which transforms apply to a socket with `claims`, as a bit set (bit i = transform i).
    /// Sockets with the same mask see the same payload, so it is encoded once per mask.
    pub fn mask_for(&self, claims: &Claims) -> u64 {
        self.transforms
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, t)| t.applies_to(claims))
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// The payload with the transforms in `mask` applied.
    pub fn payload_with(&self, mask: u64) -> Value {
        let mut payload = self.payload.clone();
        for (i, transform) in self.transforms.iter().take(64).enumerate() {
            if mask & (1 << i) != 0 {
                transform.apply(&mut payload);
            }
        }
        payload
    }

    /// The payload as a socket with `claims` may see it, or `None` when no transform changes it.
    pub fn payload_for(&self, claims: &Claims) -> Option<Value> {
        let mask = self.mask_for(claims);
        (mask != 0).then(|| self.payload_with(mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redacting() -> Broadcast {
        Broadcast {
            id: "c1:0".into(),
            topic: "donations:campaign:1".into(),
            event: "donation_created".into(),
            payload: json!({"donation": {"donor_name": "Aisha", "amount": "10.00"}}),
            transforms: vec![Transform::Redact {
                path: vec!["donation".into(), "donor_name".into()],
                replacement: json!("Anonymous"),
                visible_to: Audience {
                    user_ids: vec!["1".into()],
                    roles: vec!["admin".into()],
                },
            }],
        }
    }

    #[test]
    fn redaction_depends_on_claims() {
        let b = redacting();
        let organizer = Claims {
            user_id: Some("1".into()),
            ..Claims::default()
        };
        let admin = Claims {
            user_id: Some("9".into()),
            roles: vec!["admin".into()],
            name: None,
        };
        assert_eq!(b.payload_for(&organizer), None);
        assert_eq!(b.payload_for(&admin), None);
        let viewer = b.payload_for(&Claims::default()).expect("redacted");
        assert_eq!(viewer["donation"]["donor_name"], "Anonymous");
        assert_eq!(viewer["donation"]["amount"], "10.00");
    }

    #[test]
    fn records_round_trip() {
        let b = redacting();
        assert_eq!(Broadcast::decode(&b.encode()).expect("decodes"), b);
        let c = Command {
            id: "x".into(),
            topic: "t".into(),
            socket: SocketRef {
                connector_id: "c".into(),
                socket_id: 3,
                join_ref: Some("1".into()),
                msg_ref: None,
            },
            claims: Claims::default(),
            kind: CommandKind::Event {
                event: "e".into(),
                payload: json!({"amount": 10.50}),
            },
            received_at: "2026-01-01T00:00:00Z".into(),
        };
        let back = Command::decode(&c.encode()).expect("decodes");
        assert_eq!(back, c);
        assert!(Command::decode(b"{").is_err());
    }
}
