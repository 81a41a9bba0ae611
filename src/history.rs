//! Settings of the topics' histories (shared by `dev` and `processor`).

use std::time::Duration;

use clap::Args;

use crate::durations::parse_ttl;

/// How much of each channel topic's broadcasts the processors keep, so a client that rejoins
/// with the last position it saw gets what it missed (docs/CHANNELS.md); shared by `dev` and
/// `processor`.
#[derive(Debug, Clone, Copy, Args)]
pub struct HistoryArgs {
    /// Newest broadcasts kept per topic; a client further behind is told it was not
    /// recovered (and refetches state).
    #[arg(
        long = "history-size",
        env = "FAWKES_HISTORY_SIZE",
        default_value_t = 1000
    )]
    pub size: u64,
    /// How long a client may be away and still recover what it missed, e.g. 1h or 90s.
    #[arg(long = "history-age", env = "FAWKES_HISTORY_AGE", default_value = "1h", value_parser = parse_ttl)]
    pub age: Duration,
}

impl HistoryArgs {
    /// The processors' history limits.
    pub fn limits(&self) -> processors::HistoryLimits {
        processors::HistoryLimits {
            size: self.size,
            age: self.age,
        }
    }
}
