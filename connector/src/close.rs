//! The WebSocket close codes the connector sends, each with when it is used (the table in
//! docs/ERRORS.md). Every close goes through one of these.
//!
//! Never 1000: phoenix.js up to 1.8.12 does not reconnect after it.

/// 1001: the user's sockets were disconnected (`POST /api/disconnect`), or the socket was
/// idle for longer than the idle timeout. phoenix.js reconnects with backoff.
pub(crate) const GOING_AWAY: u16 = 1001;
/// 1009: the client sent a frame larger than `FAWKES_MAX_FRAME_BYTES`.
pub(crate) const TOO_BIG: u16 = 1009;
/// 1012: the server is shutting down, after a `shutdown_notice` push on every joined channel
/// (what Phoenix sends on drain); phoenix.js reconnects, to another node if any.
pub(crate) const RESTART: u16 = 1012;
/// 1013: the client reads too slowly: its outbound queue overflowed, or too many broadcasts
/// piled up for a channel whose join was still being answered.
pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
