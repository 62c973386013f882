//! Live reload: `SIGHUP` (`systemctl reload`) or `POST /v1/admin/reload` reads the configuration
//! file and its `sites.d/` again and, when it is valid and changes nothing read only at start,
//! runs it from then on ([`App::apply`]); otherwise every problem is reported and the running
//! configuration stays. The node then tells every other node over the bus to do the same, and
//! every node says which version it runs (at start, after each reload and every half minute),
//! for `/v1/admin/config`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{App, ApplyError, NodeHeard};
use crate::config::{Config, ProcessEnv};
use crate::live::bus::{Event, NodeConfig};

/// How often each node says which configuration it runs.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
/// A node not heard from for this long is no longer listed.
pub const FORGET_AFTER: Duration = Duration::from_secs(95);

/// Who asked for the reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `SIGHUP` to this node.
    Signal,
    /// `POST /v1/admin/reload` to this node.
    Request,
    /// Another node, over the bus.
    Peer,
}

/// A reload that went through.
#[derive(Clone, Debug)]
pub struct Reloaded {
    /// The version running now.
    pub version: String,
    /// The version that ran before.
    pub previous: String,
    /// False when the files had not changed (nothing was applied).
    pub changed: bool,
}

/// Why a reload was refused (the running configuration stays): every problem.
#[derive(Clone, Debug)]
pub struct Refused {
    pub problems: Vec<String>,
}

/// Reads the configuration again and runs it; a reload asked of this node (not one a peer
/// passed on) is then passed on to every other node.
pub async fn reload(app: &App, origin: Origin) -> Result<Reloaded, Refused> {
    let running = app.config();
    let outcome = read_and_apply(app, &running.source).await;
    let node = running.server.node_id.clone();
    match &outcome {
        Ok(r) if r.changed => tracing::info!(
            ?origin,
            version = %r.version,
            previous = %r.previous,
            sites = app.config().sites.len(),
            "The configuration was reloaded."
        ),
        Ok(r) => tracing::info!(?origin, version = %r.version, "Reload: the configuration has not changed."),
        Err(refused) => tracing::error!(
            ?origin,
            version = %running.version,
            problems = %refused.problems.join("; "),
            "The reload was refused; the running configuration stays."
        ),
    }
    let refused = outcome.as_ref().err().map(|r| r.problems.join("; "));
    announce(app, refused);
    if origin != Origin::Peer {
        app.bus.publish(Event::Reload { from: node });
    }
    outcome
}

async fn read_and_apply(app: &App, source: &str) -> Result<Reloaded, Refused> {
    let refuse = |problems: Vec<String>| Refused { problems };
    let path = Path::new(source);
    if !path.is_file() {
        return Err(refuse(vec![format!(
            "there is no configuration file to read again (this node runs {source:?}; start it with --config FILE)"
        )]));
    }
    let config = Config::load(path, &ProcessEnv)
        .map_err(|e| refuse(e.problems.iter().map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect()))?;
    let previous = app.config().version.clone();
    let version = config.version.clone();
    match app.apply(config).await {
        Ok(changed) => Ok(Reloaded { version, previous, changed }),
        Err(ApplyError::Restart(problems)) => Err(refuse(problems)),
        Err(e @ ApplyError::Store(_)) => Err(refuse(vec![e.to_string()])),
    }
}

/// Notes, and tells every node, which configuration this node runs (and why its last reload was
/// refused, if it was).
fn announce(app: &App, refused: Option<String>) {
    let running = app.config();
    let config = NodeConfig { version: running.version.clone(), since: running.since, refused };
    let node = running.server.node_id.clone();
    heard(app, &node, config.clone());
    app.bus.publish(Event::Running { node, config });
}

fn heard(app: &App, node: &str, config: NodeConfig) -> bool {
    let mut nodes = app.nodes.lock().unwrap_or_else(|p| p.into_inner());
    nodes.insert(node.to_owned(), NodeHeard { config, heard: app.clock.now() }).is_none()
}

/// Which version each node runs, as `/v1/admin/config` lists it: this node first (as it runs
/// now), then the nodes it heard from lately.
pub fn nodes(app: &App) -> Vec<(String, NodeHeard)> {
    let running = app.config();
    let own = running.server.node_id.clone();
    let now = app.clock.now();
    let mut nodes = app.nodes.lock().unwrap_or_else(|p| p.into_inner());
    let cutoff = now.minus(FORGET_AFTER);
    nodes.retain(|node, n| *node == own || n.heard >= cutoff);
    let refused = nodes.get(&own).and_then(|n| n.config.refused.clone());
    let this = NodeConfig { version: running.version.clone(), since: running.since, refused };
    let mut list = vec![(own.clone(), NodeHeard { config: this, heard: now })];
    list.extend(nodes.iter().filter(|(node, _)| **node != own).map(|(k, v)| (k.clone(), v.clone())));
    list
}

/// Follows other nodes' reloads and keeps the list of which node runs what, until `stop`.
pub async fn run(app: Arc<App>, stop: CancellationToken) {
    let mut events = app.bus.subscribe();
    let own = app.config().server.node_id.clone();
    let mut every = tokio::time::interval(ANNOUNCE_EVERY);
    // Why this node's last reload was refused, as it stands now.
    let refused = |app: &App| {
        let nodes = app.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(&own).and_then(|n| n.config.refused.clone())
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => announce(&app, refused(&app)),
            event = events.recv() => match event {
                Ok(Event::Reload { from }) if from != own => {
                    tracing::info!(from = %from, "Another node was reloaded; reading the configuration again.");
                    let _ = reload(&app, Origin::Peer).await;
                }
                Ok(Event::Running { node, config }) if node != own => {
                    // A node heard of for the first time (it just started) learns of this one
                    // at once, not at the next round.
                    if heard(&app, &node, config) {
                        announce(&app, refused(&app));
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
