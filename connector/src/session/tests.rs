//! Tests of the session state machine, fed decoded frames and deliveries, no socket.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use topics::{CommandKind, Delivery, ReplyBody, ReplyStatus, SocketRef};

use super::channel::MAX_HELD;
use super::{Action, Session, MAX_CHANNELS};
use crate::serializer::{decode_text, Frame, Message, Text, Vsn};

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
            Action::Command { join_id, kind, .. } => Some((join_id.clone(), format!("{kind:?}"))),
            _ => None,
        })
        .collect()
}

fn delivery(
    topic: &str,
    join_id: &str,
    msg_ref: Option<&str>,
    status: ReplyStatus,
    response: Value,
) -> Delivery {
    Delivery {
        socket: SocketRef {
            connector_id: "c".into(),
            socket_id: 1,
            join_id: Some(join_id.into()),
            msg_ref: msg_ref.map(str::to_owned),
        },
        topic: topic.into(),
        reply: Some(ReplyBody { status, response }),
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
        delivery(topic, &join_id, Some(join_ref), ReplyStatus::Ok, json!({})),
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
    s.handle_broadcast(
        "donations:campaign:1",
        Text::from_static("diff"),
        None,
        &mut out,
    );
    s.handle_broadcast(
        "donations:lobby",
        Text::from_static("other"),
        None,
        &mut out,
    );
    assert!(out.is_empty(), "held until the join is answered");
    let mut d = delivery(
        "donations:campaign:1",
        "1",
        Some("1"),
        ReplyStatus::Ok,
        json!({}),
    );
    d.pushes.push(topics::Push {
        event: "campaign_state".into(),
        payload: json!({"campaign": {}}),
    });
    assert!(s.answers_pending_join(&d));
    s.handle_delivery(d, None, &mut out);
    assert_eq!(out[1], Action::JoinAnswered(ReplyStatus::Ok));
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
    s.handle_broadcast(
        "donations:campaign:1",
        Text::from_static("next"),
        None,
        &mut out,
    );
    assert_eq!(out, vec![Action::Forward(Text::from_static("next"))]);
}

#[test]
fn broadcasts_the_join_already_covered_are_not_written_nor_is_the_join_answered_twice() {
    let topic = "donations:campaign:1";
    let mut s = Session::new(Vsn::V2, 0);
    let mut out = Vec::new();
    feed(
        &mut s,
        r#"["11","1","donations:campaign:1","phx_join",{}]"#,
        &mut out,
    );
    let mut out = Vec::new();
    // Held while joining: offsets 9 and 10 (in the state the join answers with) and 11.
    for (frame, offset) in [("nine", 9), ("ten", 10), ("eleven", 11)] {
        s.handle_broadcast(topic, Text::from_static(frame), Some(offset), &mut out);
    }
    let answer = || {
        delivery(
            topic,
            "1",
            Some("1"),
            ReplyStatus::Ok,
            json!({"position": {"epoch": "e", "offset": 10}}),
        )
    };
    s.handle_delivery(answer(), None, &mut out);
    assert_eq!(
        out.last(),
        Some(&Action::Forward(Text::from_static("eleven"))),
        "only what came after the join's position"
    );
    assert!(!out.contains(&Action::Forward(Text::from_static("ten"))));
    // Live: one at or before the position is dropped, a later one written.
    let mut out = Vec::new();
    s.handle_broadcast(topic, Text::from_static("late"), Some(10), &mut out);
    s.handle_broadcast(topic, Text::from_static("twelve"), Some(12), &mut out);
    s.handle_broadcast(topic, Text::from_static("api"), None, &mut out);
    assert_eq!(
        out,
        vec![
            Action::Forward(Text::from_static("twelve")),
            Action::Forward(Text::from_static("api"))
        ]
    );
    // The join's answer sent again (a processor re-sent its outcome) is not written.
    let mut out = Vec::new();
    s.handle_delivery(answer(), None, &mut out);
    assert!(out.is_empty(), "{out:?}");
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
        s.handle_broadcast("donations:lobby", Text::from_static("b"), None, &mut out);
    }
    assert!(out.is_empty());
    s.handle_broadcast("donations:lobby", Text::from_static("b"), None, &mut out);
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
            ReplyStatus::Error,
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
            ReplyStatus::Error,
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
        vec![json!(["11", "9", "donations:lobby", "phx_reply", {"status": "ok", "response": {}}])]
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
        delivery(
            "donations:lobby",
            &ids[1].0,
            Some("12"),
            ReplyStatus::Ok,
            json!({}),
        ),
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
        delivery(
            "donations:lobby",
            &ids[0].0,
            Some("3"),
            ReplyStatus::Ok,
            json!({}),
        ),
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
        delivery(
            "donations:lobby",
            "1",
            Some("1"),
            ReplyStatus::Ok,
            json!({}),
        ),
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
    let answer = delivery(
        "donations:lobby",
        "1",
        Some("1"),
        ReplyStatus::Ok,
        json!({}),
    );
    s.handle_delivery(answer, None, &mut out);
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
}

