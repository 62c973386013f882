//! Who is calling, each kind of caller checked once: the operator (the admin token), a site's
//! owner (a report token), a browser on a site's page (its origin), and the client's address
//! (behind a trusted proxy, the proxy's header). The PBXs are checked by their vendor's adapter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::extract::Path;
use crate::app::{App, Running};
use crate::config::SiteConfig;
use crate::reports::Access;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `given` is `expected`, in time that depends on neither's content nor length: their
/// SHA-256 digests (always 32 bytes) are compared in constant time.
pub fn same(given: &str, expected: Option<&String>) -> bool {
    use sha2::{Digest, Sha256};
    expected.is_some_and(|t| bool::from(Sha256::digest(given).ct_eq(&Sha256::digest(t))))
}

/// The operator: `Authorization: Bearer <[server] admin_token>`.
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Admin, ApiError> {
        let given = bearer(&parts.headers).unwrap_or("");
        operator(given, state).then_some(Admin).ok_or_else(ApiError::unauthorized)
    }
}

/// A site's owner, for the site of the path's `{site}`: `Authorization: Bearer <token>`, or the
/// report cookie a browser got for a link with `?token=` (see [`private`]).
/// Whether `given` is the server's admin token.
fn operator<S>(given: &str, state: &S) -> bool
where
    Arc<App>: FromRef<S>,
{
    same(given, Arc::<App>::from_ref(state).config().server.admin_token.as_ref())
}

/// The operator on a report page: the server's admin token, as a Bearer token or in the report
/// cookie a `?token=` link left (the overview of every site).
pub struct Operator;

impl<S> FromRequestParts<S> for Operator
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Operator, ApiError> {
        let mut given = bearer(&parts.headers).map(str::to_owned).into_iter().chain(report_cookies(&parts.headers));
        given.any(|t| operator(&t, state)).then_some(Operator).ok_or_else(ApiError::unauthorized)
    }
}

pub struct Owner {
    /// The configuration the request was checked against, and the site's place in it.
    config: Arc<Running>,
    index: usize,
    pub access: Access,
}

impl Owner {
    pub fn site(&self) -> &SiteConfig {
        &self.config.sites[self.index]
    }
}

impl<S> FromRequestParts<S> for Owner
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Owner, ApiError> {
        let app = Arc::<App>::from_ref(state);
        // The site is the route's `{site}` (a route may have more parameters after it).
        let Path(params) = Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state).await?;
        let site = params.get("site").cloned().unwrap_or_default();
        // The Bearer token, else every report cookie the browser sent (the overview's, scoped to
        // every report, and the site's own): the widest access any of them gives.
        let given: Vec<String> = match bearer(&parts.headers) {
            Some(t) => vec![t.to_owned()],
            None => report_cookies(&parts.headers),
        };
        let config = app.config();
        let operator = given.iter().any(|g| same(g, config.server.admin_token.as_ref()));
        let Some(index) = config.sites.iter().position(|s| s.id.as_str() == site) else {
            // Only the operator learns that a site does not exist; anyone else cannot tell
            // an unknown site from a wrong token.
            return Err(if operator {
                ApiError::not_found(format!("unknown site {site:?}"))
            } else {
                ApiError::unauthorized()
            });
        };
        let s = &config.sites[index];
        let access = if operator || given.iter().any(|g| same(g, s.admin_token.as_ref())) {
            Access::Full
        } else if given.iter().any(|g| same(g, s.report_token.as_ref())) {
            Access::Masked
        } else {
            return Err(ApiError::unauthorized());
        };
        Ok(Owner { config, index, access })
    }
}

/// The cookie that holds a report token in a browser, scoped to one site's reports.
const REPORT_COOKIE: &str = "callpool_report";
/// How long a browser keeps a report token.
const REPORT_COOKIE_SECONDS: u32 = 8 * 3600;

fn report_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == REPORT_COOKIE)
        .take(4)
        .map(|(_, value)| {
            form_urlencoded::parse(format!("t={value}").as_bytes()).map(|(_, t)| t.into_owned()).collect()
        })
        .collect()
}

