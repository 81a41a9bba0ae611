//! The per-socket channel state machine (PROTOCOL.md §4), sans IO.
//!
//! The session task feeds it decoded client messages and deliveries from processors; it
//! answers with [`Action`]s for the task to carry out: frames to write, commands to append to
//! the log, subscriptions to add or drop. Everything Phoenix clients rely on about join refs,
//! ordering and duplicate joins lives here, where it can be tested without a socket.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};
use topics::presence::STATE_EVENT;
use topics::routes::route;
use topics::{CommandKind, Delivery};

use crate::serializer::{
    encode_close, encode_push, encode_push_raw, encode_reply, DecodeError, Frame, Message, Payload,
    Text, Vsn,
};

/// Most channels one socket may join (Phoenix's `max_channels_per_transport`).
pub const MAX_CHANNELS: usize = 100;
/// Most messages held for a channel whose join is still being decided.
const MAX_QUEUED: usize = 100;
/// Most broadcasts held for a channel whose join is still being decided; more means the
/// socket cannot keep up.
const MAX_HELD: usize = 1024;

/// Something the session task must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write a frame to the socket.
    Send(Frame),
    /// Write an already encoded broadcast frame (shared with other subscribers) as is.
    Forward(Text),
    /// The socket fell too far behind (too many broadcasts held for a join): close it.
    Overflow,
    /// Append a command to the log.
    Command {
        /// The channel topic.
        topic: String,
        /// The session's id for the join the command belongs to.
        join_id: String,
        /// The client's message ref.
        msg_ref: Option<String>,
        /// What is asked.
        kind: CommandKind,
    },
    /// Start sending broadcasts on a topic to this socket. Issued before the join command
    /// is sent, so no broadcast that follows the join's decision can be missed; the session
    /// holds them until the join is answered.
    Subscribe(String),
    /// Stop sending broadcasts on a topic to this socket.
    Unsubscribe(String),
    /// A join was answered, with this status (for metrics).
    JoinAnswered(String),
}

#[derive(Debug)]
enum State {
    /// The join command is on the log; messages wait for its answer.
    Joining {
        /// The join message's ref, for its reply.
        msg_ref: Option<String>,
        /// The wire join_ref of a join this one replaced, closed after this join's reply.
        replaced: Option<Option<String>>,
        /// Messages that arrived before the join was answered.
        queued: Vec<Message>,
        /// Broadcasts that arrived before the join was answered, written after its reply
        /// and pushes (so `presence_state` comes before the diffs that follow it).
        held: Vec<Text>,
    },
    Joined,
}

/// A token bucket: `rate` events per second, bursts of up to `rate`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Takes a token if one is left; `rate` 0 means unlimited.
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Channel {
    /// Identity of this join in commands and deliveries; unique within the session, unlike
    /// wire join_refs, which V1 clients never send.
    join_id: String,
    /// The join_ref written on this channel's frames (V2: the join's `join_ref || ref`).
    join_ref: Option<String>,
    state: State,
    /// Client events allowed on this channel.
    bucket: Bucket,
}

impl Channel {
    /// Whether a message's join_ref is for an older join (PROTOCOL.md §2.2): null always
    /// matches the current join.
    fn is_stale(&self, join_ref: Option<&str>) -> bool {
        join_ref.is_some_and(|jr| self.join_ref.as_deref() != Some(jr))
    }
}

/// The channel state of one socket.
#[derive(Debug)]
pub struct Session {
    vsn: Vsn,
    channels: HashMap<String, Channel>,
    next_join: u64,
    /// Client events per second allowed on one channel (0: unlimited).
    rate_limit: u32,
    /// The time of the message being handled; the IO shell passes it in so the state machine
    /// reads no clock.
    now: Instant,
}

impl Session {
    /// A session speaking `vsn`, allowing `rate_limit` client events per second per channel
    /// (0: unlimited).
    pub fn new(vsn: Vsn, rate_limit: u32) -> Self {
        Self {
            vsn,
            channels: HashMap::new(),
            next_join: 0,
            rate_limit,
            now: Instant::now(),
        }
    }

