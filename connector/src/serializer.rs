//! Phoenix message framing: the V1 and V2 JSON serializers and V2 binary frames
//! (PROTOCOL.md §3). Plain functions over values: no sockets, no runtime.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use topics::ReplyStatus;

/// The serializer a socket negotiated with `vsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Vsn {
    /// `1.0.x`: JSON objects, no `join_ref` on the way out, no binary.
    V1,
    /// `2.0.x`: JSON arrays `[join_ref, ref, topic, event, payload]` and binary frames.
    V2,
}

impl Vsn {
    /// Negotiates from the `vsn` connect param: absent means 1.0.0, `1.0.x` is V1, `2.0.x` is
    /// V2, anything else is refused.
    pub(crate) fn negotiate(vsn: Option<&str>) -> Option<Vsn> {
        let vsn = vsn.unwrap_or("1.0.0");
        let mut parts = vsn.split('.');
        let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || patch.parse::<u64>().is_err() || minor != "0" {
            return None;
        }
        match major {
            "1" => Some(Vsn::V1),
            "2" => Some(Vsn::V2),
            _ => None,
        }
    }
}

/// A message payload: JSON, or raw bytes from a binary frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    /// A JSON value.
    Json(Value),
    /// Bytes from a V2 binary push.
    Binary(Bytes),
}

/// One decoded client message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    /// The join this message belongs to.
    pub join_ref: Option<String>,
    /// The message ref, echoed in the reply.
    pub msg_ref: Option<String>,
    /// The channel topic.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// A client frame that is not a valid message. Carries the topic and ref when they could be
/// read, so the client can still be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct DecodeError {
    /// Short machine-readable reason, also the metric label.
    pub reason: &'static str,
    /// The topic, if it could be read.
    pub topic: Option<String>,
    /// The ref, if it could be read.
    pub msg_ref: Option<String>,
}

impl DecodeError {
    fn new(reason: &'static str) -> Self {
        Self {
            reason,
            topic: None,
            msg_ref: None,
        }
    }
}

/// An encoded frame, ready for the transport. (Server-to-client binary frames, kinds 0–2 of
/// PROTOCOL.md §3.3, are not produced yet: no channel sends raw bytes.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A text frame.
    Text(String),
}

/// The text of an encoded frame, shared as is by every socket it is sent to.
///
/// UTF-8 by construction: it is only built from a `String` or a `&'static str` (the
/// serializer's output), never from bytes read off the wire, so the transport can send it as
/// a text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(Bytes);

impl Text {
    /// Text from a string constant (tests build broadcasts with it).
    #[cfg(test)]
    pub(crate) const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// The text as a `&str`. Checks the bytes again (they were a string), so it is for tests,
    /// not for every frame.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The bytes (UTF-8), for a transport that writes them into a larger body.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for the transport.
    pub(crate) fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

/// Reads a ref field: a string, a number (kept as its text) or null.
fn read_ref(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(()),
    }
}

/// Decodes a text frame.
pub(crate) fn decode_text(vsn: Vsn, text: &str) -> Result<Message, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|_| DecodeError::new("invalid JSON"))?;
    match vsn {
        Vsn::V2 => {
            let Value::Array(mut fields) = value else {
                return Err(DecodeError::new("expected a JSON array of 5 elements"));
            };
            if fields.len() < 5 {
                let mut error = DecodeError::new("expected a JSON array of 5 elements");
                error.msg_ref = read_ref(fields.get(1)).ok().flatten();
                error.topic = fields.get(2).and_then(Value::as_str).map(str::to_owned);
                return Err(error);
            }
            fields.truncate(5);
            let payload = fields.pop().unwrap_or(Value::Null);
            from_parts(&fields[0], &fields[1], &fields[2], &fields[3], payload)
        }
        Vsn::V1 => {
            let Value::Object(mut map) = value else {
                return Err(DecodeError::new("expected a JSON object"));
            };
            let missing = ["topic", "event", "payload", "ref"]
                .iter()
                .any(|k| !map.contains_key(*k));
            let payload = map.remove("payload").unwrap_or(Value::Null);
            let null = Value::Null;
            let result = from_parts(
                map.get("join_ref").unwrap_or(&null),
                map.get("ref").unwrap_or(&null),
                map.get("topic").unwrap_or(&null),
                map.get("event").unwrap_or(&null),
                payload,
            );
            if missing {
                let mut error = DecodeError::new("missing topic, event, payload or ref");
                error.msg_ref = read_ref(map.get("ref")).ok().flatten();
                error.topic = map.get("topic").and_then(Value::as_str).map(str::to_owned);
                return Err(error);
            }
            result
        }
    }
}

