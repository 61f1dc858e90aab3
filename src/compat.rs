//! [`CloudShellClient`]: the method-per-operation interface of the earlier
//! `cloudshell-rs` library, kept so existing code keeps compiling.
//!
//! New code should use [`Client`], which this type wraps
//! ([`CloudShellClient::client`]).
//!
//! ```no_run
//! use cloudshell_rs::{CloudShellClient, VpcConfig};
//! use uuid::Uuid;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Create client
//!     let client = CloudShellClient::new(
//!         "us-east-1".to_string(),
//!         Some("myprofile".to_string()),
//!     ).await?;
//!
//!     // List environments
//!     let response = client.describe_environments().await?;
//!     println!("{}", response.pretty_print()?);
//!
//!     // Create public environment
//!     let create_resp = client.create_environment(Some("my-env"), None).await?;
//!     let env_id = create_resp.environment_id().ok_or("No env_id")?;
//!     println!("Created: {}", env_id);
//!
//!     // Alternatively, create VPC environment with validation
//!     let _vpc = VpcConfig::new(
//!         "vpc-0123456789abcdef0".to_string(),
//!         vec!["subnet-1".to_string()],
//!         vec!["sg-1".to_string()],
//!     );
//!     // let create_resp = client.create_environment(Some("my-vpc-env"), Some(_vpc)).await?;
//!
//!     // Wait for RUNNING state
//!     loop {
//!         let status = client.get_environment_status(&env_id).await?.status();
//!         if status == Some("RUNNING".to_string()) { break; }
//!         tokio::time::sleep(std::time::Duration::from_secs(5)).await;
//!     }
//!
//!     // Create session (TabId validated as UUID v4)
//!     let tab_id = Uuid::new_v4().to_string();
//!     let session = client.create_session(
//!         &env_id,
//!         "TMUX",
//!         &tab_id,
//!         Some(true),
//!     ).await?;
//!     println!("Stream URL: {}", session.stream_url().ok_or("No URL")?);
//!
//!     // Get file URLs
//!     let upload = client.get_file_upload_urls(&env_id).await?;
//!     println!("Upload URL: {}", upload.file_upload_presigned_url().unwrap_or_default());
//!
//!     // Send heartbeat
//!     client.send_heart_beat(&env_id).await?;
//!
//!     // Cleanup
//!     client.delete_session(&env_id, session.session_id().as_ref().ok_or("No session_id")?).await?;
//!     client.delete_environment(&env_id).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Changes from the earlier library
//!
//! - Errors are [`cloudshell_rs::Error`](crate::Error) (and
//!   [`ConfigError`] from [`CloudShellClient::new`]) instead of
//!   `Box<dyn Error>`; both convert into `Box<dyn Error>` with `?`. Service errors
//!   are parsed (code, message, request id) instead of being
//!   `"CloudShell API error: <status> - <body>"`.
//! - [`VpcConfig::new`] no longer panics; the configuration is checked by
//!   [`VpcConfig::validate`], which `create_environment` calls before sending. The
//!   rules are stricter: a `vpc-` id, at least one `subnet-` id, one to five `sg-`
//!   ids. A VPC environment also needs a name.
//! - `start_environment` is not a no-op on a running environment: the service
//!   answers `InvalidStatusException` unless the environment is SUSPENDED.
//! - `put_credentials(env_id, key_base, refresh_token)` takes the two values the
//!   service requires (the earlier version sent only the environment id, which
//!   the service does not accept).
//! - `get_file_upload_urls` / `get_file_download_urls` still send only the
//!   environment id; use [`Client::get_file_upload_urls`] to pass the path the
//!   Console sends.
//! - `describe_environments().environments()` returns the parsed environments
//!   re-serialized as JSON: members unknown to this library are not included.
//! - `create_session(...).token_value()` returns the real token as before, but the
//!   response's `Debug` output no longer shows it; the SSE-C key of the file URLs
//!   likewise.
//! - Calls are retried on throttling, HTTP 5xx and transport failures, and time
//!   out (see [`Client`]). The endpoint honours `AWS_ENDPOINT_URL_CLOUDSHELL` /
//!   `AWS_ENDPOINT_URL`.

use crate::client::types::{
    CreateEnvironmentOutput, CreateSessionOutput, DescribeEnvironmentsOutput, FileUrlsOutput,
    GetEnvironmentStatusOutput, StopEnvironmentOutput, VpcConfig,
};
use crate::secret::Secret;
use crate::{Client, ConfigError, Error};

/// The method-per-operation client of the earlier library. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct CloudShellClient {
    client: Client,
}

