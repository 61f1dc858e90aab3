//! Higher-level helpers: waiting for RUNNING and finding the default environment.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::debug;

use crate::client::types::EnvironmentStatus;
use crate::{Client, Error};

/// First delay between two status polls.
const POLL_INITIAL: Duration = Duration::from_millis(250);
/// Largest delay between two status polls.
const POLL_CAP: Duration = Duration::from_secs(2);
/// Least time between two StartEnvironment calls for the same wait.
const RESTART_INTERVAL: Duration = Duration::from_secs(5);

impl Client {
    /// Waits until the environment is RUNNING and returns that status.
    ///
    /// Polls GetEnvironmentStatus with a jittered backoff (250 ms doubling up to
    /// 2 s) and calls `on_change` with the first status and every change. A
    /// SUSPENDED environment is started (StartEnvironment); SUSPENDING is waited
    /// through first, as the service only starts SUSPENDED environments. CREATING
    /// and RESUMING are waited through.
    ///
    /// Fails with [`Error::UnexpectedStatus`] on DELETING or a status this library
    /// does not know, with [`Error::WaitTimeout`] when `timeout` elapses, and with
    /// the call's error when a poll fails.
    pub async fn wait_until_running(
        &self,
        environment_id: &str,
        timeout: Duration,
        mut on_change: impl FnMut(&EnvironmentStatus),
    ) -> Result<EnvironmentStatus, Error> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<EnvironmentStatus> = None;
        let waited = tokio::time::timeout_at(
            deadline,
            self.poll_until_running(environment_id, &mut last, &mut on_change),
        )
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(Error::WaitTimeout {
                environment_id: environment_id.to_owned(),
                timeout,
                last_status: last,
            }),
        }
    }

    async fn poll_until_running(
        &self,
        environment_id: &str,
        last: &mut Option<EnvironmentStatus>,
        on_change: &mut impl FnMut(&EnvironmentStatus),
    ) -> Result<EnvironmentStatus, Error> {
        let mut delay = POLL_INITIAL;
        let mut last_start: Option<Instant> = None;
        loop {
            let status = self
                .get_environment_status()
                .environment_id(environment_id)
                .send()
                .await?
                .status;
            if last.as_ref() != Some(&status) {
                debug!(environment_id, status = %status, "environment status");
                on_change(&status);
                *last = Some(status.clone());
                delay = POLL_INITIAL;
            }
            match &status {
                EnvironmentStatus::Running => return Ok(status),
                EnvironmentStatus::Suspended => {
                    if last_start.is_none_or(|t| t.elapsed() >= RESTART_INTERVAL) {
                        last_start = Some(Instant::now());
                        match self
                            .start_environment()
                            .environment_id(environment_id)
                            .send()
                            .await
                        {
                            Ok(_) => {}
                            // Someone else started it between the poll and this call.
                            Err(e) if e.is_invalid_status() => {
                                debug!(environment_id, "StartEnvironment: already starting");
                            }
                            Err(e) => return Err(e),
                        }
                        delay = POLL_INITIAL;
                    }
                }
                EnvironmentStatus::Creating
                | EnvironmentStatus::Resuming
                | EnvironmentStatus::Suspending => {}
                EnvironmentStatus::Deleting | EnvironmentStatus::Unknown(_) => {
                    return Err(Error::UnexpectedStatus {
                        environment_id: environment_id.to_owned(),
                        status,
                    });
                }
            }
            let jittered = delay.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::time::sleep(jittered).await;
            delay = (delay * 2).min(POLL_CAP);
        }
    }

    /// The id of the environment `id_or_name` names: an environment id (a
    /// UUID) is returned as given, without a request; anything else is looked
    /// up among the caller's environments, by id and then by name (VPC
    /// environments have names). Fails with [`Error::UnknownEnvironment`]
    /// when none matches.
    pub async fn resolve_environment(&self, id_or_name: &str) -> Result<String, Error> {
        if uuid::Uuid::try_parse(id_or_name).is_ok() {
            return Ok(id_or_name.to_owned());
        }
        let listed = self.describe_environments().send().await?;
        let envs = &listed.environments;
        if let Some(found) = envs
            .iter()
            .find(|e| e.environment_id == id_or_name)
            .or_else(|| {
                envs.iter()
                    .find(|e| e.environment_name.as_deref() == Some(id_or_name))
            })
        {
            return Ok(found.environment_id.clone());
        }
        let mut names: Vec<String> = envs
            .iter()
            .filter_map(|e| e.environment_name.clone())
            .collect();
        names.sort_unstable();
        Err(Error::UnknownEnvironment {
            given: id_or_name.to_owned(),
            names,
        })
    }

    /// The id of the caller's default (public, non-VPC) environment as
    /// DescribeEnvironments lists it, or `None` when there is none. An
    /// environment being deleted is skipped: it cannot be started again.
    pub async fn find_default(&self) -> Result<Option<String>, Error> {
        let listed = self.describe_environments().send().await?;
        let found = listed
            .environments
            .into_iter()
            .find(|e| e.is_default() && e.status.as_ref() != Some(&EnvironmentStatus::Deleting))
            .map(|e| e.environment_id);
        if let Some(id) = &found {
            debug!(environment_id = %id, "found default environment");
        }
        Ok(found)
    }

    /// The id of the caller's default (public, non-VPC) environment: the one listed
    /// by DescribeEnvironments, else the one CreateEnvironment `{}` returns
    /// (get-or-create, as the Console does). Environments being deleted are skipped.
    pub async fn find_or_create_default(&self) -> Result<String, Error> {
        if let Some(found) = self.find_default().await? {
            return Ok(found);
        }
        let created = self.create_environment().send().await?;
        debug!(environment_id = %created.environment_id, status = %created.status, "created default environment");
        Ok(created.environment_id)
    }
}
