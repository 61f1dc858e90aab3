//! AWS CloudShell from Rust: a typed client for the CloudShell control-plane API.
//!
//! The API is undocumented; the operations, members and status values follow
//! what the AWS Console and other public clients send and receive. Twelve
//! operations are covered, each as a fluent builder ending in `.send().await`:
//!
//! | operation | method |
//! |---|---|
//! | DescribeEnvironments | [`Client::describe_environments`] |
//! | CreateEnvironment | [`Client::create_environment`] |
//! | GetEnvironmentStatus | [`Client::get_environment_status`] |
//! | StartEnvironment / StopEnvironment / DeleteEnvironment | [`Client::start_environment`], [`Client::stop_environment`], [`Client::delete_environment`] |
//! | CreateSession / DeleteSession | [`Client::create_session`], [`Client::delete_session`] |
//! | SendHeartBeat | [`Client::send_heart_beat`] |
//! | GetFileUploadUrls / GetFileDownloadUrls | [`Client::get_file_upload_urls`], [`Client::get_file_download_urls`] |
//! | PutCredentials | [`Client::put_credentials`] |
//!
//! plus [`Client::wait_until_running`] and [`Client::find_or_create_default`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = cloudshell_rs::Client::builder().region("eu-west-1").build().await?;
//! for env in client.describe_environments().send().await?.environments {
//!     println!("{} {:?}", env.environment_id, env.status);
//! }
//! # Ok(()) }
//! ```
//!
//! Errors are [`Error`] values with the categories of the AWS SDK for Rust
//! (validation, credentials, dispatch, timeout, unparseable response, service
//! error) and predicates such as [`Error::is_throttling`]. Secrets (session
//! tokens, SSE-C keys, refresh tokens) are held in [`Secret`], which never prints
//! its value.
//!
//! [`CloudShellClient`] keeps the method-per-operation interface of the earlier
//! `cloudshell-rs` library for existing code.

pub mod client;
pub mod compat;
pub mod credentials;
pub mod exec;
pub mod secret;
pub mod session;
pub mod terminal;
pub mod transfer;

pub use client::types;
pub use client::types::*;
pub use client::{Client, ClientBuilder, ConfigError, Error, ServiceError};
pub use compat::CloudShellClient;
pub use secret::Secret;

/// Re-exported so callers can pass static credentials to [`ClientBuilder::credentials`].
pub use aws_credential_types::Credentials;

/// Renders an error and its whole `source()` chain on one line, each
/// message once: `cannot open ...: the proxy ... refused ...`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