impl CloudShellClient {
    /// A client for `region`, with credentials from `profile` (else the standard chain).
    pub async fn new(region: String, profile: Option<String>) -> Result<Self, ConfigError> {
        let mut builder = Client::builder().region(region);
        if let Some(p) = profile {
            builder = builder.profile(p);
        }
        Ok(CloudShellClient {
            client: builder.build().await?,
        })
    }

    /// Wraps an existing [`Client`].
    pub fn from_client(client: Client) -> Self {
        CloudShellClient { client }
    }

    /// The underlying [`Client`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// DescribeEnvironments.
    pub async fn describe_environments(&self) -> Result<DescribeEnvironmentsResponse, Error> {
        let output = self.client.describe_environments().send().await?;
        Ok(DescribeEnvironmentsResponse { output })
    }

    /// CreateEnvironment, optionally named and in a VPC.
    pub async fn create_environment(
        &self,
        name: Option<&str>,
        vpc: Option<VpcConfig>,
    ) -> Result<CreateEnvironmentResponse, Error> {
        let output = self
            .client
            .create_environment()
            .set_environment_name(name.map(str::to_owned))
            .set_vpc_config(vpc)
            .send()
            .await?;
        Ok(CreateEnvironmentResponse { output })
    }

    /// GetEnvironmentStatus.
    pub async fn get_environment_status(
        &self,
        env_id: &str,
    ) -> Result<EnvironmentStatusResponse, Error> {
        let output = self
            .client
            .get_environment_status()
            .environment_id(env_id)
            .send()
            .await?;
        Ok(EnvironmentStatusResponse { output })
    }

    /// StartEnvironment (only from SUSPENDED).
    pub async fn start_environment(&self, env_id: &str) -> Result<(), Error> {
        self.client
            .start_environment()
            .environment_id(env_id)
            .send()
            .await
            .map(drop)
    }

    /// StopEnvironment.
    pub async fn stop_environment(&self, env_id: &str) -> Result<StopEnvironmentResponse, Error> {
        let output = self
            .client
            .stop_environment()
            .environment_id(env_id)
            .send()
            .await?;
        Ok(StopEnvironmentResponse { output })
    }

    /// DeleteEnvironment.
    pub async fn delete_environment(&self, env_id: &str) -> Result<(), Error> {
        self.client
            .delete_environment()
            .environment_id(env_id)
            .send()
            .await
            .map(drop)
    }

    /// CreateSession; `tab_id` must be a UUID v4.
    pub async fn create_session(
        &self,
        env_id: &str,
        session_type: &str,
        tab_id: &str,
        q_cli_disabled: Option<bool>,
    ) -> Result<CreateSessionResponse, Error> {
        let output = self
            .client
            .create_session()
            .environment_id(env_id)
            .session_type(session_type)
            .tab_id(tab_id)
            .set_q_cli_disabled(q_cli_disabled)
            .send()
            .await?;
        Ok(CreateSessionResponse { output })
    }

    /// DeleteSession.
    pub async fn delete_session(&self, env_id: &str, session_id: &str) -> Result<(), Error> {
        self.client
            .delete_session()
            .environment_id(env_id)
            .session_id(session_id)
            .send()
            .await
            .map(drop)
    }

    /// SendHeartBeat.
    pub async fn send_heart_beat(&self, env_id: &str) -> Result<(), Error> {
        self.client
            .send_heart_beat()
            .environment_id(env_id)
            .send()
            .await
            .map(drop)
    }

    /// GetFileUploadUrls (without a path).
    pub async fn get_file_upload_urls(&self, env_id: &str) -> Result<FileTransferResponse, Error> {
        let output = self
            .client
            .get_file_upload_urls()
            .environment_id(env_id)
            .send()
            .await?;
        Ok(FileTransferResponse { output })
    }

    /// GetFileDownloadUrls (without a path).
    pub async fn get_file_download_urls(
        &self,
        env_id: &str,
    ) -> Result<FileTransferResponse, Error> {
        let output = self
            .client
            .get_file_download_urls()
            .environment_id(env_id)
            .send()
            .await?;
        Ok(FileTransferResponse { output })
    }

    /// PutCredentials with the `KeyBase` and `RefreshToken` of the console sign-in flow.
    pub async fn put_credentials(
        &self,
        env_id: &str,
        key_base: &str,
        refresh_token: &str,
    ) -> Result<(), Error> {
        self.client
            .put_credentials()
            .environment_id(env_id)
            .key_base(key_base)
            .refresh_token(Secret::new(refresh_token))
            .send()
            .await
            .map(drop)
    }
}

