//! `dashboard:live` through real sockets: admins only; `metrics_batch` folds the donations of
//! each campaign and the open connections, at most every 100 ms, and only when something
//! changed.

mod common;

use std::time::{Duration, Instant};

use common::{token, Client, TestServer};
use serde_json::{json, Value};

const TOPIC: &str = "dashboard:live";

/// The next `metrics_batch` with its arrival time.
async fn batch(client: &mut Client) -> (Instant, Value) {
    let frame = client.event(TOPIC, "metrics_batch").await;
    (Instant::now(), frame[4].clone())
}

fn donations_of(batch: &Value, campaign: &str) -> Option<Value> {
    batch["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["type"] == "donations" && m["campaign_id"] == campaign)
        .cloned()
}

#[tokio::test]
async fn admins_see_folded_metrics_at_most_every_100_ms_and_only_on_change() {
    // Heartbeats (which carry the socket counts) every 500 ms; no rate limit for the burst.
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--presence-lease", "2s", "--channel-rate-limit", "0"];
    let server = TestServer::start_in(dir.path(), &flags).await;
    let mut stranger = Client::connect(&server, Some(&token("5", &[]))).await;
    let (_, reply) = stranger.join(TOPIC, json!({})).await;
    assert_eq!(reply["response"]["reason"], "unauthorized");

    let mut admin = Client::connect(&server, Some(&token("9", &["admin"]))).await;
    let (_, reply) = admin.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok");

    // The connections show up with the connector's next heartbeat.
    let connections = loop {
        let (_, next) = batch(&mut admin).await;
        assert!(next["timestamp"].is_string());
        let found = next["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["type"] == "connections").cloned());
        if let Some(found) = found.filter(|c| c["count"].as_u64() >= Some(2)) {
            break found;
        }
    };
    assert_eq!(connections["connectors"], 1);

    // 40 donations pushed as fast as possible fold into a few batches.
    let mut donor = Client::connect(&server, Some(&token("3", &[]))).await;
    let topic = "donations:campaign:1";
    let (join_ref, _) = donor.join(topic, json!({})).await;
    let mut refs = Vec::new();
    for _ in 0..40 {
        refs.push(
            donor
                .send(
                    Some(&join_ref),
                    topic,
                    "new_donation",
                    json!({"amount": "2.50", "donor_name": "D"}),
                )
                .await,
        );
    }
    for msg_ref in refs {
        assert_eq!(donor.reply(&msg_ref).await["status"], "ok");
    }
    // The donor's socket changes the count too: wait until that settles in the same loop.
    let mut counted = 0;
    let mut arrivals = Vec::new();
    let mut three_sockets = false;
    while counted < 40 || !three_sockets {
        let (at, next) = batch(&mut admin).await;
        arrivals.push(at);
        three_sockets |= next["metrics"].as_array().is_some_and(|m| {
            m.iter()
                .any(|m| m["type"] == "connections" && m["count"] == 3)
        });
        if let Some(delta) = donations_of(&next, "1") {
            assert_eq!(delta["currency"], "USD");
            counted += delta["count"].as_u64().expect("count");
            assert_eq!(
                delta["amount"],
                format!("{:.2}", 2.5 * delta["count"].as_f64().expect("count")),
            );
        }
    }
    assert_eq!(counted, 40, "every donation counted once");
    assert!(
        arrivals.len() < 40,
        "donations are folded: {} batches",
        arrivals.len()
    );
    for pair in arrivals.windows(2) {
        // Ticks are 100 ms apart; allow for scheduling jitter on a busy machine.
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(60),
            "batches {:?} apart",
            pair[1] - pair[0]
        );
    }

    // Nothing happens: nothing is sent.
    admin
        .assert_no_event("metrics_batch", Duration::from_millis(700))
        .await;
    server.stop().await;
}
