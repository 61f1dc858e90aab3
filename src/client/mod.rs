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
//! endpoints, IMDS) unless static credentials are given to the builder. When the
//! environment alone settles region, credentials and endpoint (e.g.
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` and
//! `AWS_ENDPOINT_URL_CLOUDSHELL`, no profile selected), the shared config files
//! are not read at all: the chain would give the same result.
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
use tracing::debug;

mod config;
mod credentials;
pub mod error;
mod http_adapter;
pub mod operations;
mod response;
mod signing;
pub(crate) mod tls;
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
    /// The environment a response last showed RUNNING, and when.
    pub(crate) seen_running: waiter::SeenRunning,
    /// Which environments listings showed in a VPC and which not.
    pub(crate) seen_placement: waiter::SeenPlacement,
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
    no_proxy: bool,
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
            .field("no_proxy", &self.no_proxy)
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
    ///
    /// [`build`](Self::build) fails with [`ConfigError::ProfileNotFound`] when
    /// neither file defines it (as does a profile named by `AWS_PROFILE` when
    /// the environment holds no credentials).
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

    /// Sends requests straight to the endpoint, whatever `HTTP_PROXY`,
    /// `HTTPS_PROXY` and `ALL_PROXY` say (honoured otherwise, with `NO_PROXY`).
    /// For an endpoint no proxy could reach, such as an emulator on loopback.
    /// Ignored when an HTTP client is supplied.
    pub fn no_proxy(mut self) -> Self {
        self.no_proxy = true;
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
    pub async fn build(mut self) -> Result<Client, ConfigError> {
        let env: EnvSource = match self.env.take() {
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

        let env_service = env("AWS_ENDPOINT_URL_CLOUDSHELL");
        let env_global = env("AWS_ENDPOINT_URL");
        let mut sources = EndpointSources {
            builder: self.endpoint_url.as_deref(),
            env_service: env_service.as_deref(),
            env_global: env_global.as_deref(),
            profile: None,
            ignore_configured: config::env_flag(&*env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"),
        };

        let process_env = |k: &str| std::env::var(k).ok();
        let (region, provider, profile_endpoint) =
            match self.without_shared_config(&sources, &process_env) {
                Some((region, provider)) => (region, provider, None),
                None => {
                    debug!("loading the shared AWS configuration and credential chain");
                    self.load_shared_config(max_attempts).await?
                }
            };
        config::validate_region(&region)?;
        sources.profile = profile_endpoint.as_deref();
        let endpoint = config::resolve_endpoint(sources, &region)?;

        let http = match self.http_client {
            Some(c) => c,
            None => {
                ensure_crypto_provider();
                let mut builder = reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .user_agent(concat!("cloudshell-rs/", env!("CARGO_PKG_VERSION")));
                if self.no_proxy {
                    builder = builder.no_proxy();
                }
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
                seen_running: waiter::SeenRunning::default(),
                seen_placement: waiter::SeenPlacement::default(),
            }),
        })
    }

    /// The region and credentials provider when the shared config files cannot
    /// change them, so aws-config's loader need not run (it reads the config
    /// files and sets up every provider of the chain, which costs start-up time
    /// and memory). That is the case when:
    /// - the region is given to the builder, or by `AWS_REGION` /
    ///   `AWS_DEFAULT_REGION` (the first link of the standard region chain);
    /// - the credentials are given to the builder, or no profile is selected
    ///   (builder, `AWS_PROFILE`) and the environment variables hold
    ///   credentials (the first link of the standard credential chain, which
    ///   is then used as it is);
    /// - the endpoint comes from a source that takes precedence over a
    ///   profile's `endpoint_url`.
    ///
    /// `process_env` reads the variables aws-config would read.
    fn without_shared_config(
        &self,
        sources: &EndpointSources<'_>,
        process_env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(String, SharedCredentialsProvider)> {
        if let (Some(region), Some(creds)) = (&self.region, &self.credentials) {
            return Some((
                region.clone(),
                SharedCredentialsProvider::new(creds.clone()),
            ));
        }
        if sources.profile_may_apply() {
            return None;
        }
        let region = match &self.region {
            Some(r) => r.clone(),
            None => config::env_region(process_env)?,
        };
        let provider = match &self.credentials {
            Some(creds) => SharedCredentialsProvider::new(creds.clone()),
            None => {
                if self.profile.is_some()
                    || process_env("AWS_PROFILE").is_some()
                    || !config::env_has_credentials(process_env)
                {
                    return None;
                }
                SharedCredentialsProvider::new(
                    aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                )
            }
        };
        debug!("region and credentials from the environment; shared config not loaded");
        Some((region, provider))
    }

    /// Region, credentials provider and profile endpoint from aws-config's
    /// standard chains.
    async fn load_shared_config(
        &self,
        max_attempts: u32,
    ) -> Result<(String, SharedCredentialsProvider, Option<String>), ConfigError> {
        ensure_crypto_provider();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_adapter::ReqwestHttpClient::default())
            // Set explicitly so aws-config does not read (and panic on an
            // invalid) AWS_MAX_ATTEMPTS itself: it was validated above.
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts),
            );
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        // `ProfileFiles` is a deprecated alias of aws-runtime's type, but it is
        // what `ConfigLoader::profile_files` takes.
        #[allow(deprecated)]
        let files = self.config_file.as_ref().map(|path| {
            use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
            ProfileFiles::builder()
                .with_file(ProfileFileKind::Config, path)
                .build()
        });
        if let Some(files) = &files {
            loader = loader.profile_files(files.clone());
        }
        // A profile named to the builder must exist, as in the AWS CLI. One
        // named by `AWS_PROFILE` must exist when nothing else could supply
        // credentials (aws-config takes them from the environment first).
        let process_env = |k: &str| std::env::var(k).ok();
        let selected = self.profile.clone().or_else(|| {
            process_env("AWS_PROFILE")
                .filter(|p| !p.trim().is_empty())
                .filter(|_| {
                    self.credentials.is_none() && !config::env_has_credentials(&process_env)
                })
        });
        if let Some(name) = selected {
            check_profile_defined(&name, files.unwrap_or_default()).await?;
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
        Ok((region, provider, conf.endpoint_url().map(str::to_owned)))
    }
}

/// Fails with [`ConfigError::ProfileNotFound`] when a profile that was asked
/// for by name is in neither shared file. aws-config would go on without it
/// and report a missing region or an empty credential chain instead, which
/// hides a mistyped name. `default` may be absent (credentials and region
/// then come from elsewhere), and files that cannot be read or parsed are
/// left for aws-config to report.
#[allow(deprecated)] // `ProfileFiles`: see `load_shared_config`
async fn check_profile_defined(
    name: &str,
    files: aws_config::profile::profile_file::ProfileFiles,
) -> Result<(), ConfigError> {
    use aws_types::os_shim_internal::{Env, Fs};
    if name == "default" {
        return Ok(());
    }
    let Ok(set) = aws_config::profile::load(&Fs::real(), &Env::real(), &files, None).await else {
        return Ok(());
    };
    if set.get_profile(name).is_some() {
        return Ok(());
    }
    let mut known: Vec<String> = set.profiles().map(str::to_owned).collect();
    known.sort();
    Err(ConfigError::ProfileNotFound {
        name: name.to_owned(),
        known,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fake_env(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars = vars.to_vec();
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn shared_config_is_skipped_only_when_it_cannot_matter() {
        let by_env = EndpointSources {
            env_service: Some("http://127.0.0.1:1"),
            ..Default::default()
        };
        let creds = [("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")];
        let full = fake_env(&[creds[0], creds[1], ("AWS_REGION", "eu-west-1")]);
        let skip =
            |b: ClientBuilder, src: &EndpointSources<'_>, env: &dyn Fn(&str) -> Option<String>| {
                b.without_shared_config(src, env).map(|(region, _)| region)
            };

        assert_eq!(
            skip(Client::builder(), &by_env, &full).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            skip(Client::builder().region("us-west-2"), &by_env, &full).as_deref(),
            Some("us-west-2")
        );
        // An endpoint from the builder or AWS_ENDPOINT_URL, or configured
        // endpoints ignored, settle the endpoint too.
        for src in [
            EndpointSources {
                builder: Some("http://127.0.0.1:1"),
                ..Default::default()
            },
            EndpointSources {
                env_global: Some("http://127.0.0.1:1"),
                ..Default::default()
            },
            EndpointSources {
                ignore_configured: true,
                ..Default::default()
            },
        ] {
            assert!(skip(Client::builder(), &src, &full).is_some(), "{src:?}");
        }

        // A profile's endpoint_url could apply.
        assert_eq!(
            skip(Client::builder(), &EndpointSources::default(), &full),
            None
        );
        // A profile is selected.
        assert_eq!(
            skip(Client::builder().profile("work"), &by_env, &full),
            None
        );
        let with_profile = fake_env(&[
            creds[0],
            creds[1],
            ("AWS_REGION", "eu-west-1"),
            ("AWS_PROFILE", "work"),
        ]);
        assert_eq!(skip(Client::builder(), &by_env, &with_profile), None);
        // No region, or no complete credentials, in the environment.
        assert_eq!(skip(Client::builder(), &by_env, &fake_env(&creds)), None);
        let no_secret = fake_env(&[creds[0], ("AWS_REGION", "eu-west-1")]);
        assert_eq!(skip(Client::builder(), &by_env, &no_secret), None);

        // Credentials given to the builder: a selected profile cannot change
        // them, and the environment's region comes first in the chain.
        let static_creds = Credentials::new("AK", "SK", None, None, "test");
        assert_eq!(
            skip(
                Client::builder().credentials(static_creds.clone()),
                &by_env,
                &with_profile
            )
            .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            skip(
                Client::builder().credentials(static_creds.clone()),
                &by_env,
                &fake_env(&[])
            ),
            None
        );
        // Region and credentials both given: nothing else is consulted.
        assert_eq!(
            skip(
                Client::builder()
                    .region("ap-south-1")
                    .credentials(static_creds),
                &EndpointSources::default(),
                &with_profile
            )
            .as_deref(),
            Some("ap-south-1")
        );
    }
}
