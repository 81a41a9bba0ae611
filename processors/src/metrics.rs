//! Prometheus metrics of the processors. Every metric is listed in `docs/METRICS.md`.

use eventlog::LogHealth;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The processors' metrics.
#[derive(Debug, Clone)]
pub struct ProcessorMetrics {
    /// Commands finished, by result (`applied`, `replayed`, `read_only`, `dead_letter`).
    pub commands: IntCounterVec,
    /// Attempts that failed transiently and were retried.
    pub retries: IntCounter,
    /// Commands sent to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Time from reading a command to its outcome being on the log.
    pub latency: Histogram,
    /// Command partitions this processor owns now.
    pub partitions: IntGauge,
    /// Expiry commands sent for (connector, topic) pairs whose connector's lease lapsed.
    pub expiries: IntCounter,
    /// Whether the log answers (`fawkes_log_errors_total`, `fawkes_log_up`): what
    /// `fawkes processor`'s `/readyz` reports.
    pub log: LogHealth,
    /// The price feed's breaker and calls.
    pub price_feed: PriceFeedMetrics,
}

impl ProcessorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let metrics = Self {
            commands: IntCounterVec::new(
                Opts::new("fawkes_commands_total", "Commands processed, by result."),
                &["result"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            retries: IntCounter::new(
                "fawkes_command_retries_total",
                "Command attempts that failed transiently and were retried.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            dead_letters: IntCounter::new(
                "fawkes_dead_letters_total",
                "Commands sent to the dead-letter topic.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "fawkes_command_duration_seconds",
                    "Time from reading a command to its outcome being on the log.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            partitions: IntGauge::new(
                "fawkes_partitions_assigned",
                "Command partitions this processor owns now.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            expiries: IntCounter::new(
                "fawkes_presence_expiries_total",
                "Expiry commands sent for topics of connectors whose lease lapsed.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            log: LogHealth::new(registry, "processor"),
            price_feed: PriceFeedMetrics::new(registry),
        };
        // Registering fails only for names already in this registry; a process runs one
        // runner per registry.
        let _ = registry.register(Box::new(metrics.commands.clone()));
        let _ = registry.register(Box::new(metrics.retries.clone()));
        let _ = registry.register(Box::new(metrics.dead_letters.clone()));
        let _ = registry.register(Box::new(metrics.latency.clone()));
        let _ = registry.register(Box::new(metrics.partitions.clone()));
        let _ = registry.register(Box::new(metrics.expiries.clone()));
        metrics
    }
}

/// The price feed's metrics: the state of its circuit breaker and its calls by result.
#[derive(Debug, Clone)]
pub struct PriceFeedMetrics {
    /// 1 for the breaker's current state (`closed`, `open`, `half_open`), 0 for the others;
    /// no series when no feed is configured.
    pub breaker_state: IntGaugeVec,
    /// Calls, by result: `ok`, `not_quoted` (the feed has no price in that currency),
    /// `error`, `timeout`, and `rejected` (refused by the open breaker: the feed was not
    /// called).
    pub calls: IntCounterVec,
}

impl PriceFeedMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let metrics = Self {
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "fawkes_price_feed_breaker_state",
                    "1 for the price feed breaker's current state, 0 for the others.",
                ),
                &["state"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            calls: IntCounterVec::new(
                Opts::new(
                    "fawkes_price_feed_calls_total",
                    "Price feed calls, by result (rejected: refused by the open breaker).",
                ),
                &["result"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
        };
        // As above: only a name already in this registry fails.
        let _ = registry.register(Box::new(metrics.breaker_state.clone()));
        let _ = registry.register(Box::new(metrics.calls.clone()));
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every processor metric is in docs/METRICS.md's processor table, so the document cannot
    /// fall behind the code.
    #[test]
    fn every_metric_is_documented() {
        let registry = Registry::new();
        let metrics = ProcessorMetrics::new(&registry);
        // Vectors show up only once they have a series.
        metrics.commands.with_label_values(&["applied"]).inc();
        metrics.price_feed.calls.with_label_values(&["ok"]).inc();
        metrics
            .price_feed
            .breaker_state
            .with_label_values(&["closed"])
            .set(1);
        metrics.log.failed("ping", &eventlog::LogError::Closed);
        let docs = include_str!("../../docs/METRICS.md");
        let processors = docs
            .split("## Processors")
            .nth(1)
            .expect("a processors section");
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            assert!(
                processors.contains(&format!("| `{name}` |")),
                "{name} is not in docs/METRICS.md"
            );
        }
    }
}