fn from_parts(
    join_ref: &Value,
    msg_ref: &Value,
    topic: &Value,
    event: &Value,
    payload: Value,
) -> Result<Message, DecodeError> {
    let msg_ref_read = read_ref(Some(msg_ref));
    let topic_read = topic.as_str().map(str::to_owned);
    let fail = |reason| DecodeError {
        reason,
        topic: topic_read.clone(),
        msg_ref: msg_ref_read.clone().ok().flatten(),
    };
    let join_ref = read_ref(Some(join_ref)).map_err(|()| fail("join_ref must be a string"))?;
    let msg_ref = msg_ref_read
        .clone()
        .map_err(|()| fail("ref must be a string"))?;
    let topic = topic_read
        .clone()
        .ok_or_else(|| fail("topic must be a string"))?;
    let event = event
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| fail("event must be a string"))?;
    Ok(Message {
        join_ref,
        msg_ref,
        topic,
        event,
        payload: Payload::Json(payload),
    })
}

/// Decodes a V2 binary frame (kind 0, a client push).
pub(crate) fn decode_binary(bytes: &Bytes) -> Result<Message, DecodeError> {
    let header = bytes
        .get(..5)
        .ok_or_else(|| DecodeError::new("binary frame too short"))?;
    if header[0] != 0 {
        return Err(DecodeError::new("binary frame of an unknown kind"));
    }
    let lens = [header[1], header[2], header[3], header[4]].map(usize::from);
    let mut at = 5;
    let mut fields = Vec::with_capacity(4);
    for len in lens {
        let raw = bytes
            .get(at..at + len)
            .ok_or_else(|| DecodeError::new("binary frame too short"))?;
        let text =
            std::str::from_utf8(raw).map_err(|_| DecodeError::new("binary header is not UTF-8"))?;
        fields.push(text.to_owned());
        at += len;
    }
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let mut fields = fields.into_iter();
    Ok(Message {
        join_ref: fields.next().and_then(non_empty),
        msg_ref: fields.next().and_then(non_empty),
        topic: fields.next().unwrap_or_default(),
        event: fields.next().unwrap_or_default(),
        payload: Payload::Binary(bytes.slice(at..)),
    })
}

fn text(value: &Value) -> Frame {
    Frame::Text(value.to_string())
}

/// Encodes a reply (`phx_reply`).
pub(crate) fn encode_reply(
    vsn: Vsn,
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    status: ReplyStatus,
    response: &Value,
) -> Frame {
    let payload = json!({ "status": status.as_str(), "response": response });
    match vsn {
        Vsn::V2 => text(&json!([join_ref, msg_ref, topic, "phx_reply", payload])),
        Vsn::V1 => text(&json!({
            "topic": topic, "event": "phx_reply", "payload": payload, "ref": msg_ref,
        })),
    }
}

/// Encodes a push from a channel (`join_ref` set) or a broadcast (`join_ref` None).
pub(crate) fn encode_push(
    vsn: Vsn,
    join_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: &Value,
) -> Frame {
    // Serialized in place: a payload may be a large presence list, not worth a deep copy.
    let encoded = match vsn {
        Vsn::V2 => serde_json::to_string(&(join_ref, (), topic, event, payload)),
        Vsn::V1 => serde_json::to_string(&V1Push {
            topic,
            event,
            payload,
            r#ref: (),
        }),
    };
    Frame::Text(encoded.unwrap_or_default())
}

/// A V1 push, serialized without copying its payload.
#[derive(serde::Serialize)]
struct V1Push<'a> {
    topic: &'a str,
    event: &'a str,
    payload: &'a Value,
    r#ref: (),
}

/// Encodes a push whose payload is already JSON text (a presence list encoded once and sent
/// to many joining sockets).
pub(crate) fn encode_push_raw(
    vsn: Vsn,
    join_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload_json: &str,
) -> Frame {
    let string = |s: &str| Value::String(s.to_owned()).to_string();
    Frame::Text(match vsn {
        Vsn::V2 => format!(
            "[{},null,{},{},{payload_json}]",
            join_ref.map_or_else(|| "null".to_owned(), string),
            string(topic),
            string(event),
        ),
        Vsn::V1 => format!(
            r#"{{"topic":{},"event":{},"payload":{payload_json},"ref":null}}"#,
            string(topic),
            string(event),
        ),
    })
}

