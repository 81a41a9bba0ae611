//! Broadcasts: events for every subscriber of a channel topic on every connector, and the
//! per-socket shapes the connector applies at fan-out.
//!
//! A [`Broadcast`] (appended to [`BROADCASTS`](crate::names::BROADCASTS), keyed by its topic)
//! carries one payload and a list of [`Transform`]s, each with an
//! [`Audience`]. For a given socket each transform applies or not; the set that applies (its
//! mask, [`Broadcast::mask_for`]) decides what the socket sees, so the connector encodes a
//! broadcast once per mask that occurs among its subscribers, never once per socket:
//! - [`Transform::Redact`] hides a field from everybody outside its audience (a donor's name,
//!   shown to the campaign's organizers and admins only);
//! - [`Transform::Reveal`] adds a field for its audience only (a waqf's full record for its
//!   trustees, each beneficiary's own allocation), so one broadcast on one topic can show a
//!   minimal view to the public and more to the users it concerns.
//!
//! The rule that decides is carried on the broadcast: the connector only matches the socket's
//! claims against audiences, and stays domain-free.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::avro::{self, AvroError};
use crate::envelope::{json_text, parse_json, Claims, RecordError};

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
    /// Its place in its topic's stream (also in the payload as `position`), when the topic
    /// has one: connectors deliver a topic's broadcasts in this order, once each.
    #[serde(default)]
    pub position: Option<StreamPosition>,
}

/// A broadcast's place in its channel topic's stream: `offset` grows by exactly one per
/// broadcast on the topic; `epoch` changes only when the topic's history was lost (then
/// offsets start again). Clients send back the last one they saw to recover what they missed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The stream's epoch.
    pub epoch: String,
    /// The offset in it.
    pub offset: u64,
}

impl StreamPosition {
    /// The position as clients see it: `{"epoch": "...", "offset": n}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "epoch": self.epoch, "offset": self.offset })
    }

    /// The position a client sent (`{"epoch": "...", "offset": n}`), if well formed.
    pub fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            epoch: value.get("epoch")?.as_str()?.to_owned(),
            offset: value.get("offset")?.as_u64()?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct BroadcastWire {
    id: String,
    topic: String,
    event: String,
    payload_json: String,
    transforms_json: String,
    #[serde(default)]
    position_epoch: Option<String>,
    #[serde(default)]
    position_offset: Option<i64>,
}

impl Broadcast {
    /// Encodes this broadcast for the log.
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let transforms = serde_json::to_string(&self.transforms)
            .map_err(|e| RecordError::encode("broadcast", AvroError::Avro(e.to_string())))?;
        let wire = BroadcastWire {
            id: self.id.clone(),
            topic: self.topic.clone(),
            event: self.event.clone(),
            payload_json: json_text(&self.payload),
            transforms_json: transforms,
            position_epoch: self.position.as_ref().map(|p| p.epoch.clone()),
            position_offset: self
                .position
                .as_ref()
                .map(|p| i64::try_from(p.offset).unwrap_or(i64::MAX)),
        };
        avro::encode("Broadcast", &wire).map_err(|e| RecordError::encode("broadcast", e))
    }

    /// Decodes a broadcast read from the log.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let wire: BroadcastWire =
            avro::decode("Broadcast", bytes).map_err(|e| RecordError::decode("broadcast", e))?;
        Ok(Self {
            id: wire.id,
            topic: wire.topic,
            event: wire.event,
            payload: parse_json("broadcast", &wire.payload_json)?,
            transforms: serde_json::from_str(&wire.transforms_json)
                .map_err(|e| RecordError::decode("broadcast", e))?,
            position: match (wire.position_epoch, wire.position_offset) {
                (Some(epoch), Some(offset)) => Some(StreamPosition {
                    epoch,
                    offset: offset.unsigned_abs(),
                }),
                _ => None,
            },
        })
    }
}

/// How many transforms of one broadcast a mask tells apart. Transforms past these apply the
/// same way to every socket and fail closed: a redaction hides its field from everybody, a
/// reveal shows its field to nobody. Processors keep their broadcasts within this.
pub const MASKED_TRANSFORMS: usize = 64;

