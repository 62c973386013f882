//! callpool's own PBX protocol, for any PBX integration written against it.
//!
//! Webhook (`[[pbx]]`, the default kind): `POST /v1/pbx/calls?pbx=<id>` with the JSON call
//! report of docs/PROTOCOL.md (or Twilio-style form fields), signed with `Callpool-Signature`
//! (several `secrets` while rotating; `CALLPOOL_PBX_SECRET_<ID>` overrides them). A PBX of this
//! kind may also post Twilio's own status callbacks: with `twilio_auth_token` and `twilio_url`,
//! a request carrying `X-Twilio-Signature` is checked with Twilio's scheme instead.
//!
//! Trigger (`kind = "generic"`): a JSON POST to `url`, signed the same way with `secret`, with
//! `Idempotency-Key: <callback id>`; the PBX reports the call's outcome under `call_id` = the
//! callback id (or under its own id, if it answers `{"call_id": "..."}`).

use callpool_pool::Ts;
use serde::Deserialize;
use serde_json::{json, Value};

use super::adapter::{
    called_number, not_in_future, placed_with, plain_get, recording_url, Adapter, Answer, Inbound, Received,
    RecordingError, Refusal, Ring, Trigger, LONGEST_CALL_S,
};
use super::signature::{self, SIGNATURE_HEADER};
use super::twilio::{self, TwilioAuth};
use crate::callback::Callback;
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_PBX_SECRET_PREFIX};

/// The JSON a PBX posts (all times RFC 3339, or Unix seconds).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // documents the contract for the OpenAPI document; the handler reads fields one by one for exact errors
pub struct CallWebhook {
    /// The PBX's id for the call; every report of one call carries the same id.
    #[schema(example = "a1b2c3")]
    call_id: String,
    /// The number dialled, E.164.
    #[schema(example = "+74951230001")]
    called: String,
    /// The caller's number; absent or "anonymous" when withheld.
    #[schema(example = "+79161234567")]
    caller: Option<String>,
    #[schema(example = "2026-11-22T10:15:00Z")]
    started_at: String,
    answered_at: Option<String>,
    ended_at: Option<String>,
    status: CallStatus,
    /// Talk time, seconds.
    duration: Option<u32>,
    recording_url: Option<String>,
}

/// The webhook's settings.
pub struct Webhook {
    secrets: Vec<String>,
    twilio: Option<TwilioAuth>,
}

/// Reads a `[[pbx]]` of this kind.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    #[serde(default)]
    secrets: Vec<String>,
    twilio_auth_token: Option<String>,
    twilio_url: Option<String>,
}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("callpool")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawWebhook = f.parse()?;
        let (env_name, from_env) = f.owner_var(ENV_PBX_SECRET_PREFIX);
        let secrets: Vec<String> = match from_env {
            Some(s) => s.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            None => raw.secrets,
        };
        let twilio = match (raw.twilio_auth_token.filter(|t| !t.is_empty()), raw.twilio_url) {
            (Some(auth_token), Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
                Some(TwilioAuth { auth_token, url })
            }
            (Some(_), _) => {
                f.fail(
                    "twilio_url",
                    "give the webhook URL exactly as configured in Twilio (https://host/v1/pbx/calls?pbx=ID)",
                );
                None
            }
            (None, Some(_)) => {
                f.fail("twilio_auth_token", "twilio_url needs the account's auth token");
                None
            }
            (None, None) => None,
        };
        // Without a secret, the PBX's token (or its addresses) is the check: a dialplan's CURL().
        if secrets.is_empty() && twilio.is_none() && !f.is_guarded() {
            f.fail("secrets", format!("list at least one signing secret (or set {env_name}), or set token"));
        }
        if secrets.iter().any(|s| s.len() < 16) {
            f.fail("secrets", "each secret must be at least 16 characters");
        }
        let adapter: Box<dyn Adapter> = Box::new(Webhook { secrets, twilio });
        Some(Section::new("callpool", adapter))
    }
}

