//! Channel modules: which view a command needs, and the decision on it.
//!
//! Layout:
//! - [`access`]: who may join which topic.
//! - [`campaign`]: `donations:campaign:<id>`: state, donations, goals, milestones.
//! - [`admin`]: `admin:<x>`: campaign creation; [`moderation`]: donation moderation there.
//! - [`zakat`]: `zakat:user:<id>`: nisab and zakat calculations.
//! - [`waqf`]: `waqf:public`: waqf creation, announced to three audiences.
//! - [`reports`]: `reports:user:<id>`: a user's yearly report, streamed to its socket.
//! - [`collab`]: `collab:document:<id>`: cursors and typing, as presence updates.
//! - [`imports`]: `imports:user:<id>`: batch imports, split into derived commands.
//! - [`presence`]: presence tracking on the topics that have it.

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod campaign;
pub(crate) mod collab;
pub(crate) mod imports;
pub(crate) mod moderation;
pub(crate) mod presence;
pub(crate) mod reports;
pub(crate) mod waqf;
pub(crate) mod zakat;

use topics::routes::{route, Route};
use topics::{Command, CommandKind, Refusal};

use crate::decision::{Decision, Needs, View};

/// The topic family of imports.
const IMPORTS: &str = "imports:user";
/// The family of `reports:user:<id>` topics.
const REPORTS: &str = "reports:user";

/// What `command` needs loaded before [`decide`] can run.
pub fn needs(command: &Command) -> Needs {
    let Some(route) = route(&command.topic) else {
        return Needs::default();
    };
    // Campaign events read the campaign, not presences; every other command on a tracked
    // topic (join, leave, expiry, document events) reads the presences it changes.
    let presence = match (&route, &command.kind) {
        (Route::Campaign(_), CommandKind::Event { .. } | CommandKind::Derived { .. }) => None,
        (route, _) if presence::is_tracked(route) => presence::needs(command),
        _ => None,
    };
    match (route, &command.kind) {
        (Route::Campaign(id), CommandKind::Join { .. } | CommandKind::Event { .. }) => Needs {
            campaign: Some(id),
            presence,
            alias: campaign::idempotency_alias(command),
            ..Needs::default()
        },
        (Route::Campaign(id), CommandKind::Derived { .. }) => Needs {
            campaign: Some(id),
            ..Needs::default()
        },
        (Route::UserScoped { .. }, CommandKind::Derived { event, payload })
            if event == imports::ROW_DONE =>
        {
            Needs {
                document: imports::document_needed(payload),
                ..Needs::default()
            }
        }
        (Route::Zakat(_), CommandKind::Event { event, payload }) => Needs {
            presence,
            prices: zakat::prices_needed(event, payload),
            document: zakat::complex::document_needed(event, payload),
            ..Needs::default()
        },
        (Route::Zakat(_), CommandKind::Derived { event, payload }) => Needs {
            document: zakat::complex::document_needed(event, payload),
            ..Needs::default()
        },
        (Route::Admin(_), CommandKind::Event { event, .. }) if event == "create_campaign" => {
            Needs {
                new_campaign_id: true,
                ..Needs::default()
            }
        }
        (Route::Admin(_), CommandKind::Event { .. }) => Needs {
            donation: moderation::donation_needed(command),
            ..Needs::default()
        },
        (
            Route::UserScoped {
                family: REPORTS,
                user_id,
            },
            CommandKind::Event { .. },
        ) => Needs {
            records: reports::needs(&user_id, command),
            ..Needs::default()
        },
        _ => Needs {
            presence,
            ..Needs::default()
        },
    }
}

/// Decides `command` on `view`. Pure: no IO, no clock, no randomness.
pub fn decide(command: &Command, view: &View) -> Decision {
    let Some(route) = route(&command.topic) else {
        return Decision::refuse(Refusal::UnmatchedTopic);
    };
    match &command.kind {
        CommandKind::Join { .. } => {
            let decision = access::join(&route, &command.claims, view);
            presence::track(decision, &route, command, view)
        }
        CommandKind::Leave => presence::leave(command, view),
        CommandKind::Expire => presence::expire(command, view),
        CommandKind::Event { event, payload } => match route {
            Route::Campaign(_) => campaign::handle_in(event, payload, command, view),
            Route::Admin(_) => admin::handle_in(event, payload, command, view),
            Route::Zakat(user) => zakat::handle_in(event, payload, &user, command, view),
            Route::CollabDocument(_) => collab::handle_in(event, payload, command, view),
            Route::UserScoped {
                family: IMPORTS,
                user_id,
            } if event == "batch_import" => imports::batch_import(payload, command, &user_id, view),
            Route::WaqfPublic => waqf::handle_in(event, payload, command, view),
            Route::UserScoped {
                family: REPORTS,
                user_id,
            } => reports::handle_in(event, payload, &user_id, command, view),
            _ => Decision::refuse(Refusal::UnknownEvent),
        },
        // Derived commands come from processors only; one that names nothing known is
        // dropped (a newer processor's, read by an older one).
        CommandKind::Derived { event, payload } => match route {
            Route::Campaign(_) if event == imports::ROW => imports::row(payload, command, view),
            Route::UserScoped {
                family: IMPORTS, ..
            } if event == imports::ROW_DONE => imports::row_done(payload, view),
            _ if event == crate::streams::RELAY => crate::streams::relayed(payload),
            Route::Zakat(user) if event == zakat::complex::DONE => {
                zakat::complex::done(payload, &user, view)
            }
            _ => Decision::default(),
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
                join_id: Some("1".into()),
                msg_ref: Some("2".into()),
            },
            claims,
            kind,
            received_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    pub(crate) fn join(topic: &str, claims: Claims) -> Command {
        command(
            topic,
            claims,
            CommandKind::Join {
                params: Value::Object(serde_json::Map::new()),
                presence_known: false,
            },
        )
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
        assert_eq!(d, Decision::refuse(Refusal::UnknownEvent));
        let d = decide(&event("room:1", claims(None, &[]), "x", json!({})), &view);
        assert_eq!(d, Decision::refuse(Refusal::UnmatchedTopic));
    }

    #[test]
    fn needs_follow_the_route() {
        let join = command(
            "donations:campaign:7",
            claims(None, &[]),
            CommandKind::Join {
                params: json!({}),
                presence_known: false,
            },
        );
        assert_eq!(needs(&join).campaign.as_deref(), Some("7"));
        assert_eq!(needs(&join).presence, Some(store::PresenceFilter::All));
        let leave = command("collab:document:1", claims(None, &[]), CommandKind::Leave);
        assert!(matches!(
            needs(&leave).presence,
            Some(store::PresenceFilter::Socket { socket_id: 1, .. })
        ));
        let lobby_leave = command("donations:lobby", claims(None, &[]), CommandKind::Leave);
        assert_eq!(needs(&lobby_leave), Needs::default());
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