/// Who a [`Transform`] singles out: users by id, and holders of roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// Users who belong to it.
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// Roles whose holders belong to it.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Audience {
    /// The audience of exactly these users.
    pub fn users(user_ids: impl IntoIterator<Item = String>) -> Self {
        Self {
            user_ids: user_ids.into_iter().collect(),
            roles: Vec::new(),
        }
    }

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
    /// Set the field at `path` to `value` for the sockets in `visible_to` only; everybody
    /// else receives the payload without it. (An empty path replaces the whole payload.)
    Reveal {
        /// Object keys leading to the field; every key but the last must name an object of
        /// the payload (the last is inserted), e.g. `["benefit_amount"]`.
        path: Vec<String>,
        /// What the audience sees there.
        value: Value,
        /// Who sees it.
        visible_to: Audience,
    },
}

/// The value at `path` inside `payload`, if every key leads somewhere.
fn lookup_mut<'a>(payload: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut target = payload;
    for key in path {
        target = target.get_mut(key)?;
    }
    Some(target)
}

impl Transform {
    /// Whether the transform changes the payload for a socket with `claims`.
    pub fn applies_to(&self, claims: &Claims) -> bool {
        match self {
            Transform::Redact { visible_to, .. } => !visible_to.admits(claims),
            Transform::Reveal { visible_to, .. } => visible_to.admits(claims),
        }
    }

    /// Whether the transform applies when the mask has no room for it (past
    /// [`MASKED_TRANSFORMS`]): the closed side, so nobody sees what only some may.
    fn applies_unmasked(&self) -> bool {
        matches!(self, Transform::Redact { .. })
    }

    /// Applies the transform to `payload` unconditionally.
    pub fn apply(&self, payload: &mut Value) {
        match self {
            Transform::Redact {
                path, replacement, ..
            } => {
                if let Some(target) = lookup_mut(payload, path) {
                    *target = replacement.clone();
                }
            }
            Transform::Reveal { path, value, .. } => match path.split_last() {
                None => *payload = value.clone(),
                Some((last, parents)) => {
                    if let Some(Value::Object(fields)) = lookup_mut(payload, parents) {
                        fields.insert(last.clone(), value.clone());
                    }
                }
            },
        }
    }
}

