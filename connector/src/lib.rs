//! The connector: Phoenix Channels transports, protocol, auth, subscriptions and fan-out.
//!
//! It holds no domain logic. Every client action that needs a decision becomes a command on
//! the log; replies and broadcasts stream back from the log to the right sockets.
//!
//! Layout:
//! - `serializer`: V1/V2 JSON and V2 binary framing (sans IO).
//! - `session/`: the per-socket channel state machine (sans IO): `mod` the session,
//!   `channel` the join/leave/event/delivery/broadcast transitions, `rate_limit` the token
//!   bucket, `tests`.
//! - `auth`: JWT verification and the `authToken` sub-protocol.
//! - `registry`: live sessions and topic subscriptions.
//! - `fanout`: one broadcast encoded once per variant and offered to every subscriber.
//! - `streams`: deliveries and broadcasts read from the log and routed to sockets.
//! - `presence`: presence replicas and per-window folding of presence diffs.
//! - `heartbeat`: the lease that keeps this connector's presences alive.
//! - `close`: the WebSocket close codes, and when each is sent.
//! - `websocket/`: the WebSocket transport, the only module that speaks tungstenite: `mod`
//!   the endpoint, `upgrade` the handshake, `duplex` the socket, `task` the session task.
//! - `http`: routes: socket, `/api/*`, health, metrics.
//! - `app`: the state shared by every request and session.
//! - `metrics`: Prometheus metrics.
//! - `config`: the settings of one connector.
//!
//! The API is [`run`] and what it takes: [`ConnectorConfig`], [`Metrics`], and for tokens
//! [`JwtSecret`], [`Authenticator`] and [`TokenClaims`].

mod app;
mod auth;
mod close;
mod config;
mod fanout;
mod heartbeat;
mod http;
mod metrics;
mod presence;
mod registry;
mod serializer;
mod session;
mod streams;
mod websocket;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::serve::ListenerExt;
use eventlog::{Log, LogError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use app::App;

pub use auth::{AuthError, Authenticator, JwtSecret, TokenClaims};
pub use config::ConnectorConfig;
pub use metrics::Metrics;

/// The connector stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The log could not be set up.
    #[error("the connector lost the log: {0}")]
    Log(#[from] LogError),
    /// A task the connector cannot serve without (reading deliveries or broadcasts,
    /// heart-beating, flushing presence) ended or panicked while serving.
    #[error("the connector's {0} task stopped unexpectedly")]
    TaskEnded(&'static str),
    /// The JWT secret cannot be used.
    #[error("the connector cannot verify tokens: {0}")]
    Auth(#[from] AuthError),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves sockets on `listener` until `shutdown` fires, then drains: every socket is told
/// `shutdown_notice` and closed with 1012, waiting up to the drain timeout.
pub async fn run(
    config: ConnectorConfig,
    listener: TcpListener,
    log: Arc<dyn Log>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    let app = Arc::new(App {
        auth: Authenticator::new(&config.jwt_secret)?,
        registry: Arc::default(),
        sessions: Arc::default(),
        replicas: Arc::default(),
        metrics: metrics.clone(),
        next_socket: AtomicU64::new(1),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        log: log.clone(),
        config,
    });
    // Subscribe to the log before accepting sockets, so no reply can be missed.
    let streams = CancellationToken::new();
    let mut parts = tokio::task::JoinSet::new();
    parts.spawn(named(
        "deliveries",
        streams::deliveries(
            log.clone(),
            app.config.connector_id.clone(),
            app.sessions.clone(),
            app.replicas.clone(),
            metrics.clone(),
            streams.clone(),
        ),
    ));
    let targets = streams::Targets {
        registry: app.registry.clone(),
        sessions: app.sessions.clone(),
        replicas: app.replicas.clone(),
        metrics: metrics.clone(),
    };
    parts.spawn(named(
        "broadcasts",
        streams::broadcasts(log.clone(), targets, streams.clone()),
    ));
    parts.spawn(named(
        "presence flush",
        presence::flush_every(
            app.config.presence_window,
            app.replicas.clone(),
            app.registry.clone(),
            metrics.clone(),
            streams.clone(),
        ),
    ));
    parts.spawn(named(
        "heartbeat",
        heartbeat::beat(
            log.clone(),
            app.config.connector_id.clone(),
            app.config.presence_lease,
            metrics.clone(),
            streams.clone(),
        ),
    ));
    parts.spawn(named(
        "log health",
        eventlog::watch(log, metrics.log.clone(), streams.clone()),
    ));
    tokio::task::yield_now().await;
    tracing::info!(
        addr = %listener.local_addr()?,
        connector = %app.config.connector_id,
        "connector listening"
    );
    // Small frames must leave at once: Nagle's algorithm with delayed ACKs adds ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, http::router(app.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let served = tokio::select! {
        served = server => served,
        ended = parts.join_next() => {
            // Every part runs until `streams` is cancelled: one that ended is a bug (a
            // panic); a connector silently missing it must not keep serving.
            let part = match ended {
                Some(Ok(name)) => name,
                Some(Err(error)) => {
                    tracing::error!(%error, "a connector task panicked");
                    "unknown"
                }
                None => "unknown",
            };
            tracing::error!(part, "a connector task stopped; shutting down");
            shutdown.cancel();
            streams.cancel();
            parts.abort_all();
            return Err(ConnectorError::TaskEnded(part));
        }
    };
    app.tracker.close();
    if tokio::time::timeout(app.config.drain_timeout, app.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached with sockets still open");
    }
    // Sessions have closed and sent their leaves; stop heart-beating only now, so a drained
    // connector's presences go by their leaves rather than by expiry.
    streams.cancel();
    if tokio::time::timeout(PARTS_GRACE, async {
        while parts.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connector tasks did not stop in time; aborting them");
        parts.abort_all();
    }
    served.map_err(ConnectorError::from)
}

/// How long the log tasks may take to stop after the drain (a heartbeat in flight is
/// abandoned when the broker does not answer).
const PARTS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `part` and returns its name, so the supervisor can say which one ended.
async fn named(name: &'static str, part: impl std::future::Future<Output = ()>) -> &'static str {
    part.await;
    name
}
