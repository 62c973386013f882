//! The one error every handler returns, and the one place errors become HTTP statuses and the
//! JSON problem body `{"error": {"code": "...", "message": "...", "retry_after": N or null}}`.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callpool_pool::PoolError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// What a handler answers when it cannot do what was asked.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    /// Seconds until the caller may try again (429, and 503 where known).
    retry_after: Option<u64>,
    /// Each problem, where there are several (a refused configuration).
    problems: Vec<String>,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `bad_signature`, `bad_request`, `not_found`,
    /// `rate_limited`, `unavailable`, `internal`, `origin_not_allowed`, `unknown_site`, `too_large`,
    /// `method_not_allowed`, `config_invalid`; a callback request's refusal names its check (`invalid`,
    /// `not_callable`, `abroad`, `blocked`, `too_soon`, `closed`) or limit (`ip`, `visitor`, `number`, `banned`, `site`).
    code: String,
    /// For people; may change. A callback refusal's message is safe to show to the visitor, in
    /// the site's language.
    message: String,
    /// Seconds until the caller may try again, where a limit says (else `null`).
    retry_after: Option<u64>,
    /// Every problem found, where a request was refused for several (`config_invalid`: each
    /// names the file, the site or section and the setting); absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into(), retry_after: None, problems: Vec::new() }
    }

    /// The stable code (`bad_signature`, ...).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// With every problem listed (`error.problems`).
    pub fn problems(mut self, problems: Vec<String>) -> ApiError {
        self.problems = problems;
        self
    }

    /// With `Retry-After` (at least a second).
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// A missing or wrong token.
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send the token as 'Authorization: Bearer <token>'")
    }

    /// A webhook's signature is missing, wrong or stale (the message says which).
    pub fn bad_signature(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
    }

    /// The request is malformed; the message names the field.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn rate_limited() -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; retry in a second")
            .retry_after(1)
    }

    /// Too many websocket connections from one address in a minute.
    pub fn too_many_connections() -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many connection attempts; retry in a minute")
            .retry_after(60)
    }

    /// A browser request from a page that is not on one of the site's allowed origins.
    pub fn origin_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "send the request from a page on one of the site's allowed origins (the Origin header)",
        )
    }

    /// A site key no site (with what the request needs) has.
    pub fn unknown_site(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_site", message)
    }

    /// The site lacks the settings the request needs (analytics setup, webhooks).
    pub fn not_configured(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_configured", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Pool(p) => p.into(),
            e if e.is_unavailable() => store_away(&e),
            e => internal(&e),
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> ApiError {
        match e {
            PoolError::UnknownSite(s) => ApiError::not_found(format!("unknown site {s}")),
            PoolError::Unavailable(_) => store_away(&e),
            PoolError::Invalid(m) => ApiError::not_found(m),
            PoolError::Storage(_) => internal(&e),
        }
    }
}

/// The store's own words (Redis's, redb's, the OS's) go to the log; the client gets a stable
/// code and a sentence.
fn store_away(e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "A request found the store unreachable.");
    ApiError::unavailable("the store is not reachable; try again shortly")
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "A request failed inside the server.");
    ApiError::internal("the server failed to answer; its log has the details")
}

impl From<crate::pbx::Refusal> for ApiError {
    /// A webhook that is not the PBX's is `bad_signature`; one the adapter cannot read, `bad_request`.
    fn from(r: crate::pbx::Refusal) -> ApiError {
        match r {
            crate::pbx::Refusal::Malformed(m) => ApiError::bad_request(m),
            other => ApiError::bad_signature(other.message()),
        }
    }
}

impl From<crate::callback::service::Refusal> for ApiError {
    /// A callback request's refusal: 503 when nothing could be stored, 429 for a limit (with when
    /// the number may ask again), else 400; the code is the reason, the message the site's text.
    fn from(r: crate::callback::service::Refusal) -> ApiError {
        use crate::callback::Reason;
        let status = match r.reason {
            Reason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        let err = ApiError::new(status, r.reason.as_str(), r.message);
        match r.retry_after {
            Some(d) => err.retry_after(d.as_secs()),
            None => err,
        }
    }
}

impl From<crate::reports::overview::OverviewError> for ApiError {
    fn from(e: crate::reports::overview::OverviewError) -> ApiError {
        match e {
            crate::reports::overview::OverviewError::Period(e) => e.into(),
            crate::reports::overview::OverviewError::Store(e) => e.into(),
        }
    }
}

impl From<crate::reports::PeriodError> for ApiError {
    fn from(e: crate::reports::PeriodError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self.message, "A request failed inside callpool.");
        }
        let unauthorized = self.code == "unauthorized";
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into_owned(),
                message: self.message,
                retry_after: self.retry_after,
                problems: self.problems,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if unauthorized {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Answers that axum and the tower layers make on their own (a body over the limit, a timeout,
/// an unknown route or method, a refused websocket upgrade) get the API's error body too, so
/// every client reads one shape. Our own answers (JSON, the report page's HTML) pass as they are.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp.headers().get(header::CONTENT_TYPE).is_none_or(|t| t.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let said = text.ok().filter(|t| !t.is_empty());
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the body is larger than this endpoint takes".to_owned()),
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take this method".to_owned()),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
            ("unavailable", "the request took too long; try again".to_owned())
        }
        s if s.is_server_error() => ("internal", "the server failed to answer; its log has the details".to_owned()),
        _ => ("bad_request", said.unwrap_or_else(|| status.canonical_reason().unwrap_or("bad request").to_owned())),
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH {
            answer.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    answer
}
