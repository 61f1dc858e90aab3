use serde::Serialize;

use crate::client::operations::required;
use crate::client::types::DeleteSessionOutput;
use crate::{Client, Error};

/// DeleteSession (`POST /deleteSession`).
#[derive(Debug, Clone)]
pub struct DeleteSession {
    client: Client,
    environment_id: Option<String>,
    session_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Input<'a> {
    environment_id: &'a str,
    session_id: &'a str,
}

impl DeleteSession {
    pub(crate) fn new(client: Client) -> Self {
        DeleteSession {
            client,
            environment_id: None,
            session_id: None,
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

    /// `SessionId` (required).
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = Some(id.into());
        self
    }

    /// Sets or clears `SessionId`.
    pub fn set_session_id(mut self, id: Option<String>) -> Self {
        self.session_id = id;
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<DeleteSessionOutput, Error> {
        let environment_id = required("EnvironmentId", self.environment_id)?;
        let session_id = required("SessionId", self.session_id)?;
        let input = Input {
            environment_id: &environment_id,
            session_id: &session_id,
        };
        self.client
            .inner
            .call("DeleteSession", "deleteSession", &input)
            .await
    }
}
