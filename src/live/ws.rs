//! The websocket endpoint `GET /v1/ws?site=KEY`: rate limit, origin check, hello, then one task
//! per connection that relays the hub's messages, forwards activity, and pings.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::SiteConfig;
use crate::live::hub::{Hub, Tab, ToTab};
use crate::live::protocol::{ClientMsg, ErrorCode, Hello, ServerMsg, SiteNumber, MAX_MESSAGE_BYTES, MAX_TABS, VERSION};
use crate::web::auth::{ClientIp, Origin};
use crate::web::error::ApiError;
use crate::web::extract::Query;

/// How long a new connection may take to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// How long one send may wait on a client that does not read.
const SEND_WITHIN: Duration = Duration::from_secs(10);

/// What the websocket endpoint needs.
#[derive(Clone)]
pub struct WsState {
    pub hub: Arc<Hub>,
    pub limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    pub shutdown: CancellationToken,
    /// Sites by public key, shared by every connection (a connection holds an `Arc`, not a copy),
    /// made again when another configuration runs.
    sites: Arc<arc_swap::ArcSwap<Sites>>,
}

/// The sites of one configuration version, by public key.
struct Sites {
    version: String,
    by_key: std::collections::HashMap<String, Arc<SiteEntry>>,
}

impl Sites {
    fn of(config: &crate::config::Config) -> Sites {
        let by_key = config.sites.iter().map(|s| (s.key.clone(), Arc::new(SiteEntry::new(s)))).collect();
        Sites { version: config.version.clone(), by_key }
    }
}

/// A site as the endpoint needs it: its config and its `site` message, serialized once.
pub struct SiteEntry {
    config: SiteConfig,
    site_msg: String,
}

impl SiteEntry {
    fn new(config: &SiteConfig) -> SiteEntry {
        let mut numbers = vec![SiteNumber::new(&config.default_before)];
        for n in [&config.default_after, &config.static_number] {
            if !numbers.iter().any(|k| &k.e164 == n) {
                numbers.push(SiteNumber::new(n));
            }
        }
        let site_msg = serde_json::to_string(&ServerMsg::Site { numbers }).expect("server messages serialize");
        SiteEntry { config: config.clone(), site_msg }
    }
}

impl WsState {
    /// The site whose public key is `key`, in the configuration running now.
    fn site(&self, key: &str) -> Option<Arc<SiteEntry>> {
        let sites = self.sites.load();
        let config = self.hub.app().config();
        if sites.version == config.version {
            return sites.by_key.get(key).cloned();
        }
        let made = Arc::new(Sites::of(&config));
        self.sites.store(made.clone());
        made.by_key.get(key).cloned()
    }

    pub fn new(hub: Arc<Hub>, shutdown: CancellationToken) -> WsState {
        let per_minute =
            NonZeroU32::new(hub.app().config().server.ws_connects_per_ip_per_minute).unwrap_or(NonZeroU32::MIN);
        let sites = Sites::of(&hub.app().config());
        WsState {
            hub,
            limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            shutdown,
            sites: Arc::new(arc_swap::ArcSwap::from_pointee(sites)),
        }
    }
}

#[derive(Deserialize)]
pub struct WsQuery {
    site: Option<String>,
}

pub async fn upgrade(
    State(state): State<WsState>,
    ClientIp(ip): ClientIp,
    Origin(origin): Origin,
    Query(q): Query<WsQuery>,
    slot: Option<axum::Extension<crate::web::serve::Slot>>,
    ws: WebSocketUpgrade,
) -> Response {
    let metrics = &state.hub.app().metrics;
    if state.limiter.check_key(&crate::callback::limits::client_key(ip)).is_err() {
        metrics.ws_refused.with_label_values(&["rate_limited"]).inc();
        return ApiError::too_many_connections().into_response();
    }
    let site = q.site.and_then(|key| state.site(&key));
    // tungstenite's defaults cost ~100 KiB+ per idle socket; a callpool tab exchanges a few
    // short JSON messages, so small buffers keep tens of thousands of tabs cheap.
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            // The tab keeps its connection's place under the server's cap while it lives.
            let _slot = slot;
            connection(socket, state, site, origin, ip).await;
        })
}

