//! Presence on channel topics (PROTOCOL.md §9): tracked when a socket joins, updated by
//! channel events, dropped when it leaves or when its connector's lease lapses.
//!
//! Every change is one `presence_diff` broadcast; a joining socket is pushed the full
//! `presence_state` first (or, when its connector already holds the topic's state, a
//! `presence_state` with a null payload that the connector fills in).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use store::{Presence, PresenceFilter, Write};
use topics::presence::{PresenceDiff, PresenceState, DIFF_EVENT, STATE_EVENT};
use topics::routes::Route;
use topics::{Claims, Command, CommandKind, Push, Refusal, ReplyStatus};

use crate::decision::{Decision, NewBroadcast, View};

/// Whether joins of `route` push `presence_state` and track the joining user.
pub(crate) fn is_tracked(route: &Route) -> bool {
    matches!(route, Route::Campaign(_) | Route::CollabDocument(_))
}

/// The presences a command on a tracked route needs read, if any.
pub(crate) fn needs(command: &Command) -> Option<PresenceFilter> {
    let socket = || PresenceFilter::Socket {
        connector_id: command.socket.connector_id.clone(),
        socket_id: command.socket.socket_id,
    };
    match &command.kind {
        CommandKind::Join { presence_known, .. } => {
            (!presence_known).then_some(PresenceFilter::All)
        }
        CommandKind::Leave | CommandKind::Event { .. } => Some(socket()),
        CommandKind::Expire => Some(PresenceFilter::Connector(
            command.socket.connector_id.clone(),
        )),
        CommandKind::Derived { .. } => None,
    }
}

/// The meta a join starts with, or `None` for sockets that are not tracked (anonymous ones).
fn initial_meta(route: &Route, claims: &Claims, now: &str) -> Option<Map<String, Value>> {
    let user_id = claims.user_id.as_ref()?;
    let name = claims.name.clone().unwrap_or_else(|| user_id.clone());
    let mut meta = Map::new();
    meta.insert("online_at".into(), Value::String(now.to_owned()));
    meta.insert("name".into(), Value::String(name));
    match route {
        Route::Campaign(_) => {}
        Route::CollabDocument(_) => {
            meta.insert("cursor_position".into(), Value::Null);
            meta.insert("typing".into(), Value::Bool(false));
        }
        _ => return None,
    }
    Some(meta)
}

