//! The connector's lease: a [`Heartbeat`] on the log four times per lease. Processors drop the
//! presences of a connector whose last heartbeat is older than its lease (it crashed, or
//! lost the log), and broadcast the leaves.

use std::sync::Arc;
use std::time::Duration;

use eventlog::Log;
use tokio_util::sync::CancellationToken;
use topics::names::HEARTBEATS;
use topics::Heartbeat;

use crate::metrics::Metrics;

/// Heart-beats for `connector_id` until `shutdown`. A failed append is logged and the next
/// beat tried on time: missing one of four beats per lease is harmless. A beat in flight is
/// abandoned at `shutdown`, so a broker that does not answer cannot hold shutdown up.
pub(crate) async fn beat(
    log: Arc<dyn Log>,
    connector_id: String,
    lease: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval((lease / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let heartbeat = Heartbeat {
            connector_id: connector_id.clone(),
            lease_ms,
            sent_at: topics::timestamp::now(),
            sockets: metrics.connections.get(),
        };
        let bytes = match heartbeat.encode() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "a heartbeat could not be encoded");
                continue;
            }
        };
        let sent = tokio::select! {
            () = shutdown.cancelled() => return,
            sent = log.append(HEARTBEATS, connector_id.as_bytes(), bytes) => sent,
        };
        match sent {
            Ok(_) => metrics.log.ok(),
            Err(error) => {
                metrics.log.failed("heartbeat", &error);
                tracing::warn!(%error, "a heartbeat was not stored; presences may expire if this goes on");
            }
        }
    }
}
