//! Integration tests of the library against scripted loopback servers.

mod support {
    pub mod mock_http;
}

mod client_compat;
mod client_config;
mod client_errors;
mod client_ops;
mod client_support;

mod session;
mod session_support;
mod session_replay;
