use serde::Serialize;

use crate::client::types::DescribeEnvironmentsOutput;
use crate::{Client, Error};

/// DescribeEnvironments (`POST /describeEnvironments`, body `{}`).
#[derive(Debug, Clone)]
pub struct DescribeEnvironments {
    client: Client,
}

#[derive(Serialize)]
struct Input {}

impl DescribeEnvironments {
    pub(crate) fn new(client: Client) -> Self {
        DescribeEnvironments { client }
    }

    /// Sends the request.
    pub async fn send(self) -> Result<DescribeEnvironmentsOutput, Error> {
        let listed: DescribeEnvironmentsOutput = self
            .client
            .inner
            .call("DescribeEnvironments", "describeEnvironments", &Input {})
            .await?;
        self.client
            .inner
            .seen_placement
            .saw_listing(&listed.environments);
        Ok(listed)
    }
}
