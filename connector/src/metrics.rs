//! Prometheus metrics of a connector. Every metric is listed, with its meaning, in
//! `docs/METRICS.md`.

use eventlog::LogHealth;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The connector's metrics, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open sockets.
    pub connections: IntGauge,
    /// 1 from the shutdown signal until the connector stops: sockets are being closed in
    /// batches, joins refused, `/readyz` not ready.
    pub draining: IntGauge,
    /// Sockets accepted since start.
    pub connections_accepted: IntCounter,
    /// Handshakes refused, by reason.
    pub connections_refused: IntCounterVec,
    /// Join answers, by status (`ok`, `error`).
    pub joins: IntCounterVec,
    /// Client frames received.
    pub messages_in: IntCounter,
    /// Frames written to clients.
    pub messages_out: IntCounter,
    /// Replies written, by status (`ok`, `error`).
    pub replies: IntCounterVec,
    /// Client frames that could not be decoded, by reason.
    pub frames_rejected: IntCounterVec,
    /// Broadcasts fanned out.
    pub broadcasts: IntCounter,
    /// Sockets closed because their outbound queue was full.
    pub slow_consumers: IntCounter,
    /// `presence_diff` broadcasts read from the log.
    pub presence_diffs: IntCounter,
    /// Folded presence diffs sent (one per topic per window with changes).
    pub presence_flushes: IntCounter,
    /// Topics whose presence this connector holds a replica of.
    pub presence_topics: IntGauge,
    /// Joins answered with an empty presence list because the list asked for never came.
    pub presence_fallbacks: IntCounter,
    /// Long-poll sessions homed on this connector.
    pub longpoll_sessions: IntGauge,
    /// Long-poll requests answered, by method and envelope status.
    pub longpoll_requests: IntCounterVec,
    /// Long-poll sessions ended, by reason.
    pub longpoll_sessions_ended: IntCounterVec,
    /// Long-poll requests relayed through the log, by role (`asked`: this connector relayed a
    /// request to a session's home; `served`: it served one relayed to it).
    pub longpoll_relayed: IntCounterVec,
    /// Relayed long-poll requests whose home said nothing within the relay timeout.
    pub longpoll_relay_unanswered: IntCounter,
    /// Whether the log answers (`fawkes_log_errors_total`, `fawkes_log_up`): what `/readyz`
    /// reports.
    pub log: LogHealth,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric =
        IntCounter::new(name, help).unwrap_or_else(|_| unreachable!("valid metric name {name}"));
    // Registration fails only for duplicate names, which the fixed list below rules out.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    labelled(registry, name, help, &[label])
}

fn labelled(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable!("valid metric name {name}"));
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl Metrics {
    /// Creates every metric and registers it in `registry`, which `/metrics` then serves
    /// whole (so metrics of other components in the process show up too).
    pub fn new(registry: Registry) -> Self {
        let connections = IntGauge::new("fawkes_connections", "Open sockets.")
            .unwrap_or_else(|_| unreachable!("valid metric name"));
        let _ = registry.register(Box::new(connections.clone()));
        let draining = IntGauge::new(
            "fawkes_draining",
            "1 while the connector drains for shutdown.",
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        let _ = registry.register(Box::new(draining.clone()));
        let presence_topics = IntGauge::new(
            "fawkes_presence_topics",
            "Topics whose presence this connector holds a replica of.",
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        let _ = registry.register(Box::new(presence_topics.clone()));
        let longpoll_sessions = IntGauge::new(
            "fawkes_longpoll_sessions",
            "Long-poll sessions homed on this connector.",
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        let _ = registry.register(Box::new(longpoll_sessions.clone()));
        let log = LogHealth::new(&registry, "connector");
        Self {
            longpoll_sessions,
            longpoll_requests: labelled(
                &registry,
                "fawkes_longpoll_requests_total",
                "Long-poll requests answered, by method and envelope status.",
                &["method", "status"],
            ),
            longpoll_sessions_ended: counter_vec(
                &registry,
                "fawkes_longpoll_sessions_ended_total",
                "Long-poll sessions ended, by reason.",
                "reason",
            ),
            longpoll_relayed: counter_vec(
                &registry,
                "fawkes_longpoll_relayed_total",
                "Long-poll requests relayed through the log, by role (asked, served).",
                "role",
            ),
            longpoll_relay_unanswered: counter(
                &registry,
                "fawkes_longpoll_relay_unanswered_total",
                "Relayed long-poll requests whose home said nothing within the relay timeout.",
            ),
            log,
            presence_topics,
            presence_diffs: counter(
                &registry,
                "fawkes_presence_diffs_total",
                "Presence diffs read from the log.",
            ),
            presence_fallbacks: counter(
                &registry,
                "fawkes_presence_fallbacks_total",
                "Joins answered with an empty presence list because the list asked for never came.",
            ),
            presence_flushes: counter(
                &registry,
                "fawkes_presence_flushes_total",
                "Folded presence diffs sent, one per topic per window with changes.",
            ),
            connections,
            draining,
            connections_accepted: counter(
                &registry,
                "fawkes_connections_accepted_total",
                "Sockets accepted.",
            ),
            connections_refused: counter_vec(
                &registry,
                "fawkes_connections_refused_total",
                "Handshakes refused, by reason.",
                "reason",
            ),
            joins: counter_vec(
                &registry,
                "fawkes_joins_total",
                "Join answers written, by status.",
                "status",
            ),
            messages_in: counter(
                &registry,
                "fawkes_messages_in_total",
                "Client frames received.",
            ),
            messages_out: counter(
                &registry,
                "fawkes_messages_out_total",
                "Frames written to clients.",
            ),
            replies: counter_vec(
                &registry,
                "fawkes_replies_total",
                "Replies written, by status.",
                "status",
            ),
            frames_rejected: counter_vec(
                &registry,
                "fawkes_frames_rejected_total",
                "Client frames that could not be decoded, by reason.",
                "reason",
            ),
            broadcasts: counter(
                &registry,
                "fawkes_broadcasts_total",
                "Broadcasts fanned out to local subscribers.",
            ),
            slow_consumers: counter(
                &registry,
                "fawkes_slow_consumers_total",
                "Sockets closed because their outbound queue was full.",
            ),
            registry,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connector metric is in docs/METRICS.md's connector table, so the document cannot
    /// fall behind the code.
    #[test]
    fn every_metric_is_documented() {
        let metrics = Metrics::new(Registry::new());
        // Vectors show up only once they have a series.
        for vec in [
            &metrics.connections_refused,
            &metrics.joins,
            &metrics.replies,
            &metrics.frames_rejected,
            &metrics.longpoll_sessions_ended,
            &metrics.longpoll_relayed,
        ] {
            vec.with_label_values(&["x"]).inc();
        }
        metrics
            .longpoll_requests
            .with_label_values(&["GET", "200"])
            .inc();
        metrics.log.failed("ping", &eventlog::LogError::Closed);
        let docs = include_str!("../../docs/METRICS.md");
        let connectors = docs.split("## Processors").next().unwrap_or_default();
        let names: Vec<String> = metrics
            .registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        assert!(names.len() >= 20, "{names:?}");
        for name in names {
            assert!(
                connectors.contains(&format!("| `{name}` |")),
                "{name} is not in docs/METRICS.md"
            );
        }
    }
}
