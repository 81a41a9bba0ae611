//! Channel modules: which view a command needs, and the decision on it.
//!
//! Layout:
//! - [`access`]: who may join which topic.
//! - [`campaign`]: `donations:campaign:<id>`: state, donations, goals, milestones.
//! - [`admin`]: `admin:<x>`: campaign creation.
//! - [`zakat`]: `zakat:user:<id>`: nisab calculation.

pub mod access;
pub mod admin;
pub mod campaign;
pub mod zakat;

use topics::routes::{route, Route};
use topics::{Command, CommandKind};

use crate::decision::{Decision, Needs, View};

/// What `command` needs loaded before [`decide`] can run.
pub fn needs(command: &Command) -> Needs {
    match (route(&command.topic), &command.kind) {
        (Some(Route::Campaign(id)), CommandKind::Join { .. } | CommandKind::Event { .. }) => {
            Needs {
                campaign: Some(id),
                ..Needs::default()
            }
        }
        (Some(Route::Admin(_)), CommandKind::Event { event, .. }) if event == "create_campaign" => {
            Needs {
                new_campaign_id: true,
                ..Needs::default()
            }
        }
        _ => Needs::default(),
    }
}

/// Decides `command` on `view`. Pure: no IO, no clock, no randomness.
pub fn decide(command: &Command, view: &View) -> Decision {
    let Some(route) = route(&command.topic) else {
        return Decision::refuse("unmatched topic");
    };
    match &command.kind {
        CommandKind::Join { .. } => access::join(&route, &command.claims, view),
        CommandKind::Leave => Decision::default(),
        CommandKind::Event { event, payload } => match route {
            Route::Campaign(_) => campaign::handle_in(event, payload, command, view),
            Route::Admin(_) => admin::handle_in(event, payload, command, view),
            Route::Zakat(_) => zakat::handle_in(event, payload),
            _ => Decision::refuse("unknown event"),
        },
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;
    use topics::{Claims, Command, CommandKind, SocketRef};

    pub(crate) fn claims(user: Option<&str>, roles: &[&str]) -> Claims {
        Claims {
            user_id: user.map(str::to_owned),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            name: None,
        }
    }

    pub(crate) fn command(topic: &str, claims: Claims, kind: CommandKind) -> Command {
        Command {
            id: "cmd-1".into(),
            topic: topic.into(),
            socket: SocketRef {
                connector_id: "c".into(),
                socket_id: 1,
                join_ref: Some("1".into()),
                msg_ref: Some("2".into()),
            },
            claims,
            kind,
            received_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    pub(crate) fn event(topic: &str, claims: Claims, event: &str, payload: Value) -> Command {
        command(
            topic,
            claims,
            CommandKind::Event {
                event: event.into(),
                payload,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_events_and_topics() {
        let view = View::default();
        let d = decide(
            &event("donations:lobby", claims(None, &[]), "nope", json!({})),
            &view,
        );
        assert_eq!(d, Decision::refuse("unknown event"));
        let d = decide(&event("room:1", claims(None, &[]), "x", json!({})), &view);
        assert_eq!(d, Decision::refuse("unmatched topic"));
    }

    #[test]
    fn needs_follow_the_route() {
        let join = command(
            "donations:campaign:7",
            claims(None, &[]),
            CommandKind::Join { params: json!({}) },
        );
        assert_eq!(needs(&join).campaign.as_deref(), Some("7"));
        let create = event(
            "admin:x",
            claims(None, &["admin"]),
            "create_campaign",
            json!({}),
        );
        assert!(needs(&create).new_campaign_id);
        assert_eq!(
            needs(&event("donations:lobby", claims(None, &[]), "e", json!({}))),
            Needs::default()
        );
    }
}
