//! `complex_calculation` through real sockets: answered `processing` at once, worked out as a
//! job that waits on a slow price feed without holding up the topic's other commands, the
//! result pushed to the asking socket, stored, and readable after a restart.

mod common;

use std::time::{Duration, Instant};

use common::price_feed::{FeedMode, TestFeed};
use common::{token, Client, TestServer};
use serde_json::json;

const TOPIC: &str = "zakat:user:4";

#[tokio::test]
async fn a_complex_calculation_runs_beside_the_topic_and_its_result_is_pushed_and_kept() {
    let feed = TestFeed::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = feed.url();
    let flags = [
        "--price-feed-url",
        url.as_str(),
        "--price-feed-timeout",
        "5s",
    ];
    let server = TestServer::start_in(dir.path(), &flags).await;
    let mut client = Client::connect(&server, Some(&token("4", &[]))).await;
    let (join_ref, reply) = client.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok");

    // The feed hangs: the job waits on it.
    feed.set(FeedMode::Hang);
    let request = json!({
        "currency": "USD",
        "years": [
            {"year": 2025, "assets": {"cash": "10000"}},
            {"year": 2026, "gold_price": "70", "assets": {"cash": "20000"}, "liabilities": "5000"},
        ],
    });
    let reply = client
        .push(&join_ref, TOPIC, "complex_calculation", request)
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["response"]["status"], "processing");
    let id = reply["response"]["id"].as_str().expect("id").to_owned();

    // Meanwhile the topic's other commands are answered at once.
    let asked = Instant::now();
    let reply = client
        .push(
            &join_ref,
            TOPIC,
            "calculate_nisab",
            json!({"currency": "USD", "gold_price": "65.50"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "not held up by the job"
    );
    let status = client
        .push(&join_ref, TOPIC, "calculation_status", json!({"id": id}))
        .await;
    assert_eq!(status["response"]["status"], "processing", "{status}");

    // The feed answers: the result is pushed to this socket.
    feed.set(FeedMode::Answer);
    let complete = client.event(TOPIC, "calculation_complete").await;
    let result = &complete[4]["result"];
    assert_eq!(complete[4]["id"], id.as_str());
    assert_eq!(
        result["years"][0]["nisab"], "5567.50",
        "the feed's gold price"
    );
    assert_eq!(result["years"][0]["zakat_due"], "250.00");
    assert_eq!(result["years"][1]["zakat_due"], "375.00");
    assert_eq!(result["total_zakat_due"], "625");
    server.stop().await;

    // After a restart, another socket of the user reads it back; others cannot.
    let server = TestServer::start_in(dir.path(), &flags).await;
    let mut later = Client::connect(&server, Some(&token("4", &[]))).await;
    let (join_ref, _) = later.join(TOPIC, json!({})).await;
    let status = later
        .push(&join_ref, TOPIC, "calculation_status", json!({"id": id}))
        .await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["response"]["status"], "complete");
    assert_eq!(status["response"]["result"], *result);
    let mut admin = Client::connect(&server, Some(&token("9", &["admin"]))).await;
    let (join_ref, _) = admin.join(TOPIC, json!({})).await;
    let status = admin
        .push(
            &join_ref,
            TOPIC,
            "calculation_status",
            json!({"id": "nope"}),
        )
        .await;
    assert_eq!(status["response"]["reason"], "not found");
    server.stop().await;
}

#[tokio::test]
async fn a_complex_calculation_that_cannot_get_its_prices_fails_to_the_asking_socket() {
    let feed = TestFeed::start().await;
    feed.set(FeedMode::Fail);
    let url = feed.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_in(dir.path(), &["--price-feed-url", url.as_str()]).await;
    let mut client = Client::connect(&server, Some(&token("4", &[]))).await;
    let (join_ref, _) = client.join(TOPIC, json!({})).await;
    let request = json!({"currency": "USD", "years": [{"year": 2026, "assets": {"cash": "1"}}]});
    let reply = client
        .push(&join_ref, TOPIC, "complex_calculation", request)
        .await;
    assert_eq!(reply["response"]["status"], "processing");
    let failed = client.event(TOPIC, "calculation_failed").await;
    assert_eq!(failed[4]["reason"], "price feed unavailable");
    server.stop().await;
}
