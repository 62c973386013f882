//! `[[pbx]]`: each phone system allowed to post call webhooks, with its signing secrets.

use std::fmt;

use serde::Deserialize;

use super::env::*;
use super::validate::Validator;
use super::Env;

/// One PBX allowed to post call webhooks.
#[derive(Clone, PartialEq, Eq)]
pub struct PbxConfig {
    /// Named in the webhook URL (`?pbx=ID`) and prefixed to its call ids.
    pub id: String,
    /// Signing secrets; more than one while rotating.
    pub secrets: Vec<String>,
    /// Webhook posts allowed per second (a burst of the same size).
    pub requests_per_second: u32,
    /// A real Twilio account: its auth token checks `X-Twilio-Signature`, computed by Twilio over
    /// `twilio_url` (the webhook URL exactly as configured in Twilio) and the form fields.
    pub twilio: Option<TwilioAuth>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct TwilioAuth {
    pub auth_token: String,
    pub url: String,
}

impl fmt::Debug for PbxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PbxConfig")
            .field("id", &self.id)
            .field("secrets", &format!("{} hidden", self.secrets.len()))
            .field("requests_per_second", &self.requests_per_second)
            .field("twilio", &self.twilio.as_ref().map(|t| t.url.as_str()))
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPbx {
    id: String,
    #[serde(default)]
    secrets: Vec<String>,
    requests_per_second: Option<u32>,
    twilio_auth_token: Option<String>,
    twilio_url: Option<String>,
}

impl Validator {
    pub(super) fn pbxs(&mut self, raw: Vec<RawPbx>, env: &dyn Env) -> Vec<PbxConfig> {
        let mut out: Vec<PbxConfig> = Vec::new();
        for (i, p) in raw.into_iter().enumerate() {
            let at = |field: &str| format!("[[pbx]] #{} ({:?}) {field}", i + 1, p.id);
            let id_ok = !p.id.is_empty()
                && p.id.len() <= 32
                && p.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !id_ok {
                self.fail(&at("id"), "must be 1 to 32 characters of a-z, 0-9, '-' and '_'");
            } else if out.iter().any(|o| o.id == p.id) {
                self.fail(&at("id"), "another PBX has the same id");
            }
            let env_name = format!("{ENV_PBX_SECRET_PREFIX}{}", p.id.to_ascii_uppercase().replace('-', "_"));
            let secrets = match env.var(&env_name) {
                Some(s) => s.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
                None => p.secrets,
            };
            let twilio = match (p.twilio_auth_token.filter(|t| !t.is_empty()), p.twilio_url) {
                (Some(auth_token), Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
                    Some(TwilioAuth { auth_token, url })
                }
                (Some(_), _) => {
                    self.fail(
                        &at("twilio_url"),
                        "give the webhook URL exactly as configured in Twilio (https://host/v1/pbx/calls?pbx=ID)",
                    );
                    None
                }
                (None, Some(_)) => {
                    self.fail(&at("twilio_auth_token"), "twilio_url needs the account's auth token");
                    None
                }
                (None, None) => None,
            };
            if secrets.is_empty() && twilio.is_none() {
                self.fail(&at("secrets"), format!("list at least one signing secret (or set {env_name})"));
            }
            if secrets.iter().any(|s| s.len() < 16) {
                self.fail(&at("secrets"), "each secret must be at least 16 characters");
            }
            let requests_per_second = p.requests_per_second.unwrap_or(1000);
            if requests_per_second == 0 {
                self.fail(&at("requests_per_second"), "must be at least 1");
            }
            out.push(PbxConfig { id: p.id, secrets, requests_per_second, twilio });
        }
        out
    }
}
