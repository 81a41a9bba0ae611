//! The channel modules of Phoenix as stateless decisions, and the runner that applies them.
//!
//! A processor takes a [`Command`](topics::Command) from the log, loads the small [`View`] it
//! needs from the store, and [`decide`]s: a pure function returning the reply, the pushes, the
//! broadcasts and the writes. The [`runner`] persists the writes and the outcome atomically,
//! emits the outcome to the log, and only then commits the command's offset.
//!
//! Layout:
//! - [`decision`]: [`View`], [`Decision`] and [`Outcome`], the values around `decide`.
//! - [`channels`]: one module per channel family (campaigns, admin, zakat, ...) and the join
//!   rules of every topic.
//! - [`money`]: exact decimal amounts: parsing, validation, formatting.
//! - [`runner`]: the IO shell: consume, load, decide, persist, emit, commit.
//! - [`leases`]: expiring the presences of connectors that stopped heart-beating.
//! - [`metrics`]: Prometheus metrics of the runner.

pub mod channels;
pub mod decision;
pub mod leases;
pub mod metrics;
pub mod money;
pub mod runner;

pub use channels::{decide, needs};
pub use decision::{Decision, Needs, Outcome, View};
pub use metrics::ProcessorMetrics;
pub use runner::{run, RunnerConfig, RunnerError};
