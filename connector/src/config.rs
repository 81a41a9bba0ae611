//! Connector settings.

use std::time::Duration;

use crate::auth::JwtSecret;
use crate::origin::AllowedOrigins;

/// Everything a connector needs to run, with production defaults.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// This connector's id: deliveries for its sockets are keyed by it. Unique per process.
    pub connector_id: String,
    /// Secret for HS256 socket and API tokens.
    pub jwt_secret: JwtSecret,
    /// A socket that sends nothing for this long is closed (clients heartbeat every 30 s).
    pub idle_timeout: Duration,
    /// Largest client frame accepted, in bytes; larger frames close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Frames queued per socket before it counts as too slow and is closed with 1013.
    pub outbound_queue: usize,
    /// Client events per second allowed on one joined channel (0: unlimited).
    pub channel_rate_limit: u32,
    /// Sockets are closed in batches spread over this window from the shutdown signal (the
    /// first batch at once, the last at its end), so their clients do not all reconnect in
    /// the same moment (default 5 s; less than the drain timeout).
    pub drain_window: Duration,
    /// The whole shutdown's deadline, from the signal until [`run`](crate::run) returns: the
    /// drain window, then the last sockets' close frames and leaves, then the log tasks. What
    /// is not done by then is abandoned, whatever the log does (default 10 s).
    pub drain_timeout: Duration,
    /// The `reconnect_delay` (ms) suggested to clients in `shutdown_notice`.
    pub reconnect_delay_ms: u64,
    /// How long this connector's presences outlive its last heartbeat (it heartbeats four
    /// times per lease): the time a crashed connector's users stay listed.
    pub presence_lease: Duration,
    /// Presence diffs of one topic are folded and sent once per window.
    pub presence_window: Duration,
    /// How long a join or push waits for its command to be confirmed on the log before it is
    /// answered `unavailable` (default 5 s; phoenix.js gives up on a push after 10 s).
    pub append_timeout: Duration,
    /// How long a join or push may wait for its reply, counted from when it was read: one not
    /// answered by then is answered `unavailable` (retry) and its late reply dropped, so no
    /// client waits into phoenix.js's 10 s push timeout whatever the processors do (default
    /// 8 s; at least the append timeout).
    pub reply_timeout: Duration,
    /// Origins browser pages may connect from, on both transports (Phoenix's `check_origin`
    /// list); `None` allows every origin (default).
    pub check_origin: Option<AllowedOrigins>,
    /// How long a long-poll GET waits for messages before it is answered 204, and a POST for
    /// each message to be processed before it is answered 408; a session not polled for 1.5
    /// windows ends (default 10 s, Phoenix's `window_ms`; phoenix.js gives up on a request
    /// after 20 s).
    pub longpoll_window: Duration,
    /// How long a long-poll request relayed to the connector holding its session waits for
    /// that connector to answer or say it holds the request; without a word by then the
    /// session counts as gone (default 2 s, Phoenix's `pubsub_timeout_ms`).
    pub longpoll_relay_timeout: Duration,
}

impl ConnectorConfig {
    /// Defaults for everything but identity and secret.
    pub fn new(connector_id: impl Into<String>, jwt_secret: JwtSecret) -> Self {
        Self {
            connector_id: connector_id.into(),
            jwt_secret,
            idle_timeout: Duration::from_secs(60),
            max_frame_bytes: 1024 * 1024,
            outbound_queue: 1024,
            channel_rate_limit: 10,
            drain_window: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            reconnect_delay_ms: 1000,
            presence_lease: Duration::from_secs(10),
            presence_window: Duration::from_millis(25),
            append_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(8),
            check_origin: None,
            longpoll_window: Duration::from_secs(10),
            longpoll_relay_timeout: Duration::from_secs(2),
        }
    }
}