/// A `phx_ref` for the `n`-th meta a command creates: 16 URL-safe characters (as Phoenix's),
/// derived from the command id so a command processed again creates the same refs.
pub(crate) fn phx_ref(command_id: &str, n: u32) -> String {
    let hash = |seed: u64| {
        command_id
            .bytes()
            .chain(n.to_le_bytes())
            .fold(seed, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    let mut bytes = hash(0xcbf2_9ce4_8422_2325).to_le_bytes().to_vec();
    bytes.extend_from_slice(&hash(0x8422_2325_cbf2_9ce4).to_le_bytes()[..4]);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn with_ref(mut meta: Map<String, Value>, phx_ref: &str) -> Value {
    meta.insert("phx_ref".into(), Value::String(phx_ref.to_owned()));
    Value::Object(meta)
}

fn announce(topic: &str, diff: &PresenceDiff) -> NewBroadcast {
    NewBroadcast::new(topic, DIFF_EVENT, diff.to_value())
}

/// The presences of the commanding socket's join.
fn own<'a>(command: &'a Command, view: &'a View) -> impl Iterator<Item = &'a Presence> {
    view.presences
        .iter()
        .filter(move |p| Some(p.join_id.as_str()) == command.socket.join_id.as_deref())
}

/// Adds presence to a join on a tracked route. Accepted: the joining user is tracked (unless
/// anonymous), the others hear of it, and the socket is pushed `presence_state` before any
/// other push. Refused: nothing is tracked, but a join that asked for the list still gets it,
/// for its connector's replica (other joins there may be waiting for it); connectors never
/// forward the pushes of a refused join.
pub(crate) fn track(
    mut decision: Decision,
    route: &Route,
    command: &Command,
    view: &View,
) -> Decision {
    if !is_tracked(route) {
        return decision;
    }
    let accepted = decision
        .reply
        .as_ref()
        .is_some_and(|r| r.status == ReplyStatus::Ok);
    let presence_known = matches!(
        command.kind,
        CommandKind::Join {
            presence_known: true,
            ..
        }
    );
    if !accepted && presence_known {
        return decision;
    }
    let meta = accepted
        .then(|| initial_meta(route, &command.claims, &view.now))
        .flatten();
    let tracked = meta.map(|meta| {
        let phx_ref = phx_ref(&command.id, 0);
        Presence {
            topic: command.topic.clone(),
            key: command.claims.user_id.clone().unwrap_or_default(),
            meta: with_ref(meta, &phx_ref),
            phx_ref,
            connector_id: command.socket.connector_id.clone(),
            socket_id: command.socket.socket_id,
            join_id: command.socket.join_id.clone().unwrap_or_default(),
        }
    });
    let state = if presence_known {
        Value::Null
    } else {
        let mut state = PresenceState::default();
        for p in view.presences.iter().chain(&tracked) {
            state.insert(&p.key, p.meta.clone());
        }
        state.to_value()
    };
    decision.pushes.insert(
        0,
        Push {
            event: STATE_EVENT.to_owned(),
            payload: state,
        },
    );
    if let Some(presence) = tracked {
        let mut diff = PresenceDiff::default();
        diff.join(&presence.key, presence.meta.clone());
        decision.broadcasts.push(announce(&command.topic, &diff));
        decision.writes.push(Write::Track(presence));
    }
    decision
}

/// Untracks `presences` and announces their leaves.
fn untrack<'a>(topic: &str, presences: impl Iterator<Item = &'a Presence>) -> Decision {
    let mut decision = Decision::default();
    let mut diff = PresenceDiff::default();
    for p in presences {
        diff.leave(&p.key, p.meta.clone());
        decision.writes.push(Write::Untrack(p.clone()));
    }
    if !diff.is_empty() {
        decision.broadcasts.push(announce(topic, &diff));
    }
    decision
}

/// A socket left the topic (or closed): its join's presence goes.
pub(crate) fn leave(command: &Command, view: &View) -> Decision {
    untrack(&command.topic, own(command, view))
}

/// The connector of `command.socket` stopped heart-beating: all its presences on the topic go,
/// and the topic is no longer listed for it.
pub(crate) fn expire(command: &Command, view: &View) -> Decision {
    let mut decision = untrack(&command.topic, view.presences.iter());
    decision.writes.push(Write::ForgetPresenceTopic {
        connector_id: command.socket.connector_id.clone(),
        topic: command.topic.clone(),
    });
    decision
}

/// Changes the meta of the commanding socket's presence: one diff with the new meta (new
/// `phx_ref`, `phx_ref_prev` = the old one) joined and the old one left. Replies `ok {}`.
pub(crate) fn update(
    command: &Command,
    view: &View,
    change: impl FnOnce(&mut Map<String, Value>),
) -> Decision {
    let Some(old) = own(command, view).last() else {
        return Decision::refuse(Refusal::NotTracked);
    };
    let mut meta = old.meta.as_object().cloned().unwrap_or_default();
    change(&mut meta);
    let phx_ref = phx_ref(&command.id, 0);
    meta.insert("phx_ref_prev".into(), Value::String(old.phx_ref.clone()));
    let new = Presence {
        meta: with_ref(meta, &phx_ref),
        phx_ref,
        ..old.clone()
    };
    let mut diff = PresenceDiff::default();
    diff.join(&new.key, new.meta.clone());
    diff.leave(&old.key, old.meta.clone());
    let mut decision = Decision::ok(Value::Object(Map::new()));
    decision.broadcasts.push(announce(&command.topic, &diff));
    decision.writes.push(Write::Untrack(old.clone()));
    decision.writes.push(Write::Track(new));
    decision
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{claims, command};
    use super::*;
    use serde_json::json;

    const TOPIC: &str = "collab:document:1";

    fn join(user: Option<&str>, presence_known: bool) -> Command {
        let mut c = command(
            TOPIC,
            claims(user, &[]),
            CommandKind::Join {
                params: json!({}),
                presence_known,
            },
        );
        c.id = format!("join-{}", user.unwrap_or("anon"));
        c
    }

    fn tracked_by(decision: &Decision) -> Presence {
        decision
            .writes
            .iter()
            .find_map(|w| match w {
                Write::Track(p) => Some(p.clone()),
                _ => None,
            })
            .expect("a tracked presence")
    }

    fn route() -> Route {
        Route::CollabDocument("1".into())
    }

    #[test]
    fn refs_are_phoenix_sized_distinct_and_stable() {
        let a = phx_ref("cmd-1", 0);
        assert_eq!(a.len(), 16);
        assert_eq!(a, phx_ref("cmd-1", 0));
        assert_ne!(a, phx_ref("cmd-1", 1));
        assert_ne!(a, phx_ref("cmd-2", 0));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn a_join_is_tracked_announced_and_pushed_the_state_first() {
        let first = track(
            Decision::ok(json!({})),
            &route(),
            &join(Some("7"), false),
            &View::default(),
        );
        let p7 = tracked_by(&first);
        let view = View {
            presences: vec![p7.clone()],
            ..View::default()
        };
        let joined = Decision::ok(json!({})).push("campaign_state", json!({}));
        let second = track(joined, &route(), &join(Some("8"), false), &view);
        assert_eq!(second.pushes[0].event, STATE_EVENT);
        assert_eq!(second.pushes[1].event, "campaign_state");
        let state = &second.pushes[0].payload;
        assert_eq!(state["7"]["metas"][0]["phx_ref"], p7.phx_ref.as_str());
        assert_eq!(state["8"]["metas"][0]["name"], "8");
        assert_eq!(state["8"]["metas"][0]["typing"], false);
        assert!(state["8"]["metas"][0]["cursor_position"].is_null());
        let diff = &second.broadcasts[0];
        assert_eq!(diff.event, DIFF_EVENT);
        assert_eq!(diff.payload["leaves"], json!({}));
        assert_eq!(
            diff.payload["joins"]["8"]["metas"][0],
            state["8"]["metas"][0]
        );
    }

    #[test]
    fn a_known_state_is_left_for_the_connector_and_anonymous_sockets_are_not_tracked() {
        let known = track(
            Decision::ok(json!({})),
            &route(),
            &join(Some("7"), true),
            &View::default(),
        );
        assert_eq!(known.pushes[0].payload, Value::Null);
        let campaign = Route::Campaign("1".into());
        let mut anon_join = join(None, false);
        anon_join.topic = "donations:campaign:1".into();
        let anon = track(
            Decision::ok(json!({})),
            &campaign,
            &anon_join,
            &View::default(),
        );
        assert_eq!(anon.pushes[0].event, STATE_EVENT);
        assert!(anon.writes.is_empty() && anon.broadcasts.is_empty());
        let refused = |known| {
            track(
                Decision::refuse(Refusal::Unauthorized),
                &route(),
                &join(Some("7"), known),
                &View::default(),
            )
        };
        assert!(refused(true).pushes.is_empty());
        let asked = refused(false);
        assert_eq!(
            asked.pushes[0].event, STATE_EVENT,
            "the list still goes to the replica"
        );
        assert!(asked.writes.is_empty() && asked.broadcasts.is_empty());
    }

    #[test]
    fn updates_replace_the_meta_and_leaves_remove_only_their_join() {
        let p = tracked_by(&track(
            Decision::ok(json!({})),
            &route(),
            &join(Some("7"), false),
            &View::default(),
        ));
        let mut other_join = p.clone();
        other_join.join_id = "99".into();
        other_join.phx_ref = "other".into();
        let view = View {
            presences: vec![other_join, p.clone()],
            ..View::default()
        };
        let mut moved = command(
            TOPIC,
            claims(Some("7"), &[]),
            CommandKind::Event {
                event: "cursor_moved".into(),
                payload: json!({}),
            },
        );
        moved.id = "move-1".into();
        let d = update(&moved, &view, |m| {
            m.insert("cursor_position".into(), json!(5));
        });
        let diff = &d.broadcasts[0].payload;
        let new = &diff["joins"]["7"]["metas"][0];
        assert_eq!(new["cursor_position"], 5);
        assert_eq!(new["phx_ref_prev"], p.phx_ref.as_str());
        assert_ne!(new["phx_ref"], p.phx_ref.as_str());
        assert_eq!(
            diff["leaves"]["7"]["metas"][0]["phx_ref"],
            p.phx_ref.as_str()
        );
        assert_eq!(d.reply.as_ref().map(|r| r.status.as_str()), Some("ok"));

        let left = leave(
            &command(TOPIC, claims(Some("7"), &[]), CommandKind::Leave),
            &view,
        );
        assert_eq!(left.writes, vec![Write::Untrack(p.clone())]);
        assert_eq!(
            left.broadcasts[0].payload["leaves"]["7"]["metas"][0]["phx_ref"],
            p.phx_ref.as_str()
        );
    }

    #[test]
    fn expiry_drops_everything_of_the_connector_and_forgets_the_topic() {
        let p = tracked_by(&track(
            Decision::ok(json!({})),
            &route(),
            &join(Some("7"), false),
            &View::default(),
        ));
        let view = View {
            presences: vec![p.clone()],
            ..View::default()
        };
        let d = expire(
            &command(TOPIC, Claims::default(), CommandKind::Expire),
            &view,
        );
        assert_eq!(d.writes.len(), 2);
        assert!(matches!(&d.writes[1], Write::ForgetPresenceTopic { topic, .. } if topic == TOPIC));
        assert!(d.reply.is_none());
        let none = expire(
            &command(TOPIC, Claims::default(), CommandKind::Expire),
            &View::default(),
        );
        assert!(none.broadcasts.is_empty());
    }
}
