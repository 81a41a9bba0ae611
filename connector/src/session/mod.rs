//! The per-socket channel state machine (PROTOCOL.md §4), sans IO.
//!
//! The session task feeds it decoded client messages and deliveries from processors; it
//! answers with [`Action`]s for the task to carry out: frames to write, commands to append to
//! the log, subscriptions to add or drop. Everything Phoenix clients rely on about join refs,
//! ordering and duplicate joins lives here, where it can be tested without a socket.
//!
//! Layout: this file holds the [`Session`] and what it answers directly (heartbeats, decode
//! errors, closing); `channel` the state of one joined topic and its transitions (join,
//! leave, events, deliveries, broadcasts); `rate_limit` the token bucket of client events.

mod channel;
mod rate_limit;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};
use topics::{CommandKind, Refusal, ReplyStatus};

use crate::serializer::{encode_reply, DecodeError, Frame, Message, Text, Vsn};

use channel::{Channel, State};

/// Most channels one socket may join (Phoenix's `max_channels_per_transport`).
pub(crate) const MAX_CHANNELS: usize = 100;

/// Something the session task must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
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
    JoinAnswered(ReplyStatus),
}

/// The channel state of one socket.
#[derive(Debug)]
pub(crate) struct Session {
    vsn: Vsn,
    channels: HashMap<String, Channel>,
    next_join: u64,
    /// Client events per second allowed on one channel (0: unlimited).
    rate_limit: u32,
    /// The time of the message being handled; the IO shell passes it in so the state machine
    /// reads no clock.
    now: Instant,
    /// The connector is draining for shutdown: joins are refused (retryable), so no channel
    /// starts on a socket about to be closed.
    draining: bool,
}

impl Session {
    /// A session speaking `vsn`, allowing `rate_limit` client events per second per channel
    /// (0: unlimited).
    pub(crate) fn new(vsn: Vsn, rate_limit: u32) -> Self {
        Self {
            vsn,
            channels: HashMap::new(),
            next_join: 0,
            rate_limit,
            now: Instant::now(),
            draining: false,
        }
    }

    /// The connector started draining: from now on joins are refused with
    /// [`Refusal::ShuttingDown`]; joined channels carry on until the socket is closed.
    pub(crate) fn drain(&mut self) {
        self.draining = true;
    }

    /// The serializer this session speaks.
    pub(crate) fn vsn(&self) -> Vsn {
        self.vsn
    }

    /// Topics joined, with their wire join_refs.
    pub(crate) fn joined(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
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
        status: ReplyStatus,
        response: Value,
    ) -> Action {
        Action::Send(encode_reply(
            self.vsn, join_ref, msg_ref, topic, status, &response,
        ))
    }

    /// An `error` reply with the refusal's reason.
    pub(super) fn refuse(
        &self,
        join_ref: Option<&str>,
        msg_ref: Option<&str>,
        topic: &str,
        refusal: Refusal,
    ) -> Action {
        self.reply(
            join_ref,
            msg_ref,
            topic,
            ReplyStatus::Error,
            refusal.response(),
        )
    }

    fn unmatched(&self, msg: &Message) -> Action {
        self.refuse(
            None,
            msg.msg_ref.as_deref(),
            &msg.topic,
            Refusal::UnmatchedTopic,
        )
    }

    /// Handles one decoded client message received at `now`.
    pub(crate) fn handle(&mut self, msg: Message, now: Instant, out: &mut Vec<Action>) {
        self.now = now;
        match (msg.topic.as_str(), msg.event.as_str()) {
            ("phoenix", "heartbeat") => {
                out.push(self.reply(
                    None,
                    msg.msg_ref.as_deref(),
                    "phoenix",
                    ReplyStatus::Ok,
                    json!({}),
                ));
            }
            (_, "phx_join") => self.join(msg, out),
            (_, "phx_leave") => self.leave(msg, out),
            _ => self.event(msg, out),
        }
    }

    /// Answers a frame that could not be decoded, when it named a topic and ref; otherwise the
    /// frame is dropped (there is nobody to answer) and the socket carries on.
    pub(crate) fn handle_decode_error(&self, error: &DecodeError, out: &mut Vec<Action>) {
        if let (Some(topic), Some(msg_ref)) = (&error.topic, &error.msg_ref) {
            out.push(self.reply(
                None,
                Some(msg_ref),
                topic,
                ReplyStatus::Error,
                Refusal::MalformedMessage.response_with_detail(error.reason),
            ));
        }
    }

    /// The socket is closing: leave every channel.
    pub(crate) fn close(&mut self, out: &mut Vec<Action>) {
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
