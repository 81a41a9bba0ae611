//! End-to-end: the Phoenix protocol and the donation channels through real sockets on a
//! `fawkes dev` started on port 0.

mod common;

use std::time::Duration;

use common::{http, token, token_with, unpositioned, Client, Connect, TestServer};
use serde_json::{json, Value};

fn ok(response: Value) -> Value {
    json!({"status": "ok", "response": response})
}

/// A join reply (as a reply payload, a V2 frame or a V1 frame) without the topic's stream
/// position, after checking there is a well-formed one: positions depend on the run.
fn joined(mut reply: Value) -> Value {
    let payload = match &mut reply {
        Value::Array(frame) => frame.get_mut(4),
        Value::Object(map) if map.contains_key("payload") => map.get_mut("payload"),
        other => Some(other),
    };
    if let Some(Value::Object(response)) = payload.and_then(|p| p.get_mut("response")) {
        let position = response
            .remove("position")
            .expect("a join reply has a position");
        assert!(position["epoch"].is_string(), "{position}");
        assert!(position["offset"].is_u64(), "{position}");
    }
    reply
}

fn error(reason: &str) -> Value {
    json!({"status": "error", "response": {"reason": reason}})
}

#[tokio::test]
async fn heartbeat_and_join_reply_shapes() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server, None).await;
    c.heartbeat().await;

    // The join reply carries the join_ref, and campaign_state follows it with the same join_ref.
    c.send_text(r#"["j1","5","donations:campaign:1","phx_join",{}]"#)
        .await;
    let reply = c.recv().await;
    assert_eq!(
        joined(reply),
        json!([
            "j1",
            "5",
            "donations:campaign:1",
            "phx_reply",
            ok(json!({}))
        ])
    );
    // presence_state comes first (an anonymous socket sees who is there without being listed).
    let presence = c.recv().await;
    assert_eq!(
        presence,
        json!(["j1", null, "donations:campaign:1", "presence_state", {}])
    );
    let state = c.recv().await;
    assert_eq!(state[0], "j1");
    assert_eq!(state[1], Value::Null);
    assert_eq!(state[3], "campaign_state");
    assert_eq!(state[4]["campaign"]["name"], "Ramadan Food Drive");
    assert_eq!(state[4]["campaign"]["goal"], "10000.00");
    assert_eq!(state[4]["campaign"]["currency"], "USD");

    // Unmatched topics answer with a null join_ref.
    c.send_text(r#"["j2","6","room:lobby","phx_join",{}]"#)
        .await;
    assert_eq!(
        c.recv().await,
        json!([
            null,
            "6",
            "room:lobby",
            "phx_reply",
            error("unmatched topic")
        ])
    );
    // Pushes on a topic never joined, likewise.
    c.send_text(r#"["j2","7","donations:lobby","new_msg",{}]"#)
        .await;
    assert_eq!(
        c.recv().await,
        json!([
            null,
            "7",
            "donations:lobby",
            "phx_reply",
            error("unmatched topic")
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn join_authorization() {
    let server = TestServer::start().await;
    let mut anon = Client::connect(&server, None).await;
    assert_eq!(
        joined(anon.join("donations:lobby", json!({})).await.1),
        ok(json!({}))
    );
    assert_eq!(
        anon.join("donations:campaign:2", json!({})).await.1,
        error("unauthorized")
    );
    assert_eq!(
        anon.join("donations:campaign:999", json!({})).await.1,
        error("not found")
    );
    assert_eq!(
        anon.join("admin:ops", json!({})).await.1,
        error("unauthorized")
    );
    assert_eq!(
        anon.join("collab:document:1", json!({})).await.1,
        error("unauthorized")
    );

    let mut member = Client::connect(&server, Some(&token("3", &[]))).await;
    assert_eq!(
        joined(member.join("donations:campaign:2", json!({})).await.1),
        ok(json!({}))
    );
    assert_eq!(
        joined(member.join("zakat:user:3", json!({})).await.1),
        ok(json!({}))
    );
    assert_eq!(
        member.join("zakat:user:4", json!({})).await.1,
        error("unauthorized")
    );

    let mut admin = Client::connect(&server, Some(&token("9", &["admin"]))).await;
    assert_eq!(
        joined(admin.join("donations:campaign:2", json!({})).await.1),
        ok(json!({}))
    );
    assert_eq!(
        joined(admin.join("admin:ops", json!({})).await.1),
        ok(json!({}))
    );
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_at_connect() {
    let server = TestServer::start().await;
    let refused = |url: String, protocols: Option<String>| async move {
        match Client::try_connect(&url, protocols.as_deref()).await {
            Connect::Refused(status) => status,
            Connect::Open(_) => 101,
        }
    };
    let bad_signature = token_with("1", &[], 3600, "another-secret");
    let expired = token_with("1", &[], -3600, common::SECRET);
    assert_eq!(
        refused(
            server.url(&format!("vsn=2.0.0&token={bad_signature}")),
            None
        )
        .await,
        403
    );
    assert_eq!(
        refused(server.url(&format!("vsn=2.0.0&token={expired}")), None).await,
        403
    );
    assert_eq!(
        refused(server.url("vsn=2.0.0&token=garbage"), None).await,
        403
    );
    assert_eq!(refused(server.url("vsn=3.0.0"), None).await, 403);

    // phoenix.js's authToken: standard base64 without padding, after the phoenix protocol.
    use base64::Engine;
    let good = token("1", &[]);
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&good);
    let protocols = format!("phoenix, base64url.bearer.phx.{encoded}");
    let Connect::Open(mut organizer) =
        Client::try_connect(&server.url("vsn=2.0.0"), Some(&protocols)).await
    else {
        panic!("authToken sub-protocol accepted")
    };
    // Only an authenticated organizer may change the goal, so this proves the token was read.
    let (jr, _) = organizer.join("donations:campaign:1", json!({})).await;
    let reply = organizer
        .push(
            &jr,
            "donations:campaign:1",
            "update_goal",
            json!({"new_goal": "12000"}),
        )
        .await;
    assert_eq!(reply["status"], "ok");
    let bad = format!(
        "phoenix, base64url.bearer.phx.{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&expired)
    );
    assert_eq!(refused(server.url("vsn=2.0.0"), Some(bad)).await, 403);
    server.stop().await;
}

#[tokio::test]
async fn donation_seen_by_donor_organizer_and_viewer() {
    let server = TestServer::start().await;
    let topic = "donations:campaign:1";
    let mut organizer = Client::connect(&server, Some(&token("1", &[]))).await;
    let mut donor = Client::connect(&server, Some(&token("5", &[]))).await;
    let mut viewer = Client::connect(&server, None).await;
    organizer.join(topic, json!({})).await;
    viewer.join(topic, json!({})).await;
    let (jr, _) = donor.join(topic, json!({})).await;

    let reply = donor
        .push(
            &jr,
            topic,
            "new_donation",
            json!({"amount": "100.10", "donor_name": "Aisha"}),
        )
        .await;
    assert_eq!(reply["status"], "ok");
    let donation_id = reply["response"]["donation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A JSON number is read from its exact text.
    let second: Value =
        serde_json::from_str(r#"{"amount": 0.2, "donor_name": "Omar"}"#).expect("json");
    assert_eq!(
        donor.push(&jr, topic, "new_donation", second).await["status"],
        "ok"
    );

    let seen_by_organizer = organizer.event(topic, "donation_created").await;
    assert_eq!(
        seen_by_organizer[0],
        Value::Null,
        "broadcasts carry a null join_ref"
    );
    assert_eq!(seen_by_organizer[4]["donation"]["donor_name"], "Aisha");
    assert_eq!(seen_by_organizer[4]["donation"]["id"], donation_id.as_str());
    assert_eq!(seen_by_organizer[4]["donation"]["amount"], "100.10");
    assert_eq!(seen_by_organizer[4]["new_total"], "100.10");
    for client in [&mut viewer, &mut donor] {
        let first = client.event(topic, "donation_created").await;
        assert_eq!(first[4]["donation"]["donor_name"], "Anonymous");
        assert_eq!(first[4]["new_total"], "100.10");
        let second = client.event(topic, "donation_created").await;
        assert_eq!(second[4]["new_total"], "100.30");
    }
    let second = organizer.event(topic, "donation_created").await;
    assert_eq!(second[4]["donation"]["donor_name"], "Omar");

    // A fresh join sees the exact totals.
    let mut late = Client::connect(&server, None).await;
    late.join(topic, json!({})).await;
    let state = late.event(topic, "campaign_state").await;
    assert_eq!(state[4]["campaign"]["total"], "100.30");
    assert_eq!(state[4]["campaign"]["donation_count"], 2);
    server.stop().await;
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_is_counted_once() {
    // phoenix.js apps retry a push after a timeout, possibly from a new socket after a
    // reconnect: the key makes the retry answer with the first donation.
    let server = TestServer::start().await;
    let topic = "donations:campaign:1";
    let donation = json!({"amount": "12.00", "donor_name": "Aisha", "idempotency_key": "b7c1"});
    let mut first = Client::connect(&server, Some(&token("5", &[]))).await;
    let (jr, _) = first.join(topic, json!({})).await;
    let reply = first
        .push(&jr, topic, "new_donation", donation.clone())
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let mut again = Client::connect(&server, Some(&token("5", &[]))).await;
    let (jr, _) = again.join(topic, json!({})).await;
    let retry = again
        .push(&jr, topic, "new_donation", donation.clone())
        .await;
    assert_eq!(retry, reply, "the same answer");
    // Another user's identical key is another donation.
    let mut other = Client::connect(&server, Some(&token("6", &[]))).await;
    let (jr, _) = other.join(topic, json!({})).await;
    let theirs = other.push(&jr, topic, "new_donation", donation).await;
    assert_ne!(
        theirs["response"]["donation_id"],
        reply["response"]["donation_id"]
    );
    let mut late = Client::connect(&server, None).await;
    late.join(topic, json!({})).await;
    let state = late.event(topic, "campaign_state").await;
    assert_eq!(state[4]["campaign"]["donation_count"], 2);
    assert_eq!(state[4]["campaign"]["total"], "24.00");
    server.stop().await;
}

#[tokio::test]
async fn validation_errors_and_unknown_events() {
    let server = TestServer::start().await;
    let topic = "donations:campaign:1";
    let mut c = Client::connect(&server, None).await;
    let (jr, _) = c.join(topic, json!({})).await;
    let reply = c
        .push(
            &jr,
            topic,
            "new_donation",
            json!({"amount": "12.345", "donor_name": ""}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"status": "error", "response": {"errors": {
            "amount": ["must have at most 2 decimal places"],
            "donor_name": ["can't be blank"],
        }}})
    );
    for (amount, message) in [
        (json!("0"), "must be greater than 0"),
        (json!("1000000000.01"), "must be at most 1000000000"),
        (json!("ten"), "must be a decimal number"),
    ] {
        let reply = c
            .push(
                &jr,
                topic,
                "new_donation",
                json!({"amount": amount, "donor_name": "A"}),
            )
            .await;
        assert_eq!(reply["response"]["errors"]["amount"], json!([message]));
    }
    let reply = c
        .push(
            &jr,
            topic,
            "new_donation",
            json!({"amount": "5", "donor_name": "A", "currency": "EUR"}),
        )
        .await;
    assert_eq!(
        reply["response"]["errors"]["currency"],
        json!(["must match the campaign currency (USD)"])
    );
    assert_eq!(
        c.push(&jr, topic, "dance", json!({})).await,
        error("unknown event")
    );
    // Nothing was counted.
    let mut late = Client::connect(&server, None).await;
    late.join(topic, json!({})).await;
    assert_eq!(
        late.event(topic, "campaign_state").await[4]["campaign"]["total"],
        "0.00"
    );
    server.stop().await;
}

#[tokio::test]
async fn update_goal_rights_and_milestones() {
    let server = TestServer::start().await;
    let topic = "donations:campaign:1";
    let mut organizer = Client::connect(&server, Some(&token("1", &[]))).await;
    let mut other = Client::connect(&server, Some(&token("5", &[]))).await;
    let mut lobby = Client::connect(&server, None).await;
    lobby.join("donations:lobby", json!({})).await;
    let (ojr, _) = organizer.join(topic, json!({})).await;
    let (xjr, _) = other.join(topic, json!({})).await;

    assert_eq!(
        other
            .push(&xjr, topic, "update_goal", json!({"new_goal": "1"}))
            .await,
        error("unauthorized")
    );
    let reply = organizer
        .push(&ojr, topic, "update_goal", json!({"new_goal": "1000"}))
        .await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["response"]["campaign"]["goal"], "1000.00");
    assert_eq!(
        unpositioned(other.event(topic, "goal_updated").await[4].clone()).0,
        json!({"new_goal": "1000.00"})
    );

    // 600 of 1000 crosses 25 % and 50 % at once, in ascending order, on both topics.
    other
        .push(
            &xjr,
            topic,
            "new_donation",
            json!({"amount": "600", "donor_name": "Z"}),
        )
        .await;
    for client in [&mut other, &mut organizer] {
        let (first, at) = unpositioned(client.event(topic, "milestone_reached").await[4].clone());
        assert_eq!(first, json!({"campaign_id": "1", "milestone": 25}));
        let (second, next) =
            unpositioned(client.event(topic, "milestone_reached").await[4].clone());
        assert_eq!(second, json!({"campaign_id": "1", "milestone": 50}));
        assert_eq!(next, at + 1, "consecutive positions on the topic");
    }
    assert_eq!(
        lobby.event("donations:lobby", "milestone_reached").await[4]["milestone"],
        25
    );
    assert_eq!(
        lobby.event("donations:lobby", "milestone_reached").await[4]["milestone"],
        50
    );
    // 10 more crosses nothing new.
    other
        .push(
            &xjr,
            topic,
            "new_donation",
            json!({"amount": "10", "donor_name": "Z"}),
        )
        .await;
    other.event(topic, "donation_created").await;
    other.event(topic, "donation_created").await;
    other
        .assert_no_event("milestone_reached", Duration::from_millis(300))
        .await;
    // 400 more crosses 75 % and 100 %.
    other
        .push(
            &xjr,
            topic,
            "new_donation",
            json!({"amount": "400", "donor_name": "Z"}),
        )
        .await;
    assert_eq!(
        other.event(topic, "milestone_reached").await[4]["milestone"],
        75
    );
    assert_eq!(
        other.event(topic, "milestone_reached").await[4]["milestone"],
        100
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_creates_campaigns_and_zakat_nisab() {
    let server = TestServer::start().await;
    let mut lobby = Client::connect(&server, None).await;
    lobby.join("donations:lobby", json!({})).await;
    let mut admin = Client::connect(&server, Some(&token("9", &["admin"]))).await;
    let (jr, _) = admin.join("admin:ops", json!({})).await;
    let reply = admin
        .push(
            &jr,
            "admin:ops",
            "create_campaign",
            json!({
                "name": "Winter Coats", "goal": "2500", "currency": "USD",
                "visibility": "public", "organizer_ids": ["9"],
            }),
        )
        .await;
    assert_eq!(reply["status"], "ok");
    let id = reply["response"]["campaign"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        id != "1" && id != "2",
        "new ids never collide with seeded ones: {id}"
    );
    let created = lobby.event("donations:lobby", "campaign_created").await;
    assert_eq!(created[4]["campaign"]["name"], "Winter Coats");
    let (_, joined) = lobby
        .join(&format!("donations:campaign:{id}"), json!({}))
        .await;
    assert_eq!(self::joined(joined), ok(json!({})));

    let mut user = Client::connect(&server, Some(&token("4", &[]))).await;
    let (zjr, _) = user.join("zakat:user:4", json!({})).await;
    let reply = user
        .push(
            &zjr,
            "zakat:user:4",
            "calculate_nisab",
            json!({"currency": "USD", "gold_price": "70.25"}),
        )
        .await;
    assert_eq!(reply, ok(json!({"nisab": "5971.25", "currency": "USD"})));
    server.stop().await;
}

#[tokio::test]
async fn leave_and_duplicate_join_follow_phoenix_order() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server, None).await;
    let (old_jr, _) = c.join("donations:lobby", json!({})).await;
    // Duplicate join: new reply, then phx_close for the old join.
    c.send_text(r#"["n1","n2","donations:lobby","phx_join",{}]"#)
        .await;
    assert_eq!(
        joined(c.recv().await),
        json!(["n1", "n2", "donations:lobby", "phx_reply", ok(json!({}))]),
    );
    assert_eq!(
        c.recv().await,
        json!([old_jr, old_jr, "donations:lobby", "phx_close", {}])
    );
    // Leave: reply, then phx_close.
    c.send_text(r#"["n1","n3","donations:lobby","phx_leave",{}]"#)
        .await;
    assert_eq!(
        c.recv().await,
        json!(["n1", "n3", "donations:lobby", "phx_reply", ok(json!({}))])
    );
    assert_eq!(
        c.recv().await,
        json!(["n1", "n1", "donations:lobby", "phx_close", {}])
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_input_leaves_sockets_working() {
    let server = TestServer::start().await;
    let mut bystander = Client::connect(&server, None).await;
    let (bjr, _) = bystander.join("donations:campaign:1", json!({})).await;
    let mut c = Client::connect(&server, None).await;
    let (jr, _) = c.join("donations:campaign:1", json!({})).await;

    c.send_text("{not json").await;
    c.heartbeat().await;
    c.send_text(r#"{"topic":"phoenix"}"#).await;
    c.heartbeat().await;
    // A frame too short to be a message but naming a ref and topic is answered.
    c.send_text(r#"[null,"77","donations:lobby"]"#).await;
    let reply = c.reply("77").await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["response"]["reason"], "malformed message");
    c.send_text(r#"[null,"78","donations:lobby",42,{}]"#).await;
    assert_eq!(
        c.reply("78").await["response"]["reason"],
        "malformed message"
    );
    // Binary frames that are not valid pushes are dropped too.
    c.send_raw(tokio_tungstenite::tungstenite::Message::Binary(
        vec![0u8, 9].into(),
    ))
    .await;
    c.heartbeat().await;
    // The channel still works after all that.
    let reply = c
        .push(
            &jr,
            "donations:campaign:1",
            "new_donation",
            json!({"amount": "1", "donor_name": "B"}),
        )
        .await;
    assert_eq!(reply["status"], "ok");

    // An oversized frame closes that socket with 1009 and nothing else.
    c.send_text(&format!(
        "[null,\"1\",\"phoenix\",\"heartbeat\",{{\"x\":\"{}\"}}]",
        "a".repeat(2 * 1024 * 1024)
    ))
    .await;
    assert_eq!(c.closed().await, Some(1009));
    bystander.heartbeat().await;
    let reply = bystander
        .push(
            &bjr,
            "donations:campaign:1",
            "new_donation",
            json!({"amount": "2", "donor_name": "C"}),
        )
        .await;
    assert_eq!(reply["status"], "ok");
    server.stop().await;
}

#[tokio::test]
async fn v1_clients_get_object_frames() {
    let server = TestServer::start().await;
    let Connect::Open(mut c) = Client::try_connect(&server.url("vsn=1.0.0"), None).await else {
        panic!("v1 accepted")
    };
    c.send_text(r#"{"topic":"donations:lobby","event":"phx_join","payload":{},"ref":"1"}"#)
        .await;
    assert_eq!(
        joined(c.recv().await),
        json!({"topic": "donations:lobby", "event": "phx_reply", "ref": "1", "payload": ok(json!({}))})
    );
    // No vsn means 1.0.0 too.
    let Connect::Open(mut legacy) = Client::try_connect(&server.url(""), None).await else {
        panic!("no vsn accepted")
    };
    legacy
        .send_text(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}"#)
        .await;
    assert_eq!(legacy.recv().await["ref"], "2");
    server.stop().await;
}

#[tokio::test]
async fn http_api_health_and_metrics() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server, None).await;
    c.join("donations:lobby", json!({})).await;

    let body = r#"{"topic":"donations:lobby","event":"announcement","payload":{"text":"hi"}}"#;
    let (status, _) = http(server.addr, "POST", "/api/broadcast", None, Some(body)).await;
    assert_eq!(status, 401);
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/broadcast",
        Some(&token("1", &[])),
        Some(body),
    )
    .await;
    assert_eq!(status, 403);
    let service = token("svc", &["service"]);
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/broadcast",
        Some(&service),
        Some(r#"{"topic":"x"}"#),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/broadcast",
        Some(&service),
        Some(body),
    )
    .await;
    assert_eq!(status, 202);
    let mut frame = c.event("donations:lobby", "announcement").await;
    // Through the topic's owner: positioned like every broadcast on the topic.
    let (payload, _) = unpositioned(frame[4].take());
    frame[4] = payload;
    assert_eq!(
        frame,
        json!([null, null, "donations:lobby", "announcement", {"text": "hi"}])
    );
    // A message far over one frame's worth (sent as several WebSocket frames) arrives whole,
    // multi-byte characters across frame boundaries included.
    let long = "é€".repeat(40_000);
    let body = json!({"topic": "donations:lobby", "event": "long", "payload": {"text": long}});
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/broadcast",
        Some(&service),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(c.event("donations:lobby", "long").await[4]["text"], long);

    let mut user = Client::connect(&server, Some(&token("77", &[]))).await;
    user.heartbeat().await;
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/disconnect",
        Some(&service),
        Some(r#"{"user_id":"77"}"#),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(user.closed().await, Some(1001));

    assert_eq!(
        http(server.addr, "GET", "/healthz", None, None).await.0,
        200
    );
    assert_eq!(http(server.addr, "GET", "/readyz", None, None).await.0, 200);
    let (status, metrics) = http(server.addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    for name in [
        "fawkes_connections ",
        "fawkes_joins_total",
        "fawkes_messages_in_total",
        "fawkes_messages_out_total",
        "fawkes_replies_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // Plain GET without upgrade headers: 400, like Phoenix.
    assert_eq!(
        http(
            server.addr,
            "GET",
            "/socket/websocket?vsn=2.0.0",
            None,
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        http(server.addr, "POST", "/socket/websocket", None, None)
            .await
            .0,
        400
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients_and_closes_with_1012() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server, None).await;
    c.join("donations:lobby", json!({})).await;
    let stopping = tokio::spawn(server.stop());
    let notice = c.event("donations:lobby", "shutdown_notice").await;
    assert_eq!(notice[4]["reconnect_delay"], 1000);
    assert_eq!(c.closed().await, Some(1012));
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn more_than_ten_events_a_second_are_refused() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server, None).await;
    let (jr, _) = c.join("donations:lobby", json!({})).await;
    let mut refs = Vec::new();
    for _ in 0..15 {
        refs.push(
            c.send(Some(&jr), "donations:lobby", "ping", json!({}))
                .await,
        );
    }
    let mut reasons = Vec::new();
    for msg_ref in &refs {
        reasons.push(c.reply(msg_ref).await["response"]["reason"].clone());
    }
    let limited = reasons
        .iter()
        .filter(|r| *r == "rate limit exceeded")
        .count();
    assert!(
        limited >= 4,
        "at most a burst of 10 gets through: {reasons:?}"
    );
    assert_eq!(
        reasons.len() - limited,
        reasons.iter().filter(|r| *r == "unknown event").count()
    );
    server.stop().await;
}