impl Adapter for Webhook {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let twilio_signed = req.headers.get(twilio::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        match (&self.twilio, twilio_signed) {
            (Some(auth), Some(sig)) => twilio::verify(&auth.url, req.body, &auth.auth_token, sig),
            // No secret: the PBX is held to its token or addresses, checked before this.
            _ if self.secrets.is_empty() && self.twilio.is_none() => Ok(()),
            _ => signature::verify(req.headers, req.body, &self.secrets, req.now),
        }
    }

    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal> {
        let report = if req.content_type().starts_with("application/x-www-form-urlencoded") {
            twilio::report(pbx, req.body, req.now)
        } else {
            json_report(pbx, req.body, req.now)
        };
        report.map(|r| Received::Reports(vec![r])).map_err(Refusal::Malformed)
    }

    fn recording<'a>(
        &'a self,
        http: &'a reqwest::Client,
        recording: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<reqwest::RequestBuilder, RecordingError>> {
        let request = match &self.twilio {
            Some(auth) => auth.fetch(http, recording),
            None => plain_get(http, recording),
        };
        Box::pin(std::future::ready(request))
    }
}

/// The JSON call report (all times RFC 3339, or Unix seconds), with errors that name the field.
fn json_report(pbx: &str, body: &[u8], now: Ts) -> Result<CallReport, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let text = |field: &str| -> Result<Option<String>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if field == "call_id" => Ok(Some(n.to_string())),
            Some(other) => Err(format!("{field}: expected a string, got {other}")),
        }
    };
    let required = |field: &str| text(field)?.ok_or_else(|| format!("{field}: required"));
    let time = |field: &str| -> Result<Option<Ts>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|s| (0..=32_503_680_000).contains(s))
                .map(|s| Some(Ts::from_millis(s * 1000)))
                .ok_or_else(|| format!("{field}: {n} is not Unix seconds")),
            Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(Ts::from_millis(t.timestamp_millis())))
                .map_err(|_| format!("{field}: {s:?} is not an RFC 3339 time such as 2026-11-22T10:15:00Z")),
            Some(other) => Err(format!("{field}: expected an RFC 3339 time or Unix seconds, got {other}")),
        }
    };
    let key = CallKey::new(pbx, &required("call_id")?).map_err(|e| format!("call_id: {e}"))?;
    let called = called_number("called", &required("called")?)?;
    let caller = text("caller")?.and_then(|c| Caller::parse(&c));
    let status_text = required("status")?;
    let status = serde_json::from_value::<CallStatus>(Value::String(status_text.clone())).map_err(|_| {
        format!("status: {status_text:?} is not one of ringing, answered, completed, missed, busy, failed")
    })?;
    let started_at = time("started_at")?.ok_or("started_at: required")?;
    let duration = match obj.get("duration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .filter(|d| *d <= LONGEST_CALL_S)
                .ok_or_else(|| format!("duration: {n} is not whole seconds between 0 and {LONGEST_CALL_S}"))?
                as u32,
        ),
        Some(other) => return Err(format!("duration: expected whole seconds, got {other}")),
    };
    let recording_url = text("recording_url")?.map(|u| recording_url("recording_url", &u)).transpose()?;
    not_in_future(started_at, now)?;
    Ok(CallReport {
        key,
        called,
        caller,
        started_at,
        answered_at: time("answered_at")?,
        ended_at: time("ended_at")?,
        status,
        duration,
        recording_url,
    })
}

/// The generic trigger's settings.
pub struct Generic {
    url: String,
    secret: String,
}

/// Reads `trigger = { kind = "generic", url, secret }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneric {
    url: Option<String>,
    secret: Option<String>,
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("generic")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawGeneric = f.parse()?;
        const WHY: &str = " for kind = \"generic\"";
        let url = f.required("url", raw.url, WHY).map(|u| f.base_url("url", u));
        let secret = f.required("secret", raw.secret, WHY).map(|s| f.secret("secret", s));
        let trigger = Generic { url: url?, secret: secret? };
        Some(super::adapter::trigger_section("generic", trigger))
    }
}

