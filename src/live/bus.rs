//! The fan-out: what one node decides for a visitor (show this number) reaches the visitor's tabs
//! on every node. One trait, two buses: in-process (the embedded default, one node) and RabbitMQ
//! (a cluster). Only this module names RabbitMQ exchanges and queues.
//!
//! RabbitMQ layout: one durable fanout exchange; each node binds one exclusive, auto-deleted
//! queue of its own to it, once, when it connects. Every node receives every event and drops
//! those for visitors it holds no tab of. Bindings are one per node, never per visitor or tab,
//! so visitor churn never touches RabbitMQ's routing tables; the cost is that each node reads
//! every event (a few hundred bytes each), which is cheap at the swap rates of call tracking.

use std::collections::VecDeque;
use std::time::Duration;

use callpool_pool::{PhoneNumber, SiteId, VisitorId};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::live::protocol::Shown;
use crate::metrics::BusMetrics;

/// The exchange every node publishes to and binds its queue to.
pub const EXCHANGE: &str = "callpool.events";
/// Each node's queue is this prefix and the node id.
pub const NODE_QUEUE_PREFIX: &str = "callpool.node.";
/// Events published while RabbitMQ is away wait here; beyond this they are dropped (and the
/// tabs resync after the reconnect).
const PUBLISH_QUEUE: usize = 10_000;
/// Publisher confirms awaited at once.
const CONFIRM_WINDOW: usize = 256;

/// What travels on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Show a number in every tab of a visitor.
    #[serde(rename = "show")]
    ShowNumber(ShowNumber),
    /// A node saw the visitor's last tab there close; nodes that still hold a tab of the visitor
    /// keep its number (the lease is touched, which cancels the leave).
    Left { site: SiteId, visitor: VisitorId },
    /// Tell every tab of a visitor how their callback request stands.
    Callback { site: SiteId, visitor: VisitorId, message: crate::live::protocol::ServerMsg },
    /// Read the configuration again: an operator reloaded node `from`, and every other node
    /// follows.
    Reload { from: String },
    /// Which configuration `node` runs (each node says so when it starts, after each reload, and
    /// every half minute), for `/v1/admin/config`.
    Running { node: String, config: NodeConfig },
    /// Local only, never published: events may have been lost (the bus reconnected), so the
    /// hub recomputes what every tab shows from the store.
    Resync,
}

/// What a node says about the configuration it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// The configuration's version (a fingerprint of its files).
    pub version: String,
    /// When the node began running it.
    pub since: callpool_pool::Ts,
    /// Why the node's last reload was refused (it then runs the version before), if it was.
    pub refused: Option<String>,
}

/// Show `number` as `kind` in every tab of `visitor` on `site`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowNumber {
    pub site: SiteId,
    pub visitor: VisitorId,
    pub number: PhoneNumber,
    pub kind: Shown,
}

/// A way to tell every node.
pub trait Bus: Send + Sync + 'static {
    /// Sends `event` to every node, this one included. Never blocks; what cannot be delivered
    /// is made good by a `Resync` once the bus is back.
    fn publish(&self, event: Event);
    /// Sends `event` to every other node: this one has acted on it already (it showed the
    /// number in its own tabs), so it does not read it back.
    fn publish_others(&self, event: Event);
    /// What every node published, this one's included (but for what it sent to the others only).
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// One node: publishing is delivering.
pub struct InProcessBus {
    tx: broadcast::Sender<Event>,
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
    fn publish(&self, event: Event) {
        // No receiver means no hub is running; nothing to deliver to.
        let _ = self.tx.send(event);
    }

    /// There is no other node.
    fn publish_others(&self, _event: Event) {}

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// An event to publish; `others`: the other nodes' only (marked with this node's id, which it
/// skips when the broker hands it back).
struct Outgoing {
    event: Event,
    others: bool,
}

/// The cluster bus over RabbitMQ: one connection, a channel to publish (with publisher
/// confirms, a bounded window) and one to consume; it reconnects with backoff by itself and
/// signals `Resync` after every reconnect.
pub struct RabbitBus {
    out: mpsc::Sender<Outgoing>,
    local: broadcast::Sender<Event>,
    metrics: BusMetrics,
}

impl RabbitBus {
    /// Starts the connection task (it keeps trying until `shutdown`). `node` names this node's
    /// queue; `tls` holds the CA and client certificate of an `amqps://` URL (none: the default).
    pub fn start(
        url: String,
        tls: lapin::tcp::OwnedTLSConfig,
        node: String,
        metrics: BusMetrics,
        shutdown: CancellationToken,
    ) -> RabbitBus {
        let (out, rx) = mpsc::channel(PUBLISH_QUEUE);
        let local = broadcast::channel(4096).0;
        tokio::spawn(connection_loop(url, tls, node, rx, local.clone(), metrics.clone(), shutdown));
        RabbitBus { out, local, metrics }
    }
}

impl Bus for RabbitBus {
    fn publish(&self, event: Event) {
        if self.out.try_send(Outgoing { event, others: false }).is_err() {
            self.metrics.dropped.inc();
        }
    }

