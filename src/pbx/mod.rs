//! The phone systems callpool talks to: one file per vendor, each with its webhook adapter (a
//! PBX's call events in: check the request is the PBX's, read it into the normalised
//! [`CallReport`]s, say what to answer) and, where the vendor can place calls, its callback
//! [`Trigger`] (the request that asks the PBX to ring the operator, then the visitor). Each
//! vendor reads its own settings (a `[[pbx]]` of its `kind`, a callback `trigger` of its
//! `kind`); [`VENDORS`] lists the readers. [`adapter`] holds the traits and what vendors share
//! in reading; [`signature`] callpool's own signature, which several of them use.
//!
//! Vendors: [`callpool`] (callpool's signed JSON, also Twilio-style form fields; the `generic`
//! trigger), [`twilio`] (Twilio's signed status callbacks; create-call), [`voximplant`]
//! (`StartScenarios`), [`zadarma`] (Zadarma's signed call notifications; its API's callback), [`mango`] (Mango
//! Office's signed realtime events; `commands/callback`), [`sipuni`] (Sipuni's unsigned call events, behind a token or
//! addresses; its callback API's `call_number`), [`asterisk`] (callpool connects to its AMI), [`uis`] (UIS/CoMagic HTTP
//! notifications, in the JSON templates callpool documents, behind a token or addresses). Adding a
//! vendor is one file here and its lines in [`VENDORS`]; ARCHITECTURE.md has the recipe.

pub mod adapter;
pub mod asterisk;
pub mod callpool;
pub mod mango;
pub mod signature;
pub mod sipuni;
pub mod twilio;
pub mod uis;
pub mod voximplant;
pub mod zadarma;

pub use adapter::{Adapter, Answer, CallAccepted, Inbound, Received, RecordingError, Refusal, Reply, Ring, Trigger};

use std::sync::Arc;

use crate::app::App;
use crate::config::{PbxConfig, Reader, Section};

/// Every vendor's readers: webhook adapters (`[[pbx]] kind`) and callback triggers
/// (`[site.callback] trigger.kind`).
pub static VENDORS: &[&dyn Reader] = &[
    &callpool::WEBHOOK,
    &callpool::TRIGGER,
    &twilio::WEBHOOK,
    &twilio::TRIGGER,
    &voximplant::TRIGGER,
    &zadarma::WEBHOOK,
    &zadarma::TRIGGER,
    &mango::WEBHOOK,
    &mango::trigger::TRIGGER,
    &sipuni::WEBHOOK,
    &sipuni::TRIGGER,
    &asterisk::WEBHOOK,
    &asterisk::trigger::TRIGGER,
    &uis::WEBHOOK,
];

/// Keeps a connection open to each PBX that callpool reads rather than waits for (Asterisk's
/// AMI) for as long as the running configuration names it: when another configuration runs, a
/// new PBX's connection opens, a removed one's closes, and one whose settings changed is opened
/// again (the others carry on untouched). Runs until `stop`.
pub async fn keep_connected(app: std::sync::Arc<App>, sink: adapter::Sink, stop: tokio_util::sync::CancellationToken) {
    let mut changes = app.config_changes();
    let tasks = tokio_util::task::TaskTracker::new();
    // Each open connection: the digest of the settings it was opened with, and its own stop.
    let mut open: std::collections::HashMap<String, (u64, tokio_util::sync::CancellationToken)> = Default::default();
    loop {
        let config = app.config();
        open.retain(|id, (digest, own)| {
            let keep = config.pbx(id).is_some_and(|p| p.settings_digest == *digest);
            if !keep {
                tracing::info!(pbx = %id, "The PBX's connection closes: the configuration changed it or removed it.");
                own.cancel();
            }
            keep
        });
        for p in &config.pbxs {
            if open.contains_key(&p.id) {
                continue;
            }
            let own = stop.child_token();
            if let Some(connection) =
                adapter(p).and_then(|a| a.connector(app.clone(), &p.id, sink.clone(), own.clone()))
            {
                tasks.spawn(connection);
                open.insert(p.id.clone(), (p.settings_digest, own));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// The webhook adapter of a configured PBX.
pub fn adapter(pbx: &PbxConfig) -> Option<&dyn Adapter> {
    pbx.adapter.get::<Box<dyn Adapter>>().map(Box::as_ref)
}

/// The trigger of a callback form's `trigger` section.
pub fn trigger(section: &Section) -> Option<&dyn Trigger> {
    section.get::<Arc<dyn Trigger>>().map(Arc::as_ref)
}