/// Around every answer with callers' data (reports, admin): never cached, no referrer sent
/// from it, no content sniffing, a content security policy for the report page (its own
/// inline styles and nothing else), not framed. A report link with `?token=` (opened from a
/// mail or a bookmark) is answered at once with a redirect to the same URL without the token,
/// which a cookie scoped to that site's reports now carries: the token leaves the address bar,
/// the history and any referrer.
pub async fn private(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    if let Some(resp) = token_to_cookie(&req) {
        return resp;
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    return resp;

    fn token_to_cookie(req: &axum::extract::Request) -> Option<axum::response::Response> {
        let uri = req.uri();
        // The overview of every site (the admin token) keeps it for all the reports.
        let scope = if uri.path() == "/v1/reports" {
            "/v1/reports".to_owned()
        } else {
            let site = uri.path().strip_prefix("/v1/reports/")?.split('/').next()?;
            if site.is_empty() || !site.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
                return None; // not a site id: no cookie (the request is refused without the token)
            }
            format!("/v1/reports/{site}")
        };
        let query = uri.query()?;
        let mut token = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == "token" {
                token = Some(v.into_owned());
            } else {
                rest.append_pair(&k, &v);
            }
        }
        let token = token?;
        let rest = rest.finish();
        let location = if rest.is_empty() { uri.path().to_owned() } else { format!("{}?{rest}", uri.path()) };
        let value: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let cookie = format!(
            "{REPORT_COOKIE}={value}; Path={scope}; Max-Age={REPORT_COOKIE_SECONDS}; HttpOnly; Secure; SameSite=Strict"
        );
        let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) else {
            return Some(ApiError::bad_request("token: cannot be kept in a cookie").into_response());
        };
        Some(
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, location),
                    (header::SET_COOKIE, cookie),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
                ],
            )
                .into_response(),
        )
    }
}

/// The `Origin` a browser sent, if any.
pub struct Origin(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Origin, Self::Rejection> {
        Ok(Origin(parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

impl Origin {
    /// Refuses a page whose origin is not one of `site`'s allowed origins.
    pub fn check(&self, site: &SiteConfig) -> Result<(), ApiError> {
        match site.allowed_origin(self.0.as_deref()) {
            Some(_) => Ok(()),
            None => Err(ApiError::origin_not_allowed()),
        }
    }
}

/// The client's address: the peer's, or when the peer is one of `[server] trusted_proxies` and
/// `trusted_proxy_header` is set, the rightmost address of that header that is not a trusted
/// proxy (each proxy appends the address it saw; only the hops our own proxies added are
/// believed, whatever a client wrote to the left of them).
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn of(peer: IpAddr, headers: &HeaderMap, server: &crate::config::ServerConfig) -> ClientIp {
        let trusted = |ip: &IpAddr| server.trusted_proxies.iter().any(|net| net.contains(ip));
        let Some(name) = server.trusted_proxy_header.as_deref().filter(|_| trusted(&peer)) else {
            return ClientIp(peer);
        };
        let hops = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
        let mut client = peer;
        for hop in hops.collect::<Vec<_>>().into_iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
        ClientIp(client)
    }
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443` or `203.0.113.7:5100`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

impl<S> FromRequestParts<S> for ClientIp
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ClientIp, ApiError> {
        let app = Arc::<App>::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("the server runs without peer addresses"))?;
        Ok(ClientIp::of(peer, &parts.headers, &app.config().server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(proxies: &[&str]) -> crate::config::ServerConfig {
        let mut c = crate::config::Config::demo(&std::collections::HashMap::new()).unwrap().server;
        c.trusted_proxy_header = Some("x-forwarded-for".into());
        c.trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
        c
    }

    fn client(peer: &str, xff: &[&str], proxies: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        ClientIp::of(peer.parse().unwrap(), &h, &server(proxies)).0.to_string()
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let lo = ["127.0.0.0/8", "::1/128"];
        // A client that reaches the port directly cannot choose its address.
        assert_eq!(client("203.0.113.7", &["1.2.3.4"], &lo), "203.0.113.7");
        // Through the proxy: the hop the proxy added, not what the client wrote before it.
        assert_eq!(client("127.0.0.1", &["1.2.3.4, 203.0.113.7"], &lo), "203.0.113.7");
        assert_eq!(client("127.0.0.1", &["1.2.3.4", "203.0.113.7"], &lo), "203.0.113.7", "header lines join");
        // Two proxies of ours: skip both.
        let two = ["127.0.0.1/32", "10.0.0.0/8"];
        assert_eq!(client("127.0.0.1", &["6.6.6.6, 198.51.100.2, 10.1.2.3"], &two), "198.51.100.2");
        // Junk stops the walk at the last address a trusted hop gave.
        assert_eq!(client("127.0.0.1", &["198.51.100.2, junk, 10.1.2.3"], &two), "10.1.2.3");
        assert_eq!(client("127.0.0.1", &["[2001:db8::1]:443"], &lo), "2001:db8::1");
        assert_eq!(client("127.0.0.1", &[], &lo), "127.0.0.1", "no header: the peer");
    }
}
