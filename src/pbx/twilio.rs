//! Twilio Programmable Voice.
//!
//! Webhook (`[[pbx]] kind = "twilio"`, `auth_token`, `url`): Twilio's status callbacks, form
//! fields (CallSid, From, To, CallStatus, CallDuration, RecordingUrl, Timestamp), checked with
//! `X-Twilio-Signature` (base64 HMAC-SHA1, keyed with the account's auth token, of the webhook
//! URL exactly as configured in Twilio followed by every field's name and value, sorted). A
//! callpool-kind PBX reads the same fields when its integration posts them (see `callpool.rs`).
//!
//! Trigger (`kind = "twilio"`): create-call (`<url>/2010-04-01/Accounts/<sid>/Calls.json`, basic
//! auth): `To` = the operator, `From`, `Twiml` that dials the visitor, `StatusCallback` =
//! callpool's call webhook; the answer's `sid` links the status callbacks to the callback.

use std::collections::HashMap;
use std::time::Duration;

use callpool_pool::{PhoneNumber, Ts};
use hmac::{Hmac, Mac};
use serde::Deserialize;

use super::adapter::{
    called_number, not_in_future, placed_with, plain_get, recording_url, Adapter, Answer, Inbound, Received,
    RecordingError, Refusal, Ring, Trigger, LONGEST_CALL_S,
};
use crate::callback::Callback;
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section};

/// Twilio's signature header.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// An account's auth token and the webhook URL as configured in Twilio (which it signs).
pub struct TwilioAuth {
    pub auth_token: String,
    pub url: String,
}

/// Reads a `[[pbx]] kind = "twilio"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    auth_token: Option<String>,
    url: Option<String>,
}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("twilio")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawWebhook = f.parse()?;
        const WHY: &str = " for kind = \"twilio\"";
        let auth_token = f.required("auth_token", raw.auth_token, WHY);
        let url = f.required("url", raw.url, " (the webhook URL exactly as configured in Twilio)");
        let url = url.map(|u| f.url("url", u));
        let adapter: Box<dyn Adapter> = Box::new(TwilioAuth { auth_token: auth_token?, url: url? });
        Some(Section::new("twilio", adapter))
    }
}

impl Adapter for TwilioAuth {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        match req.headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) {
            Some(sig) => verify(&self.url, req.body, &self.auth_token, sig),
            None => Err(Refusal::NoSignature("send X-Twilio-Signature".into())),
        }
    }

    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal> {
        report(pbx, req.body, req.now).map(|r| Received::Reports(vec![r])).map_err(Refusal::Malformed)
    }

    fn recording<'a>(
        &'a self,
        http: &'a reqwest::Client,
        recording: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<reqwest::RequestBuilder, RecordingError>> {
        Box::pin(std::future::ready(self.fetch(http, recording)))
    }
}

impl TwilioAuth {
    /// A Twilio recording (`.../Accounts/<sid>/Recordings/<id>`) as MP3, with the account's
    /// credentials (HTTP basic: the account sid and the auth token); another link as it is.
    pub fn fetch(&self, http: &reqwest::Client, recording: &str) -> Result<reqwest::RequestBuilder, RecordingError> {
        let plain = plain_get(http, recording)?;
        let sid = recording.split("/Accounts/").nth(1).and_then(|rest| rest.split('/').next());
        Ok(match sid {
            Some(sid) if recording.contains("/Recordings/") => {
                let url = if recording.ends_with(".mp3") || recording.ends_with(".wav") {
                    recording.to_owned()
                } else {
                    format!("{recording}.mp3")
                };
                http.get(url).basic_auth(sid, Some(&self.auth_token))
            }
            _ => plain,
        })
    }
}

/// Checks `X-Twilio-Signature`. The URL is tried as configured and with its default port added
/// or removed, as Twilio's libraries do. Twilio signs no timestamp, so there is no replay
/// window; a replay only repeats a report of a call already recorded (idempotent by CallSid).
pub fn verify(url: &str, body: &[u8], auth_token: &str, given: &str) -> Result<(), Refusal> {
    let Ok(given) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, given.trim()) else {
        return Err(Refusal::BadSignature("X-Twilio-Signature is not base64".into()));
    };
    for candidate in url_variants(url) {
        // verify_slice compares in constant time.
        if mac(&candidate, body, auth_token).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(Refusal::BadSignature("X-Twilio-Signature does not match the URL and fields (check the configured url)".into()))
}

fn mac(url: &str, body: &[u8], auth_token: &str) -> Hmac<sha1::Sha1> {
    let mut fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    fields.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (k, v) in &fields {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio sends for a form `body` posted to `url` (for tests and tools).
pub fn sign(url: &str, body: &[u8], auth_token: &str) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac(url, body, auth_token).finalize().into_bytes(),
    )
}

/// `url`, and `url` with its scheme's default port added (or removed if present).
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let (scheme, port) = if url.starts_with("https://") { ("https://", ":443") } else { ("http://", ":80") };
    if let Some(rest) = url.strip_prefix(scheme) {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, tail) = rest.split_at(end);
        if let Some(bare) = host.strip_suffix(port) {
            out.push(format!("{scheme}{bare}{tail}"));
        } else if !host.contains(':') {
            out.push(format!("{scheme}{host}{port}{tail}"));
        }
    }
    out
}

