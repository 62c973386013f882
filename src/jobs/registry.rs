//! Every destination callpool delivers to, and the planning of a record's jobs across them.

use super::{amocrm, bitrix24, call_webhook, digest, ga4, metrica, telegram, trigger, webhook, Event, Handler};
use crate::app::App;
use crate::store::jobs::{Planned, Records};

/// The destinations. A new one is its file in `src/jobs/` and its line here.
pub static HANDLERS: &[&dyn Handler] = &[
    &ga4::Ga4Calls,
    &metrica::Metrica,
    &trigger::Trigger,
    &ga4::Ga4Callbacks,
    &telegram::Telegram,
    &digest::Digests,
    &webhook::Webhook,
    &call_webhook::CallHooks,
    &call_webhook::CallbackHooks,
    &amocrm::AmoCrm,
    &bitrix24::Bitrix24Calls,
    &bitrix24::Bitrix24Callbacks,
];

/// The jobs every destination wants for `event`, to be written with its record.
pub fn plan(app: &App, event: Event<'_>) -> Vec<Planned> {
    HANDLERS.iter().flat_map(|h| h.plan(app, event)).collect()
}

/// Every kind of job, with the records it delivers.
pub fn kinds() -> impl Iterator<Item = (&'static str, Records)> {
    HANDLERS.iter().flat_map(|h| h.kinds().iter().map(move |k| (*k, h.records())))
}

/// [`kinds`], kept: for what must not name the registry (a report a delivery reads, through
/// its [`super::Ctx`]).
pub fn all_kinds() -> &'static [(&'static str, Records)] {
    static ALL: std::sync::LazyLock<Vec<(&'static str, Records)>> = std::sync::LazyLock::new(|| kinds().collect());
    &ALL
}

/// The kinds of job that deliver `records` (what forgetting a record forgets with it).
pub fn kinds_of(records: Records) -> Vec<&'static str> {
    kinds().filter(|(_, r)| *r == records).map(|(k, _)| k).collect()
}

/// The kinds of a call's jobs that go out at once when the call becomes final.
pub fn hurried_when_final() -> Vec<&'static str> {
    HANDLERS
        .iter()
        .filter(|h| h.records() == Records::Calls)
        .flat_map(|h| h.kinds().iter().copied().filter(|k| h.hurried_when_final(k)))
        .collect()
}

/// The handler of `kind`.
pub fn handler(kind: &str) -> Option<&'static dyn Handler> {
    HANDLERS.iter().copied().find(|h| h.kinds().contains(&kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_handler() {
        let all: Vec<&str> = kinds().map(|(k, _)| k).collect();
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(all.len(), unique.len(), "a kind named twice: {all:?}");
        for kind in all {
            assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{kind}");
        }
    }
}
