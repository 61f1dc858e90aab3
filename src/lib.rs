//! AWS CloudShell from Rust: the control-plane API, the Session Manager data
//! channel spoken natively (no `session-manager-plugin`), and on top of them
//! remote commands, file copies and credential injection.
//!
//! | module | what it gives |
//! |---|---|
//! | [`Client`] ([`client`]) | the twelve API operations, waiting, typed errors, retries |
//! | [`session`] | a native data-channel session: input, resize, events, `AsyncRead`/`AsyncWrite`, reconnects, KMS |
//! | [`exec`] | one command like `ssh host cmd`: exact stdout/stderr, exit code, stdin with EOF |
//! | [`transfer`] | `scp`-like copies both ways, SHA-256 verified, in-band or through S3 |
//! | [`credentials`] | local credentials made available in remote shells, never shown |
//! | [`terminal`] | raw mode and the pumps between a terminal and a session |
//! | [`CloudShellClient`] ([`compat`]) | the earlier `cloudshell-rs` library's interface |
//!
//! A command in the default environment, created if needed (`exec::run`
//! starts it and waits until it is running):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cloudshell_rs::{Client, exec::{self, ExecOptions}};
//!
//! let client = Client::builder().region("eu-west-1").build().await?;
//! let env = client.find_or_create_default().await?;
//! let out = exec::run(&client, &env, &["uname", "-a"], ExecOptions::new()).await?;
//! print!("{}", String::from_utf8_lossy(&out.stdout));
//! assert!(out.status.success());
//! # Ok(()) }
//! ```
//!
//! # The API
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
//! plus [`Client::wait_until_running`], [`Client::find_or_create_default`] and
//! [`Client::resolve_environment`] (an id or a VPC environment's name).
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

/// The Rust examples of the README and of `docs/` are compiled as doctests,
/// so they keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

#[cfg(doctest)]
#[doc = include_str!("../docs/cp.md")]
pub struct CpExamples;

#[cfg(doctest)]
#[doc = include_str!("../docs/exec-and-credentials.md")]
pub struct ExecExamples;
