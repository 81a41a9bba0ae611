//! placeholder
pub mod serializer;
pub mod session;
