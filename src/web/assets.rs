//! What browsers load: the snippet, the callback widget (loaded by the snippet on sites with a
//! form), and the demo page of `[server] demo_site`.

use std::sync::{Arc, LazyLock};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// A script served to browsers: its text and its validator.
struct Script {
    text: String,
    /// A hash of the text: the `ETag` and the `v` of its versioned URL.
    version: String,
}

impl Script {
    fn new(text: String) -> Script {
        use sha2::Digest;
        let version = hex::encode(&sha2::Sha256::digest(&text)[..8]);
        Script { text, version }
    }
}

/// The callback widget the snippet loads for a site with a callback form.
static WIDGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../snippet/callback.js").to_owned()));
/// The snippet, naming the widget's versioned URL.
static SNIPPET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(include_str!("../../snippet/snippet.js").replace("__CALLPOOL_WIDGET_VERSION__", &WIDGET.version))
});

/// How long a script's plain URL is cached: a site embeds `/snippet.js` itself, so a new version
/// reaches its visitors within this time (a browser then revalidates with `If-None-Match`).
const PLAIN_MAX_AGE: &str = "public, max-age=600";
/// A versioned URL (`?v=<version>`) never changes.
const VERSIONED_MAX_AGE: &str = "public, max-age=31536000, immutable";

/// The browser script, with caching headers: ten minutes at its plain URL, a year at its
/// versioned URL; `If-None-Match` answered 304. Compressed by the router's layer.
pub async fn snippet(RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    serve(&SNIPPET, q, &headers)
}

/// The callback widget the snippet loads (at its versioned URL) for a site with a callback form.
pub async fn callback_widget(RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    serve(&WIDGET, q, &headers)
}

fn serve(script: &Script, query: Option<String>, headers: &HeaderMap) -> Response {
    let versioned = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "v" && v == script.version.as_str());
    // Weak: the same text is served gzip-compressed or not.
    let etag = format!("W/\"{}\"", script.version);
    let cache = if versioned { VERSIONED_MAX_AGE } else { PLAIN_MAX_AGE };
    let common = [
        (header::CACHE_CONTROL, cache.to_owned()),
        (header::ETAG, etag.clone()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::VARY, "Accept-Encoding".to_owned()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, "application/javascript; charset=utf-8")], script.text.clone()).into_response()
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
