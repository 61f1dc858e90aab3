use serde::Serialize;

use crate::client::operations::optional;
use crate::client::types::{CreateEnvironmentOutput, ValidationError, VpcConfig};
use crate::{Client, Error};

/// CreateEnvironment (`POST /createEnvironment`).
///
/// Without members it returns the caller's default environment, creating it if
/// needed (get-or-create). With a [`VpcConfig`] it creates a VPC environment and
/// then `EnvironmentName` is required.
#[derive(Debug, Clone)]
pub struct CreateEnvironment {
    client: Client,
    environment_name: Option<String>,
    vpc_config: Option<VpcConfig>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Input<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    environment_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vpc_config: Option<&'a VpcConfig>,
}

impl CreateEnvironment {
    pub(crate) fn new(client: Client) -> Self {
        CreateEnvironment {
            client,
            environment_name: None,
            vpc_config: None,
        }
    }

    /// `EnvironmentName` (required with a VPC configuration).
    pub fn environment_name(mut self, name: impl Into<String>) -> Self {
        self.environment_name = Some(name.into());
        self
    }

    /// Sets or clears `EnvironmentName`.
    pub fn set_environment_name(mut self, name: Option<String>) -> Self {
        self.environment_name = name;
        self
    }

    /// `VpcConfig`: create a VPC environment. Checked with [`VpcConfig::validate`].
    pub fn vpc_config(mut self, vpc: VpcConfig) -> Self {
        self.vpc_config = Some(vpc);
        self
    }

    /// Sets or clears `VpcConfig`.
    pub fn set_vpc_config(mut self, vpc: Option<VpcConfig>) -> Self {
        self.vpc_config = vpc;
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<CreateEnvironmentOutput, Error> {
        let name = optional("EnvironmentName", self.environment_name)?;
        if let Some(vpc) = &self.vpc_config {
            vpc.validate()?;
            if name.is_none() {
                return Err(ValidationError::new(
                    "EnvironmentName",
                    "is required when VpcConfig is given",
                )
                .into());
            }
        }
        let input = Input {
            environment_name: name.as_deref(),
            vpc_config: self.vpc_config.as_ref(),
        };
        self.client
            .inner
            .call("CreateEnvironment", "createEnvironment", &input)
            .await
    }
}
