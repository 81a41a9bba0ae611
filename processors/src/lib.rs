//! The channel modules of Phoenix as stateless decisions, and the runner that applies them.
//!
//! A processor takes a [`Command`](topics::Command) from the log, loads the small [`View`] it
//! needs from the store, and [`decide`]s: a pure function returning the reply, the pushes, the
//! broadcasts and the writes. The runner ([`run`]) persists the writes and the outcome
//! atomically, emits the outcome to the log, and only then commits the command's offset.
//!
//! Layout (pure cores first, then the IO shell):
//! - `decision`: [`View`], [`Decision`] and [`Outcome`], the values around [`decide`].
//! - `channels/`: one module per channel family (campaigns, admin and moderation, zakat,
//!   collab, waqf, reports, presence) and the join rules of every topic (`access`).
//! - `money`: exact decimal amounts: parsing, validation, formatting.
//! - `prices/`: the outside gold and silver price feed behind a circuit breaker (the pure
//!   `breaker`, the HTTP `feed`), asked while views are loaded.
//! - `leases/`: expiring the presences of connectors that stopped heart-beating: the pure
//!   lease book (`book`) and the sweep that reads heartbeats and appends expiries (`sweep`).
//! - `group`: group commit, a partition's worker: the queued commands decided in order and
//!   stored with one write per campaign, their outcomes emitted in one round.
//! - `dashboard/`: `dashboard:live`'s `metrics_batch`, folded from the domain events and
//!   heartbeats (`fold`, pure) by the owner of its command partition.
//! - `jobs`: work done beside the command partitions (a `complex_calculation`), read from
//!   the jobs topic, its result put back on the command topic.
//! - `streams`: topic streams: each broadcast's position, the history kept for recovery, a
//!   join's recovery of what its client missed.
//! - `runner`: the IO shell: consume, hand each partition's commands to its worker, commit.
//! - `metrics`: [`ProcessorMetrics`], the Prometheus metrics of the runner (and
//!   [`PriceFeedMetrics`], those of the price feed).

mod channels;
mod dashboard;
mod decision;
mod group;
mod jobs;
mod leases;
mod metrics;
mod money;
mod prices;
mod runner;
mod streams;
#[cfg(test)]
mod testing;

pub use channels::{decide, needs};
pub use decision::{Decision, Needs, NewBroadcast, Outcome, RecordsNeeded, UserRecords, View};
pub use metrics::{PriceFeedMetrics, ProcessorMetrics};
pub use prices::{FeedUrl, FeedUrlError, PriceFeedConfig, PriceMissing, Quote};
pub use runner::{run, RunnerConfig, RunnerError};
pub use streams::HistoryLimits;
