//! How the gateway plugs into the emulator: session records and activity come
//! from the REST side's store, lifecycle events close live channels, and the
//! emulator handle exposes the gateway's controls.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::{Gateway, SessionDirectory, SessionGrant, SessionMetrics, SessionOptions};
use crate::kms::FakeKms;
use crate::{AppState, EmulatorHandle, StateEvent};

/// Account id used in the fake KMS's key ARNs.
pub const EMULATED_ACCOUNT_ID: &str = "123456789012";

/// Session records of the REST side.
struct RestDirectory(AppState);

impl SessionDirectory for RestDirectory {
    fn authorize(&self, session_id: &str, token: &str) -> Option<SessionGrant> {
        match self.0.validate_token(session_id, token) {
            Ok(record) => Some(SessionGrant {
                environment_id: record.environment_id,
                tab_id: record.tab_id,
            }),
            Err(e) => {
                tracing::debug!(%session_id, "data channel token refused: {e}");
                None
            }
        }
    }

    fn touch(&self, environment_id: &str) {
        self.0.touch(environment_id);
    }
}

impl Gateway {
    /// The gateway of an emulator, with its own fake KMS.
    pub(crate) fn for_emulator(shared: &AppState) -> Gateway {
        let kms = Arc::new(FakeKms::new(
            shared.config.region.clone(),
            EMULATED_ACCOUNT_ID,
        ));
        Gateway::new(
            shared.config.gateway.clone(),
            Arc::new(RestDirectory(Arc::clone(shared))),
            shared.config.state_dir.clone(),
            shared.config.region.clone(),
            kms,
        )
    }

    /// The fake KMS that issues data keys for KMS-encrypted sessions.
    pub fn kms(&self) -> Arc<FakeKms> {
        Arc::clone(&self.inner.kms)
    }
}

/// Starts a new session's shell when CreateSession makes it, and closes live
/// channels when their session is deleted or their environment is suspended or
/// deleted.
pub(crate) fn follow_lifecycle(shared: &AppState, gateway: Gateway) -> JoinHandle<()> {
    let mut events = shared.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(StateEvent::SessionCreated {
                    session_id,
                    environment_id,
                    tab_id,
                }) => {
                    // Awaited, so that events are still handled in order.
                    gateway
                        .session_created(&session_id, &environment_id, tab_id.as_deref())
                        .await;
                }
                Ok(StateEvent::SessionClosed { session_id, .. }) => {
                    gateway.close_session(&session_id);
                }
                Ok(StateEvent::Suspended { environment_id })
                | Ok(StateEvent::Deleted { environment_id }) => {
                    gateway.close_environment(&environment_id);
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("gateway missed {n} lifecycle events");
                }
                Err(RecvError::Closed) => break,
            }
        }
    })
}

impl EmulatorHandle {
    /// Options of data-channel sessions that have no per-tab or per-session options.
    pub fn set_session_defaults(&self, options: SessionOptions) {
        self.gateway().set_session_defaults(options);
    }

    /// Options for sessions created with this `TabId`.
    pub fn configure_tab(&self, tab_id: impl Into<String>, options: SessionOptions) {
        self.gateway().configure_tab(tab_id, options);
    }

    /// Options for one session id (set after CreateSession, before connecting).
    pub fn configure_session(&self, session_id: impl Into<String>, options: SessionOptions) {
        self.gateway().configure_session(session_id, options);
    }

    /// Traffic counters of a data-channel session.
    pub fn session_metrics(&self, session_id: &str) -> Option<SessionMetrics> {
        self.gateway().session_metrics(session_id)
    }
}
