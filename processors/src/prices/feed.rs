//! The HTTP client of the price feed and its contract (docs/PRICE_FEED.md):
//! `GET <url>?currency=USD` answers `200 {"currency": "USD", "gold_per_gram": "65.50",
//! "silver_per_gram": "0.80"}` (prices per gram as decimal strings), or `404` for a currency
//! the feed does not quote. Anything else is a failure of the feed.
//!
//! Plain HTTP through hyper, which the connector already builds: no TLS stack is compiled in
//! for one outside call (see [`FeedUrl`] for how an https feed is reached).

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::{Quote, MAX_PRICE_PER_GRAM, PRICE_PLACES};
use crate::money::parse_decimal;

/// Largest answer read from the feed: a quote is a few dozen bytes, and a feed gone wrong
/// must not make a processor buffer without bound.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The feed's address: an `http://host[:port][/path][?query]` URL.
///
/// `https` is refused at start: this build carries no TLS client. An https feed is reached
/// through a local TLS-terminating proxy (a sidecar), which also keeps certificates out of
/// the processors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedUrl(Uri);

/// Why a price feed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedUrlError {
    /// Not a URL at all.
    #[error("`{0}` is not a URL")]
    Invalid(String),
    /// A URL with another scheme than `http`.
    #[error(
        "`{0}` is not an http:// URL (https is not built in: reach an https feed through a \
         local TLS-terminating proxy)"
    )]
    NotHttp(String),
    /// A URL without a host.
    #[error("`{0}` names no host")]
    NoHost(String),
}

impl FeedUrl {
    /// Parses the feed's URL.
    pub fn parse(text: &str) -> Result<Self, FeedUrlError> {
        let text = text.trim();
        let uri = Uri::from_str(text).map_err(|_| FeedUrlError::Invalid(text.to_owned()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(FeedUrlError::NotHttp(text.to_owned())),
            None => return Err(FeedUrlError::Invalid(text.to_owned())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(FeedUrlError::NoHost(text.to_owned()));
        }
        Ok(Self(uri))
    }

    /// The URL asking for `currency`'s prices: the configured URL with `currency=<code>`
    /// added to its query. `currency` is a checked code ([`super::is_quotable`]), so it needs
    /// no escaping.
    fn for_currency(&self, currency: &str) -> Result<Uri, FeedError> {
        let path = self.0.path();
        let path_and_query = match self.0.query() {
            Some(query) if !query.is_empty() => format!("{path}?{query}&currency={currency}"),
            _ => format!("{path}?currency={currency}"),
        };
        let mut parts = self.0.clone().into_parts();
        let unusable = || FeedError::Request(format!("no request URL for {currency}"));
        parts.path_and_query = Some(path_and_query.parse().map_err(|_| unusable())?);
        Uri::from_parts(parts).map_err(|_| unusable())
    }
}

impl std::fmt::Display for FeedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why one call to the feed gave no quote.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeedError {
    /// No complete answer within the request timeout.
    #[error("the price feed did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection or the exchange failed.
    #[error("the price feed could not be reached: {0}")]
    Request(String),
    /// An answer other than 200 or 404.
    #[error("the price feed answered HTTP {0}")]
    Status(u16),
    /// The answer's body could not be read (cut off, or over [`MAX_BODY_BYTES`]).
    #[error("the price feed's answer could not be read: {0}")]
    Body(String),
    /// A body that is not a quote for the currency asked.
    #[error("the price feed's answer is not a quote: {0}")]
    Malformed(String),
    /// The feed does not quote this currency (404). Not a failure of the feed.
    #[error("the price feed has no price in {0}")]
    NotQuoted(String),
}

impl FeedError {
    /// Whether the feed is working and simply has no price for the currency: such an answer
    /// must not count towards opening the breaker (or any client could open it for everyone
    /// by asking for a currency nobody quotes).
    pub(crate) fn is_feed_healthy(&self) -> bool {
        matches!(self, FeedError::NotQuoted(_))
    }

    /// The call's result label in `fawkes_price_feed_calls_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            FeedError::Timeout(_) => "timeout",
            FeedError::NotQuoted(_) => "not_quoted",
            FeedError::Request(_)
            | FeedError::Status(_)
            | FeedError::Body(_)
            | FeedError::Malformed(_) => "error",
        }
    }
}

