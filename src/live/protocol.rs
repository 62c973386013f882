//! The websocket messages, version 1: JSON text frames, one message per frame, each with a
//! `type`. docs/PROTOCOL.md is the prose version of this file; keep the two in step.

use callpool_pool::{PhoneNumber, SessionAttrs, VisitorId};
use serde::{Deserialize, Serialize};

/// The protocol version the client must send in `hello`.
pub const VERSION: u32 = 1;

/// The largest message (and frame) the server reads; longer ones close the connection.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A message from the snippet.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// The first message of every connection.
    Hello(Hello),
    /// The visitor interacted with the page (throttled by the snippet).
    Activity {},
    /// The tab became visible or hidden.
    Visibility { visible: bool },
    /// The visitor asks to be called back at `number` (as typed; the server reads it with the
    /// site's region).
    CallbackRequest { number: String },
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub v: u32,
    /// The visitor: GA client id when the `_ga` cookie exists, else the snippet's first-party id.
    pub visitor: String,
    /// The tab, unique per page load.
    pub tab: String,
    #[serde(default)]
    pub ga_client_id: Option<String>,
    #[serde(default)]
    pub ga_session_id: Option<String>,
    #[serde(default)]
    pub ym_uid: Option<String>,
    /// The page URL (with its query: utm_* and click ids are read from it).
    pub page: String,
    #[serde(default)]
    pub referrer: Option<String>,
}

/// What a tab shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// The site's own number, before the delay ran out (or while the pool is exhausted).
    DefaultBefore,
    /// The visitor's tracking number.
    Tracking,
    /// The site's number after the tracking number was taken back.
    DefaultAfter,
    /// Traffic the site does not track.
    Static,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::DefaultBefore => "default_before",
            Shown::Tracking => "tracking",
            Shown::DefaultAfter => "default_after",
            Shown::Static => "static",
        }
    }
}

/// A number the page may show, in the two spellings the snippet looks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteNumber {
    pub e164: PhoneNumber,
    /// The national significant number (no country code, no trunk prefix).
    pub national: String,
}

impl SiteNumber {
    pub fn new(n: &PhoneNumber) -> SiteNumber {
        SiteNumber { e164: n.clone(), national: n.national_digits() }
    }
}

/// A message to the snippet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Sent once, right after hello: the site's own numbers, which the snippet finds in the page.
    Site { numbers: Vec<SiteNumber> },
    /// Show this number (E.164) in place of the site's number.
    Number { number: PhoneNumber, kind: Shown },
    /// Why the server closes the connection.
    Error { code: ErrorCode, message: String },
    /// Sent after `site` when the site has a callback form: its texts, and whether it is open
    /// now (when closed, `notice` says when a call would come).
    CallbackForm { texts: std::collections::BTreeMap<String, String>, open: bool, notice: Option<String> },
    /// How the visitor's callback stands (to every tab of the visitor). `at` (ms): the scheduled
    /// time or the next attempt; `message` is ready to show.
    Callback { id: Option<String>, status: crate::callback::CallbackStatus, at: Option<i64>, message: String },
    /// The request was refused (to the asking tab only); `message` is ready to show.
    CallbackRefused { reason: String, message: String, retry_after: Option<u64> },
}

/// Error codes sent before a close, with the close code that follows each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message is not valid JSON of a known type, or a field is invalid.
    BadMessage,
    /// The first message was not `hello`.
    HelloFirst,
    /// The `v` in hello is not one this server speaks.
    UnsupportedVersion,
    /// `site` names no configured site.
    UnknownSite,
    /// The page's origin is not among the site's allowed origins.
    OriginNotAllowed,
    /// The message was larger than 4096 bytes.
    TooLarge,
    /// The client did not read its messages fast enough.
    TooSlow,
    /// The server is shutting down; reconnect.
    GoingAway,
    /// The visitor already has the most tabs a node serves one visitor ([`MAX_TABS`]).
    TooManyTabs,
}

/// The most tabs of one visitor a node serves at once: a person rarely opens more, and a
/// script opening thousands cannot make one visitor's fan-out expensive.
pub const MAX_TABS: usize = 20;