    /// The serializer this session speaks.
    pub fn vsn(&self) -> Vsn {
        self.vsn
    }

    /// Topics joined, with their wire join_refs.
    pub fn joined(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.channels
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Joined))
            .map(|(t, c)| (t.as_str(), c.join_ref.as_deref()))
    }

    fn reply(
        &self,
        join_ref: Option<&str>,
        msg_ref: Option<&str>,
        topic: &str,
        status: &str,
        response: Value,
    ) -> Action {
        Action::Send(encode_reply(
            self.vsn, join_ref, msg_ref, topic, status, &response,
        ))
    }

    fn unmatched(&self, msg: &Message) -> Action {
        self.reply(
            None,
            msg.msg_ref.as_deref(),
            &msg.topic,
            "error",
            json!({"reason": "unmatched topic"}),
        )
    }

    /// Handles one decoded client message received at `now`.
    pub fn handle(&mut self, msg: Message, now: Instant, out: &mut Vec<Action>) {
        self.now = now;
        match (msg.topic.as_str(), msg.event.as_str()) {
            ("phoenix", "heartbeat") => {
                out.push(self.reply(None, msg.msg_ref.as_deref(), "phoenix", "ok", json!({})));
            }
            (_, "phx_join") => self.join(msg, out),
            (_, "phx_leave") => self.leave(msg, out),
            _ => self.event(msg, out),
        }
    }

    /// Answers a frame that could not be decoded, when it named a topic and ref; otherwise the
    /// frame is dropped (there is nobody to answer) and the socket carries on.
    pub fn handle_decode_error(&self, error: &DecodeError, out: &mut Vec<Action>) {
        if let (Some(topic), Some(msg_ref)) = (&error.topic, &error.msg_ref) {
            out.push(self.reply(
                None,
                Some(msg_ref),
                topic,
                "error",
                json!({"reason": "malformed message", "detail": error.reason}),
            ));
        }
    }

    fn join(&mut self, msg: Message, out: &mut Vec<Action>) {
        if route(&msg.topic).is_none() {
            out.push(self.unmatched(&msg));
            return;
        }
        let wire_join_ref = match self.vsn {
            Vsn::V2 => msg.join_ref.clone().or_else(|| msg.msg_ref.clone()),
            Vsn::V1 => None,
        };
        let replaced = match self.channels.remove(&msg.topic) {
            Some(old) => {
                // Duplicate join: the old channel ends now; its phx_close follows the new
                // join's reply (PROTOCOL.md §4.2). The subscription carries over.
                out.push(Action::Command {
                    topic: msg.topic.clone(),
                    join_id: old.join_id,
                    msg_ref: None,
                    kind: CommandKind::Leave,
                });
                Some(old.join_ref)
            }
            None if self.channels.len() >= MAX_CHANNELS => {
                out.push(self.reply(
                    wire_join_ref.as_deref(),
                    msg.msg_ref.as_deref(),
                    &msg.topic,
                    "error",
                    json!({"reason": "too many channels joined"}),
                ));
                return;
            }
            None => {
                out.push(Action::Subscribe(msg.topic.clone()));
                None
            }
        };
        self.next_join += 1;
        let join_id = self.next_join.to_string();
        let params = match msg.payload {
            Payload::Json(params) => params,
            Payload::Binary(_) => Value::Null,
        };
        out.push(Action::Command {
            topic: msg.topic.clone(),
            join_id: join_id.clone(),
            msg_ref: msg.msg_ref.clone(),
            // The session task sets `presence_known` from its connector's replicas.
            kind: CommandKind::Join {
                params,
                presence_known: false,
            },
        });
        self.channels.insert(
            msg.topic,
            Channel {
                join_id,
                join_ref: wire_join_ref,
                state: State::Joining {
                    msg_ref: msg.msg_ref,
                    replaced,
                    queued: Vec::new(),
                    held: Vec::new(),
                },
                bucket: Bucket::new(self.rate_limit, self.now),
            },
        );
    }

    fn leave(&mut self, msg: Message, out: &mut Vec<Action>) {
        let Some(channel) = self.channels.get(&msg.topic) else {
            out.push(self.reply(
                msg.join_ref.as_deref(),
                msg.msg_ref.as_deref(),
                &msg.topic,
                "ok",
                json!({}),
            ));
            return;
        };
        if channel.is_stale(msg.join_ref.as_deref()) {
            return;
        }
        let Some(channel) = self.channels.remove(&msg.topic) else {
            return;
        };
        out.push(self.reply(
            channel.join_ref.as_deref(),
            msg.msg_ref.as_deref(),
            &msg.topic,
            "ok",
            json!({}),
        ));
        out.push(Action::Send(encode_close(
            self.vsn,
            channel.join_ref.as_deref(),
            &msg.topic,
        )));
        out.push(Action::Unsubscribe(msg.topic.clone()));
        out.push(Action::Command {
            topic: msg.topic,
            join_id: channel.join_id,
            msg_ref: None,
            kind: CommandKind::Leave,
        });
    }

    fn event(&mut self, msg: Message, out: &mut Vec<Action>) {
        let vsn = self.vsn;
        let Some(channel) = self.channels.get_mut(&msg.topic) else {
            out.push(self.unmatched(&msg));
            return;
        };
        if channel.is_stale(msg.join_ref.as_deref()) {
            return;
        }
        match &mut channel.state {
            State::Joining { queued, .. } if queued.len() < MAX_QUEUED => queued.push(msg),
            State::Joining { .. } => {
                let join_ref = channel.join_ref.clone();
                out.push(Action::Send(encode_reply(
                    vsn,
                    join_ref.as_deref(),
                    msg.msg_ref.as_deref(),
                    &msg.topic,
                    "error",
                    &json!({"reason": "too many messages before join"}),
                )));
            }
            State::Joined if !channel.bucket.take(self.rate_limit, self.now) => {
                let join_ref = channel.join_ref.clone();
                out.push(Action::Send(encode_reply(
                    vsn,
                    join_ref.as_deref(),
                    msg.msg_ref.as_deref(),
                    &msg.topic,
                    "error",
                    &json!({"reason": "rate limit exceeded"}),
                )));
            }
            State::Joined => match msg.payload {
                Payload::Json(payload) => out.push(Action::Command {
                    topic: msg.topic,
                    join_id: channel.join_id.clone(),
                    msg_ref: msg.msg_ref,
                    kind: CommandKind::Event {
                        event: msg.event,
                        payload,
                    },
                }),
                Payload::Binary(_) => {
                    let join_ref = channel.join_ref.clone();
                    out.push(Action::Send(encode_reply(
                        vsn,
                        join_ref.as_deref(),
                        msg.msg_ref.as_deref(),
                        &msg.topic,
                        "error",
                        &json!({"reason": "binary payloads are not supported"}),
                    )));
                }
            },
        }
    }

    /// Handles a reply and pushes that a processor sent to this socket. `presence_list` is
    /// the payload, as JSON text, of a `presence_state` push that came without one (the
    /// connector holds the topic's list, see [`crate::presence`]).
    pub fn handle_delivery(
        &mut self,
        delivery: Delivery,
        presence_list: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let topic = delivery.topic;
        let Some(channel) = self.channels.get_mut(&topic) else {
            return;
        };
        if delivery.socket.join_ref.as_deref() != Some(channel.join_id.as_str()) {
            return; // for a join that has since ended
        }
        let join_ref = channel.join_ref.clone();
        let vsn = self.vsn;
        let push_all = |pushes: Vec<topics::Push>, out: &mut Vec<Action>| {
            for push in pushes {
                let jr = join_ref.as_deref();
                let frame = match presence_list {
                    Some(list) if push.event == STATE_EVENT && push.payload.is_null() => {
                        encode_push_raw(vsn, jr, &topic, &push.event, list)
                    }
                    _ => encode_push(vsn, jr, &topic, &push.event, &push.payload),
                };
                out.push(Action::Send(frame));
            }
        };
        match &mut channel.state {
            State::Joined => {
                if let Some(reply) = delivery.reply {
                    out.push(Action::Send(encode_reply(
                        vsn,
                        join_ref.as_deref(),
                        delivery.socket.msg_ref.as_deref(),
                        &topic,
                        &reply.status,
                        &reply.response,
                    )));
                }
                push_all(delivery.pushes, out);
            }
            State::Joining {
                msg_ref,
                replaced,
                queued,
                held,
            } => {
                let Some(reply) = delivery.reply else {
                    return;
                };
                out.push(Action::Send(encode_reply(
                    vsn,
                    join_ref.as_deref(),
                    msg_ref.as_deref(),
                    &topic,
                    &reply.status,
                    &reply.response,
                )));
                out.push(Action::JoinAnswered(reply.status.clone()));
                if let Some(old) = replaced.take() {
                    out.push(Action::Send(encode_close(vsn, old.as_deref(), &topic)));
                }
                let queued = std::mem::take(queued);
                let held = std::mem::take(held);
                if reply.status == "ok" {
                    channel.state = State::Joined;
                    push_all(delivery.pushes, out);
                    out.extend(held.into_iter().map(Action::Forward));
                    for msg in queued {
                        self.event(msg, out);
                    }
                } else {
                    self.channels.remove(&topic);
                    out.push(Action::Unsubscribe(topic.clone()));
                    for msg in queued {
                        out.push(self.unmatched(&msg));
                    }
                }
            }
        }
    }

    /// Whether `delivery` answers the join of its topic that is waiting for its answer now.
    pub fn answers_pending_join(&self, delivery: &Delivery) -> bool {
        self.channels.get(&delivery.topic).is_some_and(|c| {
            matches!(c.state, State::Joining { .. })
                && delivery.socket.join_ref.as_deref() == Some(c.join_id.as_str())
        })
    }

    /// Handles a broadcast on `topic`: written now on a joined channel, held until the answer
    /// on a joining one, dropped otherwise (the channel has been left).
    pub fn handle_broadcast(&mut self, topic: &str, frame: Text, out: &mut Vec<Action>) {
        match self.channels.get_mut(topic).map(|c| &mut c.state) {
            Some(State::Joined) => out.push(Action::Forward(frame)),
            Some(State::Joining { held, .. }) if held.len() < MAX_HELD => held.push(frame),
            Some(State::Joining { .. }) => out.push(Action::Overflow),
            None => {}
        }
    }

    /// The socket is closing: leave every channel.
    pub fn close(&mut self, out: &mut Vec<Action>) {
        for (topic, channel) in self.channels.drain() {
            out.push(Action::Unsubscribe(topic.clone()));
            out.push(Action::Command {
                topic,
                join_id: channel.join_id,
                msg_ref: None,
                kind: CommandKind::Leave,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializer::decode_text;
    use std::time::Instant;
    use topics::{ReplyBody, SocketRef};

    fn msg(text: &str) -> Message {
        decode_text(Vsn::V2, text).expect("valid frame")
    }

    /// Hands the session one V2 frame received now.
    fn feed(s: &mut Session, frame: &str, out: &mut Vec<Action>) {
        s.handle(msg(frame), Instant::now(), out);
    }

    fn frames(actions: &[Action]) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(Frame::Text(t)) => serde_json::from_str(t).ok(),
                _ => None,
            })
            .collect()
    }

    fn commands(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Command { join_id, kind, .. } => {
                    Some((join_id.clone(), format!("{kind:?}")))
                }
                _ => None,
            })
            .collect()
    }

    fn delivery(
        topic: &str,
        join_id: &str,
        msg_ref: Option<&str>,
        status: &str,
        response: Value,
    ) -> Delivery {
        Delivery {
            socket: SocketRef {
                connector_id: "c".into(),
                socket_id: 1,
                join_ref: Some(join_id.into()),
                msg_ref: msg_ref.map(str::to_owned),
            },
            topic: topic.into(),
            reply: Some(ReplyBody {
                status: status.into(),
                response,
            }),
            pushes: vec![],
        }
    }

    fn joined(session: &mut Session, topic: &str, join_ref: &str) -> String {
        let mut out = Vec::new();
        session.handle(
            msg(&format!(
                r#"["{join_ref}","{join_ref}","{topic}","phx_join",{{}}]"#
            )),
            Instant::now(),
            &mut out,
        );
        let Some(Action::Command { join_id, .. }) = out.iter().find(|a| {
            matches!(
                a,
                Action::Command {
                    kind: CommandKind::Join { .. },
                    ..
                }
            )
        }) else {
            panic!("join command expected: {out:?}")
        };
        let join_id = join_id.clone();
        let mut out = Vec::new();
        session.handle_delivery(
            delivery(topic, &join_id, Some(join_ref), "ok", json!({})),
            None,
            &mut out,
        );
        join_id
    }

    #[test]
    fn heartbeat_is_answered_with_null_join_ref() {
        let mut s = Session::new(Vsn::V2, 0);
        let mut out = Vec::new();
        feed(&mut s, r#"[null,"12","phoenix","heartbeat",{}]"#, &mut out);
        assert_eq!(
            frames(&out),
            vec![json!([null, "12", "phoenix", "phx_reply", {"status": "ok", "response": {}}])]
        );
    }

    #[test]
    fn unmatched_topics_reply_with_null_join_ref() {
        let mut s = Session::new(Vsn::V2, 0);
        let mut out = Vec::new();
        feed(&mut s, r#"["11","1","room:lobby","phx_join",{}]"#, &mut out);
        feed(
            &mut s,
            r#"["11","2","donations:lobby","new_msg",{}]"#,
            &mut out,
        );
        let unmatched = json!({"status": "error", "response": {"reason": "unmatched topic"}});
        assert_eq!(
            frames(&out),
            vec![
                json!([null, "1", "room:lobby", "phx_reply", unmatched]),
                json!([null, "2", "donations:lobby", "phx_reply", unmatched]),
            ]
        );
    }

    #[test]
    fn subscribes_before_joining_and_holds_broadcasts_until_the_reply_and_pushes() {
        let mut s = Session::new(Vsn::V2, 0);
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"["11","1","donations:campaign:1","phx_join",{}]"#,
            &mut out,
        );
        assert_eq!(out[0], Action::Subscribe("donations:campaign:1".into()));
        assert_eq!(commands(&out).len(), 1);
        let mut out = Vec::new();
        s.handle_broadcast("donations:campaign:1", Text::from_static("diff"), &mut out);
        s.handle_broadcast("donations:lobby", Text::from_static("other"), &mut out);
        assert!(out.is_empty(), "held until the join is answered");
        let mut d = delivery("donations:campaign:1", "1", Some("1"), "ok", json!({}));
        d.pushes.push(topics::Push {
            event: "campaign_state".into(),
            payload: json!({"campaign": {}}),
        });
        assert!(s.answers_pending_join(&d));
        s.handle_delivery(d, None, &mut out);
        assert_eq!(out[1], Action::JoinAnswered("ok".into()));
        assert_eq!(
            frames(&out),
            vec![
                json!(["11", "1", "donations:campaign:1", "phx_reply", {"status": "ok", "response": {}}]),
                json!(["11", null, "donations:campaign:1", "campaign_state", {"campaign": {}}]),
            ]
        );
        assert_eq!(
            out.last(),
            Some(&Action::Forward(Text::from_static("diff")))
        );
        let mut out = Vec::new();
        s.handle_broadcast("donations:campaign:1", Text::from_static("next"), &mut out);
        assert_eq!(out, vec![Action::Forward(Text::from_static("next"))]);
    }

    #[test]
    fn too_many_broadcasts_held_for_a_join_overflow_the_socket() {
        let mut s = Session::new(Vsn::V2, 0);
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"["11","1","donations:lobby","phx_join",{}]"#,
            &mut out,
        );
        let mut out = Vec::new();
        for _ in 0..MAX_HELD {
            s.handle_broadcast("donations:lobby", Text::from_static("b"), &mut out);
        }
        assert!(out.is_empty());
        s.handle_broadcast("donations:lobby", Text::from_static("b"), &mut out);
        assert_eq!(out, vec![Action::Overflow]);
    }

    #[test]
    fn refused_join_registers_nothing() {
        let mut s = Session::new(Vsn::V2, 0);
        let mut out = Vec::new();
        feed(&mut s, r#"["11","1","admin:x","phx_join",{}]"#, &mut out);
        // A push sent before the answer waits, then is refused with the join.
        feed(
            &mut s,
            r#"["11","2","admin:x","create_campaign",{}]"#,
            &mut out,
        );
        let mut out = Vec::new();
        s.handle_delivery(
            delivery(
                "admin:x",
                "1",
                Some("1"),
                "error",
                json!({"reason": "unauthorized"}),
            ),
            None,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!(["11", "1", "admin:x", "phx_reply", {"status": "error", "response": {"reason": "unauthorized"}}]),
                json!([null, "2", "admin:x", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}]),
            ]
        );
        assert!(out.contains(&Action::Unsubscribe("admin:x".into())));
        assert_eq!(s.joined().count(), 0);
    }

    #[test]
    fn events_use_the_current_join_ref_and_drop_stale_ones() {
        let mut s = Session::new(Vsn::V2, 0);
        let join_id = joined(&mut s, "donations:lobby", "11");
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"[null,"5","donations:lobby","ping",{"a":1}]"#,
            &mut out,
        );
        assert_eq!(commands(&out).len(), 1);
        feed(&mut s, r#"["3","6","donations:lobby","ping",{}]"#, &mut out);
        assert_eq!(commands(&out).len(), 1, "stale join_ref is dropped");
        let mut out = Vec::new();
        s.handle_delivery(
            delivery(
                "donations:lobby",
                &join_id,
                Some("5"),
                "error",
                json!({"reason": "unknown event"}),
            ),
            None,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!(["11", "5", "donations:lobby", "phx_reply", {"status": "error", "response": {"reason": "unknown event"}}])
            ]
        );
    }

    #[test]
    fn leave_replies_then_closes() {
        let mut s = Session::new(Vsn::V2, 0);
        joined(&mut s, "donations:lobby", "11");
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"["99","7","donations:lobby","phx_leave",{}]"#,
            &mut out,
        );
        assert!(frames(&out).is_empty(), "stale leave is ignored");
        feed(
            &mut s,
            r#"["11","8","donations:lobby","phx_leave",{}]"#,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!(["11", "8", "donations:lobby", "phx_reply", {"status": "ok", "response": {}}]),
                json!(["11", "11", "donations:lobby", "phx_close", {}]),
            ]
        );
        assert!(out.contains(&Action::Unsubscribe("donations:lobby".into())));
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"["11","9","donations:lobby","phx_leave",{}]"#,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!(["11", "9", "donations:lobby", "phx_reply", {"status": "ok", "response": {}}])
            ]
        );
    }

    #[test]
    fn duplicate_join_replies_then_closes_the_old_join() {
        let mut s = Session::new(Vsn::V2, 0);
        joined(&mut s, "donations:lobby", "11");
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"["12","12","donations:lobby","phx_join",{}]"#,
            &mut out,
        );
        assert!(
            !out.iter()
                .any(|a| matches!(a, Action::Subscribe(_) | Action::Unsubscribe(_))),
            "the subscription carries over to the new join"
        );
        let ids = commands(&out);
        assert_eq!(ids.len(), 2, "leave of the old join, then the new join");
        let mut out = Vec::new();
        s.handle_delivery(
            delivery("donations:lobby", &ids[1].0, Some("12"), "ok", json!({})),
            None,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!(["12", "12", "donations:lobby", "phx_reply", {"status": "ok", "response": {}}]),
                json!(["11", "11", "donations:lobby", "phx_close", {}]),
            ]
        );
        // A late reply for the old join is ignored.
        let mut out = Vec::new();
        s.handle_delivery(
            delivery("donations:lobby", &ids[0].0, Some("3"), "ok", json!({})),
            None,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn channel_limit() {
        let mut s = Session::new(Vsn::V2, 0);
        for i in 0..MAX_CHANNELS {
            joined(&mut s, &format!("admin:{i}"), &i.to_string());
        }
        let mut out = Vec::new();
        feed(
            &mut s,
            r#"["500","500","admin:extra","phx_join",{}]"#,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!(["500", "500", "admin:extra", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}])
            ]
        );
    }

    #[test]
    fn v1_frames_never_carry_join_ref() {
        let mut s = Session::new(Vsn::V1, 0);
        let mut out = Vec::new();
        s.handle(
            decode_text(
                Vsn::V1,
                r#"{"topic":"donations:lobby","event":"phx_join","payload":{},"ref":"1"}"#,
            )
            .expect("v1"),
            Instant::now(),
            &mut out,
        );
        let mut out = Vec::new();
        s.handle_delivery(
            delivery("donations:lobby", "1", Some("1"), "ok", json!({})),
            None,
            &mut out,
        );
        assert_eq!(
            frames(&out),
            vec![
                json!({"topic": "donations:lobby", "event": "phx_reply", "ref": "1", "payload": {"status": "ok", "response": {}}})
            ]
        );
    }

    #[test]
    fn close_leaves_every_channel() {
        let mut s = Session::new(Vsn::V2, 0);
        joined(&mut s, "donations:lobby", "11");
        let mut out = Vec::new();
        s.close(&mut out);
        assert_eq!(commands(&out).len(), 1);
        assert!(out.contains(&Action::Unsubscribe("donations:lobby".into())));
    }
}

