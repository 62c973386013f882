//! `[[pbx]]`: each phone system allowed to post call webhooks. The fields every PBX has are read
//! here; the rest (secrets, tokens, ...) by its vendor's reader (`kind`, default "callpool").

use std::collections::BTreeMap;

use serde::Deserialize;

use super::env::Env;
use super::section::{Section, Slot};
use super::validate::Validator;

/// One PBX allowed to post call webhooks.
#[derive(Clone)]
pub struct PbxConfig {
    /// Named in the webhook URL (`?pbx=ID`) and prefixed to its call ids.
    pub id: String,
    /// Webhook posts allowed per second (a burst of the same size).
    pub requests_per_second: u32,
    /// A static token the PBX must send (`?token=` in the URL, or `Authorization: Bearer`), on top
    /// of whatever its vendor checks; `CALLPOOL_PBX_TOKEN_<ID>` overrides it.
    pub token: Option<String>,
    /// The client addresses (networks) the PBX posts from; empty: any. Read through
    /// `[server] trusted_proxies`, like every client address.
    pub allow_from: Vec<ipnet::IpNet>,
    /// Networks beyond the internet and the private ranges its recordings may be fetched from
    /// (loopback, link-local): none unless listed, so a recording link cannot reach the node's own
    /// services or a cloud's metadata address.
    pub recordings_from: Vec<ipnet::IpNet>,
    /// The vendor's webhook adapter, with its settings (its name is the `kind`).
    pub adapter: Section,
    /// A digest of the vendor's settings as read: a reload restarts a PBX's connection (the
    /// Asterisk AMI) only when it changed.
    pub settings_digest: u64,
}

impl std::fmt::Debug for PbxConfig {
    /// Without the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PbxConfig")
            .field("id", &self.id)
            .field("requests_per_second", &self.requests_per_second)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allow_from", &self.allow_from)
            .field("recordings_from", &self.recordings_from)
            .field("adapter", &self.adapter)
            .finish()
    }
}

#[derive(Deserialize)]
pub(super) struct RawPbx {
    pub id: String,
    kind: Option<String>,
    requests_per_second: Option<u32>,
    token: Option<String>,
    #[serde(default)]
    allow_from: Vec<String>,
    #[serde(default)]
    recordings_from: Vec<String>,
    /// The vendor's own fields.
    #[serde(flatten)]
    vendor: BTreeMap<String, toml::Value>,
}

impl Validator {
    pub(super) fn pbxs(&mut self, raw: Vec<RawPbx>, env: &dyn Env) -> Vec<PbxConfig> {
        let mut out: Vec<PbxConfig> = Vec::new();
        for (i, p) in raw.into_iter().enumerate() {
            let place = format!("[[pbx]] #{} ({:?})", i + 1, p.id);
            let at = |field: &str| format!("{place} {field}");
            let id_ok = !p.id.is_empty()
                && p.id.len() <= 32
                && p.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !id_ok {
                self.fail(&at("id"), "must be 1 to 32 characters of a-z, 0-9, '-' and '_'");
            } else if out.iter().any(|o| o.id == p.id) {
                self.fail(&at("id"), "another PBX has the same id");
            }
            let requests_per_second = p.requests_per_second.unwrap_or(1000);
            if requests_per_second == 0 {
                self.fail(&at("requests_per_second"), "must be at least 1");
            }
            let env_name =
                format!("{}{}", super::env::ENV_PBX_TOKEN_PREFIX, p.id.to_ascii_uppercase().replace('-', "_"));
            let token = env.var(&env_name).or(p.token);
            if token.as_ref().is_some_and(|t| t.len() < 16) {
                self.fail(&at("token"), "must be at least 16 characters");
            }
            let allow_from = self.networks(&at("allow_from"), &p.allow_from);
            let recordings_from = self.networks(&at("recordings_from"), &p.recordings_from);
            let kind = p.kind.unwrap_or_else(|| "callpool".into());
            let table: toml::Table = p.vendor.into_iter().collect();
            let settings_digest = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&kind, table.to_string()).hash(&mut h);
                h.finish()
            };
            let guarded = token.is_some() || !allow_from.is_empty();
            if let Some(adapter) =
                self.guarded_section(Slot::Pbx, &kind, place.clone(), &p.id, table.into(), env, guarded)
            {
                out.push(PbxConfig {
                    id: p.id,
                    requests_per_second,
                    token,
                    allow_from,
                    recordings_from,
                    adapter,
                    settings_digest,
                });
            }
        }
        out
    }
}