impl Broadcast {
    /// Which transforms apply to a socket with `claims`, as a bit set (bit i = transform i,
    /// for the first [`MASKED_TRANSFORMS`]). Sockets with the same mask see the same payload,
    /// so it is encoded once per mask.
    pub fn mask_for(&self, claims: &Claims) -> u64 {
        self.transforms
            .iter()
            .take(MASKED_TRANSFORMS)
            .enumerate()
            .filter(|(_, t)| t.applies_to(claims))
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// The payload with the transforms in `mask` applied (and those past the mask's room
    /// applied the same way for everybody).
    pub fn payload_with(&self, mask: u64) -> Value {
        let mut payload = self.payload.clone();
        for (i, transform) in self.transforms.iter().enumerate() {
            let applies = if i < MASKED_TRANSFORMS {
                mask & (1 << i) != 0
            } else {
                transform.applies_unmasked()
            };
            if applies {
                transform.apply(&mut payload);
            }
        }
        payload
    }

    /// The payload as a socket with `claims` may see it, or `None` when no transform changes it.
    pub fn payload_for(&self, claims: &Claims) -> Option<Value> {
        let mask = self.mask_for(claims);
        let unmasked = self
            .transforms
            .iter()
            .skip(MASKED_TRANSFORMS)
            .any(Transform::applies_unmasked);
        (mask != 0 || unmasked).then(|| self.payload_with(mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str, roles: &[&str]) -> Claims {
        Claims {
            user_id: Some(id.into()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            name: None,
        }
    }

    fn broadcast(payload: Value, transforms: Vec<Transform>) -> Broadcast {
        Broadcast {
            id: "c1:0".into(),
            topic: "t".into(),
            event: "e".into(),
            payload,
            transforms,
            position: Some(StreamPosition {
                epoch: "e1".into(),
                offset: 7,
            }),
        }
    }

    #[test]
    fn redaction_depends_on_claims() {
        let b = broadcast(
            json!({"donation": {"donor_name": "Aisha", "amount": "10.00"}}),
            vec![Transform::Redact {
                path: vec!["donation".into(), "donor_name".into()],
                replacement: json!("Anonymous"),
                visible_to: Audience {
                    user_ids: vec!["1".into()],
                    roles: vec!["admin".into()],
                },
            }],
        );
        assert_eq!(b.payload_for(&user("1", &[])), None);
        assert_eq!(b.payload_for(&user("9", &["admin"])), None);
        let viewer = b.payload_for(&Claims::default()).expect("redacted");
        assert_eq!(viewer["donation"]["donor_name"], "Anonymous");
        assert_eq!(viewer["donation"]["amount"], "10.00");
    }

    #[test]
    fn reveals_show_each_audience_its_own_fields_only() {
        let b = broadcast(
            json!({"id": "w1"}),
            vec![
                Transform::Reveal {
                    path: vec!["waqf".into()],
                    value: json!({"id": "w1", "secret": true}),
                    visible_to: Audience::users(["t".to_owned()]),
                },
                Transform::Reveal {
                    path: vec!["benefit_amount".into()],
                    value: json!("10.00"),
                    visible_to: Audience::users(["b".to_owned()]),
                },
                Transform::Reveal {
                    path: vec!["benefit_amount".into()],
                    value: json!("20.00"),
                    visible_to: Audience::users(["c".to_owned()]),
                },
            ],
        );
        assert_eq!(b.payload_for(&Claims::default()), None);
        assert_eq!(b.payload_for(&user("x", &["admin"])), None);
        assert_eq!(
            b.payload_for(&user("t", &[])),
            Some(json!({"id": "w1", "waqf": {"id": "w1", "secret": true}}))
        );
        assert_eq!(
            b.payload_for(&user("b", &[])),
            Some(json!({"id": "w1", "benefit_amount": "10.00"}))
        );
        assert_eq!(
            b.payload_for(&user("c", &[])),
            Some(json!({"id": "w1", "benefit_amount": "20.00"}))
        );
        let masks: std::collections::BTreeSet<u64> = ["t", "b", "c", "x"]
            .iter()
            .map(|id| b.mask_for(&user(id, &[])))
            .collect();
        assert_eq!(masks.len(), 4, "one variant per audience");
    }

    #[test]
    fn broadcasts_round_trip_with_their_transforms() {
        let b = broadcast(
            json!({"id": "w1", "amount": 10.50}),
            vec![
                Transform::Reveal {
                    path: vec!["benefit_amount".into()],
                    value: json!("10.00"),
                    visible_to: Audience::users(["b".to_owned()]),
                },
                Transform::Redact {
                    path: vec!["id".into()],
                    replacement: json!(null),
                    visible_to: Audience::default(),
                },
            ],
        );
        assert_eq!(
            Broadcast::decode(&b.encode().expect("encodes")).expect("decodes"),
            b
        );
    }

    #[test]
    fn a_reveal_needs_its_parent_and_an_empty_path_replaces_the_payload() {
        let mut payload = json!({"a": 1});
        Transform::Reveal {
            path: vec!["missing".into(), "x".into()],
            value: json!(2),
            visible_to: Audience::default(),
        }
        .apply(&mut payload);
        assert_eq!(payload, json!({"a": 1}));
        Transform::Reveal {
            path: vec![],
            value: json!({"b": 2}),
            visible_to: Audience::default(),
        }
        .apply(&mut payload);
        assert_eq!(payload, json!({"b": 2}));
    }

    #[test]
    fn transforms_past_the_mask_fail_closed() {
        let everyone = Audience::users(["u".to_owned()]);
        let mut transforms: Vec<Transform> = (0..MASKED_TRANSFORMS)
            .map(|i| Transform::Reveal {
                path: vec![format!("f{i}")],
                value: json!(i),
                visible_to: Audience::users([format!("other{i}")]),
            })
            .collect();
        transforms.push(Transform::Reveal {
            path: vec!["late_reveal".into()],
            value: json!(true),
            visible_to: everyone.clone(),
        });
        transforms.push(Transform::Redact {
            path: vec!["name".into()],
            replacement: json!("Anonymous"),
            visible_to: everyone,
        });
        let b = broadcast(json!({"name": "Aisha"}), transforms);
        assert_eq!(b.mask_for(&user("u", &[])), 0);
        assert_eq!(
            b.payload_for(&user("u", &[])),
            Some(json!({"name": "Anonymous"})),
            "even its audience: the mask cannot tell it apart"
        );
    }
}
