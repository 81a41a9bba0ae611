//! Settings of what a connector serves besides WebSockets' own: the origin check both
//! transports run, and the long-poll transport (shared by `dev` and `connector`).

use std::time::Duration;

use clap::Args;
use connector::{AllowedOrigins, ConnectorConfig};

use crate::durations::parse_ttl;

/// phoenix.js's long-poll request timeout (`longpollerTimeout`): a poll answered later is
/// taken for a lost connection.
const LONGPOLL_CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The origin check and the long-poll transport.
#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Origins browser pages may connect from, comma-separated, as Phoenix's `check_origin`
    /// list: `//example.com` (any scheme and port), `https://example.com` (that scheme and
    /// its default port), `//example.com:8080`, `https://*.example.com`. Unset: any origin.
    /// Checked on WebSocket handshakes (403) and every long-poll request (`{"status":403}`).
    #[arg(long, env = "FAWKES_CHECK_ORIGIN")]
    pub check_origin: Option<String>,
    /// Long-poll window, e.g. 10s: a GET waits this long for messages (then 204), a POST this
    /// long for each message to be processed (then 408); a session not polled for 1.5 windows
    /// ends. Well under phoenix.js's 20 s request timeout.
    #[arg(long, env = "FAWKES_LONGPOLL_WINDOW", default_value = "10s", value_parser = parse_ttl)]
    pub longpoll_window: Duration,
    /// How long a long-poll request relayed to the connector holding its session waits for a
    /// first word from it, e.g. 2s; without one the session counts as gone.
    #[arg(long, env = "FAWKES_LONGPOLL_RELAY_TIMEOUT", default_value = "2s", value_parser = parse_ttl)]
    pub longpoll_relay_timeout: Duration,
}

impl TransportArgs {
    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(problem) = self.allowed_origins() {
            problems.push(problem);
        }
        if self.longpoll_window < Duration::from_millis(100) {
            problems.push("FAWKES_LONGPOLL_WINDOW must be at least 100ms".to_owned());
        }
        if self.longpoll_relay_timeout < Duration::from_millis(100) {
            problems.push("FAWKES_LONGPOLL_RELAY_TIMEOUT must be at least 100ms".to_owned());
        }
        if self.longpoll_window + self.longpoll_relay_timeout * 2 >= LONGPOLL_CLIENT_TIMEOUT {
            problems.push(format!(
                "FAWKES_LONGPOLL_WINDOW plus twice FAWKES_LONGPOLL_RELAY_TIMEOUT must stay under \
                 {}s, phoenix.js's long-poll request timeout (a relayed poll may take that long)",
                LONGPOLL_CLIENT_TIMEOUT.as_secs()
            ));
        }
        problems
    }

    /// The allowed origins, when `--check-origin` is set.
    pub fn allowed_origins(&self) -> Result<Option<AllowedOrigins>, String> {
        self.check_origin
            .as_deref()
            .map(AllowedOrigins::parse)
            .transpose()
    }

    /// Puts these settings in a connector's configuration.
    pub fn apply(&self, config: &mut ConnectorConfig) {
        // `problems` refused an invalid list before a connector is configured.
        config.check_origin = self.allowed_origins().unwrap_or_default();
        config.longpoll_window = self.longpoll_window;
        config.longpoll_relay_timeout = self.longpoll_relay_timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        transport: TransportArgs,
    }

    fn problems(args: &[&str]) -> Vec<String> {
        let flags = Flags::parse_from(std::iter::once("fawkes").chain(args.iter().copied()));
        flags.transport.problems()
    }

    #[test]
    fn defaults_are_valid_and_every_problem_is_listed() {
        assert!(problems(&[]).is_empty());
        assert!(problems(&["--check-origin", "//a.example, https://*.b.example"]).is_empty());
        let listed = problems(&["--check-origin", "nope", "--longpoll-relay-timeout", "50ms"]);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed[0].contains("`nope`"));
        assert!(listed[1].contains("FAWKES_LONGPOLL_RELAY_TIMEOUT must be at least"));
        let listed = problems(&["--longpoll-window", "17s"]);
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].contains("under 20s"), "17 s plus twice 2 s");
    }
}
