//! Integration tests (one test binary).

mod exec;
mod exec_support;
