//! What browsers load: the snippet, the callback widget (loaded by the snippet on sites with a
//! form), and the demo page of `[server] demo_site`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// The browser script, served with caching headers (it changes only with callpool's version).
pub async fn snippet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../snippet/snippet.js"),
    )
        .into_response()
}

/// The callback widget the snippet loads for a site with a callback form.
pub async fn callback_widget() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../snippet/callback.js"),
    )
        .into_response()
}

/// The demo page of `[server] demo_site` (404 without one).
pub async fn demo_page(State(app): State<Arc<App>>) -> Response {
    let Some(site) = app.config.server.demo_site.as_ref().and_then(|id| app.config.site(id)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let page = include_str!("../../snippet/demo.html")
        .replace("{{SITE_KEY}}", &site.key)
        .replace("{{DELAY}}", &humantime::format_duration(site.delay_to_show).to_string())
        .replace("{{IDLE}}", &humantime::format_duration(site.rules.reclaim_after_idle).to_string());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}