    fn publish_others(&self, event: Event) {
        if self.out.try_send(Outgoing { event, others: true }).is_err() {
            self.metrics.dropped.inc();
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.subscribe()
    }
}

async fn connection_loop(
    url: String,
    tls: lapin::tcp::OwnedTLSConfig,
    node: String,
    mut out: mpsc::Receiver<Outgoing>,
    local: broadcast::Sender<Event>,
    metrics: BusMetrics,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    let mut first = true;
    loop {
        let session = session(&url, &tls, &node, &mut out, &local, &metrics, &shutdown, first);
        match session.await {
            Ok(()) => return, // shut down
            Err(e) => {
                metrics.down(&e.to_string());
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "RabbitMQ connection lost or refused; reconnecting.");
            }
        }
        first = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: declare, consume and publish until something breaks (Err) or the
/// node shuts down (Ok).
#[allow(clippy::too_many_arguments)]
async fn session(
    url: &str,
    tls: &lapin::tcp::OwnedTLSConfig,
    node: &str,
    out: &mut mpsc::Receiver<Outgoing>,
    local: &broadcast::Sender<Event>,
    metrics: &BusMetrics,
    shutdown: &CancellationToken,
    first: bool,
) -> Result<(), lapin::Error> {
    use futures_util::StreamExt;
    let runtime = lapin::runtime::default_runtime()?;
    let conn = Connection::connect_with_config(url, ConnectionProperties::default(), tls.clone(), runtime).await?;
    let publish = conn.create_channel().await?;
    let consume = conn.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    publish
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    let queue = format!("{NODE_QUEUE_PREFIX}{node}");
    consume
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    consume
        .queue_bind(
            queue.as_str().into(),
            EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // Without acknowledgements: the queue is this connection's own (exclusive, deleted with it), so
    // a message not yet read when the connection dies is lost either way (the `Resync` after the
    // reconnect makes it good); acking each one would only cost RabbitMQ and this node work.
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    metrics.up();
    if first {
        tracing::info!(queue = %queue, "Connected to RabbitMQ.");
    } else {
        metrics.reconnects.inc();
        tracing::info!(queue = %queue, "Reconnected to RabbitMQ; resyncing every tab from the store.");
        let _ = local.send(Event::Resync);
    }
    let mut confirms = VecDeque::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = conn.close(200, "node shutting down".into()).await;
                return Ok(());
            }
            delivery = consumer.next() => {
                let delivery = match delivery {
                    Some(d) => d?,
                    None => return Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed))),
                };
                // What this node sent to the others only: it acted on it already.
                let own = delivery.properties.app_id().as_ref().is_some_and(|a| a.as_str() == node);
                match serde_json::from_slice::<Event>(&delivery.data) {
                    _ if own => {}
                    Ok(Event::Resync) | Err(_) => {
                        tracing::warn!("An unreadable event on the bus was dropped.");
                    }
                    Ok(event) => {
                        metrics.received.inc();
                        let _ = local.send(event);
                    }
                }
            }
            event = out.recv() => {
                let Some(Outgoing { event, others }) = event else { return Ok(()) };
                let body = serde_json::to_vec(&event).expect("events serialize");
                let properties =
                    if others { BasicProperties::default().with_app_id(node.into()) } else { BasicProperties::default() };
                let confirm = publish
                    .basic_publish(EXCHANGE.into(), "".into(), BasicPublishOptions::default(), &body, properties)
                    .await?;
                metrics.published.inc();
                confirms.push_back(confirm);
                while confirms.len() > CONFIRM_WINDOW {
                    if let Some(oldest) = confirms.pop_front() {
                        oldest.await?;
                    }
                }
            }
        }
    }
}
