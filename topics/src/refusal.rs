//! Why a client's message was refused: the closed catalog of reasons an `error` reply carries
//! (`{"reason": "..."}`), shared by the connector (which refuses before anything reaches the
//! log) and the processors (which refuse as a decision).
//!
//! docs/ERRORS.md lists exactly these reasons; a test below keeps the two in step. Validation
//! failures are not refusals: they reply `{"errors": {field: [message, ...]}}`.

use serde_json::{json, Value};

/// One reason a message was refused. The wire text is [`Refusal::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A join of a topic no channel serves, or a push on a topic the socket has not joined.
    UnmatchedTopic,
    /// The topic's rules do not let these claims join it or do this.
    Unauthorized,
    /// The campaign named by the topic, or the donation a moderation names, does not exist.
    NotFound,
    /// A socket joining more channels than it may.
    TooManyChannels,
    /// More client events per second on one channel than allowed.
    RateLimited,
    /// An event the channel does not handle.
    UnknownEvent,
    /// A frame that names a topic and ref but is not a valid message.
    MalformedMessage,
    /// A binary push on a channel (no channel takes raw bytes).
    BinaryPayload,
    /// Too many messages sent to a channel whose join is still being decided.
    TooManyBeforeJoin,
    /// A presence update on a channel whose presence is no longer tracked (it expired).
    NotTracked,
    /// `create_campaign` decided without a fresh id (the runner failed to allocate one).
    CampaignIdUnavailable,
    /// The connector could not confirm the command on the log in time (the log is
    /// unreachable). Not a failure: the command may still have been stored, so the client
    /// retries (safely, with its idempotency key). A join answered so was not made.
    Unavailable,
    /// A join that reached a connector while it drains for shutdown. Retryable: the socket
    /// is closed with 1012 shortly, and the client reconnects (to another connector) and
    /// joins there; phoenix.js retries a refused join by itself meanwhile.
    ShuttingDown,
    /// A moderation the moderator's roles do not allow (an admin rejecting, a user without a
    /// moderator role).
    InsufficientPermissions,
    /// Approving or flagging a donation that was rejected: a rejection is final.
    AlreadyRejected,
    /// The command could not be processed and was set aside for an operator (the dead-letter
    /// topic): sending the same request again fails the same way.
    Failed,
    /// The command needs prices from the outside price feed (the client gave none), and the
    /// feed failed or its circuit breaker is open. Retryable: later, or at once with prices.
    PriceFeedUnavailable,
    /// The command was applied, but its reply is larger than the log accepts (a record over
    /// the broker's message limit): the reply is lost, the command set aside for an operator.
    ReplyTooLarge,
}

impl Refusal {
    /// Every refusal, for the catalog check and for documentation.
    pub const ALL: [Refusal; 18] = [
        Refusal::UnmatchedTopic,
        Refusal::Unauthorized,
        Refusal::NotFound,
        Refusal::TooManyChannels,
        Refusal::RateLimited,
        Refusal::UnknownEvent,
        Refusal::MalformedMessage,
        Refusal::BinaryPayload,
        Refusal::TooManyBeforeJoin,
        Refusal::NotTracked,
        Refusal::CampaignIdUnavailable,
        Refusal::Unavailable,
        Refusal::ShuttingDown,
        Refusal::InsufficientPermissions,
        Refusal::AlreadyRejected,
        Refusal::Failed,
        Refusal::PriceFeedUnavailable,
        Refusal::ReplyTooLarge,
    ];

    /// The reason as the client reads it (also the log line's and metric label's word).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnmatchedTopic => "unmatched topic",
            Refusal::Unauthorized => "unauthorized",
            Refusal::NotFound => "not found",
            Refusal::TooManyChannels => "too many channels joined",
            Refusal::RateLimited => "rate limit exceeded",
            Refusal::UnknownEvent => "unknown event",
            Refusal::MalformedMessage => "malformed message",
            Refusal::BinaryPayload => "binary payloads are not supported",
            Refusal::TooManyBeforeJoin => "too many messages before join",
            Refusal::NotTracked => "not tracked",
            Refusal::CampaignIdUnavailable => "campaign id unavailable",
            Refusal::Unavailable => "unavailable",
            Refusal::ShuttingDown => "shutting down",
            Refusal::InsufficientPermissions => "insufficient permissions",
            Refusal::AlreadyRejected => "donation already rejected",
            Refusal::Failed => "command failed",
            Refusal::PriceFeedUnavailable => "price feed unavailable",
            Refusal::ReplyTooLarge => "reply too large",
        }
    }

    /// The reply's response: `{"reason": "..."}`.
    pub fn response(self) -> Value {
        json!({ "reason": self.reason() })
    }

    /// The reply's response with a detail for humans: `{"reason": "...", "detail": "..."}`.
    pub fn response_with_detail(self, detail: &str) -> Value {
        json!({ "reason": self.reason(), "detail": detail })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The reasons in docs/ERRORS.md's reply table (rows starting `| {"reason": "...`).
    fn documented() -> BTreeSet<String> {
        include_str!("../../docs/ERRORS.md")
            .lines()
            .filter_map(|line| line.strip_prefix("| `{\"reason\": \""))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn errors_md_lists_exactly_the_refusals() {
        let code: BTreeSet<String> = Refusal::ALL.iter().map(|r| r.reason().to_owned()).collect();
        assert_eq!(documented(), code);
    }

    #[test]
    fn reasons_are_distinct() {
        let reasons: BTreeSet<&str> = Refusal::ALL.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons.len(), Refusal::ALL.len());
    }

    #[test]
    fn responses() {
        assert_eq!(
            Refusal::UnmatchedTopic.response(),
            json!({"reason": "unmatched topic"})
        );
        assert_eq!(
            Refusal::Unavailable.response(),
            json!({"reason": "unavailable"})
        );
        assert_eq!(
            Refusal::MalformedMessage.response_with_detail("not an array"),
            json!({"reason": "malformed message", "detail": "not an array"})
        );
    }
}
