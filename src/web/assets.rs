//! What browsers load: the snippet, the callback widget (loaded by the snippet on sites with a
//! form), and the demo page of `[server] demo_site`.

use std::sync::{Arc, LazyLock};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// A script served to browsers: its text, compressed once, and its validator.
struct Script {
    text: String,
    /// The text gzip-compressed at the best level, once (not per request).
    gzip: Vec<u8>,
    /// A hash of the text: the `ETag` and the `v` of its versioned URL.
    version: String,
}

impl Script {
    fn new(text: String) -> Script {
        use sha2::Digest;
        use std::io::Write;
        let version = hex::encode(&sha2::Sha256::digest(&text)[..8]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = gz.write_all(text.as_bytes()).and_then(|()| gz.finish()).expect("gzip into memory");
        Script { text, gzip, version }
    }
}

/// Whether the client takes gzip (`Accept-Encoding`, a `q=0` refuses it).
fn takes_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.replace(' ', "").trim_end_matches('0').trim_end_matches('.') == "q=");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
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

fn serve(script: &'static Script, query: Option<String>, headers: &HeaderMap) -> Response {
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
    let javascript = (header::CONTENT_TYPE, "application/javascript; charset=utf-8".to_owned());
    if takes_gzip(headers) {
        let gzip = (header::CONTENT_ENCODING, "gzip".to_owned());
        (common, [javascript, gzip], &script.gzip[..]).into_response()
    } else {
        (common, [javascript], script.text.as_str()).into_response()
    }
}

/// The demo page of `[server] demo_site` (404 without one).
pub async fn demo_page(State(app): State<Arc<App>>) -> Response {
    let config = app.config();
    let Some(site) = config.server.demo_site.as_ref().and_then(|id| config.site(id)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let page = include_str!("../../snippet/demo.html")
        .replace("{{SITE_KEY}}", &site.key)
        .replace("{{DELAY}}", &humantime::format_duration(site.delay_to_show).to_string())
        .replace("{{IDLE}}", &humantime::format_duration(site.rules.reclaim_after_idle).to_string());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}
