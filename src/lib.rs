//! The `fawkes` command: composes the connector, the processors, the log and the store.
//!
//! Layout:
//! - [`cli`]: the command line and its environment twins.
//! - [`dev`]: `fawkes dev`, everything in one process on the embedded log and store.
//! - [`seed`]: demo data.
//! - [`token`]: `fawkes token`, development JWTs.

pub mod cli;
pub mod dev;
pub mod seed;
pub mod token;
