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
//! - `shell/`: the IO shell around a session that both transports share (commands to the
//!   log, deliveries, broadcasts, overdue replies), fed by a transport and writing to its
//!   outlet.
//! - `auth`: JWT verification and the `authToken` sub-protocol.
//! - `registry`: live sessions and topic subscriptions.
//! - `fanout`: one broadcast encoded once per variant and offered to every subscriber.
//! - `streams`: deliveries and broadcasts read from the log and routed to sockets.
//! - `ordering`: each topic's stream in position order, once each (sans IO).
//! - `presence`: presence replicas and per-window folding of presence diffs.
//! - `heartbeat`: the lease that keeps this connector's presences alive.
//! - `close`: the WebSocket close codes, and when each is sent.
//! - `handshake`: the checks before a session starts (origin, vsn, JWT) and their refusals;
//!   `origin` the allowed-origins policy.
//! - `polls/`: long-poll state shared across the connector (sessions homed here, relayed
//!   requests awaiting answers) and its pure parts: `token` session tokens, `body` POST bodies.
//! - `drain`: graceful shutdown: the plan of which socket closes when (pure), and its task.
//! - `websocket/`: the WebSocket transport, the only module that speaks tungstenite: `mod`
//!   the endpoint, `upgrade` the handshake, `duplex` the socket, `task` the session task.
//! - `longpoll/`: Phoenix's long-poll transport: `mod` the endpoint, `envelope` its
//!   responses, `session` a session's task on its home connector, `relay` requests relayed
//!   through the log to the connector holding their session, and their answers.
//! - `http`: routes: socket, `/api/*`, health, metrics.
//! - `app`: the state shared by every request and session.
//! - `metrics`: Prometheus metrics.
//! - `config`: the settings of one connector.
//!
//! The API is [`run`] and what it takes: [`ConnectorConfig`], [`Metrics`], and for tokens
//! [`JwtSecret`], [`Authenticator`] and [`TokenClaims`], and for origins [`AllowedOrigins`].

mod app;
mod auth;
mod close;
mod config;
mod drain;
mod fanout;
mod handshake;
mod heartbeat;
mod http;
mod longpoll;
mod metrics;
mod ordering;
mod origin;
mod polls;
mod presence;
mod registry;
mod serializer;
mod session;
mod shell;
mod streams;
mod websocket;

use std::future::IntoFuture;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::serve::ListenerExt;
use eventlog::{Log, LogError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use app::App;
use polls::token::TokenKey;
use polls::Polls;

pub use auth::{AuthError, Authenticator, JwtSecret, TokenClaims};
pub use config::ConnectorConfig;
pub use metrics::Metrics;
pub use origin::AllowedOrigins;

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

/// Serves sockets on `listener` until `shutdown` fires, then drains within the drain timeout:
/// `/readyz` and new handshakes answer 503 and joins are refused (retryable), while the sockets
/// are closed in batches spread over the drain window, each after a `shutdown_notice` on its
/// channels, with 1012. Commands already read are confirmed on the log (or their wait runs
/// out) and the closed sockets' leaves appended before the log tasks stop.
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
        polls: Arc::new(Polls::new(TokenKey::derive(config.jwt_secret.as_bytes()))),
        metrics: metrics.clone(),
        next_socket: AtomicU64::new(1),
        shutdown: shutdown.clone(),
        last_call: CancellationToken::new(),
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
        "long-poll relay",
        longpoll::read_relays(app.clone(), log.clone(), streams.clone()),
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
    // HTTP is served through the drain, so `/readyz` and new handshakes answer 503 (rather
    // than a refused connection) and `/metrics` shows the drain; it stops after the sessions.
    let stop_serving = CancellationToken::new();
    let mut server = tokio::spawn(
        axum::serve(listener, http::router(app.clone()))
            .with_graceful_shutdown(stop_serving.clone().cancelled_owned())
            .into_future(),
    );
    let failed = tokio::select! {
        () = shutdown.cancelled() => None,
        served = &mut server => Some(match served {
            // The server runs until `stop_serving`: one that ended is a failure.
            Ok(Err(error)) => ConnectorError::Serve(error),
            Ok(Ok(())) | Err(_) => ConnectorError::TaskEnded("http server"),
        }),
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
            Some(ConnectorError::TaskEnded(part))
        }
    };
    if let Some(error) = failed {
        tracing::error!(%error, "shutting down");
        shutdown.cancel();
        app.last_call.cancel();
        streams.cancel();
        stop_serving.cancel();
        parts.abort_all();
        server.abort();
        return Err(error);
    }
    shut_down(&app, streams, stop_serving, parts, server).await
}

/// The shutdown after the signal, all within the drain timeout: the sessions are closed in
/// batches and waited for (with their leaves), then the log tasks and the HTTP server stop.
/// What is not done by the deadline is abandoned.
async fn shut_down(
    app: &App,
    streams: CancellationToken,
    stop_serving: CancellationToken,
    mut parts: tokio::task::JoinSet<&'static str>,
    mut server: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<(), ConnectorError> {
    let started = tokio::time::Instant::now();
    let deadline = started + app.config.drain_timeout;
    app.metrics.draining.set(1);
    // The tracker is closed so `wait` can end; sockets still being upgraded are tracked all
    // the same, and closed with the last batch.
    app.tracker.close();
    let sessions_closed = async {
        drain::close_in_batches(
            &app.sessions,
            started,
            app.config.drain_window,
            &app.last_call,
        )
        .await;
        // Every session has ended and every leave has been confirmed (or its wait ran out).
        app.tracker.wait().await;
    };
    let cut = deadline
        .checked_sub(PARTS_GRACE)
        .map_or(started, |cut| cut.max(started));
    if tokio::time::timeout_at(cut, sessions_closed).await.is_err() {
        app.last_call.cancel();
        tracing::warn!(
            open = app.metrics.connections.get(),
            "drain deadline reached with sockets still open or commands not yet confirmed"
        );
    }
    // Sessions have closed and sent their leaves; stop heart-beating only now, so a drained
    // connector's presences go by their leaves rather than by expiry.
    streams.cancel();
    stop_serving.cancel();
    let stopped = tokio::time::timeout_at(deadline, async {
        while let Some(ended) = parts.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "a connector task panicked");
            }
        }
        (&mut server).await
    })
    .await;
    let Ok(served) = stopped else {
        tracing::warn!("connector tasks did not stop by the drain deadline; aborting them");
        parts.abort_all();
        server.abort();
        return Ok(());
    };
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        "connector drained"
    );
    match served {
        Ok(served) => served.map_err(ConnectorError::from),
        Err(_) => Err(ConnectorError::TaskEnded("http server")),
    }
}

/// The part of the drain timeout kept for the log tasks to stop after the sessions (a
/// heartbeat in flight is abandoned when the broker does not answer).
const PARTS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `part` and returns its name, so the supervisor can say which one ended.
async fn named(name: &'static str, part: impl std::future::Future<Output = ()>) -> &'static str {
    part.await;
    name
}
