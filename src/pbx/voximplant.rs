//! VoxImplant. Trigger (`kind = "voximplant"`, `account_id`, `api_key`, `rule_id`, `url`): the
//! HTTP API's `StartScenarios` (a form POST to `<url>/platform_api/StartScenarios/`) with
//! `script_custom_data` = `<operator>:<visitor>:<callback id>`, the format of VoxImplant's own
//! callback scenario; the answer's `call_session_history_id` links the call reports, which the
//! scenario posts to callpool's own webhook (`callpool.rs`).

use callpool_pool::Ts;
use serde::Deserialize;
use serde_json::Value;

use super::adapter::{http_answer, json_text, Answer, Ring, Trigger};
use crate::callback::Callback;
use crate::config::{Fields, Place, Reader, Section};

/// The trigger's settings.
pub struct StartScenarios {
    base_url: String,
    account_id: String,
    api_key: String,
    rule_id: u64,
}

/// Reads `trigger = { kind = "voximplant", ... }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    url: Option<String>,
    account_id: Option<String>,
    api_key: Option<String>,
    rule_id: Option<u64>,
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("voximplant")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawTrigger = f.parse()?;
        const WHY: &str = " for kind = \"voximplant\"";
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| "https://api.voximplant.com".into()));
        let account_id = f.required("account_id", raw.account_id, WHY);
        let api_key = f.required("api_key", raw.api_key, WHY);
        if raw.rule_id.is_none() {
            f.fail("rule_id", "required for kind = \"voximplant\" (the rule that runs the scenario)");
        }
        let trigger = StartScenarios { base_url, account_id: account_id?, api_key: api_key?, rule_id: raw.rule_id? };
        Some(super::adapter::trigger_section("voximplant", trigger))
    }
}

impl Trigger for StartScenarios {
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, _now: Ts) -> reqwest::RequestBuilder {
        http.post(format!("{}/platform_api/StartScenarios/", self.base_url)).form(&[
            ("account_id", self.account_id.as_str()),
            ("api_key", self.api_key.as_str()),
            ("rule_id", self.rule_id.to_string().as_str()),
            ("script_custom_data", &format!("{}:{}:{}", ring.operators().join(","), cb.number, ring.call_id)),
        ])
    }

    /// The scenario is the user's own: it may ring every operator in the custom data at once.
    fn rings_all(&self) -> bool {
        true
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        if let Some(a) = http_answer(status, body) {
            return a;
        }
        let Ok(j) = serde_json::from_str::<Value>(body) else {
            return Answer::Again("VoxImplant answered something that is not JSON".into());
        };
        if let Some(err) = j.get("error") {
            let msg = err.get("msg").and_then(json_text).unwrap_or_default();
            let code = err.get("code").and_then(json_text).unwrap_or_default();
            return Answer::Refused(format!("VoxImplant refused StartScenarios: {code} {msg}"));
        }
        if j.get("result").and_then(Value::as_i64) != Some(1) {
            return Answer::Refused(format!("VoxImplant did not start the scenario: {j}"));
        }
        Answer::Placed { pbx_ref: j.get("call_session_history_id").and_then(json_text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        let vox =
            StartScenarios { base_url: "http://x".into(), account_id: "1".into(), api_key: "k".into(), rule_id: 2 };
        let ok = reqwest::StatusCode::OK;
        assert_eq!(
            vox.answer(ok, r#"{"result":1,"media_session_access_url":"u","call_session_history_id":777}"#),
            Answer::Placed { pbx_ref: Some("777".into()) }
        );
        assert!(matches!(vox.answer(ok, r#"{"error":{"msg":"Invalid rule","code":100}}"#), Answer::Refused(_)));
        assert!(matches!(vox.answer(reqwest::StatusCode::BAD_GATEWAY, ""), Answer::Again(_)));
    }
}
