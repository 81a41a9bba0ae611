//! End-to-end: the zakat channel's prices from an outside feed, behind the circuit breaker,
//! through real sockets on a `fawkes dev` and a test feed on port 0.

mod common;

use std::time::Duration;

use common::price_feed::{breaker_state, feed_calls, FeedMode, TestFeed};
use common::{http, token, Client, TestServer};
use serde_json::{json, Value};

const TOPIC: &str = "zakat:user:4";

fn ok(response: Value) -> Value {
    json!({"status": "ok", "response": response})
}

async fn metrics(server: &TestServer) -> String {
    let (status, text) = http(server.addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    text
}

/// Pushes `calculate_nisab` in `currency` without a price and returns the reply.
async fn nisab(client: &mut Client, join_ref: &str, currency: &str) -> Value {
    client
        .push(
            join_ref,
            TOPIC,
            "calculate_nisab",
            json!({"currency": currency}),
        )
        .await
}

/// Asserts `reply` is the `price feed unavailable` refusal with a detail containing `says`.
fn assert_unavailable(reply: &Value, says: &str) {
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(
        reply["response"]["reason"], "price feed unavailable",
        "{reply}"
    );
    let detail = reply["response"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(says), "{detail:?} should say {says:?}");
}

#[tokio::test]
async fn prices_come_from_the_feed_and_its_breaker_opens_probes_and_closes() {
    let feed = TestFeed::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = feed.url();
    let server = TestServer::start_in(
        dir.path(),
        &[
            "--price-feed-url",
            &url,
            "--price-feed-timeout",
            "3s",
            "--price-feed-failure-threshold",
            "2",
            "--price-feed-cool-down",
            "3s",
            "--channel-rate-limit",
            "0",
        ],
    )
    .await;
    let mut user = Client::connect(&server, Some(&token("4", &[]))).await;
    let (jr, joined) = user.join(TOPIC, json!({})).await;
    assert_eq!(joined["status"], "ok", "{joined}");
    assert!(
        joined["response"]["position"]["offset"].is_u64(),
        "{joined}"
    );
    // An admin watching the user's topic hears zakat_due.
    let mut admin = Client::connect(&server, Some(&token("9", &["admin"]))).await;
    admin.join(TOPIC, json!({})).await;

    // A price the client leaves out comes from the feed.
    assert_eq!(
        nisab(&mut user, &jr, "USD").await,
        ok(json!({"nisab": "5567.50", "currency": "USD"}))
    );
    assert_eq!(feed.calls(), 1);
    assert_eq!(feed.last_query().as_deref(), Some("currency=USD"));
    let zakat = user
        .push(
            &jr,
            TOPIC,
            "calculate_zakat",
            json!({"currency": "USD", "assets": {"cash": "10000", "silver_grams": "100"}}),
        )
        .await;
    assert_eq!(
        zakat,
        ok(
            json!({"zakatable_wealth": "10080.00", "nisab": "5567.50", "zakat_due": "252.00",
                  "currency": "USD"})
        )
    );
    let due = admin.event(TOPIC, "zakat_due").await;
    assert_eq!(due[4]["calculation"]["gold_price"], "65.50");
    assert_eq!(due[4]["calculation"]["gold_price_from"], "feed");
    assert_eq!(due[4]["calculation"]["silver_price_from"], "feed");
    assert_eq!(due[4]["calculation"]["user_id"], "4");
    assert_eq!(feed.calls(), 2);
    // The client's own price needs no call; a currency the feed does not quote is the
    // client's to price, and no failure of the feed.
    let own = user
        .push(
            &jr,
            TOPIC,
            "calculate_nisab",
            json!({"currency": "USD", "gold_price": "70"}),
        )
        .await;
    assert_eq!(own, ok(json!({"nisab": "5950.00", "currency": "USD"})));
    assert_eq!(feed.calls(), 2);
    assert_eq!(
        nisab(&mut user, &jr, "JPY").await,
        json!({"status": "error", "response": {"errors": {
            "gold_price": ["can't be blank (the price feed has no price in JPY)"]}}})
    );
    assert_eq!(feed.calls(), 3);
    let text = metrics(&server).await;
    assert_eq!(breaker_state(&text), Some("closed"));
    assert_eq!(feed_calls(&text, "ok"), 2);
    assert_eq!(feed_calls(&text, "not_quoted"), 1);

    // The feed fails (an error status, then no answer within the timeout): error replies,
    // and two failures in a row open the breaker.
    feed.set(FeedMode::Fail);
    assert_unavailable(&nisab(&mut user, &jr, "USD").await, "failed;");
    assert_eq!(breaker_state(&metrics(&server).await), Some("closed"));
    feed.set(FeedMode::Hang);
    assert_unavailable(&nisab(&mut user, &jr, "USD").await, "failed;");
    assert_eq!(feed.calls(), 5);
    let text = metrics(&server).await;
    assert_eq!(breaker_state(&text), Some("open"));
    assert_eq!(feed_calls(&text, "error"), 1);
    assert_eq!(feed_calls(&text, "timeout"), 1);

    // Open: refused at once, without calling the feed.
    let started = tokio::time::Instant::now();
    assert_unavailable(&nisab(&mut user, &jr, "USD").await, "paused");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no waiting on the feed"
    );
    assert_eq!(feed.calls(), 5, "the open breaker does not call the feed");
    assert_eq!(feed_calls(&metrics(&server).await, "rejected"), 1);

    // After the cool-down one probe goes out; it fails, so the breaker opens again.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    feed.set(FeedMode::Fail);
    assert_unavailable(&nisab(&mut user, &jr, "USD").await, "failed;");
    assert_eq!(feed.calls(), 6);
    assert_unavailable(&nisab(&mut user, &jr, "USD").await, "paused");
    assert_eq!(feed.calls(), 6);
    assert_eq!(breaker_state(&metrics(&server).await), Some("open"));

    // After the next cool-down the probe is out (half-open, in the metrics) while the feed
    // holds it; the feed comes back, the probe succeeds and the breaker closes.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    feed.set(FeedMode::Hang);
    let probe = user
        .send(
            Some(&jr),
            TOPIC,
            "calculate_nisab",
            json!({"currency": "USD"}),
        )
        .await;
    // Well within the feed timeout, after which the held probe would fail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        if breaker_state(&metrics(&server).await) == Some("half_open") && feed.calls() == 7 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe never showed as half-open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    feed.set(FeedMode::Answer);
    assert_eq!(
        user.reply(&probe).await,
        ok(json!({"nisab": "5567.50", "currency": "USD"}))
    );
    let text = metrics(&server).await;
    assert_eq!(breaker_state(&text), Some("closed"));
    assert_eq!(feed_calls(&text, "ok"), 3);
    // Closed: calls go through again.
    assert_eq!(
        nisab(&mut user, &jr, "EUR").await,
        ok(json!({"nisab": "5567.50", "currency": "EUR"}))
    );
    assert_eq!(feed.calls(), 8);
    assert_eq!(feed.last_query().as_deref(), Some("currency=EUR"));
    server.stop().await;
}

