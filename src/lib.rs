//! placeholder
pub mod exec;
