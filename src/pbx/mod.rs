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

/// The connections to PBXs that callpool reads rather than waits for (Asterisk's AMI), each a
/// task until `stop`.
pub fn connectors(
    app: &std::sync::Arc<App>,
    sink: &adapter::Sink,
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
    app.config
        .pbxs
        .iter()
        .filter_map(|p| adapter(p)?.connector(app.clone(), &p.id, sink.clone(), stop.clone()))
        .collect()
}

/// The webhook adapter of a configured PBX.
pub fn adapter(pbx: &PbxConfig) -> Option<&dyn Adapter> {
    pbx.adapter.get::<Box<dyn Adapter>>().map(Box::as_ref)
}

/// The trigger of a callback form's `trigger` section.
pub fn trigger(section: &Section) -> Option<&dyn Trigger> {
    section.get::<Arc<dyn Trigger>>().map(Arc::as_ref)
}
