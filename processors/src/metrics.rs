//! Prometheus metrics of the processors. Every metric is listed in `docs/METRICS.md`.

use eventlog::LogHealth;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
