//! The long-poll transport through real HTTP requests (PROTOCOL.md §7, PROTOCOL-CONFORMANCE.md
//! E): the envelope, new-session and gone-session 410s, token precedence, ndjson batches,
//! OPTIONS, the origin check, inactivity expiry, and everything a WebSocket does (joins,
//! pushes and replies, broadcasts, presence, rate limits, disconnects, slow clients).

mod common;

use std::time::{Duration, Instant};

use common::longpoll::{frame, parse_messages, request, Session};
use common::{http, token, Client, TestServer};
use serde_json::{json, Value};

const CAMPAIGN: &str = "donations:campaign:1";
const LOBBY: &str = "donations:lobby";

/// A seeded server with a 1 s long-poll window (so 204s and expiry come quickly).
async fn server(extra: &[&str]) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut flags = extra.to_vec();
    if !flags.contains(&"--longpoll-window") {
        flags.extend(["--longpoll-window", "1s"]);
    }
    let server = TestServer::start_in(dir.path(), &flags).await;
    (server, dir)
}

fn replies_to<'a>(frames: &'a [Value], msg_ref: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f[1] == msg_ref && f[3] == "phx_reply")
        .collect()
}

#[tokio::test]
async fn envelope_join_poll_and_an_empty_poll_after_the_window() {
    let (server, _dir) = server(&[]).await;
    // A GET without a token starts a session: HTTP 200, {"status":410,"token":T,"messages":[]}.
    let answer = request(server.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], b"").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let body = answer.json();
    assert_eq!(body["status"], 410);
    assert_eq!(body["messages"], json!([]));
    let session = Session {
        addr: server.addr,
        params: String::new(),
        token: body["token"].as_str().expect("token").to_owned(),
    };

    // A POSTed join is answered {"status":200}; its reply and pushes come with the next GET,
    // each message a JSON string of one frame.
    let join = frame(Some("1"), "1", CAMPAIGN, "phx_join", json!({}));
    assert_eq!(session.post(&[join]).await, json!({"status": 200}));
    let frames = session.frames_until(|f| f[3] == "campaign_state").await;
    let mut reply = frames[0].clone();
    let position = reply[4]["response"]
        .as_object_mut()
        .and_then(|r| r.remove("position"))
        .expect("the join's position");
    assert!(position["offset"].is_u64(), "{position}");
    assert_eq!(
        reply,
        json!(["1", "1", CAMPAIGN, "phx_reply", {"status": "ok", "response": {}}])
    );
    assert!(frames
        .iter()
        .any(|f| f[3] == "presence_state" && f[0] == "1"));
    assert_eq!(frames.last().expect("frames")[3], "campaign_state");

    // Nothing pending: the GET is held for the window, then answered 204 with the token.
    let started = Instant::now();
    let body = session.get().await;
    let held = started.elapsed();
    assert_eq!(
        body,
        json!({"status": 204, "token": session.token, "messages": []})
    );
    assert!(
        held >= Duration::from_millis(900) && held < Duration::from_secs(3),
        "{held:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_held_poll_is_answered_as_soon_as_a_frame_comes() {
    let (server, _dir) = server(&["--longpoll-window", "5s"]).await;
    let session = Session::open(server.addr, "").await;
    let join = frame(Some("1"), "1", CAMPAIGN, "phx_join", json!({}));
    session.post(&[join]).await;
    session.frames_until(|f| f[3] == "campaign_state").await;
    let poll = tokio::spawn({
        let session = Session {
            addr: session.addr,
            params: String::new(),
            token: session.token.clone(),
        };
        async move {
            let started = Instant::now();
            (session.get().await, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut donor = Client::connect(&server, Some(&token("5", &[]))).await;
    let (jr, _) = donor.join(CAMPAIGN, json!({})).await;
    let reply = donor
        .push(
            &jr,
            CAMPAIGN,
            "new_donation",
            json!({"amount": "3.00", "donor_name": "Aisha"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let (body, took) = poll.await.expect("poll task");
    assert_eq!(body["status"], 200, "{body}");
    assert!(
        took < Duration::from_secs(4),
        "answered before the window: {took:?}"
    );
    // The first frame to come may be the donor's presence diff; the donation follows.
    let mut frames = parse_messages(&body);
    if !frames.iter().any(|f| f[3] == "donation_created") {
        frames.extend(session.frames_until(|f| f[3] == "donation_created").await);
    }
    let created = frames
        .iter()
        .find(|f| f[3] == "donation_created")
        .expect("the broadcast");
    assert_eq!(created[0], Value::Null, "a broadcast has a null join_ref");
    assert_eq!(created[4]["donation"]["amount"], "3.00");
    server.stop().await;
}

#[tokio::test]
async fn session_tokens_header_first_then_the_last_query_token() {
    let (server, _dir) = server(&[]).await;
    let session = Session::open(server.addr, "").await;
    let heartbeat = frame(None, "7", "phoenix", "heartbeat", json!({}));
    // The header wins over a bogus query token (Phoenix ≥ 1.8.10).
    let target = "/socket/longpoll?vsn=2.0.0&token=bogus";
    let headers = [
        ("content-type", "application/x-ndjson"),
        ("x-phoenix-longpoll-token", session.token.as_str()),
    ];
    let answer = request(server.addr, "POST", target, &headers, heartbeat.as_bytes()).await;
    assert_eq!(answer.json(), json!({"status": 200}));
    // With a duplicated key the last occurrence wins (phoenix.js puts the user's `token`
    // param first and its session token last).
    let user = token("5", &[]);
    let target = format!(
        "/socket/longpoll?token={user}&vsn=2.0.0&token={}",
        session.token
    );
    let body = request(server.addr, "GET", &target, &[], b"").await.json();
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(replies_to(&parse_messages(&body), "7").len(), 1);
    // The other order names no session: the POST is gone, and the GET would start a new
    // session for the user whose token `bogus` is, which is no JWT: refused.
    let target = format!(
        "/socket/longpoll?token={}&vsn=2.0.0&token=bogus",
        session.token
    );
    let body = request(server.addr, "GET", &target, &[], b"").await.json();
    assert_eq!(body, json!({"status": 403}));
    // Without the bogus value, a GET with an unknown token starts a new session.
    let body = request(
        server.addr,
        "GET",
        "/socket/longpoll?vsn=2.0.0&token=lp1.x.1.y",
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(body["status"], 410);
    assert_ne!(body["token"], session.token.as_str());
    let answer = request(server.addr, "POST", &target, &[], heartbeat.as_bytes()).await;
    assert_eq!(answer.json(), json!({"status": 410}));
    // A token signed with another secret, or altered, is no token.
    let forged = session.token.replace(".1.", ".2.");
    let target = format!("/socket/longpoll?vsn=2.0.0&token={forged}");
    let answer = request(server.addr, "POST", &target, &[], heartbeat.as_bytes()).await;
    assert_eq!(answer.json(), json!({"status": 410}));
    server.stop().await;
}

#[tokio::test]
async fn ndjson_batches_in_order_capped_at_a_hundred_lines() {
    let (server, _dir) = server(&["--channel-rate-limit", "0"]).await;
    let session = Session::open(server.addr, "").await;
    let mut lines = vec![frame(Some("1"), "1", LOBBY, "phx_join", json!({}))];
    // A stale join_ref is dropped without a reply; the lines around it are processed.
    lines.push(frame(Some("stale"), "2", LOBBY, "phx_leave", json!({})));
    // A base64 line is a binary push (kind 0): no channel takes raw bytes.
    let binary = [
        &[0u8, 1, 1, 15, 3][..],
        b"1",
        b"3",
        LOBBY.as_bytes(),
        b"bin",
        &[1, 2, 3],
    ]
    .concat();
    use base64::Engine;
    lines.push(base64::engine::general_purpose::STANDARD.encode(binary));
    // A line that is neither JSON nor base64 is dropped.
    lines.push("%%% not base64".into());
    for i in 4..=103 {
        lines.push(frame(
            None,
            &i.to_string(),
            "phoenix",
            "heartbeat",
            json!({}),
        ));
    }
    assert_eq!(lines.len(), 104);
    assert_eq!(session.post(&lines).await, json!({"status": 200}));
    let mut frames = Vec::new();
    while !frames.iter().any(|f: &Value| f[1] == "99") {
        frames.extend(session.frames().await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = session.get().await;
    if body["status"] == 200 {
        frames.extend(parse_messages(&body));
    }
    let refs: Vec<&str> = frames.iter().filter_map(|f| f[1].as_str()).collect();
    assert!(refs.contains(&"1"), "the join was answered");
    assert!(!refs.contains(&"2"), "the stale leave had no reply");
    let binary_reply = replies_to(&frames, "3");
    assert_eq!(
        binary_reply[0][4]["response"]["reason"],
        "binary payloads are not supported"
    );
    // Lines 5..=100 are the heartbeats that fit in the first 100 lines (refs 4..=99).
    let heartbeats: Vec<u32> = frames
        .iter()
        .filter(|f| f[2] == "phoenix")
        .filter_map(|f| f[1].as_str()?.parse().ok())
        .collect();
    assert_eq!(
        heartbeats,
        (4..=99).collect::<Vec<u32>>(),
        "in order, and only the first 100 lines"
    );
    // Without the ndjson content type the whole body is one message (V1 clients' object).
    let target = session.target();
    let one = frame(None, "200", "phoenix", "heartbeat", json!({}));
    let answer = request(
        server.addr,
        "POST",
        &target,
        &[("content-type", "application/json")],
        one.as_bytes(),
    )
    .await;
    assert_eq!(answer.json(), json!({"status": 200}));
    assert_eq!(replies_to(&session.frames().await, "200").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn options_preflight_and_other_methods() {
    let (server, _dir) = server(&[]).await;
    let headers = [(
        "access-control-request-headers",
        "content-type, x-phoenix-authtoken",
    )];
    let answer = request(server.addr, "OPTIONS", "/socket/longpoll", &headers, b"").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "");
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        answer.header("access-control-allow-headers"),
        Some("content-type, x-phoenix-authtoken")
    );
    assert_eq!(
        answer.header("access-control-allow-methods"),
        Some("get, post, options")
    );
    assert_eq!(answer.header("access-control-max-age"), Some("3600"));
    for method in ["PUT", "DELETE", "PATCH"] {
        let answer = request(server.addr, method, "/socket/longpoll", &[], b"").await;
        assert_eq!((answer.status, answer.body.as_str()), (400, ""), "{method}");
    }
    server.stop().await;
}

#[tokio::test]
async fn origins_vsn_and_tokens_are_checked_as_for_websockets() {
    let (server, _dir) =
        server(&["--check-origin", "//allowed.example, https://*.fawkes.test"]).await;
    let get = |origin: &'static str, query: String| {
        let addr = server.addr;
        async move {
            let headers = [("origin", origin)];
            request(
                addr,
                "GET",
                &format!("/socket/longpoll?{query}"),
                &headers,
                b"",
            )
            .await
        }
    };
    for allowed in [
        "http://allowed.example",
        "https://a.fawkes.test",
        "https://fawkes.test",
    ] {
        let answer = get(allowed, "vsn=2.0.0".into()).await;
        assert_eq!(answer.json()["status"], 410, "{allowed}");
    }
    for refused in ["http://evil.example", "https://a.fawkes.test.evil", "null"] {
        let answer = get(refused, "vsn=2.0.0".into()).await;
        assert_eq!(
            (answer.status, answer.json()),
            (200, json!({"status": 403})),
            "{refused}"
        );
    }
    // The preflight and the POST check the origin too.
    let evil = [("origin", "http://evil.example")];
    let answer = request(server.addr, "OPTIONS", "/socket/longpoll", &evil, b"").await;
    assert_eq!(answer.json(), json!({"status": 403}));
    let session = Session::open(server.addr, "").await;
    let answer = request(server.addr, "POST", &session.target(), &evil, b"[]").await;
    assert_eq!(answer.json(), json!({"status": 403}));
    // The WebSocket handshake refuses the same origin with HTTP 403.
    let url = server.url("vsn=2.0.0");
    let mut ws = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .expect("request");
    ws.headers_mut()
        .insert("origin", "http://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    // An unsupported vsn, a bad JWT (query or X-Phoenix-AuthToken) are refused.
    assert_eq!(
        get("http://allowed.example", "vsn=123.1.1".into())
            .await
            .json(),
        json!({"status": 403})
    );
    let bad = common::token_with("1", &[], 3600, "wrong-secret");
    assert_eq!(
        get("http://allowed.example", format!("token={bad}&vsn=2.0.0"))
            .await
            .json(),
        json!({"status": 403})
    );
    let headers = [("x-phoenix-authtoken", bad.as_str())];
    let answer = request(
        server.addr,
        "GET",
        "/socket/longpoll?vsn=2.0.0",
        &headers,
        b"",
    )
    .await;
    assert_eq!(answer.json(), json!({"status": 403}));
    let (_, metrics) = http(server.addr, "GET", "/metrics", None, None).await;
    assert!(
        metrics.contains("fawkes_connections_refused_total{reason=\"origin not allowed\"}"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_auth_token_header_and_the_user_param_identify_the_client() {
    let (server, _dir) = server(&[]).await;
    // Campaign 2 is private to users 2 and 3.
    let join = frame(
        Some("1"),
        "1",
        "donations:campaign:2",
        "phx_join",
        json!({}),
    );
    let user3 = token("3", &[]);
    let headers = [("x-phoenix-authtoken", user3.as_str())];
    let body = request(
        server.addr,
        "GET",
        "/socket/longpoll?vsn=2.0.0",
        &headers,
        b"",
    )
    .await
    .json();
    let session = Session {
        addr: server.addr,
        params: String::new(),
        token: body["token"].as_str().expect("token").into(),
    };
    session.post(std::slice::from_ref(&join)).await;
    assert_eq!(
        replies_to(&session.frames().await, "1")[0][4]["status"],
        "ok"
    );
    // phoenix.js ≤ 1.8.16 with `params: {token}`: the user's token first, the session's last.
    let session = Session::open(server.addr, &format!("token={}&", token("1", &[]))).await;
    session.post(&[join]).await;
    let frames = session.frames().await;
    assert_eq!(
        replies_to(&frames, "1")[0][4]["response"]["reason"],
        "unauthorized"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unpolled_session_expires_and_leaves_its_channels() {
    let (server, _dir) = server(&[]).await;
    let watcher_token = token("9", &[]);
    let mut watcher = Client::connect(&server, Some(&watcher_token)).await;
    watcher.join(CAMPAIGN, json!({})).await;
    let session = Session::open(server.addr, &format!("token={}&", token("8", &[]))).await;
    session
        .post(&[frame(Some("1"), "1", CAMPAIGN, "phx_join", json!({}))])
        .await;
    session.frames_until(|f| f[3] == "campaign_state").await;
    // User 8 is listed; then nobody polls for 1.5 windows (1.5 s): the session ends and its
    // presence leaves, like a closed WebSocket's.
    let mut state = topics::presence::PresenceState::default();
    watcher
        .presence_until(CAMPAIGN, &mut state, |s| s.to_value().get("8").is_some())
        .await;
    let stopped = Instant::now();
    watcher
        .presence_until(CAMPAIGN, &mut state, |s| s.to_value().get("8").is_none())
        .await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(5), "expired after {took:?}");
    let heartbeat = frame(None, "2", "phoenix", "heartbeat", json!({}));
    assert_eq!(session.post(&[heartbeat]).await, json!({"status": 410}));
    let body = session.get().await;
    assert_eq!(body["status"], 410, "a new session: {body}");
    assert_ne!(body["token"], session.token.as_str());
    let (_, metrics) = http(server.addr, "GET", "/metrics", None, None).await;
    assert!(
        metrics.contains("fawkes_longpoll_sessions_ended_total{reason=\"inactive\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn pushes_replies_rate_limits_and_presence_as_over_websocket() {
    let (server, _dir) = server(&["--longpoll-window", "3s"]).await;
    let session = Session::open(server.addr, &format!("token={}&", token("5", &["admin"]))).await;
    session
        .post(&[
            frame(Some("1"), "1", CAMPAIGN, "phx_join", json!({})),
            frame(Some("3"), "3", LOBBY, "phx_join", json!({})),
        ])
        .await;
    let frames = session.frames_until(|f| f[3] == "campaign_state").await;
    let presence = frames
        .iter()
        .find(|f| f[3] == "presence_state")
        .expect("presence_state");
    assert!(
        presence[4].get("5").is_some(),
        "the long-poll user is listed: {presence}"
    );
    // A donation's reply carries the join's join_ref; its broadcast comes too.
    let donation = frame(
        Some("1"),
        "2",
        CAMPAIGN,
        "new_donation",
        json!({"amount": "7.00", "donor_name": "Aisha"}),
    );
    session.post(&[donation]).await;
    // The reply and the broadcast travel on different log topics: either may come first.
    let mut frames = session
        .frames_until(|f| f[3] == "donation_created" || f[1] == "2")
        .await;
    while !(frames.iter().any(|f| f[3] == "donation_created") && frames.iter().any(|f| f[1] == "2"))
    {
        frames.extend(session.frames().await);
    }
    let reply = replies_to(&frames, "2")[0];
    assert_eq!(
        (&reply[0], &reply[4]["status"]),
        (&json!("1"), &json!("ok")),
        "{reply}"
    );
    // Eleven events in one batch on one channel: the eleventh is over the limit of 10/s.
    let pings: Vec<String> = (10..21)
        .map(|i| frame(Some("3"), &i.to_string(), LOBBY, "ping", json!({})))
        .collect();
    session.post(&pings).await;
    let frames = session.frames_until(|f| f[1] == "20").await;
    assert_eq!(
        replies_to(&frames, "20")[0][4]["response"]["reason"],
        "rate limit exceeded"
    );
    // Leaving answers ok then phx_close.
    session
        .post(&[frame(None, "30", CAMPAIGN, "phx_leave", json!({}))])
        .await;
    let frames = session.frames_until(|f| f[3] == "phx_close").await;
    let close = frames
        .iter()
        .find(|f| f[3] == "phx_close")
        .expect("phx_close");
    assert_eq!(close, &json!(["1", "1", CAMPAIGN, "phx_close", {}]));
    server.stop().await;
}

#[tokio::test]
async fn a_disconnected_user_and_a_client_that_stops_polling_lose_their_session() {
    let (server, _dir) = server(&["--outbound-queue", "16", "--longpoll-window", "5s"]).await;
    let user = token("12", &[]);
    let session = Session::open(server.addr, &format!("token={user}&")).await;
    let service = token("ops", &["service"]);
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/disconnect",
        Some(&service),
        Some(r#"{"user_id": "12"}"#),
    )
    .await;
    assert_eq!(status, 202);
    let heartbeat = frame(None, "1", "phoenix", "heartbeat", json!({}));
    let mut gone = false;
    for _ in 0..50 {
        if session.post(std::slice::from_ref(&heartbeat)).await == json!({"status": 410}) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the disconnected session is gone");
    // More frames than the inbox holds (16) without a poll: closed like a slow WebSocket.
    let session = Session::open(server.addr, "").await;
    let beats: Vec<String> = (0..40)
        .map(|i| frame(None, &i.to_string(), "phoenix", "heartbeat", json!({})))
        .collect();
    let answer = session.post(&beats).await;
    assert!(
        answer == json!({"status": 200}) || answer == json!({"status": 410}),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(session.post(&[heartbeat]).await, json!({"status": 410}));
    let (_, metrics) = http(server.addr, "GET", "/metrics", None, None).await;
    assert!(
        metrics.contains("fawkes_longpoll_sessions_ended_total{reason=\"too slow to keep up\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fawkes_longpoll_sessions_ended_total{reason=\"disconnected\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_draining_connector_sends_shutdown_notice_to_a_held_poll_then_refuses_new_sessions() {
    let (server, _dir) = server(&["--longpoll-window", "5s"]).await;
    let addr = server.addr;
    let session = Session::open(addr, "").await;
    session
        .post(&[frame(Some("1"), "1", LOBBY, "phx_join", json!({}))])
        .await;
    assert_eq!(
        replies_to(&session.frames().await, "1")[0][4]["status"],
        "ok"
    );
    // A poll is held when the shutdown starts: it is answered with the notice on the joined
    // channel, and the session ends (as a WebSocket is closed with 1012 after it).
    let held = tokio::spawn({
        let session = Session {
            addr,
            params: String::new(),
            token: session.token.clone(),
        };
        async move { session.get().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(server.stop());
    let body = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("answered during the drain")
        .expect("poll task");
    assert_eq!(body["status"], 200, "{body}");
    let frames = parse_messages(&body);
    let notice = frames
        .iter()
        .find(|f| f[3] == "shutdown_notice")
        .expect("shutdown_notice");
    assert_eq!(notice[0], "1", "on the joined channel, with its join_ref");
    assert_eq!(notice[4]["reason"], "server shutting down");
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn v1_clients_post_one_json_object_and_read_objects_without_join_ref() {
    let (server, _dir) = server(&[]).await;
    let opened = request(server.addr, "GET", "/socket/longpoll?vsn=1.0.0", &[], b"").await;
    let token = opened.json()["token"].as_str().expect("token").to_owned();
    let target = format!("/socket/longpoll?vsn=1.0.0&token={token}");
    let join = json!({"topic": LOBBY, "event": "phx_join", "payload": {}, "ref": "1"}).to_string();
    let headers = [("content-type", "application/json")];
    let answer = request(server.addr, "POST", &target, &headers, join.as_bytes()).await;
    assert_eq!(answer.json(), json!({"status": 200}));
    let body = request(server.addr, "GET", &target, &[], b"").await.json();
    assert_eq!(body["status"], 200, "{body}");
    let mut frames = parse_messages(&body);
    let position = frames[0]["payload"]["response"]
        .as_object_mut()
        .and_then(|r| r.remove("position"))
        .expect("the join's position");
    assert!(position["offset"].is_u64(), "{position}");
    assert_eq!(
        frames[0],
        json!({"topic": LOBBY, "event": "phx_reply", "ref": "1", "payload": {"status": "ok", "response": {}}}),
        "V1: an object, never a join_ref"
    );
    server.stop().await;
}
