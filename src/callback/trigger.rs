//! The three ways callpool asks a PBX to place a callback (operator first, then the visitor),
//! as request builders and answer readers. The worker sends them; docs/PROTOCOL.md describes
//! each on the wire.
//!
//! - generic: `POST <url>` with JSON, signed like the inbound webhook (`Callpool-Signature:
//!   t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`) and `Idempotency-Key: <callback id>`; the
//!   PBX reports the call's outcome under `call_id` = the callback id (or under its own id, if it
//!   answers `{"call_id": "..."}`).
//! - voximplant: the HTTP API's `StartScenarios` (form: `account_id`, `api_key`, `rule_id`,
//!   `script_custom_data` = `<operator>:<visitor>:<callback id>`, the format of VoxImplant's own
//!   callback scenario); the answer's `call_session_history_id` links the call reports.
//! - twilio: create-call (`To` = operator, `From`, `Twiml` that dials the visitor,
//!   `StatusCallback` = callpool's call webhook); the answer's `sid` links the status callbacks.

use callpool_pool::Ts;
use serde_json::{json, Value};

use super::Callback;
use crate::config::TriggerConfig;

/// What the PBX answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted; the PBX's own id for the call, if it gave one.
    Placed { pbx_ref: Option<String> },
    /// Worth trying again (timeouts, 5xx, 429).
    Again(String),
    /// Refused for good (4xx, or an error in the answer).
    Refused(String),
}

/// Builds the trigger request for `cb`.
pub fn request(
    client: &reqwest::Client,
    trigger: &TriggerConfig,
    operator: &callpool_pool::PhoneNumber,
    cb: &Callback,
    now: Ts,
) -> reqwest::RequestBuilder {
    match trigger {
        TriggerConfig::Generic { url, secret } => {
            let body = serde_json::to_vec(&json!({
                "callback_id": cb.id.as_str(),
                "call_id": cb.id.as_str(),
                "site": cb.site.as_str(),
                "operator": operator.as_str(),
                "number": cb.number.as_str(),
                "requested_at": cb.requested_at.to_chrono().map(|t| t.to_rfc3339()),
                "attempt": cb.attempts + 1,
            }))
            .expect("JSON values serialize");
            let t = now.as_millis().div_euclid(1000);
            client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(crate::pbx::SIGNATURE_HEADER, crate::pbx::sign(secret, t, &body))
                .header("Idempotency-Key", cb.id.as_str())
                .body(body)
        }
        TriggerConfig::VoxImplant { base_url, account_id, api_key, rule_id } => {
            client.post(format!("{base_url}/platform_api/StartScenarios/")).form(&[
                ("account_id", account_id.as_str()),
                ("api_key", api_key.as_str()),
                ("rule_id", rule_id.to_string().as_str()),
                ("script_custom_data", &format!("{}:{}:{}", operator, cb.number, cb.id)),
            ])
        }
        TriggerConfig::Twilio { base_url, account_sid, auth_token, from, status_url } => {
            let twiml = format!(
                "<Response><Dial callerId=\"{from}\" timeout=\"30\"><Number>{}</Number></Dial></Response>",
                cb.number
            );
            client
                .post(format!("{base_url}/2010-04-01/Accounts/{account_sid}/Calls.json"))
                .basic_auth(account_sid, Some(auth_token))
                .form(&[
                    ("To", operator.as_str()),
                    ("From", from.as_str()),
                    ("Twiml", twiml.as_str()),
                    ("StatusCallback", status_url.as_str()),
                    ("StatusCallbackMethod", "POST"),
                    ("StatusCallbackEvent", "initiated"),
                    ("StatusCallbackEvent", "ringing"),
                    ("StatusCallbackEvent", "answered"),
                    ("StatusCallbackEvent", "completed"),
                ])
        }
    }
}

/// Reads the PBX's answer (status and body).
pub fn answer(trigger: &TriggerConfig, status: reqwest::StatusCode, body: &str) -> Answer {
    let code = status.as_u16();
    if status.is_server_error() || code == 429 {
        return Answer::Again(format!("the PBX answered HTTP {status}"));
    }
    let json: Option<Value> = serde_json::from_str(body).ok();
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if !status.is_success() {
        let detail = json.as_ref().and_then(|j| j.get("message").and_then(text)).unwrap_or_default();
        return Answer::Refused(format!("the PBX refused the request: HTTP {status} {detail}").trim_end().to_owned());
    }
    match trigger {
        TriggerConfig::Generic { .. } => {
            Answer::Placed { pbx_ref: json.as_ref().and_then(|j| j.get("call_id").and_then(text)) }
        }
        TriggerConfig::VoxImplant { .. } => {
            let Some(j) = json else { return Answer::Again("VoxImplant answered something that is not JSON".into()) };
            if let Some(err) = j.get("error") {
                let msg = err.get("msg").and_then(text).unwrap_or_default();
                let code = err.get("code").and_then(text).unwrap_or_default();
                return Answer::Refused(format!("VoxImplant refused StartScenarios: {code} {msg}"));
            }
            if j.get("result").and_then(Value::as_i64) != Some(1) {
                return Answer::Refused(format!("VoxImplant did not start the scenario: {j}"));
            }
            Answer::Placed { pbx_ref: j.get("call_session_history_id").and_then(text) }
        }
        TriggerConfig::Twilio { .. } => {
            Answer::Placed { pbx_ref: json.as_ref().and_then(|j| j.get("sid").and_then(text)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vox() -> TriggerConfig {
        TriggerConfig::VoxImplant {
            base_url: "http://x".into(),
            account_id: "1".into(),
            api_key: "k".into(),
            rule_id: 2,
        }
    }

    #[test]
    fn answers_are_read_per_adapter() {
        let ok = reqwest::StatusCode::OK;
        assert_eq!(
            answer(&vox(), ok, r#"{"result":1,"media_session_access_url":"u","call_session_history_id":777}"#),
            Answer::Placed { pbx_ref: Some("777".into()) }
        );
        assert!(matches!(answer(&vox(), ok, r#"{"error":{"msg":"Invalid rule","code":100}}"#), Answer::Refused(_)));
        assert!(matches!(answer(&vox(), reqwest::StatusCode::BAD_GATEWAY, ""), Answer::Again(_)));
        let generic = TriggerConfig::Generic { url: "http://x".into(), secret: "s".repeat(16) };
        assert_eq!(answer(&generic, ok, ""), Answer::Placed { pbx_ref: None });
        assert!(matches!(answer(&generic, reqwest::StatusCode::TOO_MANY_REQUESTS, ""), Answer::Again(_)));
        assert!(matches!(answer(&generic, reqwest::StatusCode::FORBIDDEN, ""), Answer::Refused(_)));
    }
}