#[tokio::test]
async fn without_a_feed_prices_are_the_clients_to_give() {
    let server = TestServer::start().await;
    let mut user = Client::connect(&server, Some(&token("4", &[]))).await;
    let (jr, _) = user.join(TOPIC, json!({})).await;
    assert_eq!(
        nisab(&mut user, &jr, "USD").await,
        json!({"status": "error", "response": {"errors": {"gold_price": ["can't be blank"]}}})
    );
    // With its prices the calculation needs no feed; below the nisab nothing is due and
    // nothing is broadcast.
    let reply = user
        .push(
            &jr,
            TOPIC,
            "calculate_zakat",
            json!({"currency": "USD", "gold_price": "65.50",
                   "assets": {"cash": "5000", "investments": "500"}, "liabilities": "200"}),
        )
        .await;
    assert_eq!(
        reply,
        ok(
            json!({"zakatable_wealth": "5300.00", "nisab": "5567.50", "zakat_due": "0.00",
                  "currency": "USD"})
        )
    );
    user.assert_no_event("zakat_due", Duration::from_millis(300))
        .await;
    let text = metrics(&server).await;
    assert!(
        !text.contains("fawkes_price_feed_breaker_state"),
        "no breaker without a feed:\n{text}"
    );
    server.stop().await;
}
