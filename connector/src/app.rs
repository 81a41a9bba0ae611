//! The state shared by every request and session of one connector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eventlog::Log;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::ConnectorConfig;
use crate::metrics::Metrics;
use crate::polls::Polls;
use crate::presence::Replicas;
use crate::registry::{Registry, Sessions};

/// State shared by every request and session of one connector.
#[derive(Debug)]
pub(crate) struct App {
    /// The settings this connector was started with.
    pub(crate) config: ConnectorConfig,
    /// Where commands and API broadcasts are appended.
    pub(crate) log: Arc<dyn Log>,
    /// Verifies socket and API tokens.
    pub(crate) auth: Authenticator,
    /// Topic subscriptions, for broadcasts.
    pub(crate) registry: Arc<Registry>,
    /// Open sessions by socket id, for deliveries and disconnects.
    pub(crate) sessions: Arc<Sessions>,
    /// Presence replicas of the topics joined here.
    pub(crate) replicas: Arc<Replicas>,
    /// Long-poll sessions homed here and relayed requests awaiting answers.
    pub(crate) polls: Arc<Polls>,
    /// Prometheus metrics.
    pub(crate) metrics: Metrics,
    /// The next socket id to hand out.
    pub(crate) next_socket: AtomicU64,
    /// Fires when the connector starts draining: `/readyz` and new handshakes answer 503,
    /// sessions refuse joins.
    pub(crate) shutdown: CancellationToken,
    /// Fires with the drain's last batch: every session still open closes now. Each
    /// session's turn is a child of it, so a socket that was not in the drain's plan (its
    /// upgrade finished after the plan was made) is closed all the same.
    pub(crate) last_call: CancellationToken,
    /// Session tasks, so shutdown can wait for them (axum does not track upgraded sockets).
    pub(crate) tracker: TaskTracker,
}

impl App {
    /// A socket id not used before on this connector.
    pub(crate) fn next_socket_id(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }
}
