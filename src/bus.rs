//! The fan-out: what one node decides for a visitor (show this number) reaches the visitor's tabs
//! on every node. One trait; the in-process bus serves the embedded default (one node).

use callpool_pool::{PhoneNumber, SiteId, VisitorId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::protocol::Kind;

/// Show `number` as `kind` in every tab of `visitor` on `site`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Show {
    pub site: SiteId,
    pub visitor: VisitorId,
    pub number: PhoneNumber,
    pub kind: Kind,
}

/// A way to tell every node.
pub trait Bus: Send + Sync + 'static {
    /// Sends `show` to every node, this one included. Never blocks; a bus that cannot deliver
    /// counts the loss (tabs resync when they reconnect).
    fn publish(&self, show: Show);
    /// What every node published, this one's included.
    fn subscribe(&self) -> broadcast::Receiver<Show>;
}

/// One node: publishing is delivering.
pub struct InProcessBus {
    tx: broadcast::Sender<Show>,
}

impl InProcessBus {
    pub fn new() -> InProcessBus {
        InProcessBus { tx: broadcast::channel(4096).0 }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        InProcessBus::new()
    }
}

impl Bus for InProcessBus {
    fn publish(&self, show: Show) {
        // No receiver means no hub is running; nothing to deliver to.
        let _ = self.tx.send(show);
    }

    fn subscribe(&self) -> broadcast::Receiver<Show> {
        self.tx.subscribe()
    }
}
