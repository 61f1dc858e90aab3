//! Integration tests of the library against scripted loopback servers.

#![allow(clippy::unwrap_used)]

mod support {
    pub mod connect_proxy;
    pub mod local_cli;
    pub mod log_capture;
    pub mod mock_http;
    pub mod tls_front;
}

mod cli;
mod client_compat;
mod client_config;
mod client_errors;
mod client_ops;
mod client_support;

mod connect;
mod preconnect;
mod proxy;
mod session;
mod session_replay;
mod session_support;

mod credentials;
mod credentials_cli;
mod exec;
mod exec_cli;
mod exec_emulator;
mod exec_support;

mod cp_cli;
mod cp_emulator;
mod cp_local;
mod cp_support;
mod tmux;