#[cfg(test)]
mod rate_limit_tests {
    use super::*;
    use crate::serializer::decode_text;
    use std::time::Duration;
    use topics::{ReplyBody, SocketRef};

    #[test]
    fn more_than_the_limit_per_second_is_refused_and_not_forwarded() {
        let mut s = Session::new(Vsn::V2, 10);
        let start = Instant::now();
        let mut out = Vec::new();
        s.handle(
            decode_text(Vsn::V2, r#"["1","1","donations:lobby","phx_join",{}]"#).expect("frame"),
            start,
            &mut out,
        );
        let delivery = Delivery {
            socket: SocketRef {
                connector_id: "c".into(),
                socket_id: 1,
                join_ref: Some("1".into()),
                msg_ref: Some("1".into()),
            },
            topic: "donations:lobby".into(),
            reply: Some(ReplyBody {
                status: "ok".into(),
                response: json!({}),
            }),
            pushes: vec![],
        };
        s.handle_delivery(delivery, None, &mut out);
        let push = |s: &mut Session, at: Instant| {
            let mut out = Vec::new();
            s.handle(
                decode_text(Vsn::V2, r#"["1","9","donations:lobby","e",{}]"#).expect("frame"),
                at,
                &mut out,
            );
            matches!(out.as_slice(), [Action::Command { .. }])
        };
        let forwarded = (0..15).filter(|_| push(&mut s, start)).count();
        assert_eq!(forwarded, 10, "a burst of 10, then refusals");
        let mut out = Vec::new();
        s.handle(
            decode_text(Vsn::V2, r#"["1","10","donations:lobby","e",{}]"#).expect("frame"),
            start,
            &mut out,
        );
        let Action::Send(Frame::Text(text)) = &out[0] else {
            panic!("a reply")
        };
        assert!(text.contains("rate limit exceeded"));
        // Tokens come back with time.
        assert!(push(&mut s, start + Duration::from_millis(250)));
        assert!(push(&mut s, start + Duration::from_millis(250)));
        assert!(!push(&mut s, start + Duration::from_millis(250)));
        // Unlimited when the limit is 0.
        let mut bucket = Bucket::new(0, start);
        assert!((0..1000).all(|_| bucket.take(0, start)));
    }
}