/// Encodes `phx_close` for a join (the ref is the join_ref, PROTOCOL.md §3.1).
pub(crate) fn encode_close(vsn: Vsn, join_ref: Option<&str>, topic: &str) -> Frame {
    let empty = Value::Object(Map::new());
    match vsn {
        Vsn::V2 => text(&json!([join_ref, join_ref, topic, "phx_close", empty])),
        Vsn::V1 => text(&json!({
            "topic": topic, "event": "phx_close", "payload": empty, "ref": join_ref,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_pushes_encode_like_value_pushes() {
        let payload = json!({"u \"1\"": {"metas": [{"phx_ref": "a"}]}});
        for vsn in [Vsn::V1, Vsn::V2] {
            for join_ref in [None, Some("j\"1")] {
                let Frame::Text(value) =
                    encode_push(vsn, join_ref, "t:1", "presence_state", &payload);
                let Frame::Text(raw) =
                    encode_push_raw(vsn, join_ref, "t:1", "presence_state", &payload.to_string());
                let parsed = |s: &str| serde_json::from_str::<Value>(s).expect("json");
                assert_eq!(parsed(&value), parsed(&raw), "{vsn:?}");
            }
        }
    }

    #[test]
    fn negotiates_versions() {
        assert_eq!(Vsn::negotiate(None), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("1.0.0")), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::negotiate(Some("2.0.7")), Some(Vsn::V2));
        assert_eq!(Vsn::negotiate(Some("2.1.0")), None);
        assert_eq!(Vsn::negotiate(Some("123.1.1")), None);
        assert_eq!(Vsn::negotiate(Some("two")), None);
    }

    #[test]
    fn v2_push_and_reply_bytes() {
        let push = encode_push(Vsn::V2, None, "t", "e", &json!({"m": 1}));
        assert_eq!(push, Frame::Text(r#"[null,null,"t","e",{"m":1}]"#.into()));
        let reply = encode_reply(
            Vsn::V2,
            Some("11"),
            Some("1"),
            "t",
            ReplyStatus::Ok,
            &json!({}),
        );
        let Frame::Text(reply) = reply;
        let value: Value = serde_json::from_str(&reply).expect("json");
        assert_eq!(
            value,
            json!(["11", "1", "t", "phx_reply", {"status": "ok", "response": {}}])
        );
        assert_eq!(
            encode_close(Vsn::V2, Some("11"), "t"),
            Frame::Text(r#"["11","11","t","phx_close",{}]"#.into())
        );
    }

    #[test]
    fn v2_decode() {
        let m = decode_text(Vsn::V2, r#"[null,null,"t","e",{"m":1}]"#).expect("decodes");
        assert_eq!(m.topic, "t");
        assert_eq!(m.event, "e");
        assert_eq!(m.payload, Payload::Json(json!({"m": 1})));
        assert_eq!((m.join_ref, m.msg_ref), (None, None));
        // Extra trailing elements are ignored.
        assert!(decode_text(Vsn::V2, r#"["1","2","t","e",{},"x"]"#).is_ok());
    }

    #[test]
    fn malformed_frames_keep_what_can_be_read() {
        assert_eq!(
            decode_text(Vsn::V2, "{not json").expect_err("bad").reason,
            "invalid JSON"
        );
        let short = decode_text(Vsn::V2, r#"[null,"7","room"]"#).expect_err("short");
        assert_eq!(
            (short.msg_ref.as_deref(), short.topic.as_deref()),
            (Some("7"), Some("room"))
        );
        let bad_event = decode_text(Vsn::V2, r#"[null,"8","room",5,{}]"#).expect_err("bad");
        assert_eq!(bad_event.reason, "event must be a string");
        assert_eq!(bad_event.msg_ref.as_deref(), Some("8"));
        assert!(decode_text(Vsn::V2, r#"{"topic":"t"}"#).is_err());
    }

    #[test]
    fn v1_format() {
        let push = encode_push(Vsn::V1, Some("ignored"), "t", "e", &json!({"m": 1}));
        let Frame::Text(push) = push;
        let value: Value = serde_json::from_str(&push).expect("json");
        assert_eq!(
            value,
            json!({"topic": "t", "event": "e", "payload": {"m": 1}, "ref": null})
        );
        let m = decode_text(
            Vsn::V1,
            r#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#,
        )
        .expect("decodes");
        assert_eq!((m.join_ref, m.msg_ref.as_deref()), (None, Some("1")));
        let err = decode_text(Vsn::V1, r#"["1","2","t","e",{}]"#).expect_err("array");
        assert_eq!(err.reason, "expected a JSON object");
        let missing =
            decode_text(Vsn::V1, r#"{"topic":"t","event":"e","ref":"3"}"#).expect_err("missing");
        assert_eq!(missing.msg_ref.as_deref(), Some("3"));
    }

    #[test]
    fn binary_frames() {
        let mut frame = vec![0u8, 2, 3, 5, 5];
        frame.extend_from_slice(b"12123topicevent");
        frame.extend_from_slice(&[101, 102, 103]);
        let m = decode_binary(&Bytes::from(frame)).expect("decodes");
        assert_eq!(m.join_ref.as_deref(), Some("12"));
        assert_eq!(m.msg_ref.as_deref(), Some("123"));
        assert_eq!((m.topic.as_str(), m.event.as_str()), ("topic", "event"));
        assert_eq!(m.payload, Payload::Binary(Bytes::from_static(b"efg")));
        assert!(decode_binary(&Bytes::from_static(&[0, 9, 0, 0, 0, 1])).is_err());
        assert!(decode_binary(&Bytes::from_static(&[7, 0, 0, 0, 0])).is_err());
    }
}