/// Response of [`CloudShellClient::describe_environments`].
#[derive(Debug, Clone)]
pub struct DescribeEnvironmentsResponse {
    output: DescribeEnvironmentsOutput,
}

impl DescribeEnvironmentsResponse {
    /// The environments as JSON values (PascalCase members).
    pub fn environments(&self) -> Vec<serde_json::Value> {
        self.output
            .environments
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect()
    }

    /// The whole response as indented JSON.
    pub fn pretty_print(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.output)
    }

    /// The typed output.
    pub fn output(&self) -> &DescribeEnvironmentsOutput {
        &self.output
    }
}

/// Response of [`CloudShellClient::create_environment`].
#[derive(Debug, Clone)]
pub struct CreateEnvironmentResponse {
    output: CreateEnvironmentOutput,
}

impl CreateEnvironmentResponse {
    /// `EnvironmentId`.
    pub fn environment_id(&self) -> Option<String> {
        Some(self.output.environment_id.clone())
    }

    /// `Status`.
    pub fn status(&self) -> Option<String> {
        Some(self.output.status.to_string())
    }

    /// The typed output.
    pub fn output(&self) -> &CreateEnvironmentOutput {
        &self.output
    }
}

/// Response of [`CloudShellClient::get_environment_status`].
#[derive(Debug, Clone)]
pub struct EnvironmentStatusResponse {
    output: GetEnvironmentStatusOutput,
}

impl EnvironmentStatusResponse {
    /// `Status`.
    pub fn status(&self) -> Option<String> {
        Some(self.output.status.to_string())
    }

    /// `EnvironmentId`.
    pub fn environment_id(&self) -> Option<String> {
        self.output.environment_id.clone()
    }

    /// `StatusReason`.
    pub fn status_reason(&self) -> Option<String> {
        self.output.status_reason.clone()
    }

    /// The typed output.
    pub fn output(&self) -> &GetEnvironmentStatusOutput {
        &self.output
    }
}

/// Response of [`CloudShellClient::stop_environment`].
#[derive(Debug, Clone)]
pub struct StopEnvironmentResponse {
    output: StopEnvironmentOutput,
}

impl StopEnvironmentResponse {
    /// `EnvironmentId`.
    pub fn environment_id(&self) -> Option<String> {
        self.output.environment_id.clone()
    }
}

/// Response of [`CloudShellClient::create_session`]. `Debug` hides the token.
#[derive(Debug, Clone)]
pub struct CreateSessionResponse {
    output: CreateSessionOutput,
}

impl CreateSessionResponse {
    /// `SessionId`.
    pub fn session_id(&self) -> Option<String> {
        Some(self.output.session_id.clone())
    }

    /// `TokenValue`, in clear: handle it as a secret.
    pub fn token_value(&self) -> Option<String> {
        Some(self.output.token_value.expose().to_owned())
    }

    /// `StreamUrl`.
    pub fn stream_url(&self) -> Option<String> {
        Some(self.output.stream_url.clone())
    }

    /// The typed output.
    pub fn output(&self) -> &CreateSessionOutput {
        &self.output
    }
}

/// Response of the file URL calls. `Debug` hides the SSE-C key.
#[derive(Debug, Clone)]
pub struct FileTransferResponse {
    output: FileUrlsOutput,
}

impl FileTransferResponse {
    /// `FileUploadPresignedUrl`.
    pub fn file_upload_presigned_url(&self) -> Option<String> {
        self.output.file_upload_presigned_url.clone()
    }

    /// `FileUploadPresignedFields` as a JSON object, values in clear.
    pub fn file_upload_presigned_fields(&self) -> Option<serde_json::Value> {
        if self.output.file_upload_presigned_fields.is_empty() {
            return None;
        }
        serde_json::to_value(&self.output.file_upload_presigned_fields).ok()
    }

    /// `FileDownloadPresignedUrl`.
    pub fn file_download_presigned_url(&self) -> Option<String> {
        self.output.file_download_presigned_url.clone()
    }

    /// `FileDownloadPresignedKey`, in clear: handle it as a secret.
    pub fn file_download_presigned_key(&self) -> Option<String> {
        self.output
            .file_download_presigned_key
            .as_ref()
            .map(|k| k.expose().to_owned())
    }

    /// `FileDownloadPresignedKeyHash`.
    pub fn file_download_presigned_key_hash(&self) -> Option<String> {
        self.output.file_download_presigned_key_hash.clone()
    }

    /// The typed output.
    pub fn output(&self) -> &FileUrlsOutput {
        &self.output
    }
}
