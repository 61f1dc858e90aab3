//! The operations whose only member is `EnvironmentId`.

use serde::Serialize;

use crate::client::operations::required;
use crate::client::types::{
    DeleteEnvironmentOutput, GetEnvironmentStatusOutput, SendHeartBeatOutput,
    StartEnvironmentOutput, StopEnvironmentOutput,
};
use crate::{Client, Error};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentIdInput<'a> {
    environment_id: &'a str,
}

macro_rules! environment_id_operation {
    ($(#[$doc:meta])* $name:ident, $op:literal, $path:literal, $output:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            client: Client,
            environment_id: Option<String>,
        }

        impl $name {
            pub(crate) fn new(client: Client) -> Self {
                $name {
                    client,
                    environment_id: None,
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

            /// Sends the request.
            pub async fn send(self) -> Result<$output, Error> {
                let environment_id = required("EnvironmentId", self.environment_id)?;
                let input = EnvironmentIdInput {
                    environment_id: &environment_id,
                };
                // Starting, stopping or deleting changes the status: a
                // RUNNING seen before is no longer known to hold.
                if matches!($op, "StartEnvironment" | "StopEnvironment" | "DeleteEnvironment") {
                    self.client.inner.seen_running.forget(&environment_id);
                }
                self.client.inner.call($op, $path, &input).await
            }
        }
    };
}

environment_id_operation!(
    /// GetEnvironmentStatus (`POST /getEnvironmentStatus`).
    GetEnvironmentStatus,
    "GetEnvironmentStatus",
    "getEnvironmentStatus",
    GetEnvironmentStatusOutput
);

environment_id_operation!(
    /// StartEnvironment (`POST /startEnvironment`). Valid only from SUSPENDED;
    /// otherwise the service answers `InvalidStatusException`.
    StartEnvironment,
    "StartEnvironment",
    "startEnvironment",
    StartEnvironmentOutput
);

environment_id_operation!(
    /// StopEnvironment (`POST /stopEnvironment`): RUNNING → SUSPENDING → SUSPENDED.
    StopEnvironment,
    "StopEnvironment",
    "stopEnvironment",
    StopEnvironmentOutput
);

environment_id_operation!(
    /// DeleteEnvironment (`POST /deleteEnvironment`), with its home directory.
    DeleteEnvironment,
    "DeleteEnvironment",
    "deleteEnvironment",
    DeleteEnvironmentOutput
);

environment_id_operation!(
    /// SendHeartBeat (`POST /sendHeartBeat`): counts as activity, so the
    /// environment is not suspended for inactivity.
    SendHeartBeat,
    "SendHeartBeat",
    "sendHeartBeat",
    SendHeartBeatOutput
);
