//! One channel of a session: the state of a joined (or joining) topic, and the transitions
//! of join, leave, client events, deliveries and broadcasts.

use std::collections::VecDeque;

use serde_json::{json, Value};
use topics::presence::STATE_EVENT;
use topics::routes::route;
use topics::{CommandKind, Delivery, Refusal, ReplyStatus};

use super::rate_limit::Bucket;
use super::{Action, Session, MAX_CHANNELS};
use crate::serializer::{
    encode_close, encode_push, encode_push_raw, encode_reply, Message, Payload, Text, Vsn,
};

/// Most messages held for a channel whose join is still being decided.
const MAX_QUEUED: usize = 100;
/// Most broadcasts held for a channel whose join is still being decided; more means the
/// socket cannot keep up.
pub(super) const MAX_HELD: usize = 1024;

/// Where a channel is in its life.
#[derive(Debug)]
pub(super) enum State {
    /// The join command is on the log; messages wait for its answer.
    Joining {
        /// The join message's ref, for its reply.
        msg_ref: Option<String>,
        /// The wire join_ref of a join this one replaced, closed after this join's reply.
        replaced: Option<Option<String>>,
        /// Messages that arrived before the join was answered.
        queued: Vec<Message>,
        /// Broadcasts that arrived before the join was answered (with their stream offsets),
        /// written after its reply and pushes (so `presence_state` comes before the diffs
        /// that follow it), unless the join's answer already covered them.
        held: Vec<(Text, Option<u64>)>,
    },
    /// The join was accepted: events become commands, broadcasts are written.
    Joined,
}

/// One topic a session has joined or is joining.
#[derive(Debug)]
pub(super) struct Channel {
    /// Identity of this join in commands and deliveries; unique within the session, unlike
    /// wire join_refs, which V1 clients never send.
    pub(super) join_id: String,
    /// The join_ref written on this channel's frames (V2: the join's `join_ref || ref`).
    pub(super) join_ref: Option<String>,
    /// Joining or joined.
    pub(super) state: State,
    /// Client events allowed on this channel.
    bucket: Bucket,
    /// The topic's stream position the join was answered at: broadcasts at or before it are
    /// in the state the join gave (or among the missed ones it recovered), so not written.
    floor: Option<u64>,
    /// The join's message ref: a delivery answering it again (its outcome re-sent after a
    /// processor restart) is not written to a channel that has long joined.
    join_msg_ref: Option<String>,
    /// Refs of pushes answered `unavailable` (their command was not confirmed on the log)
    /// whose processor reply may still come if the command landed after all: it is dropped,
    /// as the client has its one reply per ref. The oldest are forgotten first.
    unconfirmed: VecDeque<String>,
}

/// Most refs remembered per channel as answered `unavailable`.
const MAX_UNCONFIRMED: usize = 64;

impl Channel {
    /// Whether a message's join_ref is for an older join (PROTOCOL.md §2.2): null always
    /// matches the current join.
    fn is_stale(&self, join_ref: Option<&str>) -> bool {
        join_ref.is_some_and(|jr| self.join_ref.as_deref() != Some(jr))
    }
}

impl Session {
    pub(super) fn join(&mut self, msg: Message, out: &mut Vec<Action>) {
        if route(&msg.topic).is_none() {
            out.push(self.unmatched(&msg));
            return;
        }
        let wire_join_ref = match self.vsn {
            Vsn::V2 => msg.join_ref.clone().or_else(|| msg.msg_ref.clone()),
            Vsn::V1 => None,
        };
        if self.draining {
            // A duplicate join is refused too, and leaves the channel it would replace as it
            // is: the socket's close leaves it shortly.
            out.push(self.refuse(
                wire_join_ref.as_deref(),
                msg.msg_ref.as_deref(),
                &msg.topic,
                Refusal::ShuttingDown,
            ));
            return;
        }
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
                out.push(self.refuse(
                    wire_join_ref.as_deref(),
                    msg.msg_ref.as_deref(),
                    &msg.topic,
                    Refusal::TooManyChannels,
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
                floor: None,
                join_msg_ref: msg.msg_ref.clone(),
                state: State::Joining {
                    msg_ref: msg.msg_ref,
                    replaced,
                    queued: Vec::new(),
                    held: Vec::new(),
                },
                bucket: Bucket::new(self.rate_limit, self.now),
                unconfirmed: VecDeque::new(),
            },
        );
    }