impl Trigger for Generic {
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, now: Ts) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(&json!({
            "callback_id": cb.id.as_str(),
            "call_id": ring.call_id,
            "site": cb.site.as_str(),
            "operator": ring.operator,
            "operators": ring.operators(),
            "ring_for_s": ring.ring_for.as_secs(),
            "number": cb.number.as_str(),
            "requested_at": cb.requested_at.to_chrono().map(|t| t.to_rfc3339()),
            "attempt": cb.attempts + 1,
        }))
        .expect("JSON values serialize");
        let t = now.as_millis().div_euclid(1000);
        http.post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature::sign(&self.secret, t, &body))
            .header("Idempotency-Key", ring.call_id)
            .body(body)
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        placed_with(status, body, "call_id")
    }

    /// The PBX behind the webhook is the user's own: it may ring every operator it is given.
    fn rings_all(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Ts = Ts::from_millis(1_800_000_000_000);

    fn check_json(body: &str, expected_error: &str) {
        let got = json_report("pbx", body.as_bytes(), NOW).map(|_| ()).unwrap_err();
        assert!(got.contains(expected_error), "{body}: {got:?} does not contain {expected_error:?}");
    }

    #[test]
    fn json_reports_are_read_with_errors_naming_the_field() {
        let ok = r#"{"call_id":"c1","called":"+7 (495) 123-00-01","caller":"anonymous","started_at":"2026-11-22T10:15:00+03:00","status":"completed","duration":63}"#;
        let r = json_report("pbx", ok.as_bytes(), NOW).unwrap();
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.caller, r.duration),
            ("pbx:c1", "+74951230001", None, Some(63))
        );
        assert_eq!(
            r.started_at,
            Ts::from_millis(chrono::DateTime::parse_from_rfc3339("2026-11-22T07:15:00Z").unwrap().timestamp_millis())
        );
        check_json("not json", "the body is not JSON");
        check_json("[]", "must be a JSON object");
        check_json(r#"{"called":"+74951230001","started_at":1,"status":"completed"}"#, "call_id: required");
        check_json(&ok.replace("+7 (495) 123-00-01", "84951230001"), "called: \"84951230001\" is not an E.164");
        check_json(&ok.replace("completed", "done"), "status: \"done\" is not one of");
        check_json(
            &ok.replace("2026-11-22T10:15:00+03:00", "yesterday"),
            "started_at: \"yesterday\" is not an RFC 3339",
        );
        check_json(&ok.replace("63", "-1"), "duration: -1 is not whole seconds");
        check_json(&ok.replace("\"duration\":63", "\"duration\":\"63\""), "duration: expected whole seconds");
        check_json(&ok.replace("\"c1\"", "\"c 1\""), "call_id: call_id must be");
        check_json(
            &ok.replace("2026-11-22T10:15:00+03:00", "2030-01-01T00:00:00Z"),
            "started_at: the call starts more than 5 minutes in the future",
        );
    }

    #[test]
    fn the_generic_triggers_answers_are_read() {
        let generic = Generic { url: "http://x".into(), secret: "s".repeat(16) };
        assert_eq!(generic.answer(reqwest::StatusCode::OK, ""), Answer::Placed { pbx_ref: None });
        assert_eq!(
            generic.answer(reqwest::StatusCode::OK, r#"{"call_id":"pbx-77"}"#),
            Answer::Placed { pbx_ref: Some("pbx-77".into()) }
        );
        assert!(matches!(generic.answer(reqwest::StatusCode::TOO_MANY_REQUESTS, ""), Answer::Again(_)));
        assert!(matches!(generic.answer(reqwest::StatusCode::FORBIDDEN, ""), Answer::Refused(_)));
    }
}
