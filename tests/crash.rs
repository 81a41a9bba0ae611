//! Durability: acknowledged donations survive `kill -9` of `fawkes dev` and are counted once.

mod common;

use std::time::Duration;

use common::process::{connect, Process};
use serde_json::{json, Value};
use topics::presence::PresenceState;

/// The test pipelines hundreds of donations on one channel, far over the default rate limit.
const UNLIMITED: &[&str] = &["--channel-rate-limit", "0"];

async fn campaign_state(process: &Process) -> Value {
    let mut client = connect(process).await;
    let (_, reply) = client.join("donations:campaign:1", json!({})).await;
    assert_eq!(reply["status"], "ok");
    client.event("donations:campaign:1", "campaign_state").await[4]["campaign"].clone()
}

#[tokio::test]
async fn acknowledged_donations_survive_kill_9_and_count_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = Process::start(dir.path(), UNLIMITED);
    let mut client = connect(&first).await;
    let topic = "donations:campaign:1";
    let (jr, _) = client.join(topic, json!({})).await;

    // Pipeline 300 donations of 1.00 and kill the server after 100 acknowledgements, while
    // the rest are in flight.
    let mut refs = Vec::new();
    for i in 0..300 {
        refs.push(
            client
                .send(
                    Some(&jr),
                    topic,
                    "new_donation",
                    json!({"amount": "1.00", "donor_name": format!("d{i}")}),
                )
                .await,
        );
    }
    let mut acked = Vec::new();
    for msg_ref in refs.iter().take(100) {
        let reply = client.reply(msg_ref).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        acked.push(
            reply["response"]["donation_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    first.kill_9();
    drop(client);

    let second = Process::start(dir.path(), UNLIMITED);
    // The restarted processors may still be replaying commands the first process had logged;
    // wait until the count settles, then check totals are exact.
    let mut last = Value::Null;
    for _ in 0..50 {
        let campaign = campaign_state(&second).await;
        if campaign == last {
            break;
        }
        last = campaign;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let count = last["donation_count"].as_u64().expect("count");
    assert!(
        count >= acked.len() as u64,
        "every acknowledged donation is kept: {count} < {}",
        acked.len()
    );
    assert!(count <= 300, "no donation counted twice: {count}");
    assert_eq!(
        last["total"],
        format!("{count}.00"),
        "the total matches the donations exactly once"
    );

    // A second restart changes nothing: every command has been applied once.
    drop(second);
    let third = Process::start(dir.path(), UNLIMITED);
    let campaign = campaign_state(&third).await;
    assert_eq!(campaign["donation_count"].as_u64(), Some(count));
    assert_eq!(campaign["total"], format!("{count}.00"));
}

/// Presences of a server killed with `kill -9` (no leaves sent) are expired by the restarted
/// server once the dead connector's lease has lapsed, and their leaves are broadcast.
#[tokio::test]
async fn presences_of_a_killed_server_expire_after_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lease: &[&str] = &["--presence-lease", "2s"];
    let doc = "collab:document:5";
    let mut first = Process::start(dir.path(), lease);
    connect(&first).await;
    let url = |p: &Process, user: &str| format!("{}&token={}", p.url(), common::token(user, &[]));
    let mut ghost = common::Client::connect_url(&url(&first, "7")).await;
    let (_, reply) = ghost.join(doc, json!({})).await;
    assert_eq!(reply["status"], "ok");
    let mut seen = PresenceState::default();
    ghost.presence_until(doc, &mut seen, |s| s.len() == 1).await;
    first.kill_9();

    let second = Process::start(dir.path(), lease);
    connect(&second).await;
    let mut watcher = common::Client::connect_url(&url(&second, "8")).await;
    let (_, reply) = watcher.join(doc, json!({})).await;
    assert_eq!(reply["status"], "ok");
    let mut seen = PresenceState::default();
    // The dead server's user is still listed at first: nobody told the store they left.
    let listed = |key: &'static str| move |s: &PresenceState| s.to_value().get(key).is_some();
    watcher.presence_until(doc, &mut seen, listed("7")).await;
    watcher.presence_until(doc, &mut seen, listed("8")).await;
    watcher
        .presence_until(doc, &mut seen, |s| s.to_value().get("7").is_none())
        .await;
    assert_eq!(seen.len(), 1, "only the live user is left");
}

/// A server stopped (SIGSTOP) for longer than its presence lease wakes without taking its own
/// users for dead: it judges leases by the heartbeats it reads after waking, not by the wall
/// time that passed while it was stopped.
#[tokio::test]
async fn a_server_stopped_longer_than_its_lease_keeps_its_presences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path(), &["--presence-lease", "2s"]);
    connect(&server).await;
    let doc = "collab:document:9";
    let url = |user: &str| format!("{}&token={}", server.url(), common::token(user, &[]));
    let mut user = common::Client::connect_url(&url("7")).await;
    assert_eq!(user.join(doc, json!({})).await.1["status"], "ok");
    let mut watcher = common::Client::connect_url(&url("8")).await;
    assert_eq!(watcher.join(doc, json!({})).await.1["status"], "ok");
    let mut seen = PresenceState::default();
    watcher
        .presence_until(doc, &mut seen, |s| s.len() == 2)
        .await;

    server.signal("STOP");
    tokio::time::sleep(Duration::from_secs(6)).await;
    server.signal("CONT");
    // Heart-beating resumes; nobody left, so nothing may say otherwise for two leases.
    watcher
        .assert_no_event("presence_diff", Duration::from_secs(4))
        .await;
    assert_eq!(seen.len(), 2);
}
