//! The environment variables that override the configuration file (secrets and URLs), read
//! through [`Env`] so tests never touch the process environment. Nothing else reads it.

use std::collections::HashMap;

pub const ENV_LISTEN: &str = "CALLPOOL_LISTEN";
pub const ENV_ADMIN_TOKEN: &str = "CALLPOOL_ADMIN_TOKEN";
pub const ENV_METRICS_TOKEN: &str = "CALLPOOL_METRICS_TOKEN";
pub const ENV_STORE: &str = "CALLPOOL_STORE";
pub const ENV_DATA_DIR: &str = "CALLPOOL_DATA_DIR";
pub const ENV_REDIS_URL: &str = "CALLPOOL_REDIS_URL";
pub const ENV_REDIS_PREFIX: &str = "CALLPOOL_REDIS_PREFIX";
pub const ENV_BUS: &str = "CALLPOOL_BUS";
pub const ENV_AMQP_URL: &str = "CALLPOOL_AMQP_URL";
pub const ENV_NODE_ID: &str = "CALLPOOL_NODE_ID";
/// `CALLPOOL_PBX_SECRET_<PBX ID>` (upper case, '-' as '_'): that PBX's signing secret.
pub const ENV_PBX_SECRET_PREFIX: &str = "CALLPOOL_PBX_SECRET_";
/// `CALLPOOL_PBX_TOKEN_<PBX ID>`: that PBX's static `token`.
pub const ENV_PBX_TOKEN_PREFIX: &str = "CALLPOOL_PBX_TOKEN_";
/// `CALLPOOL_TRIGGER_SECRET_<SITE ID>` (upper case, '-' as '_'): that site's callback trigger's
/// secret (a vendor's API secret or salt).
pub const ENV_TRIGGER_SECRET_PREFIX: &str = "CALLPOOL_TRIGGER_SECRET_";
/// `CALLPOOL_AMOCRM_TOKEN_<SITE ID>` (upper case, '-' as '_'): that site's amoCRM token.
pub const ENV_AMOCRM_TOKEN_PREFIX: &str = "CALLPOOL_AMOCRM_TOKEN_";
/// `CALLPOOL_BITRIX24_TOKEN_<SITE ID>`: the code of that site's Bitrix24 inbound webhook.
pub const ENV_BITRIX24_TOKEN_PREFIX: &str = "CALLPOOL_BITRIX24_TOKEN_";
pub const ENV_GA4_BASE_URL: &str = "CALLPOOL_GA4_BASE_URL";
pub const ENV_YANDEX_BASE_URL: &str = "CALLPOOL_YANDEX_BASE_URL";

/// Where configuration values from the environment come from; tests pass a map.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}
