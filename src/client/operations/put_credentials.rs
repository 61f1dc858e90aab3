use serde::Serialize;

use crate::client::operations::required;
use crate::client::types::{PutCredentialsOutput, ValidationError};
use crate::{Client, Error, Secret};

/// PutCredentials (`POST /putCredentials`): forwards console credentials.
///
/// `KeyBase` and `RefreshToken` come from the console sign-in flow (RedeemCode);
/// the service rejects other values (`TokenDecryptionException`).
#[derive(Debug, Clone)]
pub struct PutCredentials {
    client: Client,
    environment_id: Option<String>,
    key_base: Option<String>,
    refresh_token: Option<Secret>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Input<'a> {
    environment_id: &'a str,
    key_base: &'a str,
    refresh_token: &'a str,
}

impl PutCredentials {
    pub(crate) fn new(client: Client) -> Self {
        PutCredentials {
            client,
            environment_id: None,
            key_base: None,
            refresh_token: None,
        }
    }

    /// `EnvironmentId` (required).
    pub fn environment_id(mut self, id: impl Into<String>) -> Self {
        self.environment_id = Some(id.into());
        self
    }

    /// Sets or clears `EnvironmentId`.
    pub fn set_environment_id(mut self, id: Option<String>) -> Self {
        self.environment_id = id;
        self
    }

    /// `KeyBase` (required).
    pub fn key_base(mut self, key_base: impl Into<String>) -> Self {
        self.key_base = Some(key_base.into());
        self
    }

    /// `RefreshToken` (required).
    pub fn refresh_token(mut self, token: Secret) -> Self {
        self.refresh_token = Some(token);
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<PutCredentialsOutput, Error> {
        let environment_id = required("EnvironmentId", self.environment_id)?;
        let key_base = required("KeyBase", self.key_base)?;
        let token = self
            .refresh_token
            .ok_or_else(|| ValidationError::new("RefreshToken", "is required"))?;
        if token.expose().trim().is_empty() {
            return Err(ValidationError::new("RefreshToken", "must not be empty").into());
        }
        let input = Input {
            environment_id: &environment_id,
            key_base: &key_base,
            refresh_token: token.expose(),
        };
        self.client
            .inner
            .call("PutCredentials", "putCredentials", &input)
            .await
    }
}
