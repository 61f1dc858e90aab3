//! Higher-level helpers: waiting for RUNNING and finding the default environment.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::debug;

use crate::client::types::{Environment, EnvironmentStatus};
use crate::{Client, Error};

/// First delay between two status polls.
const POLL_INITIAL: Duration = Duration::from_millis(250);
/// Largest delay between two status polls.
const POLL_CAP: Duration = Duration::from_secs(2);
/// Least time between two StartEnvironment calls for the same wait.
const RESTART_INTERVAL: Duration = Duration::from_secs(5);
/// How long a RUNNING status seen in a response is taken as current by
/// [`Client::wait_until_running`].
pub(crate) const RUNNING_SEEN_FOR: Duration = Duration::from_secs(5);

/// The environment a response last showed RUNNING, and when: what lets
/// `find_or_create_default` then `wait_until_running` make one request, not
/// two (a round trip less before every session).
#[derive(Default)]
pub(crate) struct SeenRunning(Mutex<Option<(String, Instant)>>);

impl SeenRunning {
    /// `environment_id` was RUNNING in a response received now.
    pub(crate) fn record(&self, environment_id: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((environment_id.to_owned(), Instant::now()));
    }

    /// Whatever was seen of `environment_id` no longer holds.
    pub(crate) fn forget(&self, environment_id: &str) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.as_ref().is_some_and(|(id, _)| id == environment_id) {
            *seen = None;
        }
    }

    /// Whether `environment_id` was seen RUNNING less than `within` before `now`.
    fn recent(&self, environment_id: &str, now: Instant, within: Duration) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(id, at)| {
                id == environment_id && now.saturating_duration_since(*at) < within
            })
    }

    /// Records `status` of `environment_id` as a response showed it.
    fn saw(&self, environment_id: &str, status: Option<&EnvironmentStatus>) {
        if status == Some(&EnvironmentStatus::Running) {
            self.record(environment_id);
        } else {
            self.forget(environment_id);
        }
    }
}

/// Which environments a listing showed with and without a VPC
/// configuration. An environment keeps that for life, so what was seen once
/// holds: whether a copy may go through S3 is then known without listing
/// the environments again.
#[derive(Default)]
pub(crate) struct SeenPlacement(Mutex<HashMap<String, bool>>);

impl SeenPlacement {
    /// Records each listed environment's placement.
    pub(crate) fn saw_listing(&self, environments: &[Environment]) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for e in environments {
            seen.insert(e.environment_id.clone(), e.is_default());
        }
    }

    /// `environment_id` is the public environment (it was just created as
    /// the default one).
    fn saw_public(&self, environment_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(environment_id.to_owned(), true);
    }

    /// Whether `environment_id` is public, if a listing showed it.
    fn is_public(&self, environment_id: &str) -> Option<bool> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(environment_id)
            .copied()
    }
}

impl Client {
    /// Whether `environment_id` is the public environment (no VPC
    /// configuration), as this client's listings showed it; DescribeEnvironments
    /// when none did yet. Not listed counts as no.
    pub(crate) async fn is_public_environment(&self, environment_id: &str) -> Result<bool, Error> {
        if let Some(public) = self.inner.seen_placement.is_public(environment_id) {
            return Ok(public);
        }
        self.describe_environments().send().await?;
        Ok(self
            .inner
            .seen_placement
            .is_public(environment_id)
            .unwrap_or(false))
    }

    /// Waits until the environment is RUNNING and returns that status.
    ///
    /// Polls GetEnvironmentStatus with a jittered backoff (250 ms doubling up to
    /// 2 s) and calls `on_change` with the first status and every change. A
    /// SUSPENDED environment is started (StartEnvironment); SUSPENDING is waited
    /// through first, as the service only starts SUSPENDED environments. CREATING
    /// and RESUMING are waited through.
    ///
    /// A RUNNING status this client received for the environment less than
    /// 5 s before (from DescribeEnvironments in [`Client::find_default`],
    /// [`Client::find_or_create_default`] or [`Client::resolve_environment`],
    /// from CreateEnvironment in `find_or_create_default`, or from an earlier
    /// wait) is taken as it is, without a request: the usual
    /// find-then-wait before a session costs one round trip, not two.
    /// StartEnvironment, StopEnvironment and DeleteEnvironment sent through
    /// this client (or a clone) forget it.
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
        if self
            .inner
            .seen_running
            .recent(environment_id, Instant::now(), RUNNING_SEEN_FOR)
        {
            debug!(environment_id, "RUNNING a moment ago: not asked again");
            on_change(&EnvironmentStatus::Running);
            return Ok(EnvironmentStatus::Running);
        }
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
            self.inner.seen_running.saw(environment_id, Some(&status));
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
            self.inner
                .seen_running
                .saw(&found.environment_id, found.status.as_ref());
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
            .map(|e| {
                self.inner
                    .seen_running
                    .saw(&e.environment_id, e.status.as_ref());
                e.environment_id
            });
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
        self.inner
            .seen_placement
            .saw_public(&created.environment_id);
        self.inner
            .seen_running
            .saw(&created.environment_id, Some(&created.status));
        Ok(created.environment_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a listed environment is public (no VPC configuration) is
    /// kept: an environment keeps its placement for life.
    #[test]
    fn a_listed_placement_is_kept() {
        let listed: Vec<Environment> = serde_json::from_value(serde_json::json!([
            {"EnvironmentId": "pub", "Status": "RUNNING"},
            {"EnvironmentId": "vpc", "EnvironmentName": "n", "Status": "RUNNING",
             "VpcConfig": {"VpcId": "vpc-1", "SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}
        ]))
        .expect("environments");
        let seen = SeenPlacement::default();
        assert_eq!(seen.is_public("pub"), None);
        seen.saw_listing(&listed);
        assert_eq!(seen.is_public("pub"), Some(true));
        assert_eq!(seen.is_public("vpc"), Some(false));
        assert_eq!(seen.is_public("other"), None);
        seen.saw_listing(&[]);
        assert_eq!(seen.is_public("vpc"), Some(false));
        seen.saw_public("created");
        assert_eq!(seen.is_public("created"), Some(true));
    }

    /// A RUNNING status counts for 5 s, for its environment only, until a
    /// response shows another status or the status is forgotten.
    #[test]
    fn a_running_status_is_taken_for_a_few_seconds() {
        let seen = SeenRunning::default();
        let now = Instant::now();
        assert!(!seen.recent("e1", now, RUNNING_SEEN_FOR));
        seen.record("e1");
        let now = Instant::now();
        assert!(seen.recent("e1", now, RUNNING_SEEN_FOR));
        assert!(!seen.recent("e2", now, RUNNING_SEEN_FOR));
        assert!(!seen.recent("e1", now + RUNNING_SEEN_FOR, RUNNING_SEEN_FOR));
        seen.forget("e2");
        assert!(seen.recent("e1", now, RUNNING_SEEN_FOR));
        seen.saw("e1", Some(&EnvironmentStatus::Suspending));
        assert!(!seen.recent("e1", now, RUNNING_SEEN_FOR));
        seen.saw("e1", Some(&EnvironmentStatus::Running));
        assert!(seen.recent("e1", Instant::now(), RUNNING_SEEN_FOR));
        seen.saw("e1", None);
        assert!(!seen.recent("e1", Instant::now(), RUNNING_SEEN_FOR));
    }
}
