//! Gold and silver prices from an outside feed, behind a circuit breaker.
//!
//! `calculate_nisab` and `calculate_zakat` need prices per gram; a client that gives none is
//! answered with the feed's. The feed is asked while the command's view is loaded (never in
//! [`decide`](crate::decide), which stays pure), and its call holds up the partition the
//! command is on, so a failing feed must not be called again and again: after
//! `failure_threshold` failures in a row the breaker opens and commands are answered
//! `price feed unavailable` at once, until one probe after the cool-down finds the feed back.
//!
//! Layout:
//! - `breaker`: the breaker as a pure state machine (the caller passes the time).
//! - `feed`: the HTTP client and the feed's JSON contract (docs/PRICE_FEED.md).
//! - here: the settings, the values a view carries, and [`PriceFeed`], which puts the two
//!   together and reports them in the metrics.

mod breaker;
mod feed;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use crate::metrics::PriceFeedMetrics;
use breaker::{Breaker, BreakerState};
use feed::FeedClient;
pub use feed::{FeedUrl, FeedUrlError};

/// Highest price per gram read from a client or the feed: 10^9, beyond any currency's price of
/// a gram of gold, and small enough that a calculation's products stay exact.
pub(crate) const MAX_PRICE_PER_GRAM: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Decimal places of a price per gram: a client's may have no more, and the feed's are
/// rounded to them (a ten-thousandth of a currency unit per gram).
pub(crate) const PRICE_PLACES: u32 = 4;

/// Settings of the price feed: where it is and how patient the processors are with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceFeedConfig {
    /// The feed's URL. `None`: no feed; a command without a price is refused as invalid.
    pub url: Option<FeedUrl>,
    /// Longest one call may take, connecting included (default 2 s). The command's partition
    /// waits for it, so keep it well under the connector's reply timeout (8 s).
    pub timeout: Duration,
    /// Failures in a row that open the breaker (default 5; at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through (default 30 s).
    pub cool_down: Duration,
}

impl Default for PriceFeedConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout: Duration::from_secs(2),
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Prices per gram of gold and silver in one currency, as the feed quoted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The currency (an ISO 4217 code).
    pub currency: String,
    /// Price of one gram of gold.
    pub gold_per_gram: Decimal,
    /// Price of one gram of silver.
    pub silver_per_gram: Decimal,
}

/// Why a command that needed the feed's prices has none. The Display is the sentence the
/// client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceMissing {
    /// No feed is configured (`FAWKES_PRICE_FEED_URL` unset).
    #[error("no price feed is configured")]
    NotConfigured,
    /// The feed does not quote this currency.
    #[error("the price feed has no price in {0}")]
    NotQuoted(String),
    /// The call failed (unreachable, timed out, an error status, an unreadable answer).
    #[error("the price feed failed; give the prices or retry later")]
    FeedFailed,
    /// The breaker is open: the feed failed repeatedly and is not called until its cool-down
    /// ends.
    #[error(
        "the price feed is paused after repeated failures; give the prices or retry in {} s",
        whole_seconds(*retry_after)
    )]
    BreakerOpen {
        /// Until a probe may be let through.
        retry_after: Duration,
    },
}

