//! Integration tests (one test binary).

mod exec;
mod exec_emulator;
mod exec_support;
