//! The typed CloudShell REST client.
//!
//! Every operation is a fluent builder ending in `.send().await`, as in the AWS SDK
//! for Rust:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let client = cloudshell_rs::Client::builder().region("us-east-1").build().await?;
//! let env_id = client.find_or_create_default().await?;
//! client
//!     .wait_until_running(&env_id, Duration::from_secs(180), |s| eprintln!("status: {s}"))
//!     .await?;
//! let session = client.create_session().environment_id(&env_id).q_cli_disabled(true).send().await?;
//! println!("{}", session.stream_url);
//! # Ok(()) }
//! ```
//!
//! Requests are `POST <endpoint>/<operation>` with a JSON body, signed with SigV4
//! (service `cloudshell`). Credentials come from aws-config's standard chain
//! (environment, profiles, SSO, assume-role, `credential_process`, container
//! endpoints, IMDS) unless static credentials are given to the builder.
//!
//! Each call retries throttling errors, HTTP 5xx and transport failures with
//! exponential backoff and full jitter (base 100 ms, cap 20 s), up to
//! `max_attempts` attempts (`AWS_MAX_ATTEMPTS`, default 3). The operation timeout
//! (default 30 s) bounds a whole call, retries included.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

mod config;
mod credentials;
pub mod error;
mod http_adapter;
pub mod operations;
mod response;
mod signing;
mod tls;
mod transport;
pub mod types;
mod waiter;

pub use config::DEFAULT_MAX_ATTEMPTS;
pub use error::{ConfigError, Error, ServiceError};

use config::EndpointSources;
use credentials::CredentialsCache;