#[test]
fn a_push_not_stored_is_answered_unavailable_and_its_late_reply_dropped() {
    let topic = "donations:campaign:1";
    let mut s = Session::new(Vsn::V2, 0);
    let join_id = joined(&mut s, topic, "j1");
    let mut out = Vec::new();
    feed(
        &mut s,
        &format!(r#"["j1","7","{topic}","new_donation",{{"amount":"1"}}]"#),
        &mut out,
    );
    let Some(Action::Command { kind, msg_ref, .. }) = out.pop() else {
        panic!("a command")
    };
    let mut out = Vec::new();
    s.not_stored(topic, &join_id, msg_ref.as_deref(), &kind, &mut out);
    let unavailable = json!({"status": "error", "response": {"reason": "unavailable"}});
    assert_eq!(
        frames(&out),
        vec![json!(["j1", "7", topic, "phx_reply", unavailable])]
    );
    assert!(commands(&out).is_empty());
    // The command landed after all: its reply is dropped (one reply per ref), pushes are not.
    let mut late = delivery(topic, &join_id, Some("7"), ReplyStatus::Ok, json!({}));
    late.pushes.push(topics::Push {
        event: "thanks".into(),
        payload: json!({}),
    });
    let mut out = Vec::new();
    s.handle_delivery(late, None, &mut out);
    let written = frames(&out);
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0][3], "thanks");
    // Other replies still go through.
    let mut out = Vec::new();
    s.handle_delivery(
        delivery(topic, &join_id, Some("8"), ReplyStatus::Ok, json!({})),
        None,
        &mut out,
    );
    assert_eq!(frames(&out)[0][1], "8");
}

#[test]
fn a_join_not_stored_is_answered_unavailable_undone_and_left() {
    let topic = "donations:campaign:1";
    let mut s = Session::new(Vsn::V2, 0);
    let mut out = Vec::new();
    feed(
        &mut s,
        &format!(r#"["j1","1","{topic}","phx_join",{{}}]"#),
        &mut out,
    );
    feed(
        &mut s,
        &format!(r#"["j1","2","{topic}","new_donation",{{}}]"#),
        &mut out,
    );
    let Some(Action::Command {
        kind,
        join_id,
        msg_ref,
        ..
    }) = out
        .iter()
        .find(|a| matches!(a, Action::Command { .. }))
        .cloned()
    else {
        panic!("a join command")
    };
    let mut out = Vec::new();
    s.not_stored(topic, &join_id, msg_ref.as_deref(), &kind, &mut out);
    let unavailable = json!({"status": "error", "response": {"reason": "unavailable"}});
    let unmatched = json!({"status": "error", "response": {"reason": "unmatched topic"}});
    assert_eq!(
        frames(&out),
        vec![
            json!(["j1", "1", topic, "phx_reply", unavailable]),
            json!([null, "2", topic, "phx_reply", unmatched]),
        ]
    );
    assert!(out.contains(&Action::Unsubscribe(topic.into())));
    assert!(out.contains(&Action::JoinAnswered(ReplyStatus::Error)));
    assert_eq!(commands(&out), vec![(join_id, "Leave".to_owned())]);
    assert_eq!(s.joined().count(), 0);
    // A leave that was not stored needs no answer.
    let mut out = Vec::new();
    s.not_stored(topic, "9", None, &CommandKind::Leave, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_draining_session_refuses_joins_and_keeps_its_channels() {
    let campaign = "donations:campaign:1";
    let mut s = Session::new(Vsn::V2, 0);
    let join_id = joined(&mut s, campaign, "j1");
    // A join still waiting for its answer when the drain starts is answered as usual.
    let mut out = Vec::new();
    feed(
        &mut s,
        r#"["j2","2","donations:lobby","phx_join",{}]"#,
        &mut out,
    );
    let Some(Action::Command {
        join_id: lobby_join,
        ..
    }) = out
        .iter()
        .find(|a| matches!(a, Action::Command { .. }))
        .cloned()
    else {
        panic!("a join command")
    };
    s.drain();

    let mut out = Vec::new();
    feed(
        &mut s,
        r#"["j3","3","waqf:public","phx_join",{}]"#,
        &mut out,
    );
    // A duplicate join does not replace the channel it would have.
    feed(
        &mut s,
        &format!(r#"["j4","4","{campaign}","phx_join",{{}}]"#),
        &mut out,
    );
    let refused = json!({"status": "error", "response": {"reason": "shutting down"}});
    assert_eq!(
        frames(&out),
        vec![
            json!(["j3", "3", "waqf:public", "phx_reply", refused]),
            json!(["j4", "4", campaign, "phx_reply", refused]),
        ]
    );
    assert!(
        commands(&out).is_empty(),
        "nothing reaches the log: {out:?}"
    );
    assert!(
        !out.iter().any(|a| matches!(a, Action::Subscribe(_))),
        "{out:?}"
    );

    // Joined channels still take pushes, and owed replies are still written.
    let mut out = Vec::new();
    feed(
        &mut s,
        &format!(r#"["j1","5","{campaign}","new_donation",{{"amount":"1"}}]"#),
        &mut out,
    );
    assert_eq!(commands(&out).len(), 1, "{out:?}");
    let mut out = Vec::new();
    s.handle_delivery(
        delivery(campaign, &join_id, Some("5"), ReplyStatus::Ok, json!({})),
        None,
        &mut out,
    );
    s.handle_delivery(
        delivery(
            "donations:lobby",
            &lobby_join,
            Some("2"),
            ReplyStatus::Ok,
            json!({}),
        ),
        None,
        &mut out,
    );
    let written = frames(&out);
    assert_eq!(written.len(), 2, "{written:?}");
    assert_eq!(written[0][1], "5");
    assert_eq!(written[1][1], "2");
    let mut topics: Vec<&str> = s.joined().map(|(topic, _)| topic).collect();
    topics.sort_unstable();
    assert_eq!(topics, vec![campaign, "donations:lobby"]);
}
