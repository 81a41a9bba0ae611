//! Long-poll behind a load balancer without sticky sessions, through real processes: two
//! connectors and a processor on a Kafka-protocol broker (Tansu). One client's requests
//! alternate between the connectors; the one that does not hold the session relays them
//! through the log. When the session's connector dies, the other answers as Phoenix does for a
//! gone session. And a POST whose message the log cannot confirm within the window is 408.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::kafka::{fresh_group, Tansu, PATIENCE};
use common::longpoll::{frame, parse_messages, Session};
use common::process::Process;
use common::{http, token, Client};
use serde_json::{json, Value};

const CAMPAIGN: &str = "donations:campaign:1";

fn addr(process: &Process) -> SocketAddr {
    process.addr.parse().expect("address")
}

/// Polls, alternating between `addrs`, until the frames read satisfy `done`; every frame read.
async fn frames_until(
    session: &Session,
    addrs: &[SocketAddr],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut all = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    for at in addrs.iter().cycle() {
        assert!(Instant::now() < deadline, "never came; read {all:?}");
        let body = session.get_at(*at).await;
        match body["status"].as_u64() {
            Some(200) => all.extend(parse_messages(&body)),
            Some(204) => {}
            _ => panic!("unexpected poll answer at {at}: {body}"),
        }
        if done(&all) {
            return all;
        }
    }
    unreachable!("cycle never ends")
}

async fn metric(process: &Process, name: &str) -> f64 {
    let (_, body) = http(addr(process), "GET", "/metrics", None, None).await;
    body.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn requests_alternating_between_two_connectors_reach_one_session() {
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _processor = tansu.owner(data.path(), &fresh_group("lp-relay"), "0-7");
    let flags = ["--longpoll-window", "2s"];
    let mut a = tansu.connector(&flags);
    let b = tansu.connector(&flags);
    let (at_a, at_b) = (addr(&a), addr(&b));
    // Both connectors read the log before they serve: wait for their sockets to answer.
    common::process::connect(&a).await;
    common::process::connect(&b).await;

    // The session starts on A (its home); the join is posted to B, relayed to A.
    let session = Session::open(at_a, &format!("token={}&", token("5", &[]))).await;
    let join = frame(Some("1"), "1", CAMPAIGN, "phx_join", json!({}));
    assert_eq!(session.post_at(at_b, &[join]).await, json!({"status": 200}));
    let frames = frames_until(&session, &[at_b, at_a], |all| {
        all.iter().any(|f| f[3] == "campaign_state")
    })
    .await;
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
    let presence = frames
        .iter()
        .find(|f| f[3] == "presence_state")
        .expect("presence_state");
    assert!(presence[4].get("5").is_some(), "{presence}");

    // A donation posted to A, its reply and broadcast polled from B.
    let donation = frame(
        Some("1"),
        "2",
        CAMPAIGN,
        "new_donation",
        json!({"amount": "4.00", "donor_name": "Aisha"}),
    );
    assert_eq!(
        session.post_at(at_a, &[donation]).await,
        json!({"status": 200})
    );
    let frames = frames_until(&session, &[at_b], |all| {
        // The reply and the broadcast travel on different log topics: either may come first.
        all.iter().any(|f| f[3] == "donation_created") && all.iter().any(|f| f[1] == "2")
    })
    .await;
    let reply = frames.iter().find(|f| f[1] == "2").expect("the reply");
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // A WebSocket client on B donates: the broadcast reaches the session through A, and a
    // poll held on A (relayed from B) is answered as soon as it comes.
    let mut donor = Client::connect_url(&format!("{}&token={}", b.url(), token("6", &[]))).await;
    donor.patience = PATIENCE;
    let (jr, reply) = donor.join(CAMPAIGN, json!({})).await;
    assert_eq!(reply["status"], "ok");
    let held = tokio::spawn({
        let session = Session {
            addr: at_b,
            params: session.params.clone(),
            token: session.token.clone(),
        };
        async move { session.get_at(at_b).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = donor
        .push(
            &jr,
            CAMPAIGN,
            "new_donation",
            json!({"amount": "9.00", "donor_name": "Omar"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let mut body = held.await.expect("poll task");
    let mut frames = Vec::new();
    loop {
        if body["status"] == 200 {
            frames.extend(parse_messages(&body));
        }
        if frames
            .iter()
            .any(|f| f[3] == "donation_created" && f[4]["donation"]["amount"] == "9.00")
        {
            break;
        }
        body = session.get_at(at_b).await;
    }

    // Nothing pending: a poll relayed from B is held on A and answered 204 after the window.
    let started = Instant::now();
    let body = session.get_at(at_b).await;
    assert_eq!(
        body,
        json!({"status": 204, "token": session.token, "messages": []})
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    assert!(metric(&b, "fawkes_longpoll_relayed_total{role=\"asked\"} ").await >= 4.0);
    assert!(metric(&a, "fawkes_longpoll_relayed_total{role=\"served\"} ").await >= 4.0);

    // A dies: the session is gone. A POST to B is 410, a GET to B starts a new session there,
    // each within about the relay timeout (2 s).
    a.kill_9();
    let heartbeat = frame(None, "3", "phoenix", "heartbeat", json!({}));
    let started = Instant::now();
    assert_eq!(
        session
            .post_at(at_b, std::slice::from_ref(&heartbeat))
            .await,
        json!({"status": 410})
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let body = session.get_at(at_b).await;
    assert_eq!(body["status"], 410, "{body}");
    let fresh = Session {
        addr: at_b,
        params: session.params.clone(),
        token: body["token"].as_str().expect("token").into(),
    };
    assert_ne!(fresh.token, session.token);
    assert_eq!(fresh.post(&[heartbeat]).await, json!({"status": 200}));
    assert!(parse_messages(&fresh.get().await)
        .iter()
        .any(|f| f[1] == "3"));
    assert!(metric(&b, "fawkes_longpoll_relay_unanswered_total ").await >= 1.0);
}

#[tokio::test]
async fn a_post_whose_message_is_not_processed_within_the_window_is_408() {
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _processor = tansu.owner(data.path(), &fresh_group("lp-408"), "0-7");
    let connector = tansu.connector(&[
        "--longpoll-window",
        "1s",
        "--append-timeout",
        "3s",
        "--reply-timeout",
        "3s",
    ]);
    common::process::connect(&connector).await;
    let session = Session::open(addr(&connector), "").await;
    // The broker stops answering: the join's command cannot be confirmed, so the first line
    // is not processed within the 1 s window, and the second is not processed at all.
    tansu.signal("STOP");
    let lines = [
        frame(Some("1"), "1", CAMPAIGN, "phx_join", json!({})),
        frame(None, "2", "phoenix", "heartbeat", json!({})),
    ];
    let started = Instant::now();
    let body = session.post(&lines).await;
    let took = started.elapsed();
    tansu.signal("CONT");
    assert_eq!(body, json!({"status": 408}));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "{took:?}"
    );
    // The broker is back before the join's append times out (3 s): the join lands and is
    // answered; the heartbeat after it was never processed (Phoenix stops at the first line
    // that times out).
    let frames = session.frames_until(|f| f[1] == "1").await;
    let join = frames
        .iter()
        .find(|f| f[1] == "1")
        .expect("the join's answer");
    assert_eq!(join[4]["status"], "ok", "{join}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = session.get().await;
    let later = if body["status"] == 200 {
        parse_messages(&body)
    } else {
        Vec::new()
    };
    assert!(
        !frames.iter().chain(&later).any(|f| f[1] == "2"),
        "the second line was not processed"
    );
}
