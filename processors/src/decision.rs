//! The values around [`decide`](crate::decide): what it reads and what it returns.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Campaign, Document, Donation, Presence, PresenceFilter, Write};
use topics::events::DomainEvent;
use topics::{
    Broadcast, Command, Delivery, Push, Refusal, ReplyBody, ReplyStatus, StreamPosition, Transform,
};

use crate::prices::{PriceMissing, Quote};

/// What a command needs loaded from the store before it can be decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The campaign with this id.
    pub campaign: Option<String>,
    /// A fresh campaign id (for `create_campaign`).
    pub new_campaign_id: bool,
    /// The presences of the command's topic that pass this filter.
    pub presence: Option<PresenceFilter>,
    /// The id a client's idempotency key stores the command's outcome under: a command whose
    /// key was used before is answered from that outcome, not decided.
    pub alias: Option<String>,
    /// The document with this (kind, id).
    pub document: Option<(String, String)>,
    /// The currency whose gold and silver prices the command needs from the price feed (the
    /// client gave none).
    pub prices: Option<String>,
    /// The donation with this id, then its campaign (into [`View::campaign`]): moderation.
    pub donation: Option<String>,
    /// A user's records of one year (reports).
    pub records: Option<RecordsNeeded>,
}

/// Which of a user's records a command reads: their donations of one year and their
/// documents of some kinds (newest first; the decision picks the year's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsNeeded {
    /// The user.
    pub user_id: String,
    /// The year of the donations.
    pub year: i32,
    /// Most donations read.
    pub donation_limit: usize,
    /// The document kinds listed under the user, each with the most read.
    pub documents: Vec<(&'static str, usize)>,
}

/// A user's records, as asked for in [`RecordsNeeded`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserRecords {
    /// The user's donations of the year, newest first.
    pub donations: Vec<Donation>,
    /// The user's documents of each kind asked for, newest first.
    pub documents: Vec<(&'static str, Vec<Document>)>,
}

impl UserRecords {
    /// The documents of `kind` (none if they were not asked for).
    pub fn documents(&self, kind: &str) -> &[Document] {
        self.documents
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[], |(_, documents)| documents.as_slice())
    }
}

/// The state a decision is made on.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The campaign asked for in [`Needs::campaign`] (or the one of [`Needs::donation`]), if
    /// it exists.
    pub campaign: Option<Campaign>,
    /// A campaign id nobody uses yet, if [`Needs::new_campaign_id`].
    pub new_campaign_id: Option<String>,
    /// The presences asked for in [`Needs::presence`].
    pub presences: Vec<Presence>,
    /// The document asked for in [`Needs::document`], if it exists.
    pub document: Option<Document>,
    /// The price feed's answer for [`Needs::prices`]: its quote, or why there is none.
    /// `None` when no prices were asked for.
    pub prices: Option<Result<Quote, PriceMissing>>,
    /// The donation asked for in [`Needs::donation`], if it exists.
    pub donation: Option<Donation>,
    /// The records asked for in [`Needs::records`].
    pub records: Option<UserRecords>,
    /// The processing time (RFC 3339, UTC), for timestamps in the effects.
    pub now: String,
}

/// A broadcast a decision wants sent, before it is given its id (the outcome derives ids from
/// the command id, see [`Decision::outcome`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBroadcast {
    /// The channel topic.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// The payload.
    pub payload: Value,
    /// Per-socket transforms applied at fan-out.
    pub transforms: Vec<Transform>,
    /// Its place in its topic's stream, given after the decision (see `streams`).
    pub position: Option<StreamPosition>,
}

impl NewBroadcast {
    /// A broadcast without transforms.
    pub fn new(topic: impl Into<String>, event: &str, payload: Value) -> Self {
        Self {
            topic: topic.into(),
            event: event.to_owned(),
            payload,
            transforms: Vec::new(),
            position: None,
        }
    }
}

