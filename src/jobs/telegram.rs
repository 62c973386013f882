//! The team's Telegram chat (Bot API `sendMessage`): each callback request (kind `tg_request`)
//! and each missed callback (kind `tg_missed`) of a site whose form has `[site.callback.telegram]`.

use callpool_pool::Ts;
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::{http_outcome, no_answer, plan_notice, skipped, Ctx, Event, Handler, Outcome};
use crate::app::App;
use crate::callback::{Callback, CallbackStatus};
use crate::config::{Fields, Place, Reader, Section, SiteConfig, TelegramChat};
use crate::store::jobs::{Claimed, Planned, Record, Records};

pub struct Telegram;

/// Reads `[site.callback.telegram]`.
pub struct CallbackReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegram {
    base_url: Option<String>,
    bot_token: String,
    chat_id: String,
}

impl Reader for CallbackReader {
    fn place(&self) -> Place {
        Place::Callback("telegram")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let tg: RawTelegram = f.parse()?;
        let base_url = f.base_url("base_url", tg.base_url.unwrap_or_else(|| "https://api.telegram.org".into()));
        if tg.bot_token.is_empty() || tg.chat_id.is_empty() {
            f.fail("", "bot_token and chat_id are required");
        }
        Some(Section::new("telegram", TelegramChat { base_url, bot_token: tg.bot_token, chat_id: tg.chat_id }))
    }
}

/// The site's team chat, if its callback form has one (`[site.callback.telegram]`).
fn chat(site: &SiteConfig) -> Option<&TelegramChat> {
    site.callback.as_ref()?.sections.get::<TelegramChat>("telegram")
}

const REQUEST: &str = "tg_request";
const MISSED: &str = "tg_missed";

impl Handler for Telegram {
    fn kinds(&self) -> &'static [&'static str] {
        &[REQUEST, MISSED]
    }

    fn records(&self) -> Records {
        Records::Callbacks
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&CallbackReader)
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        plan_notice(event, [REQUEST, MISSED], |s| chat(s).is_some())
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(move |job| async move {
            let Record::Callback(cb) = &job.record else { return skipped("not a callback") };
            let app = ctx.app;
            let Some(tg) = ctx.config.site(&cb.site).and_then(chat) else {
                return skipped("no longer configured for the site");
            };
            send(ctx, tg, &team_text(app, cb, kind == MISSED)).await
        }))
        .boxed()
    }
}

/// Telegram's longest message.
const MAX_CHARS: usize = 4096;

/// Sends `text` (plain, cut to Telegram's longest message) to `chat`.
pub async fn send(ctx: &Ctx<'_>, chat: &TelegramChat, text: &str) -> Outcome {
    let text: String = text.chars().take(MAX_CHARS).collect();
    let sent = ctx
        .http
        .post(format!("{}/bot{}/sendMessage", chat.base_url, chat.bot_token))
        .json(&json!({ "chat_id": chat.chat_id, "text": text, "disable_web_page_preview": true }))
        .send()
        .await;
    match sent {
        Ok(resp) => http_outcome(resp.status(), "Telegram", ctx.app.clock.now()),
        Err(e) => no_answer("Telegram", &e),
    }
}

/// What the team's chat reads, in the form's language: the number in full (it is the team's own
/// lead), the status, the source, the page.
fn team_text(app: &App, cb: &Callback, missed: bool) -> String {
    team_text_of(app.config().site(&cb.site), cb, missed)
}

fn team_text_of(site: Option<&SiteConfig>, cb: &Callback, missed: bool) -> String {
    let tz = site.map_or(chrono_tz::UTC, |s| s.timezone);
    let ru = site.and_then(|s| s.callback.as_ref()).is_some_and(|c| c.texts.lang == crate::callback::text::Lang::Ru);
    let say = |en: &'static str, ru_text: &'static str| if ru { ru_text } else { en };
    let local = |t: Ts| {
        use chrono::TimeZone;
        tz.timestamp_millis_opt(t.as_millis())
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let mut lines = vec![
        if missed {
            format!("{} {}", say("Missed callback on", "Пропущенный обратный звонок:"), cb.site)
        } else {
            format!("{} {}", say("Callback request on", "Заявка на обратный звонок:"), cb.site)
        },
        format!("{} {}", say("Number:", "Номер:"), cb.number),
        format!("{} {} ({tz})", say("Requested:", "Заявка:"), local(cb.requested_at)),
    ];
    if missed {
        let status = if ru {
            match cb.status {
                CallbackStatus::Scheduled => "запланирован",
                CallbackStatus::Accepted => "принят",
                CallbackStatus::Retrying => "повтор",
                CallbackStatus::Calling => "звоним",
                CallbackStatus::Connected => "соединено",
                CallbackStatus::Completed => "завершён",
                CallbackStatus::Missed => "не дозвонились",
                CallbackStatus::Failed => "не удалось позвонить",
            }
        } else {
            cb.status.as_str()
        };
        lines.push(format!("{} {status}", say("Status:", "Статус:")));
        if let Some(e) = &cb.error {
            lines.push(format!("{} {e}", say("Why:", "Причина:")));
        }
    } else if cb.status == CallbackStatus::Scheduled {
        lines.push(format!("{} {}", say("Scheduled for:", "Запланирован на:"), local(cb.due_at)));
    }
    let a = &cb.attrs;
    let source = [a.utm_source.as_deref(), a.utm_medium.as_deref(), a.utm_campaign.as_deref()]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
    if !source.is_empty() {
        lines.push(format!("{} {source}", say("Source:", "Источник:")));
    } else if let Some(r) = &a.referrer {
        lines.push(format!("{} {r}", say("Referrer:", "Откуда:")));
    }
    if let Some(p) = &a.landing_page {
        lines.push(format!("{} {p}", say("Page:", "Страница:")));
    }
    lines.push(format!("Id: {}", cb.id));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The team reads its message in the form's language.
    #[test]
    fn the_teams_message_is_in_the_forms_language() {
        let text = |language: &str| {
            let config = crate::config::Config::parse(
                &format!(
                    r#"
[[pbx]]
id = "office"
secrets = ["office-secret-0123456789"]

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
timezone = "Europe/Moscow"
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]

[site.callback]
language = "{language}"
operator = "+74951230099"
trigger = {{ kind = "generic", url = "https://pbx.example/cb", secret = "trigger-secret-0123456789" }}
"#
                ),
                "test.toml",
                &std::collections::HashMap::new(),
            )
            .unwrap();
            let mut cb = crate::callback::example("+79161234567", Ts::from_millis(1_767_225_600_000));
            cb.status = CallbackStatus::Missed;
            team_text_of(config.site(&cb.site), &cb, true)
        };
        let ru = text("ru");
        assert!(
            ru.starts_with("Пропущенный обратный звонок: shop\nНомер: +79161234567\nЗаявка: 2026-01-01 03:00"),
            "{ru}"
        );
        assert!(ru.contains("Статус: не дозвонились"), "{ru}");
        let en = text("en");
        assert!(en.starts_with("Missed callback on shop\nNumber: +79161234567"), "{en}");
        assert!(en.contains("Status: missed"), "{en}");
    }
}