/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// Default timeout of one call, retries included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Installs the ring crypto provider as the process default, unless one is set.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a default is then set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A CloudShell client. Cheap to clone: clones share one connection pool and one
/// credentials cache.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) region: String,
    pub(crate) endpoint: String,
    pub(crate) credentials: CredentialsCache,
    pub(crate) max_attempts: u32,
    pub(crate) operation_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("region", &self.inner.region)
            .field("endpoint", &self.inner.endpoint)
            .field("max_attempts", &self.inner.max_attempts)
            .field("operation_timeout", &self.inner.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder for a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured entirely from the standard chain (environment and
    /// profile); fails if no region is configured.
    pub async fn from_env() -> Result<Client, ConfigError> {
        ClientBuilder::default().build().await
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The endpoint requests are sent to (no trailing `/`).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The most attempts made per call.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// DescribeEnvironments: the caller's environments in the region.
    pub fn describe_environments(&self) -> operations::DescribeEnvironments {
        operations::DescribeEnvironments::new(self.clone())
    }

    /// CreateEnvironment: get-or-create the default environment, or create a VPC one.
    pub fn create_environment(&self) -> operations::CreateEnvironment {
        operations::CreateEnvironment::new(self.clone())
    }

    /// GetEnvironmentStatus.
    pub fn get_environment_status(&self) -> operations::GetEnvironmentStatus {
        operations::GetEnvironmentStatus::new(self.clone())
    }

    /// StartEnvironment (only valid from SUSPENDED).
    pub fn start_environment(&self) -> operations::StartEnvironment {
        operations::StartEnvironment::new(self.clone())
    }

    /// StopEnvironment.
    pub fn stop_environment(&self) -> operations::StopEnvironment {
        operations::StopEnvironment::new(self.clone())
    }

    /// DeleteEnvironment.
    pub fn delete_environment(&self) -> operations::DeleteEnvironment {
        operations::DeleteEnvironment::new(self.clone())
    }

    /// CreateSession: a data-channel session in a RUNNING environment.
    pub fn create_session(&self) -> operations::CreateSession {
        operations::CreateSession::new(self.clone())
    }

    /// DeleteSession.
    pub fn delete_session(&self) -> operations::DeleteSession {
        operations::DeleteSession::new(self.clone())
    }

    /// SendHeartBeat: keeps an environment from being suspended for inactivity.
    pub fn send_heart_beat(&self) -> operations::SendHeartBeat {
        operations::SendHeartBeat::new(self.clone())
    }

    /// GetFileUploadUrls: presigned URLs to upload a file.
    pub fn get_file_upload_urls(&self) -> operations::GetFileUploadUrls {
        operations::GetFileUploadUrls::new(self.clone())
    }

    /// GetFileDownloadUrls: presigned URLs to download a file.
    pub fn get_file_download_urls(&self) -> operations::GetFileDownloadUrls {
        operations::GetFileDownloadUrls::new(self.clone())
    }

    /// PutCredentials: forwards console credentials to an environment.
    pub fn put_credentials(&self) -> operations::PutCredentials {
        operations::PutCredentials::new(self.clone())
    }
}

/// Reads one environment variable.
type EnvSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds a [`Client`]. Every setting is optional.
#[derive(Default)]
pub struct ClientBuilder {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<Credentials>,
    max_attempts: Option<u32>,
    connect_timeout: Option<Duration>,
    operation_timeout: Option<Duration>,
    http_client: Option<reqwest::Client>,
    config_file: Option<std::path::PathBuf>,
    env: Option<EnvSource>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoint_url", &self.endpoint_url)
            .field("credentials", &self.credentials.as_ref().map(|_| "static"))
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("http_client", &self.http_client.is_some())
            .field("config_file", &self.config_file)
            .finish()
    }
}

impl ClientBuilder {
    /// The region (else the standard chain: `AWS_REGION`, profile, IMDS).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The profile to read from the shared config files (else `AWS_PROFILE` or `default`).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// The endpoint, e.g. `http://127.0.0.1:8080` for a local emulator. Takes
    /// precedence over `AWS_ENDPOINT_URL_CLOUDSHELL` and `AWS_ENDPOINT_URL`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Static credentials: the credential chain is not consulted. With a region
    /// also given, aws-config is not loaded at all.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The most attempts per call, first try included (else `AWS_MAX_ATTEMPTS`, else 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// TCP connect timeout (default 3.1 s). Ignored when an HTTP client is supplied.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Timeout of one call, retries and backoff included (default 30 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// A reqwest client to send CloudShell requests with (its TLS, proxy and
    /// timeout settings are used as they are).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Reads profiles from this file (in `~/.aws/config` format, where
    /// `[profile NAME]` sections may also hold keys) instead of `~/.aws/config` and
    /// `~/.aws/credentials`.
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Replaces the process environment as the source of `AWS_ENDPOINT_URL*`,
    /// `AWS_MAX_ATTEMPTS` and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (for tests and
    /// embedding). The aws-config chain still reads the real environment.
    pub fn env_source(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Some(Arc::new(env));
        self
    }

    /// Resolves the configuration and builds the client.
    pub async fn build(self) -> Result<Client, ConfigError> {
        let env: EnvSource = match self.env {
            Some(e) => e,
            None => Arc::new(|k: &str| std::env::var(k).ok()),
        };
        let max_attempts = match self.max_attempts {
            Some(0) => {
                return Err(ConfigError::InvalidSetting {
                    name: "max_attempts",
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
            Some(n) => n,
            None => match env("AWS_MAX_ATTEMPTS").filter(|v| !v.trim().is_empty()) {
                Some(v) => config::parse_max_attempts("AWS_MAX_ATTEMPTS", &v)?,
                None => config::DEFAULT_MAX_ATTEMPTS,
            },
        };
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);

        let (region, provider, profile_endpoint) =
            match (self.region.clone(), self.credentials.clone()) {
                (Some(region), Some(creds)) => {
                    (region, SharedCredentialsProvider::new(creds), None)
                }
                _ => {
                    ensure_crypto_provider();
                    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .http_client(http_adapter::ReqwestHttpClient::default())
                        // Set explicitly so aws-config does not read (and panic on an
                        // invalid) AWS_MAX_ATTEMPTS itself: it was validated above.
                        .retry_config(
                            aws_config::retry::RetryConfig::standard()
                                .with_max_attempts(max_attempts),
                        );
                    if let Some(p) = &self.profile {
                        loader = loader.profile_name(p);
                    }
                    // `ProfileFiles` is a deprecated alias of aws-runtime's type, but it is
                    // what `ConfigLoader::profile_files` takes.
                    #[allow(deprecated)]
                    if let Some(path) = &self.config_file {
                        use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
                        loader = loader.profile_files(
                            ProfileFiles::builder()
                                .with_file(ProfileFileKind::Config, path)
                                .build(),
                        );
                    }
                    if let Some(r) = &self.region {
                        loader = loader.region(aws_config::Region::new(r.clone()));
                    }
                    if let Some(c) = &self.credentials {
                        loader = loader.credentials_provider(c.clone());
                    }
                    let conf = loader.load().await;
                    let region = conf
                        .region()
                        .map(|r| r.to_string())
                        .ok_or(ConfigError::NoRegion)?;
                    let provider = conf
                        .credentials_provider()
                        .ok_or(ConfigError::NoCredentialsProvider)?;
                    (region, provider, conf.endpoint_url().map(str::to_owned))
                }
            };
        config::validate_region(&region)?;

        let env_service = env("AWS_ENDPOINT_URL_CLOUDSHELL");
        let env_global = env("AWS_ENDPOINT_URL");
        let endpoint = config::resolve_endpoint(
            EndpointSources {
                builder: self.endpoint_url.as_deref(),
                env_service: env_service.as_deref(),
                env_global: env_global.as_deref(),
                profile: profile_endpoint.as_deref(),
                ignore_configured: config::env_flag(&*env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"),
            },
            &region,
        )?;

        let http = match self.http_client {
            Some(c) => c,
            None => {
                ensure_crypto_provider();
                let builder = reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .user_agent(concat!("cloudshell-rs/", env!("CARGO_PKG_VERSION")));
                tls::configure(builder, &endpoint)
                    .map_err(|e| ConfigError::HttpClient(e.into()))?
                    .build()
                    .map_err(|e| ConfigError::HttpClient(Box::new(e)))?
            }
        };

        Ok(Client {
            inner: Arc::new(Inner {
                http,
                region,
                endpoint,
                credentials: CredentialsCache::new(provider),
                max_attempts,
                operation_timeout: self.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT),
            }),
        })
    }
}