/// Refuses a connection before it became a tab: the error, the close, and a count.
async fn refuse(mut socket: WebSocket, state: &WsState, code: ErrorCode, message: &str) {
    state.hub.app().metrics.ws_refused.with_label_values(&[code.as_str()]).inc();
    close_with(&mut socket, code, message).await;
}

async fn connection(
    mut socket: WebSocket,
    state: WsState,
    site: Option<Arc<SiteEntry>>,
    origin: Option<String>,
    ip: IpAddr,
) {
    let Some(site) = site else {
        return refuse(socket, &state, ErrorCode::UnknownSite, "no site has this key").await;
    };
    if site.config.allowed_origin(origin.as_deref()).is_none() {
        return refuse(socket, &state, ErrorCode::OriginNotAllowed, "this page's origin is not allowed for the site")
            .await;
    }
    let hello = match tokio::time::timeout(HELLO_WITHIN, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ClientMsg>(&text) {
            Ok(ClientMsg::Hello(h)) => h,
            Ok(_) => return refuse(socket, &state, ErrorCode::HelloFirst, "the first message must be hello").await,
            Err(e) => return refuse(socket, &state, ErrorCode::BadMessage, &e.to_string()).await,
        },
        Ok(Some(Err(e))) if is_too_large(&e) => {
            return refuse(socket, &state, ErrorCode::TooLarge, "messages are at most 4096 bytes").await
        }
        Ok(Some(Ok(Message::Binary(_)))) => {
            return refuse(socket, &state, ErrorCode::BadMessage, "messages are JSON text frames").await
        }
        _ => return, // closed, broken or silent: nothing to answer
    };
    if hello.v != VERSION {
        return refuse(socket, &state, ErrorCode::UnsupportedVersion, "this server speaks version 1").await;
    }
    let visitor = match hello.checked() {
        Ok(v) => v,
        Err(why) => return refuse(socket, &state, ErrorCode::BadMessage, &why).await,
    };
    let hub = state.hub.clone();
    // The pool calls behind hello, activity and bye are large futures that run briefly; boxed,
    // they do not make every idle connection's task carry their size (3.4 KB unboxed).
    let Some((mut tab, first)) = Box::pin(hub.hello(&site.config, visitor, &hello, ip)).await else {
        let why = format!("a visitor may have at most {MAX_TABS} tabs open");
        return refuse(socket, &state, ErrorCode::TooManyTabs, &why).await;
    };
    let span = tracing::debug_span!("tab", site = %tab.site, visitor = %tab.visitor, tab = tab.id);
    let _enter = span.enter();
    let peer = Peer { ip, hello: &hello };
    let reason = serve(&mut socket, &state, &site, &mut tab, first, &peer).await;
    drop(_enter);
    hub.app().metrics.ws_closed.with_label_values(&[reason]).inc();
    Box::pin(hub.bye(&tab)).await;
}

fn is_too_large(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("too long") || text.contains("Space limit") || text.contains("capacity")
}

/// Who is at the other end: what a callback request from this tab carries (the session is read
/// from the hello when a request comes, not kept twice per connection).
struct Peer<'a> {
    ip: IpAddr,
    hello: &'a Hello,
}

