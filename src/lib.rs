//! The `fawkes` command: composes the connector, the processors, the log and the store.
//!
//! Layout:
//! - [`cli`]: the command line and its environment twins.
//! - [`dev`]: `fawkes dev`, everything in one process on the embedded log and store.
//! - [`distributed`]: `fawkes connector`, `processor` and `topics`, on Kafka.
//! - [`seed`]: demo data.
//! - [`token`]: `fawkes token`, development JWTs.

pub mod cli;
pub mod dev;
pub mod distributed;
pub mod seed;
pub mod token;

/// A process-unique id with a readable prefix: `<prefix>-<pid>-<ms since epoch>`.
pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}
