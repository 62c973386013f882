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
use super::extract::{Path, Query};
use crate::app::App;
use crate::config::SiteConfig;
use crate::reports::Access;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `given` is `expected`, compared in constant time.
fn same(given: &str, expected: Option<&String>) -> bool {
    expected.is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.as_bytes())))
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
        let app = Arc::<App>::from_ref(state);
        let given = bearer(&parts.headers).unwrap_or("");
        if same(given, app.config.server.admin_token.as_ref()) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// A site's owner, for the site of the path's `{site}`: `Authorization: Bearer <token>`, or
/// `?token=` for links opened in a browser.
pub struct Owner {
    /// The site's place in the configuration.
    index: usize,
    pub access: Access,
}

impl Owner {
    pub fn site<'a>(&self, app: &'a App) -> &'a SiteConfig {
        &app.config.sites[self.index]
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
        let Path(site) = Path::<String>::from_request_parts(parts, state).await?;
        let Some(index) = app.config.sites.iter().position(|s| s.id.as_str() == site) else {
            return Err(ApiError::not_found(format!("unknown site {site:?}")));
        };
        let Query(TokenQuery { token }) = Query::from_request_parts(parts, state).await?;
        let given = bearer(&parts.headers).map(str::to_owned).or(token).unwrap_or_default();
        let s = &app.config.sites[index];
        let access = if same(&given, app.config.server.admin_token.as_ref()) || same(&given, s.admin_token.as_ref()) {
            Access::Full
        } else if same(&given, s.report_token.as_ref()) {
            Access::Masked
        } else {
            return Err(ApiError::unauthorized());
        };
        Ok(Owner { index, access })
    }
}

/// `?token=`: a report link opened in a browser carries its token in the query.
#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
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

/// The client's address: the peer, or behind `[server] trusted_proxy_header`, the rightmost
/// address of that header.
pub struct ClientIp(pub IpAddr);

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
        let behind_proxy = app
            .config
            .server
            .trusted_proxy_header
            .as_deref()
            .and_then(|h| parts.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok());
        Ok(ClientIp(behind_proxy.unwrap_or(peer)))
    }
}