/// The HTTP client of one feed, with pooled keep-alive connections.
#[derive(Debug, Clone)]
pub(crate) struct FeedClient {
    url: FeedUrl,
    timeout: Duration,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl FeedClient {
    /// A client of the feed at `url`, giving each call at most `timeout` (connecting
    /// included).
    pub(crate) fn new(url: FeedUrl, timeout: Duration) -> Self {
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Self { url, timeout, http }
    }

    /// The feed's quote for `currency`.
    pub(crate) async fn quote(&self, currency: &str) -> Result<Quote, FeedError> {
        let exchange = self.exchange(currency);
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FeedError::Timeout(self.timeout))??;
        match status {
            StatusCode::OK => parse_quote(currency, &body),
            StatusCode::NOT_FOUND => Err(FeedError::NotQuoted(currency.to_owned())),
            other => Err(FeedError::Status(other.as_u16())),
        }
    }

    /// Sends the request and reads the whole answer.
    async fn exchange(&self, currency: &str) -> Result<(StatusCode, Bytes), FeedError> {
        let request = Request::get(self.url.for_currency(currency)?)
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FeedError::Request(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| FeedError::Request(chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| FeedError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
}

/// An error and its causes, as one line (hyper's own Display names only the kind).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a `200` body: the quote for `currency`, with both prices decimals above 0 and at
/// most [`MAX_PRICE_PER_GRAM`], rounded to [`PRICE_PLACES`] places.
fn parse_quote(currency: &str, body: &[u8]) -> Result<Quote, FeedError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| FeedError::Malformed(e.to_string()))?;
    let quoted = value.get("currency").and_then(Value::as_str);
    if quoted != Some(currency) {
        return Err(FeedError::Malformed(format!(
            "it is for {}, not {currency}",
            quoted.unwrap_or("no currency")
        )));
    }
    let price = |field: &str| -> Result<Decimal, FeedError> {
        let price = parse_decimal(value.get(field))
            .map_err(|e| FeedError::Malformed(format!("{field} {e}")))?
            .round_dp_with_strategy(PRICE_PLACES, RoundingStrategy::MidpointAwayFromZero);
        if price <= Decimal::ZERO || price > MAX_PRICE_PER_GRAM {
            return Err(FeedError::Malformed(format!(
                "{field} is not above 0 and at most {MAX_PRICE_PER_GRAM}"
            )));
        }
        Ok(price)
    };
    Ok(Quote {
        currency: currency.to_owned(),
        gold_per_gram: price("gold_per_gram")?,
        silver_per_gram: price("silver_per_gram")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        let url = FeedUrl::parse("http://prices.internal:8080/v1/metals").expect("valid");
        assert_eq!(
            url.for_currency("USD").expect("uri").to_string(),
            "http://prices.internal:8080/v1/metals?currency=USD"
        );
        let keyed = FeedUrl::parse(" http://10.0.0.1/q?key=abc ").expect("valid");
        assert_eq!(
            keyed.for_currency("EUR").expect("uri").to_string(),
            "http://10.0.0.1/q?key=abc&currency=EUR"
        );
        assert_eq!(
            FeedUrl::parse("http://h")
                .expect("valid")
                .for_currency("USD")
                .expect("uri")
                .to_string(),
            "http://h/?currency=USD"
        );
        assert!(matches!(
            FeedUrl::parse("https://prices.example/"),
            Err(FeedUrlError::NotHttp(_))
        ));
        assert!(matches!(
            FeedUrl::parse("prices.example/x"),
            Err(FeedUrlError::Invalid(_))
        ));
        assert!(matches!(
            FeedUrl::parse("not a url"),
            Err(FeedUrlError::Invalid(_))
        ));
    }

    #[test]
    fn quotes_are_read_exactly_and_checked() {
        let quote = parse_quote(
            "USD",
            br#"{"currency":"USD","gold_per_gram":"65.50","silver_per_gram":0.8}"#,
        )
        .expect("a quote");
        assert_eq!(quote.gold_per_gram.to_string(), "65.50");
        assert_eq!(quote.silver_per_gram.to_string(), "0.8");
        let fine = parse_quote(
            "USD",
            br#"{"currency":"USD","gold_per_gram":"65.123456","silver_per_gram":"0.00005"}"#,
        )
        .expect("a quote");
        assert_eq!(fine.gold_per_gram.to_string(), "65.1235");
        assert_eq!(fine.silver_per_gram.to_string(), "0.0001");
        for bad in [
            &br#"{"currency":"EUR","gold_per_gram":"1","silver_per_gram":"1"}"#[..],
            br#"{"gold_per_gram":"1","silver_per_gram":"1"}"#,
            br#"{"currency":"USD","gold_per_gram":"0","silver_per_gram":"1"}"#,
            br#"{"currency":"USD","gold_per_gram":"1"}"#,
            br#"{"currency":"USD","gold_per_gram":"abc","silver_per_gram":"1"}"#,
            br#"{"currency":"USD","gold_per_gram":"1000000001","silver_per_gram":"1"}"#,
            br#"{"currency":"USD","gold_per_gram":"1","silver_per_gram":"0.00001"}"#,
            b"<html>",
        ] {
            assert!(
                matches!(parse_quote("USD", bad), Err(FeedError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A one-shot HTTP server on port 0 answering `response` (raw bytes) to every request,
    /// or never answering when `None`; returns its URL and the request lines it read.
    async fn server(
        response: Option<&'static str>,
    ) -> (FeedUrl, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (seen, requests) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = seen
                    .send(text.lines().next().unwrap_or("").to_owned())
                    .await;
                match response {
                    Some(response) => {
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    None => {
                        // Hold the connection open without answering.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            }
        });
        let url = FeedUrl::parse(&format!("http://{addr}/prices")).expect("url");
        (url, requests)
    }

    fn answer(status: &str, body: &str) -> &'static str {
        Box::leak(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        )
    }

    #[tokio::test]
    async fn a_quote_comes_from_the_feed() {
        let body = r#"{"currency":"USD","gold_per_gram":"65.50","silver_per_gram":"0.80"}"#;
        let (url, mut requests) = server(Some(answer("200 OK", body))).await;
        let client = FeedClient::new(url, Duration::from_secs(5));
        let quote = client.quote("USD").await.expect("a quote");
        assert_eq!(
            quote,
            Quote {
                currency: "USD".into(),
                gold_per_gram: Decimal::new(6550, 2),
                silver_per_gram: Decimal::new(80, 2),
            }
        );
        assert_eq!(
            requests.recv().await.expect("a request"),
            "GET /prices?currency=USD HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn failures_are_told_apart() {
        let (url, _requests) = server(Some(answer("404 Not Found", "{}"))).await;
        let error = FeedClient::new(url, Duration::from_secs(5))
            .quote("XAU")
            .await
            .expect_err("not quoted");
        assert!(matches!(error, FeedError::NotQuoted(_)), "{error}");
        assert!(error.is_feed_healthy());

        let (url, _requests) = server(Some(answer("503 Service Unavailable", ""))).await;
        let error = FeedClient::new(url, Duration::from_secs(5))
            .quote("USD")
            .await
            .expect_err("a failure");
        assert!(matches!(error, FeedError::Status(503)), "{error}");
        assert_eq!(error.label(), "error");
        assert!(!error.is_feed_healthy());

        let (url, _requests) = server(None).await;
        let started = std::time::Instant::now();
        let error = FeedClient::new(url, Duration::from_millis(300))
            .quote("USD")
            .await
            .expect_err("a timeout");
        assert!(matches!(error, FeedError::Timeout(_)), "{error}");
        assert_eq!(error.label(), "timeout");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the timeout bounds the call"
        );

        // Nobody listening: the connection is refused.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = FeedUrl::parse(&format!("http://{addr}/")).expect("url");
        let error = FeedClient::new(url, Duration::from_secs(5))
            .quote("USD")
            .await
            .expect_err("refused");
        assert!(matches!(error, FeedError::Request(_)), "{error}");
    }

    #[tokio::test]
    async fn an_oversized_answer_is_a_failure() {
        let body = "x".repeat(MAX_BODY_BYTES + 1);
        let (url, _requests) = server(Some(answer("200 OK", &body))).await;
        let error = FeedClient::new(url, Duration::from_secs(5))
            .quote("USD")
            .await
            .expect_err("too large");
        assert!(matches!(error, FeedError::Body(_)), "{error}");
    }
}
