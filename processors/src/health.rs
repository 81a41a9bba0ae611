//! Whether this processor reaches the log, for `/readyz` and `fawkes_log_up`: the runner
//! and the sweeper report each log operation's outcome, and a probe pings the log so an idle
//! processor notices an outage, and its end, too.

use std::sync::Arc;
use std::time::Duration;

use eventlog::Log;
use tokio_util::sync::CancellationToken;

use crate::metrics::ProcessorMetrics;

/// How often the log is pinged while it answers.
const WHILE_UP: Duration = Duration::from_secs(5);
/// How often the log is pinged while it does not: how soon readiness comes back.
const WHILE_DOWN: Duration = Duration::from_secs(1);

/// Pings the log until `shutdown`, reporting each outcome to `metrics`.
pub(crate) async fn watch(
    log: Arc<dyn Log>,
    metrics: ProcessorMetrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            pinged = log.ping() => match pinged {
                Ok(()) => metrics.log_ok(),
                Err(error) => metrics.log_failed("ping", &error),
            },
        }
        let every = if metrics.log_is_up() {
            WHILE_UP
        } else {
            WHILE_DOWN
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