/// Twilio's voice webhook fields as a report.
pub fn report(pbx: &str, body: &[u8], now: Ts) -> Result<CallReport, String> {
    let fields: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let get = |f: &str| fields.get(f).map(String::as_str).filter(|v| !v.is_empty());
    let key = CallKey::new(pbx, get("CallSid").ok_or("CallSid: required")?).map_err(|e| format!("CallSid: {e}"))?;
    let called = called_number("To", get("To").ok_or("To: required")?)?;
    let caller = get("From").and_then(Caller::parse);
    let status = match get("CallStatus").ok_or("CallStatus: required")? {
        "queued" | "initiated" | "ringing" => CallStatus::Ringing,
        "in-progress" => CallStatus::Answered,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" | "canceled" => CallStatus::Missed,
        other => return Err(format!("CallStatus: {other:?} is not a Twilio call status")),
    };
    let duration = get("CallDuration")
        .map(|d| d.parse::<u32>().ok().filter(|d| u64::from(*d) <= LONGEST_CALL_S))
        .map(|d| d.ok_or("CallDuration: not whole seconds"))
        .transpose()?;
    let at = match get("Timestamp") {
        Some(t) => chrono::DateTime::parse_from_rfc2822(t)
            .map(|t| Ts::from_millis(t.timestamp_millis()))
            .map_err(|_| format!("Timestamp: {t:?} is not an RFC 2822 time"))?,
        None => now,
    };
    // A status callback's Timestamp is when the call ended; the call started its duration earlier.
    let started_at = match (status.is_final(), duration) {
        (true, Some(d)) => at.minus(Duration::from_secs(u64::from(d))),
        _ => at,
    };
    let recording_url = get("RecordingUrl").map(|u| recording_url("RecordingUrl", u)).transpose()?;
    not_in_future(started_at, now)?;
    Ok(CallReport {
        key,
        called,
        caller,
        started_at,
        answered_at: None,
        ended_at: status.is_final().then_some(at),
        status,
        duration,
        recording_url,
    })
}

/// The create-call trigger's settings.
pub struct CreateCall {
    base_url: String,
    account_sid: String,
    auth_token: String,
    from: PhoneNumber,
    status_url: String,
}

/// Reads `trigger = { kind = "twilio", account_sid, auth_token, from, status_url, url? }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCreateCall {
    url: Option<String>,
    account_sid: Option<String>,
    auth_token: Option<String>,
    from: Option<String>,
    status_url: Option<String>,
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("twilio")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawCreateCall = f.parse()?;
        const WHY: &str = " for kind = \"twilio\"";
        let from = f.required("from", raw.from, WHY).and_then(|n| f.number("from", &n));
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| "https://api.twilio.com".into()));
        let status_url = f.required("status_url", raw.status_url, WHY).map(|u| f.base_url("status_url", u));
        let account_sid = f.required("account_sid", raw.account_sid, WHY);
        let auth_token = f.required("auth_token", raw.auth_token, WHY);
        let trigger = CreateCall {
            base_url,
            account_sid: account_sid?,
            auth_token: auth_token?,
            from: from?,
            status_url: status_url?,
        };
        Some(super::adapter::trigger_section("twilio", trigger))
    }
}

impl Trigger for CreateCall {
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, _now: Ts) -> reqwest::RequestBuilder {
        let twiml = format!(
            "<Response><Dial callerId=\"{}\" timeout=\"30\"><Number>{}</Number></Dial></Response>",
            self.from, cb.number
        );
        http.post(format!("{}/2010-04-01/Accounts/{}/Calls.json", self.base_url, self.account_sid))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&[
                ("To", ring.operator),
                ("From", self.from.as_str()),
                ("Timeout", ring.ring_for.as_secs().clamp(5, 600).to_string().as_str()),
                ("Twiml", twiml.as_str()),
                ("StatusCallback", self.status_url.as_str()),
                ("StatusCallbackMethod", "POST"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
            ])
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        placed_with(status, body, "sid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Ts = Ts::from_millis(1_800_000_000_000);

    #[test]
    fn signatures_match_twilios_own_example() {
        // The example of Twilio's signature-validation snippet (TwilioDevEd/api-snippets).
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212";
        assert_eq!(verify(url, body.as_bytes(), "12345", "GvWf1cFY/Q7PnoempGyD5oXAezc="), Ok(()));
        // Field order in the body does not matter; the port variant is accepted.
        let shuffled =
            "To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234&Caller=%2B14158675310&From=%2B14158675310";
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(verify(with_port, shuffled.as_bytes(), "12345", "GvWf1cFY/Q7PnoempGyD5oXAezc="), Ok(()));
        let reason = |r: Result<(), Refusal>| r.unwrap_err().reason();
        assert_eq!(reason(verify(url, body.as_bytes(), "54321", "GvWf1cFY/Q7PnoempGyD5oXAezc=")), "bad_signature");
        assert_eq!(reason(verify(url, b"CallSid=CA1", "12345", "GvWf1cFY/Q7PnoempGyD5oXAezc=")), "bad_signature");
        assert_eq!(reason(verify(url, body.as_bytes(), "12345", "not base64!")), "bad_signature");
    }

    #[test]
    fn fields_are_read_into_a_report() {
        let body = "CallSid=CA0123&From=%2B79161234567&To=%2B74951230001&CallStatus=completed&CallDuration=30&Timestamp=Fri%2C%2015%20Jan%202027%2008%3A00%3A30%20%2B0000";
        let r = report("tw", body.as_bytes(), Ts::from_millis(1_900_000_000_000)).unwrap();
        assert_eq!((r.key.as_str(), r.status, r.duration), ("tw:CA0123", CallStatus::Completed, Some(30)));
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("+79161234567"));
        assert_eq!(
            r.started_at.to_string(),
            "2027-01-15T08:00:00.000Z",
            "a status callback's timestamp minus the duration"
        );
        let err = report("tw", b"CallSid=CA1&To=%2B74951230001&CallStatus=weird", NOW).unwrap_err();
        assert!(err.contains("CallStatus: \"weird\""), "{err}");
        assert!(report("tw", b"CallSid=CA1&CallStatus=ringing", NOW).unwrap_err().contains("To: required"));
    }
}
