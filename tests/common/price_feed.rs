//! A gold and silver price feed for tests (the contract of docs/PRICE_FEED.md): an HTTP server
//! on 127.0.0.1, port 0, that answers quotes, fails or hangs as the test tells it, and counts
//! the calls it gets, so a test can tell a refused command from one that reached the feed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How the feed answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMode {
    /// `200` with a quote in USD or EUR (gold 65.50, silver 0.80 per gram); `404` for any
    /// other currency.
    Answer,
    /// `500`.
    Fail,
    /// No answer until the mode changes (then it answers as the new mode says).
    Hang,
}

#[derive(Clone)]
struct Shared {
    mode: watch::Receiver<FeedMode>,
    calls: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<String>>>,
}

/// The running feed; stops when dropped.
pub struct TestFeed {
    /// Where it listens.
    pub addr: SocketAddr,
    mode: watch::Sender<FeedMode>,
    calls: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
}

impl TestFeed {
    /// Starts a feed that answers.
    pub async fn start() -> Self {
        let (mode, receiver) = watch::channel(FeedMode::Answer);
        let shared = Shared {
            mode: receiver,
            calls: Arc::new(AtomicUsize::new(0)),
            queries: Arc::new(Mutex::new(Vec::new())),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the feed");
        let addr = listener.local_addr().expect("feed addr");
        let shutdown = CancellationToken::new();
        let app = Router::new()
            .route("/prices", get(prices))
            .with_state(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Self {
            addr,
            mode,
            calls: shared.calls,
            queries: shared.queries,
            shutdown,
        }
    }

    /// The URL to configure as `FAWKES_PRICE_FEED_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/prices", self.addr)
    }

    /// From now on the feed answers as `mode` says (a hanging call answers so too).
    pub fn set(&self, mode: FeedMode) {
        self.mode.send_replace(mode);
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The query string of the last call.
    pub fn last_query(&self) -> Option<String> {
        self.queries.lock().expect("queries").last().cloned()
    }
}

impl Drop for TestFeed {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn prices(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let query = query.unwrap_or_default();
    shared.queries.lock().expect("queries").push(query.clone());
    let mut mode = shared.mode.clone();
    loop {
        let now = *mode.borrow_and_update();
        match now {
            FeedMode::Answer => return quote(&query),
            FeedMode::Fail => return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
            FeedMode::Hang => {
                if mode.changed().await.is_err() {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
        }
    }
}

fn quote(query: &str) -> Response {
    let currency = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("currency="))
        .unwrap_or_default();
    if currency != "USD" && currency != "EUR" {
        return (StatusCode::NOT_FOUND, "no such currency").into_response();
    }
    Json(json!({"currency": currency, "gold_per_gram": "65.50", "silver_per_gram": "0.80"}))
        .into_response()
}

/// The value of the series `series` (name and labels, as Prometheus prints them) in a
/// `/metrics` text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The price feed breaker's state in a `/metrics` text: the `state` whose gauge is 1.
pub fn breaker_state(text: &str) -> Option<&'static str> {
    ["closed", "open", "half_open"].into_iter().find(|state| {
        metric(
            text,
            &format!("fawkes_price_feed_breaker_state{{state=\"{state}\"}}"),
        ) == Some(1.0)
    })
}

/// `fawkes_price_feed_calls_total{result}` in a `/metrics` text (0 when absent).
pub fn feed_calls(text: &str, result: &str) -> u64 {
    metric(
        text,
        &format!("fawkes_price_feed_calls_total{{result=\"{result}\"}}"),
    )
    .unwrap_or_default() as u64
}