impl ErrorCode {
    /// The websocket close code sent after the error message.
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::BadMessage | ErrorCode::HelloFirst => 4400,
            ErrorCode::UnsupportedVersion => 4426,
            ErrorCode::UnknownSite => 4404,
            ErrorCode::OriginNotAllowed => 4403,
            ErrorCode::TooLarge => 1009,
            ErrorCode::TooSlow => 4408,
            ErrorCode::GoingAway => 1001,
            ErrorCode::TooManyTabs => 4429,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::HelloFirst => "hello_first",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownSite => "unknown_site",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooSlow => "too_slow",
            ErrorCode::GoingAway => "going_away",
            ErrorCode::TooManyTabs => "too_many_tabs",
        }
    }
}

impl Hello {
    /// The visitor, once the hello's fields are within their rules; else what is wrong.
    pub fn checked(&self) -> Result<VisitorId, String> {
        let visitor = VisitorId::new(self.visitor.clone()).map_err(|e| e.to_string())?;
        if self.tab.is_empty() || self.tab.len() > 64 {
            return Err("tab must be 1 to 64 characters".into());
        }
        if !(self.page.starts_with("http://") || self.page.starts_with("https://")) {
            return Err("page must be the page's http(s) URL".into());
        }
        Ok(visitor)
    }

    /// The session attributes the lease will carry: ids from the hello, utm_* and click ids
    /// from the page's query. Values are cut to 256 characters.
    pub fn attrs(&self) -> SessionAttrs {
        let cut = |s: &str| s.chars().take(256).collect::<String>();
        let mut a = SessionAttrs {
            ga_client_id: self.ga_client_id.as_deref().map(cut),
            ga_session_id: self.ga_session_id.as_deref().map(cut),
            ym_uid: self.ym_uid.as_deref().map(cut),
            landing_page: Some(cut(&self.page)),
            referrer: self.referrer.as_deref().filter(|r| !r.is_empty()).map(cut),
            ..SessionAttrs::default()
        };
        let query = self.page.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = Some(cut(&percent_decode(v))).filter(|v| !v.is_empty());
            match k {
                "utm_source" => a.utm_source = v,
                "utm_medium" => a.utm_medium = v,
                "utm_campaign" => a.utm_campaign = v,
                "utm_term" => a.utm_term = v,
                "utm_content" => a.utm_content = v,
                "gclid" => a.gclid = v,
                "yclid" => a.yclid = v,
                _ => {}
            }
        }
        a
    }
}

/// Decodes `%XX` escapes and `+` (form encoding) leniently: a malformed escape stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_attrs_come_from_the_page_query() {
        let h: ClientMsg = serde_json::from_str(
            r#"{"type":"hello","v":1,"visitor":"123.456","tab":"t1","ga_client_id":"123.456",
                "page":"https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=winter%20sale&gclid=abc#top",
                "referrer":"https://www.google.com/"}"#,
        )
        .unwrap();
        let ClientMsg::Hello(h) = h else { panic!("hello") };
        let a = h.attrs();
        assert_eq!(a.utm_source.as_deref(), Some("google"));
        assert_eq!(a.utm_medium.as_deref(), Some("cpc"));
        assert_eq!(a.utm_campaign.as_deref(), Some("winter sale"));
        assert_eq!(a.gclid.as_deref(), Some("abc"));
        assert_eq!(a.referrer.as_deref(), Some("https://www.google.com/"));
        assert_eq!(a.ga_client_id.as_deref(), Some("123.456"));
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"activity","x":1}"#).is_err());
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"nope"}"#).is_err());
        assert_eq!(serde_json::from_str::<ClientMsg>(r#"{"type":"activity"}"#).unwrap(), ClientMsg::Activity {});
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%D0%BC"), "м");
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let m = ServerMsg::Number { number: PhoneNumber::parse("+74951234567").unwrap(), kind: Shown::Tracking };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"number","number":"+74951234567","kind":"tracking"}"#
        );
        let e = ServerMsg::Error { code: ErrorCode::UnknownSite, message: "x".into() };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"type":"error","code":"unknown_site","message":"x"}"#);
        let c = ServerMsg::Callback {
            id: Some("cb-1".into()),
            status: crate::callback::CallbackStatus::Retrying,
            at: Some(5),
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"type":"callback","id":"cb-1","status":"retrying","at":5,"message":"m"}"#
        );
        assert_eq!(
            serde_json::from_str::<ClientMsg>(r#"{"type":"callback_request","number":"8 916"}"#).unwrap(),
            ClientMsg::CallbackRequest { number: "8 916".into() }
        );
    }
}