/// The result of deciding one command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The reply to the command's message, if it expects one.
    pub reply: Option<ReplyBody>,
    /// Pushes to the commanding socket's channel, written after the reply.
    pub pushes: Vec<Push>,
    /// Broadcasts, in order.
    pub broadcasts: Vec<NewBroadcast>,
    /// Effects to persist.
    pub writes: Vec<Write>,
    /// Domain events for analytics.
    pub domain_events: Vec<DomainEvent>,
    /// Commands derived from this one ([`CommandKind::Derived`](topics::CommandKind)),
    /// appended to the command topic after the writes, with ids derived from this command's
    /// so every re-emission of the outcome names the same commands.
    pub commands: Vec<Command>,
    /// Jobs to run beside the command partitions (derived commands put on the jobs topic,
    /// with ids derived from this command's); each answers with a derived command.
    pub jobs: Vec<Command>,
}

impl Decision {
    /// A decision that only replies `ok` with `response`.
    pub fn ok(response: Value) -> Self {
        Self::reply(ReplyStatus::Ok, response)
    }

    /// A decision that only replies `error` with `{"reason": ...}`.
    pub fn refuse(refusal: Refusal) -> Self {
        Self::reply(ReplyStatus::Error, refusal.response())
    }

    /// A decision that only replies `error` with `{"errors": errors}` (validation failures).
    pub fn invalid(errors: Value) -> Self {
        Self::reply(ReplyStatus::Error, json!({ "errors": errors }))
    }

    fn reply(status: ReplyStatus, response: Value) -> Self {
        Self {
            reply: Some(ReplyBody { status, response }),
            ..Self::default()
        }
    }

    /// Adds a push written after the reply.
    pub fn push(mut self, event: &str, payload: Value) -> Self {
        self.pushes.push(Push {
            event: event.to_owned(),
            payload,
        });
        self
    }

    /// The outcome to emit for `command`: the delivery to its socket and the broadcasts with
    /// ids derived from the command id, so a re-emitted outcome carries the same ids.
    pub fn outcome(&self, command: &Command) -> Outcome {
        let delivery = (self.reply.is_some() || !self.pushes.is_empty()).then(|| Delivery {
            socket: command.socket.clone(),
            topic: command.topic.clone(),
            reply: self.reply.clone(),
            pushes: self.pushes.clone(),
        });
        let broadcasts = self
            .broadcasts
            .iter()
            .enumerate()
            .map(|(i, a)| Broadcast {
                id: format!("{}:{i}", command.id),
                topic: a.topic.clone(),
                event: a.event.clone(),
                payload: a.payload.clone(),
                transforms: a.transforms.clone(),
                position: a.position.clone(),
            })
            .collect();
        Outcome {
            delivery,
            broadcasts,
            domain_events: self.domain_events.clone(),
            commands: self.commands.clone(),
            jobs: self.jobs.clone(),
        }
    }
}

/// What a processed command sends: stored with its writes, re-sent as is when the command is
/// processed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The reply and pushes for the commanding socket.
    pub delivery: Option<Delivery>,
    /// The broadcasts.
    pub broadcasts: Vec<Broadcast>,
    /// The domain events. (Stored as `events`, its name in outcomes written before.)
    #[serde(default, rename = "events")]
    pub domain_events: Vec<DomainEvent>,
    /// The derived commands, re-sent with the rest: their ids make them count once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// The jobs, re-sent with the rest: a job's result names it, so it counts once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<Command>,
}

impl Outcome {
    /// The answer to `retry`, a repeat of the request this outcome answered (the same client
    /// idempotency key): the same reply and pushes, to the retrying socket; nothing broadcast
    /// or recorded again.
    pub fn answer_again(&self, retry: &Command) -> Outcome {
        Outcome {
            delivery: self.delivery.as_ref().map(|first| Delivery {
                socket: retry.socket.clone(),
                topic: retry.topic.clone(),
                reply: first.reply.clone(),
                pushes: first.pushes.clone(),
            }),
            broadcasts: Vec::new(),
            domain_events: Vec::new(),
            commands: Vec::new(),
            jobs: Vec::new(),
        }
    }
}
