//! `[[pbx]]`: each phone system allowed to post call webhooks. The fields every PBX has are read
//! here; the rest (secrets, tokens, ...) by its vendor's reader (`kind`, default "callpool").

use std::collections::BTreeMap;

use serde::Deserialize;

use super::env::Env;
use super::section::{Section, Slot};
use super::validate::Validator;

/// One PBX allowed to post call webhooks.
#[derive(Clone, Debug)]
pub struct PbxConfig {
    /// Named in the webhook URL (`?pbx=ID`) and prefixed to its call ids.
    pub id: String,
    /// Webhook posts allowed per second (a burst of the same size).
    pub requests_per_second: u32,
    /// The vendor's webhook adapter, with its settings (its name is the `kind`).
    pub adapter: Section,
}

#[derive(Deserialize)]
pub(super) struct RawPbx {
    pub id: String,
    kind: Option<String>,
    requests_per_second: Option<u32>,
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
            let kind = p.kind.unwrap_or_else(|| "callpool".into());
            let table: toml::Table = p.vendor.into_iter().collect();
            if let Some(adapter) = self.section(Slot::Pbx, &kind, place.clone(), &p.id, table.into(), env) {
                out.push(PbxConfig { id: p.id, requests_per_second, adapter });
            }
        }
        out
    }
}