    pub(super) fn leave(&mut self, msg: Message, out: &mut Vec<Action>) {
        let Some(channel) = self.channels.get(&msg.topic) else {
            out.push(self.reply(
                msg.join_ref.as_deref(),
                msg.msg_ref.as_deref(),
                &msg.topic,
                ReplyStatus::Ok,
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
            ReplyStatus::Ok,
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

    pub(super) fn event(&mut self, msg: Message, out: &mut Vec<Action>) {
        let Some(channel) = self.channels.get_mut(&msg.topic) else {
            out.push(self.unmatched(&msg));
            return;
        };
        if channel.is_stale(msg.join_ref.as_deref()) {
            return;
        }
        let refusal = match &mut channel.state {
            State::Joining { queued, .. } if queued.len() < MAX_QUEUED => {
                queued.push(msg);
                return;
            }
            State::Joining { .. } => Refusal::TooManyBeforeJoin,
            State::Joined if !channel.bucket.take(self.rate_limit, self.now) => {
                Refusal::RateLimited
            }
            State::Joined => match msg.payload {
                Payload::Json(payload) => {
                    out.push(Action::Command {
                        topic: msg.topic,
                        join_id: channel.join_id.clone(),
                        msg_ref: msg.msg_ref,
                        kind: CommandKind::Event {
                            event: msg.event,
                            payload,
                        },
                    });
                    return;
                }
                Payload::Binary(_) => Refusal::BinaryPayload,
            },
        };
        let join_ref = channel.join_ref.clone();
        out.push(self.refuse(
            join_ref.as_deref(),
            msg.msg_ref.as_deref(),
            &msg.topic,
            refusal,
        ));
    }

    /// Handles a reply and pushes that a processor sent to this socket. `presence_list` is
    /// the payload, as JSON text, of a `presence_state` push that came without one (the
    /// connector holds the topic's list, see [`crate::presence`]).
    pub(crate) fn handle_delivery(
        &mut self,
        delivery: Delivery,
        presence_list: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let topic = delivery.topic;
        let Some(channel) = self.channels.get_mut(&topic) else {
            return;
        };
        if delivery.socket.join_id.as_deref() != Some(channel.join_id.as_str()) {
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
            State::Joined
                if delivery.socket.msg_ref.is_some()
                    && delivery.socket.msg_ref == channel.join_msg_ref =>
            {
                tracing::debug!(%topic, "dropped a join's answer sent again to a joined channel");
            }
            State::Joined => {
                let msg_ref = delivery.socket.msg_ref.as_deref();
                let late = msg_ref
                    .and_then(|r| channel.unconfirmed.iter().position(|u| u == r))
                    .and_then(|i| channel.unconfirmed.remove(i));
                if let Some(msg_ref) = late {
                    tracing::debug!(%topic, msg_ref, "dropped the late reply to a push answered unavailable");
                } else if let Some(reply) = delivery.reply {
                    out.push(Action::Send(encode_reply(
                        vsn,
                        join_ref.as_deref(),
                        delivery.socket.msg_ref.as_deref(),
                        &topic,
                        reply.status,
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
                    reply.status,
                    &reply.response,
                )));
                out.push(Action::JoinAnswered(reply.status));
                if let Some(old) = replaced.take() {
                    out.push(Action::Send(encode_close(vsn, old.as_deref(), &topic)));
                }
                let queued = std::mem::take(queued);
                let held = std::mem::take(held);
                if reply.status == ReplyStatus::Ok {
                    channel.state = State::Joined;
                    channel.floor = reply.response["position"]["offset"].as_u64();
                    push_all(delivery.pushes, out);
                    let floor = channel.floor;
                    out.extend(
                        held.into_iter()
                            .filter(|(_, offset)| !covered(*offset, floor))
                            .map(|(frame, _)| Action::Forward(frame)),
                    );
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

    /// The command of `join_id` on `topic` was not confirmed on the log in time (or not taken
    /// at all): its join or push is answered `unavailable`, which says "not confirmed, retry".
    /// A join so answered is undone here (the channel is dropped, as for a refused join), and
    /// a leave for it follows, in case the join lands after all. Leaves have no reply: a
    /// leave that is lost is cleaned up with this connector's lease.
    pub(crate) fn not_stored(
        &mut self,
        topic: &str,
        join_id: &str,
        msg_ref: Option<&str>,
        kind: &CommandKind,
        out: &mut Vec<Action>,
    ) {
        let channel = self
            .channels
            .get_mut(topic)
            .filter(|c| c.join_id == join_id);
        match kind {
            CommandKind::Join { .. } => {
                let joining = channel.is_some_and(|c| matches!(c.state, State::Joining { .. }));
                if !joining {
                    return;
                }
                let refusal = Delivery {
                    socket: topics::SocketRef {
                        connector_id: String::new(),
                        socket_id: 0,
                        join_id: Some(join_id.to_owned()),
                        msg_ref: msg_ref.map(str::to_owned),
                    },
                    topic: topic.to_owned(),
                    reply: Some(topics::ReplyBody {
                        status: ReplyStatus::Error,
                        response: Refusal::Unavailable.response(),
                    }),
                    pushes: Vec::new(),
                };
                self.handle_delivery(refusal, None, out);
                out.push(Action::Command {
                    topic: topic.to_owned(),
                    join_id: join_id.to_owned(),
                    msg_ref: None,
                    kind: CommandKind::Leave,
                });
            }
            CommandKind::Leave => {}
            _ => {
                let Some(msg_ref) = msg_ref else {
                    return;
                };
                // The channel may have been left or rejoined meanwhile: the push is answered
                // all the same, on its join's ref if the join still stands.
                let join_ref = match channel {
                    Some(channel) => {
                        if channel.unconfirmed.len() == MAX_UNCONFIRMED {
                            channel.unconfirmed.pop_front();
                        }
                        channel.unconfirmed.push_back(msg_ref.to_owned());
                        channel.join_ref.clone()
                    }
                    None => None,
                };
                out.push(self.refuse(
                    join_ref.as_deref(),
                    Some(msg_ref),
                    topic,
                    Refusal::Unavailable,
                ));
            }
        }
    }

    /// Whether `delivery` answers the join of its topic that is waiting for its answer now.
    pub(crate) fn answers_pending_join(&self, delivery: &Delivery) -> bool {
        self.channels.get(&delivery.topic).is_some_and(|c| {
            matches!(c.state, State::Joining { .. })
                && delivery.socket.join_id.as_deref() == Some(c.join_id.as_str())
        })
    }

    /// Handles a broadcast on `topic` (at `offset` of its stream, if it has one): written
    /// now on a joined channel unless its join's answer covered it, held until the answer on
    /// a joining one, dropped otherwise (the channel has been left).
    pub(crate) fn handle_broadcast(
        &mut self,
        topic: &str,
        frame: Text,
        offset: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        match &mut channel.state {
            State::Joined if covered(offset, channel.floor) => {}
            State::Joined => out.push(Action::Forward(frame)),
            State::Joining { held, .. } if held.len() < MAX_HELD => held.push((frame, offset)),
            State::Joining { .. } => out.push(Action::Overflow),
        }
    }
}

/// Whether a broadcast at `offset` is at or before a join's `floor` (so the join's answer
/// covered it).
fn covered(offset: Option<u64>, floor: Option<u64>) -> bool {
    matches!((offset, floor), (Some(offset), Some(floor)) if offset <= floor)
}
