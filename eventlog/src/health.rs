//! Whether a component (a connector, the processors) reaches the log, for `/readyz` and
//! `fawkes_log_up`: every log operation reports its outcome ([`LogHealth::failed`],
//! [`LogHealth::ok`]), and [`watch`] pings the log so an idle component notices an outage,
//! and its end, too.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::{Log, LogError};

/// How often the log is pinged while it answers.
const WHILE_UP: Duration = Duration::from_secs(5);
/// How often the log is pinged while it does not: how soon readiness comes back.
const WHILE_DOWN: Duration = Duration::from_secs(1);

/// One component's view of the log: `fawkes_log_errors_total{component, op}` and
/// `fawkes_log_up{component}`. Cheap to clone: clones share the metrics.
#[derive(Debug, Clone)]
pub struct LogHealth {
    /// Failed log operations, by `op`.
    errors: IntCounterVec,
    /// 1 while the log answers, 0 from a failed log operation until the next success.
    up: IntGauge,
}

impl LogHealth {
    /// The metrics of `component`, registered in `registry`. `component` tells a connector's
    /// from the processors' in the one registry of `fawkes dev`.
    pub fn new(registry: &Registry, component: &'static str) -> Self {
        let errors = IntCounterVec::new(
            Opts::new(
                "fawkes_log_errors_total",
                "Failed log operations, by operation.",
            )
            .const_label("component", component),
            &["op"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        let up = IntGauge::with_opts(
            Opts::new(
                "fawkes_log_up",
                "1 while the log answers, 0 from a failed log operation until the next success.",
            )
            .const_label("component", component),
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        up.set(1);
        // Registering fails only for a component registered twice in one registry; the
        // metrics still work, unexported.
        let _ = registry.register(Box::new(errors.clone()));
        let _ = registry.register(Box::new(up.clone()));
        Self { errors, up }
    }

    /// A log operation failed: counted under `op`, and the log counts as down until the next
    /// success. The caller logs the error with its context.
    pub fn failed(&self, op: &'static str, error: &LogError) {
        self.errors.with_label_values(&[op]).inc();
        if self.up.get() == 1 {
            tracing::warn!(op, %error, "the log is unreachable; retrying with backoff");
        }
        self.up.set(0);
    }

    /// A log operation succeeded: the log is up.
    pub fn ok(&self) {
        if self.up.get() == 0 {
            tracing::info!("the log is reachable again");
        }
        self.up.set(1);
    }

    /// Whether the last log operation succeeded (what `/readyz` reports).
    pub fn is_up(&self) -> bool {
        self.up.get() == 1
    }
}

/// Pings `log` until `shutdown`, reporting each outcome to `health`: every 5 s while it
/// answers, every second while it does not.
pub async fn watch(log: Arc<dyn Log>, health: LogHealth, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            pinged = log.ping() => match pinged {
                Ok(()) => health.ok(),
                Err(error) => health.failed("ping", &error),
            },
        }
        let every = if health.is_up() { WHILE_UP } else { WHILE_DOWN };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_from_a_failure_until_the_next_success() {
        let health = LogHealth::new(&Registry::new(), "test");
        assert!(health.is_up(), "up until something fails");
        health.failed("append", &LogError::Unavailable("down".into()));
        assert!(!health.is_up());
        health.ok();
        assert!(health.is_up());
    }
}
