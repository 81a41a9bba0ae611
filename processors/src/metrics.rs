//! Prometheus metrics of the processors. Every metric is listed in `docs/METRICS.md`.

use eventlog::LogError;
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
    /// Failed log operations, by `op`; see [`ProcessorMetrics::log_failed`].
    pub log_errors: IntCounterVec,
    /// 1 while the log answers, 0 from a failed log operation until the next success; what
    /// `fawkes processor`'s `/readyz` reports.
    pub log_up: IntGauge,
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
            // `component` tells the processors' from the connector's in the one registry of
            // `fawkes dev`.
            log_errors: IntCounterVec::new(
                Opts::new(
                    "fawkes_log_errors_total",
                    "Failed log operations, by operation.",
                )
                .const_label("component", "processor"),
                &["op"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
            log_up: IntGauge::with_opts(
                Opts::new(
                    "fawkes_log_up",
                    "1 while the log answers, 0 from a failed log operation until the next success.",
                )
                .const_label("component", "processor"),
            )
            .unwrap_or_else(|_| unreachable!("valid metric")),
        };
        metrics.log_up.set(1);
        // Registering fails only for names already in this registry; a process runs one
        // runner per registry.
        let _ = registry.register(Box::new(metrics.commands.clone()));
        let _ = registry.register(Box::new(metrics.retries.clone()));
        let _ = registry.register(Box::new(metrics.dead_letters.clone()));
        let _ = registry.register(Box::new(metrics.latency.clone()));
        let _ = registry.register(Box::new(metrics.partitions.clone()));
        let _ = registry.register(Box::new(metrics.expiries.clone()));
        let _ = registry.register(Box::new(metrics.log_errors.clone()));
        let _ = registry.register(Box::new(metrics.log_up.clone()));
        metrics
    }

    /// A log operation failed: counted under `op`, and the log counts as down until the next
    /// success. The caller logs the error with its context.
    pub(crate) fn log_failed(&self, op: &'static str, error: &LogError) {
        self.log_errors.with_label_values(&[op]).inc();
        if self.log_up.get() == 1 {
            tracing::warn!(op, %error, "the log is unreachable; retrying with backoff");
        }
        self.log_up.set(0);
    }

    /// A log operation succeeded: the log is up.
    pub(crate) fn log_ok(&self) {
        if self.log_up.get() == 0 {
            tracing::info!("the log is reachable again");
        }
        self.log_up.set(1);
    }

    /// Whether the last log operation succeeded (`/readyz`).
    pub fn log_is_up(&self) -> bool {
        self.log_up.get() == 1
    }
}