/// `duration` in seconds, rounded up, at least 1: what a client is told to wait.
fn whole_seconds(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

/// Whether the feed may be asked for `currency`: an ISO 4217 code (three capital letters).
/// Anything else is never sent to the feed, so no client text reaches its URL.
pub(crate) fn is_quotable(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

/// The feed as the processors call it: its client (none when not configured), its breaker,
/// and their metrics. One per processor process, shared by its partitions' workers.
#[derive(Debug)]
pub(crate) struct PriceFeed {
    client: Option<FeedClient>,
    /// Behind a lock because every partition's worker calls the same feed; held only for a
    /// step of the state machine, never across the call.
    breaker: Mutex<Breaker>,
    metrics: PriceFeedMetrics,
}

impl PriceFeed {
    /// The feed `config` describes, reporting to `metrics`.
    pub(crate) fn new(config: &PriceFeedConfig, metrics: PriceFeedMetrics) -> Self {
        let client = config
            .url
            .clone()
            .map(|url| FeedClient::new(url, config.timeout));
        let breaker = Breaker::new(config.failure_threshold, config.cool_down);
        if let Some(url) = &config.url {
            tracing::info!(%url, timeout = ?config.timeout, failure_threshold = config.failure_threshold, cool_down = ?config.cool_down, "price feed configured");
            // The state series exist only when there is a feed: a processor without one
            // shows none rather than a breaker that looks healthy.
            show_state(&metrics, breaker.state());
        }
        Self {
            client,
            breaker: Mutex::new(breaker),
            metrics,
        }
    }

    /// No feed (for tests of commands that need none).
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self::new(
            &PriceFeedConfig::default(),
            PriceFeedMetrics::new(&prometheus::Registry::new()),
        )
    }

    /// The feed's prices in `currency`, or why there are none. Calls the feed only when one
    /// is configured, the currency is a code it may be asked for, and the breaker lets the
    /// call through.
    pub(crate) async fn quote(&self, currency: &str) -> Result<Quote, PriceMissing> {
        let Some(client) = &self.client else {
            return Err(PriceMissing::NotConfigured);
        };
        if !is_quotable(currency) {
            return Err(PriceMissing::NotQuoted(currency.to_owned()));
        }
        let permit = match self.step(|b| b.admit(Instant::now())) {
            Ok(permit) => permit,
            Err(rejected) => {
                self.count("rejected");
                return Err(PriceMissing::BreakerOpen {
                    retry_after: rejected.retry_after,
                });
            }
        };
        match client.quote(currency).await {
            Ok(quote) => {
                self.count("ok");
                self.step(|b| b.succeeded(permit));
                Ok(quote)
            }
            Err(error) if error.is_feed_healthy() => {
                self.count(error.label());
                self.step(|b| b.succeeded(permit));
                Err(PriceMissing::NotQuoted(currency.to_owned()))
            }
            Err(error) => {
                self.count(error.label());
                tracing::warn!(%error, currency, "price feed call failed");
                let now = Instant::now();
                self.step(|b| b.failed(permit, now));
                Err(PriceMissing::FeedFailed)
            }
        }
    }

    /// One step of the breaker; a change of state is logged and shown in the metrics.
    fn step<T>(&self, step: impl FnOnce(&mut Breaker) -> T) -> T {
        let (out, before, after) = {
            let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
            let before = breaker.state();
            let out = step(&mut breaker);
            (out, before, breaker.state())
        };
        if before != after {
            match after {
                BreakerState::Open => tracing::warn!(
                    from = before.label(),
                    "price feed breaker open: commands needing its prices are refused until the cool-down ends"
                ),
                BreakerState::HalfOpen => {
                    tracing::info!("price feed breaker half-open: one probe call goes out");
                }
                BreakerState::Closed => {
                    tracing::info!("price feed breaker closed: the feed answers again");
                }
            }
            show_state(&self.metrics, after);
        }
        out
    }

    fn count(&self, result: &str) {
        self.metrics.calls.with_label_values(&[result]).inc();
    }
}

/// Sets the state gauges: 1 for `state`, 0 for the others.
fn show_state(metrics: &PriceFeedMetrics, state: BreakerState) {
    for each in BreakerState::ALL {
        metrics
            .breaker_state
            .with_label_values(&[each.label()])
            .set(i64::from(each == state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::core::Collector;

    fn state(metrics: &PriceFeedMetrics) -> Vec<(&'static str, i64)> {
        BreakerState::ALL
            .iter()
            .map(|s| {
                (
                    s.label(),
                    metrics.breaker_state.with_label_values(&[s.label()]).get(),
                )
            })
            .collect()
    }

    fn calls(metrics: &PriceFeedMetrics, result: &str) -> u64 {
        metrics.calls.with_label_values(&[result]).get()
    }

    #[test]
    fn only_iso_codes_are_asked_for() {
        assert!(is_quotable("USD"));
        for not in ["usd", "US", "USDT", "U$D", "", "ÄÖÜ"] {
            assert!(!is_quotable(not), "{not}");
        }
    }

    #[test]
    fn clients_are_told_whole_seconds() {
        let open = |ms| PriceMissing::BreakerOpen {
            retry_after: Duration::from_millis(ms),
        };
        assert!(open(1).to_string().ends_with("retry in 1 s"));
        assert!(open(2_000).to_string().ends_with("retry in 2 s"));
        assert!(open(2_001).to_string().ends_with("retry in 3 s"));
    }

    #[tokio::test]
    async fn without_a_url_there_is_no_feed_and_no_breaker_series() {
        let metrics = PriceFeedMetrics::new(&prometheus::Registry::new());
        let feed = PriceFeed::new(&PriceFeedConfig::default(), metrics.clone());
        assert_eq!(feed.quote("USD").await, Err(PriceMissing::NotConfigured));
        assert!(metrics.breaker_state.collect()[0].get_metric().is_empty());
    }

    #[tokio::test]
    async fn a_failing_feed_opens_the_breaker_and_is_not_called_while_open() {
        // Nobody listens on this port: every call fails at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let config = PriceFeedConfig {
            url: Some(FeedUrl::parse(&format!("http://{addr}/")).expect("url")),
            failure_threshold: 2,
            cool_down: Duration::from_secs(60),
            ..PriceFeedConfig::default()
        };
        let metrics = PriceFeedMetrics::new(&prometheus::Registry::new());
        let feed = PriceFeed::new(&config, metrics.clone());
        assert_eq!(
            state(&metrics),
            [("closed", 1), ("open", 0), ("half_open", 0)]
        );
        assert_eq!(feed.quote("USD").await, Err(PriceMissing::FeedFailed));
        assert_eq!(feed.quote("USD").await, Err(PriceMissing::FeedFailed));
        assert_eq!(
            state(&metrics),
            [("closed", 0), ("open", 1), ("half_open", 0)]
        );
        assert!(matches!(
            feed.quote("USD").await,
            Err(PriceMissing::BreakerOpen { .. })
        ));
        assert_eq!(calls(&metrics, "error"), 2);
        assert_eq!(calls(&metrics, "rejected"), 1);
        // A currency the feed may not be asked for is answered without a call.
        assert_eq!(
            feed.quote("dollars").await,
            Err(PriceMissing::NotQuoted("dollars".into()))
        );
        assert_eq!(calls(&metrics, "rejected"), 1);
    }
}
