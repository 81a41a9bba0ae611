//! Why the connector closes a socket: one enum, each variant with its WebSocket close code and
//! reason (the close-code table in docs/ERRORS.md, which a test below keeps in step). Every
//! close goes through it.
//!
//! Never 1000: phoenix.js up to 1.8.12 does not reconnect after it.

/// One reason to close a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The user's sockets were disconnected (`POST /api/disconnect`).
    Disconnected,
    /// The socket was silent for longer than the idle timeout.
    Idle,
    /// The client sent a frame larger than `FAWKES_MAX_FRAME_BYTES`.
    FrameTooLarge,
    /// The server is shutting down, after a `shutdown_notice` push on every joined channel
    /// (what Phoenix sends on drain).
    ShuttingDown,
    /// The client reads too slowly: its outbound queue overflowed, or too many broadcasts
    /// piled up for a channel whose join was still being answered.
    TooSlow,
}

impl Close {
    /// Every close, for the catalog check.
    #[cfg(test)]
    const ALL: [Close; 5] = [
        Close::Disconnected,
        Close::Idle,
        Close::FrameTooLarge,
        Close::ShuttingDown,
        Close::TooSlow,
    ];

    /// The close code: 1001 going away (phoenix.js reconnects with backoff), 1009 message too
    /// big, 1012 service restart (reconnect, to another node if any), 1013 try again later.
    pub(crate) fn code(self) -> u16 {
        match self {
            Close::Disconnected | Close::Idle => 1001,
            Close::FrameTooLarge => 1009,
            Close::ShuttingDown => 1012,
            Close::TooSlow => 1013,
        }
    }

    /// The close frame's reason text.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Close::Disconnected => "disconnected",
            Close::Idle => "idle timeout",
            Close::FrameTooLarge => "frame too large",
            Close::ShuttingDown => "server restarting",
            Close::TooSlow => "too slow to keep up",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn errors_md_lists_exactly_the_close_codes() {
        let text = include_str!("../../docs/ERRORS.md");
        let section = text
            .split("## Close codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        let documented: BTreeSet<u16> = section
            .lines()
            .filter_map(|line| line.split('|').nth(1)?.trim().parse().ok())
            .collect();
        let code: BTreeSet<u16> = Close::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(documented, code);
        assert!(
            !code.contains(&1000),
            "phoenix.js does not reconnect after 1000"
        );
    }
}