/// The connection's loop; returns why it ended (a metric label).
async fn serve(
    socket: &mut WebSocket,
    state: &WsState,
    site: &SiteEntry,
    tab: &mut Tab,
    first: ServerMsg,
    peer: &Peer<'_>,
) -> &'static str {
    if send_text(socket, &site.site_msg).await.is_err() || send(socket, &first).await.is_err() {
        return "send_failed";
    }
    if let Some(form) = crate::callback::status::form(state.hub.app(), &site.config) {
        if send(socket, &form).await.is_err() {
            return "send_failed";
        }
    }
    let server = &state.hub.app().config().server;
    let (ping_every, dead_after) = (server.ws_ping_interval, server.ws_dead_after);
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                close_with(socket, ErrorCode::GoingAway, "the server is restarting; reconnect").await;
                return "shutdown";
            }
            out = tab.rx.recv() => match out {
                Some(ToTab::Send(json)) => {
                    if send_text(socket, &json).await.is_err() {
                        return "send_failed";
                    }
                }
                Some(ToTab::TooSlow) | None => {
                    close_with(socket, ErrorCode::TooSlow, "the connection did not keep up").await;
                    return "too_slow";
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > dead_after {
                    return "dead";
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return "send_failed";
                }
            }
            msg = socket.recv() => {
                last_heard = tokio::time::Instant::now();
                match msg {
                    None | Some(Ok(Message::Close(_))) => return "closed",
                    Some(Ok(Message::Pong(_) | Message::Ping(_))) => {}
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMsg>(&text) {
                        Ok(ClientMsg::Activity {}) | Ok(ClientMsg::Visibility { visible: true }) => {
                            Box::pin(state.hub.activity(&tab.site, &tab.visitor)).await;
                        }
                        Ok(ClientMsg::Visibility { visible: false }) => {}
                        Ok(ClientMsg::CallbackRequest { number }) => {
                            let answer = Box::pin(callback_request(state, site, tab, peer, number)).await;
                            if let Some(msg) = answer {
                                if send(socket, &msg).await.is_err() {
                                    return "send_failed";
                                }
                            }
                        }
                        Ok(ClientMsg::Hello(_)) => {
                            close_with(socket, ErrorCode::BadMessage, "hello is sent once per connection").await;
                            return "bad_message";
                        }
                        Err(e) => {
                            close_with(socket, ErrorCode::BadMessage, &e.to_string()).await;
                            return "bad_message";
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        close_with(socket, ErrorCode::BadMessage, "messages are JSON text frames").await;
                        return "bad_message";
                    }
                    Some(Err(e)) if is_too_large(&e) => {
                        close_with(socket, ErrorCode::TooLarge, "messages are at most 4096 bytes").await;
                        return "too_large";
                    }
                    Some(Err(_)) => return "broken",
                }
            }
        }
    }
}

/// A callback request from the widget. Accepted: the status reaches every tab of the visitor
/// through the hub (nothing to answer here). Joined to another requester's open request for the
/// number: this tab alone is told what a new request would have been, without an id. Refused:
/// the answer for this tab.
async fn callback_request(
    state: &WsState,
    site: &SiteEntry,
    tab: &Tab,
    peer: &Peer<'_>,
    number: String,
) -> Option<ServerMsg> {
    let req = crate::callback::service::Request {
        number,
        visitor: Some(tab.visitor.clone()),
        attrs: peer.hello.attrs(),
        ip: Some(peer.ip),
        channel: crate::callback::Channel::Widget,
    };
    use crate::callback::service::{self, Answer};
    // The site as the configuration running now has it (a reload since the tab opened may have
    // changed its form or removed it).
    let config = state.hub.app().config();
    let Some(current) = config.site(&site.config.id) else {
        return Some(ServerMsg::CallbackRefused {
            reason: crate::callback::Reason::Disabled.as_str().to_owned(),
            message: "this site has no callback form".into(),
            retry_after: None,
        });
    };
    match service::request(state.hub.app(), current, req).await {
        Ok(Answer::Mine(_)) => None,
        Ok(Answer::Joined(receipt)) => match crate::callback::status::status_message(state.hub.app(), &receipt) {
            Some(ServerMsg::Callback { status, at, message, .. }) => {
                Some(ServerMsg::Callback { id: None, status, at, message })
            }
            other => other,
        },
        Err(r) => Some(ServerMsg::CallbackRefused {
            reason: r.reason.as_str().to_owned(),
            message: r.message,
            retry_after: r.retry_after.map(|d| d.as_secs().max(1)),
        }),
    }
}

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> Result<(), ()> {
    send_text(socket, &serde_json::to_string(msg).expect("server messages serialize")).await
}

async fn send_text(socket: &mut WebSocket, text: &str) -> Result<(), ()> {
    match tokio::time::timeout(SEND_WITHIN, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends `code` as an error message, then closes with its close code.
async fn close_with(socket: &mut WebSocket, code: ErrorCode, message: &str) {
    let msg = ServerMsg::Error { code, message: message.to_owned() };
    let _ = send(socket, &msg).await;
    let frame = CloseFrame { code: code.close_code(), reason: code.as_str().into() };
    let _ = tokio::time::timeout(SEND_WITHIN, socket.send(Message::Close(Some(frame)))).await;
}
