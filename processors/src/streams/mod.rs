//! Topic streams: every broadcast on a channel topic gets the next position of the topic's
//! stream, is kept in the topic's history, and a join that names the last position its client
//! saw gets what it missed. Pure: the caller loads the stream and the history and stores what
//! this adds to the decision.
//!
//! - A topic's stream is a document (kind [`KIND`], id the topic): its epoch and last offset.
//!   It is written with the decision's other effects, so a position is given once: a command
//!   processed again answers from its stored outcome, positions included.
//! - Only the processor that owns a topic's command partition gives its positions: a broadcast
//!   a decision makes on another topic (a milestone on the lobby, a waqf on a trustee's topic)
//!   is relayed there as a derived command ([`RELAY`]), positioned when that is decided.
//! - The epoch is the id of the command that started the stream: a stream lost with its store
//!   starts again under another epoch, and clients holding the old one are told so.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Document, HistoryEntry, Write};
use topics::{
    Claims, Command, CommandKind, Push, ReplyStatus, SocketRef, StreamPosition, Transform,
};

use crate::decision::{Decision, NewBroadcast};

/// The document kind of a topic's stream.
pub(crate) const KIND: &str = "stream";

/// The derived command that brings a broadcast to its topic's owner.
pub(crate) const RELAY: &str = topics::routes::RELAY_EVENT;

/// How much history each topic keeps, and for how long a client may be away and recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Newest broadcasts kept per topic.
    pub size: u64,
    /// How old a kept broadcast may be and still be recovered.
    pub age: std::time::Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            size: 1000,
            age: std::time::Duration::from_secs(3600),
        }
    }
}

/// A stream document's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stream {
    epoch: String,
    offset: u64,
}

/// A broadcast as its topic's history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Kept {
    event: String,
    payload: Value,
    #[serde(default)]
    transforms: Vec<Transform>,
}

use topics::routes::has_stream;

/// The stream document a command on `topic` reads.
pub(crate) fn stream_needed(topic: &str) -> Option<(String, String)> {
    has_stream(topic).then(|| (KIND.to_owned(), topic.to_owned()))
}

/// The position a join asks to recover from (`{"since": {"epoch", "offset"}}` in its params).
pub(crate) fn since(command: &Command) -> Option<StreamPosition> {
    match &command.kind {
        CommandKind::Join { params, .. } if has_stream(&command.topic) => {
            params.get("since").and_then(StreamPosition::from_json)
        }
        _ => None,
    }
}

/// A [`RELAY`] command's broadcast.
pub(crate) fn relayed(payload: &Value) -> Decision {
    let Ok(kept) = serde_json::from_value::<Kept>(payload.clone()) else {
        return Decision::default();
    };
    Decision {
        broadcasts: vec![NewBroadcast {
            transforms: kept.transforms,
            ..NewBroadcast::new(String::new(), &kept.event, kept.payload)
        }],
        ..Decision::default()
    }
}

/// What a decision needs from its topic's stream, loaded by the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded<'a> {
    /// The topic's stream document, if it has one yet.
    pub(crate) stream: Option<&'a Document>,
    /// The history after the join's `since`, when it asked to recover.
    pub(crate) history: Option<&'a [HistoryEntry]>,
    /// Entries made before this (RFC 3339) are too old to recover.
    pub(crate) oldest: &'a str,
}

