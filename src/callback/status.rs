//! What a callback's status tells the visitor: the text in the site's language, the message
//! every tab of the visitor receives (through the bus, on every node), and the form's own state.

use std::time::Duration;

use callpool_pool::Ts;

use super::Callback;
use crate::app::App;
use crate::config::SiteConfig;
use crate::live::bus::Event;
use crate::live::protocol::ServerMsg;

/// How long a callback is kept (with its calls: the reports reach back as far).
pub fn keep(app: &App) -> Duration {
    app.config().analytics.calls_retention
}

/// What a callback's status says to the visitor, in the site's language.
pub fn status_text(app: &App, cb: &Callback) -> Option<String> {
    let config = app.config();
    let site = config.site(&cb.site)?;
    let cfg = site.callback.as_ref()?;
    Some(cfg.texts.render(cb.status.as_str(), cb.at(), app.clock.now(), site.timezone, site.default_before.as_str()))
}

/// The message a status shows in the visitor's tabs.
pub fn status_message(app: &App, cb: &Callback) -> Option<ServerMsg> {
    let message = status_text(app, cb)?;
    Some(ServerMsg::Callback {
        id: Some(cb.id.to_string()),
        status: cb.status,
        at: cb.at().map(Ts::as_millis),
        message,
    })
}

/// Tells every tab of the callback's visitor (on every node) how it stands.
pub fn publish(app: &App, cb: &Callback) {
    let (Some(visitor), Some(message)) = (cb.visitor.clone(), status_message(app, cb)) else { return };
    app.bus.publish(Event::Callback { site: cb.site.clone(), visitor, message });
}

/// The form's state for a site now: open, or the notice of when a call would come.
pub fn form(app: &App, site: &SiteConfig) -> Option<ServerMsg> {
    let cfg = site.callback.as_ref()?;
    let now = app.clock.now();
    let open = cfg.hours.is_open(now);
    let notice = (!open).then(|| {
        cfg.texts.render("closed_now", cfg.hours.next_open(now), now, site.timezone, site.default_before.as_str())
    });
    Some(ServerMsg::CallbackForm { texts: cfg.texts.form(site.default_before.as_str()), open, notice })
}
