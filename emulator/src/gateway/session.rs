//! One session's task.
use super::backend::Backend;
use super::metrics::LiveMetrics;
use super::{CloseReason, Gateway, GatewayConfig, Incoming, SessionGrant, SessionOptions, TabSlot};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

pub(crate) struct Program {
    pub backend: Arc<Backend>,
    pub tab: Option<((String, String), Arc<TabSlot>)>,
    pub released: watch::Sender<bool>,
}

pub(crate) struct SessionSetup {
    pub gateway: Gateway,
    pub session_id: String,
    pub grant: SessionGrant,
    pub options: SessionOptions,
    pub config: GatewayConfig,
    pub metrics: Arc<LiveMetrics>,
    pub program: Program,
    pub connect: mpsc::UnboundedReceiver<Incoming>,
    pub close: mpsc::UnboundedReceiver<CloseReason>,
}

pub(crate) struct SessionTask {
    s: SessionSetup,
}
impl SessionTask {
    pub fn new(s: SessionSetup) -> Self {
        Self { s }
    }
    pub async fn run(self, _first: Incoming) {
        let _ = self.s;
    }
}
