//! End-to-end: presence through real sockets on a `fawkes dev` started on port 0: state on
//! join, diffs for joins, updates, leaves and closed sockets, several tabs per user, and diffs
//! folded per window.

mod common;

use std::time::Duration;

use common::{token, token_named, Client, TestServer};
use serde_json::{json, Value};
use topics::presence::{PresenceDiff, PresenceState};

const CAMPAIGN: &str = "donations:campaign:1";

fn metas(state: &PresenceState, key: &str) -> Vec<Value> {
    state.to_value()[key]["metas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has(key: &'static str, count: usize) -> impl Fn(&PresenceState) -> bool {
    move |s| metas(s, key).len() == count
}

/// Connects as `user` and joins `topic`, asserting the join is accepted.
async fn joined(server: &TestServer, user: &str, topic: &str) -> (Client, String) {
    let mut client =
        Client::connect(server, Some(&token_named(user, &format!("User {user}")))).await;
    let (join_ref, reply) = client.join(topic, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    (client, join_ref)
}

#[tokio::test]
async fn users_see_each_other_join_open_tabs_leave_and_drop() {
    let server = TestServer::start().await;
    let (mut a, a_join) = joined(&server, "7", CAMPAIGN).await;
    // The first joiner's state comes from the processor and already lists itself, with the
    // join's join_ref (phoenix.js checks it), before campaign_state.
    let state_frame = a.presence_frame(CAMPAIGN).await;
    assert_eq!(state_frame[0], a_join.as_str());
    let mut seen_by_a = PresenceState::from_value(&state_frame[4]);
    let me = metas(&seen_by_a, "7");
    assert_eq!(me.len(), 1);
    assert_eq!(me[0]["name"], "User 7");
    assert!(me[0]["online_at"].is_string());
    assert_eq!(me[0]["phx_ref"].as_str().map(str::len), Some(16));
    assert_eq!(
        a.event(CAMPAIGN, "campaign_state").await[0],
        a_join.as_str()
    );

    let (mut b, _) = joined(&server, "8", CAMPAIGN).await;
    let mut seen_by_b = PresenceState::default();
    b.presence_until(CAMPAIGN, &mut seen_by_b, |s| {
        has("7", 1)(s) && has("8", 1)(s)
    })
    .await;
    a.presence_until(CAMPAIGN, &mut seen_by_a, has("8", 1))
        .await;
    assert_eq!(seen_by_a, seen_by_b, "both see the same list");

    // A second tab of user 7: one key, two metas with distinct refs.
    let (a2, _) = joined(&server, "7", CAMPAIGN).await;
    b.presence_until(CAMPAIGN, &mut seen_by_b, has("7", 2))
        .await;
    let tabs = metas(&seen_by_b, "7");
    assert_ne!(tabs[0]["phx_ref"], tabs[1]["phx_ref"]);

    // Closing the second tab's socket abruptly removes only its meta.
    drop(a2);
    b.presence_until(CAMPAIGN, &mut seen_by_b, has("7", 1))
        .await;
    assert_eq!(metas(&seen_by_b, "7")[0]["phx_ref"], me[0]["phx_ref"]);

    // A leave reaches the others as a diff listing the meta that left.
    let leave = b.send(None, CAMPAIGN, "phx_leave", json!({})).await;
    assert_eq!(b.reply(&leave).await["status"], "ok");
    let diff = a
        .presence_frame_where(CAMPAIGN, |f| f[4]["leaves"].get("8").is_some())
        .await;
    assert_eq!(diff[0], Value::Null, "diffs are broadcasts: null join_ref");
    assert_eq!(diff[4]["joins"], json!({}));
    server.stop().await;
}

#[tokio::test]
async fn a_duplicate_join_gets_a_fresh_state_and_replaces_the_meta() {
    let server = TestServer::start().await;
    let (mut watcher, _) = joined(&server, "5", CAMPAIGN).await;
    let mut seen = PresenceState::default();
    let (mut a, first_join) = joined(&server, "7", CAMPAIGN).await;
    watcher
        .presence_until(CAMPAIGN, &mut seen, has("7", 1))
        .await;
    let old_ref = metas(&seen, "7")[0]["phx_ref"].clone();

    // Joining the same topic again on the same socket: the old join ends (phx_close after the
    // new reply), and a presence_state comes with the new join_ref, as phoenix.js needs.
    let (second_join, reply) = a.join(CAMPAIGN, json!({})).await;
    assert_eq!(reply["status"], "ok");
    assert_ne!(first_join, second_join);
    let fresh = a
        .presence_frame_where(CAMPAIGN, |f| {
            f[3] == "presence_state" && f[0] == second_join.as_str()
        })
        .await;
    assert!(
        fresh[4].get("5").is_some(),
        "the fresh state lists the others"
    );
    watcher
        .presence_until(CAMPAIGN, &mut seen, |s| {
            let metas = metas(s, "7");
            metas.len() == 1 && metas[0]["phx_ref"] != old_ref
        })
        .await;
    server.stop().await;
}

#[tokio::test]
async fn anonymous_sockets_see_presence_without_being_listed() {
    let server = TestServer::start().await;
    let (mut member, _) = joined(&server, "7", CAMPAIGN).await;
    let mut seen = PresenceState::default();
    member
        .presence_until(CAMPAIGN, &mut seen, has("7", 1))
        .await;
    let mut anon = Client::connect(&server, None).await;
    let (_, reply) = anon.join(CAMPAIGN, json!({})).await;
    assert_eq!(reply["status"], "ok");
    let mut anon_view = PresenceState::default();
    anon.presence_until(CAMPAIGN, &mut anon_view, has("7", 1))
        .await;
    assert_eq!(anon_view.len(), 1);
    // Whatever the member hears next (its own join's diff), nobody else is ever listed.
    let listed_more = member.presence_until(CAMPAIGN, &mut seen, |s| s.len() > 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), listed_more)
            .await
            .is_err(),
        "the anonymous socket was listed: {seen:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn document_cursor_and_typing_update_metas() {
    let server = TestServer::start().await;
    let doc = "collab:document:9";
    let (mut a, a_join) = joined(&server, "7", doc).await;
    let (mut b, _) = joined(&server, "8", doc).await;
    let mut seen_by_b = PresenceState::default();
    b.presence_until(doc, &mut seen_by_b, |s| has("7", 1)(s) && has("8", 1)(s))
        .await;
    let before = metas(&seen_by_b, "7")[0].clone();
    assert_eq!(before["cursor_position"], Value::Null);
    assert_eq!(before["typing"], false);

    let reply = a
        .push(
            &a_join,
            doc,
            "cursor_moved",
            json!({"position": {"line": 3, "ch": 14}}),
        )
        .await;
    assert_eq!(reply, json!({"status": "ok", "response": {}}));
    let diff = b.presence_frame(doc).await;
    // One diff: the new meta joined (new ref, previous ref noted) and the old one left.
    let new = &diff[4]["joins"]["7"]["metas"][0];
    assert_eq!(new["cursor_position"], json!({"line": 3, "ch": 14}));
    assert_eq!(new["phx_ref_prev"], before["phx_ref"]);
    assert_ne!(new["phx_ref"], before["phx_ref"]);
    assert_eq!(diff[4]["leaves"]["7"]["metas"][0], before);
    seen_by_b.apply(&PresenceDiff::from_value(&diff[4]).expect("a diff"));

    let reply = a
        .push(&a_join, doc, "typing", json!({"typing": true}))
        .await;
    assert_eq!(reply["status"], "ok");
    b.presence_until(doc, &mut seen_by_b, |s| {
        metas(s, "7").first().is_some_and(|m| m["typing"] == true)
    })
    .await;
    let now = metas(&seen_by_b, "7");
    assert_eq!(now.len(), 1, "an update replaces the meta");
    assert!(now[0]["typing_at"].is_string());
    assert_eq!(now[0]["cursor_position"]["line"], 3, "other fields stay");

    let reply = a
        .push(&a_join, doc, "typing", json!({"typing": "maybe"}))
        .await;
    assert_eq!(
        reply,
        json!({"status": "error", "response": {"errors": {"typing": ["must be true or false"]}}})
    );
    let mut anon = Client::connect(&server, None).await;
    let (_, refused) = anon.join(doc, json!({})).await;
    assert_eq!(refused["response"]["reason"], "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn a_join_burst_reaches_a_watcher_in_few_frames_and_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long window so the burst lands in few windows whatever the machine's speed.
    let server = TestServer::start_in(dir.path(), &["--presence-window-ms", "1000"]).await;
    let (mut watcher, _) = joined(&server, "watcher", CAMPAIGN).await;
    let mut seen = PresenceState::default();
    watcher
        .presence_until(CAMPAIGN, &mut seen, has("watcher", 1))
        .await;

    const USERS: usize = 60;
    let mut clients = Vec::new();
    for i in 0..USERS {
        let mut c = Client::connect(&server, Some(&token(&format!("u{i}"), &[]))).await;
        c.send(None, CAMPAIGN, "phx_join", json!({})).await;
        clients.push(c);
    }
    let frames = watcher
        .presence_until(CAMPAIGN, &mut seen, |s| s.len() == USERS + 1)
        .await;
    assert!(
        frames < USERS / 2,
        "{USERS} joins arrived in {frames} presence frames"
    );
    assert_eq!(seen.meta_count(), USERS + 1, "the count stays exact");
    server.stop().await;
}