/// Gives `decision`'s broadcasts on `command`'s topic their positions (stored with it, and
/// kept in the history), relays those on other topics to their owners, and answers a join's
/// recovery. `now` stamps the history.
pub(crate) fn assign(
    decision: &mut Decision,
    command: &Command,
    loaded: Loaded<'_>,
    limits: HistoryLimits,
    now: &str,
) {
    let topic = command.topic.as_str();
    let mut relays = Vec::new();
    let mut own = Vec::new();
    for mut broadcast in std::mem::take(&mut decision.broadcasts) {
        if broadcast.topic.is_empty() {
            // A relayed broadcast: its topic is the command's.
            broadcast.topic = topic.to_owned();
        }
        if broadcast.topic == topic || !has_stream(&broadcast.topic) {
            own.push(broadcast);
        } else {
            relays.push(broadcast);
        }
    }
    for (i, broadcast) in relays.into_iter().enumerate() {
        decision.commands.push(relay(command, i, broadcast));
    }
    if !has_stream(topic) {
        decision.broadcasts = own;
        return;
    }
    let mut stream = loaded
        .stream
        .and_then(|d| serde_json::from_value::<Stream>(d.body.clone()).ok())
        .unwrap_or_else(|| Stream {
            epoch: command.id.clone(),
            offset: 0,
        });
    let before = stream.offset;
    // A join that finds no stream starts it, so the position it is told stays valid.
    let starts = loaded.stream.is_none()
        && matches!(command.kind, CommandKind::Join { .. })
        && decision
            .reply
            .as_ref()
            .is_some_and(|r| r.status == ReplyStatus::Ok);
    for broadcast in &mut own {
        if broadcast.topic != topic {
            continue;
        }
        stream.offset += 1;
        let position = StreamPosition {
            epoch: stream.epoch.clone(),
            offset: stream.offset,
        };
        if let Value::Object(payload) = &mut broadcast.payload {
            payload.insert("position".into(), position.to_json());
        }
        let kept = Kept {
            event: broadcast.event.clone(),
            payload: broadcast.payload.clone(),
            transforms: broadcast.transforms.clone(),
        };
        decision.writes.push(Write::AppendHistory {
            entry: HistoryEntry {
                topic: topic.to_owned(),
                offset: stream.offset,
                epoch: stream.epoch.clone(),
                at: now.to_owned(),
                broadcast: serde_json::to_value(&kept).unwrap_or(Value::Null),
            },
            keep: limits.size,
        });
        broadcast.position = Some(position);
    }
    decision.broadcasts = own;
    if stream.offset != before || starts {
        decision.writes.push(Write::PutDocument(Document {
            kind: KIND.to_owned(),
            id: topic.to_owned(),
            owner: String::new(),
            created_at: now.to_owned(),
            body: json!({ "epoch": stream.epoch, "offset": stream.offset }),
        }));
    }
    if matches!(command.kind, CommandKind::Join { .. }) {
        answer_join(decision, command, &stream, before, loaded);
    }
}

/// A broadcast on another topic, as the derived command that brings it to that topic's owner.
fn relay(command: &Command, index: usize, broadcast: NewBroadcast) -> Command {
    let kept = Kept {
        event: broadcast.event,
        payload: broadcast.payload,
        transforms: broadcast.transforms,
    };
    Command {
        id: format!("{}:r{index}", command.id),
        topic: broadcast.topic,
        socket: SocketRef {
            msg_ref: None,
            join_id: None,
            ..command.socket.clone()
        },
        claims: Claims::default(),
        kind: CommandKind::Derived {
            event: RELAY.to_owned(),
            payload: serde_json::to_value(&kept).unwrap_or(Value::Null),
        },
        received_at: command.received_at.clone(),
    }
}

/// A successful join's reply gets the topic's position (before the join's own broadcasts);
/// one that named where its client
/// left off also gets what it missed (from `before`, the stream as the join found it), as
/// pushes after the join's own, shaped for its claims, and says whether that was all of it.
fn answer_join(
    decision: &mut Decision,
    command: &Command,
    stream: &Stream,
    before: u64,
    loaded: Loaded<'_>,
) {
    let Some(reply) = decision
        .reply
        .as_mut()
        .filter(|r| r.status == ReplyStatus::Ok)
    else {
        return;
    };
    // The position as the join found it: what came before is in the state the join answers
    // with (or among the missed broadcasts below); the join's own broadcasts come after it.
    let current = StreamPosition {
        epoch: stream.epoch.clone(),
        offset: before,
    };
    let Value::Object(response) = &mut reply.response else {
        return;
    };
    response.insert("position".into(), current.to_json());
    let Some(since) = since(command) else {
        return;
    };
    let missed = recover(&since, &stream.epoch, before, loaded);
    response.insert("recovered".into(), json!(missed.is_some()));
    for entry in missed.unwrap_or_default() {
        let Ok(kept) = serde_json::from_value::<Kept>(entry.broadcast.clone()) else {
            continue;
        };
        let shaped = topics::Broadcast {
            id: String::new(),
            topic: command.topic.clone(),
            event: kept.event,
            payload: kept.payload,
            transforms: kept.transforms,
            position: None,
        };
        let payload = shaped.payload_with(shaped.mask_for(&command.claims));
        decision.pushes.push(Push {
            event: shaped.event,
            payload,
        });
    }
}

/// Every broadcast after `since` up to `before`, if the history still holds them all (same
/// epoch, none missing, none too old); `None` when it cannot.
fn recover(
    since: &StreamPosition,
    epoch: &str,
    before: u64,
    loaded: Loaded<'_>,
) -> Option<Vec<HistoryEntry>> {
    if since.epoch != epoch || since.offset > before {
        return None;
    }
    let wanted = before - since.offset;
    let entries: Vec<HistoryEntry> = loaded
        .history
        .unwrap_or_default()
        .iter()
        .filter(|e| e.offset <= before)
        .cloned()
        .collect();
    let contiguous = entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.offset == since.offset + 1 + i as u64 && e.epoch == epoch);
    let fresh = entries.iter().all(|e| e.at.as_str() >= loaded.oldest);
    (entries.len() as u64 == wanted && contiguous && fresh).then_some(entries)
}

#[cfg(test)]
mod tests;
