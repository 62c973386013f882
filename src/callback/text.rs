//! What the callback form says: built-in Russian and English texts, overridden per site, and the
//! time of a scheduled call in words ("tomorrow at 09:00") in the site's time zone. `{when}` in a
//! text is replaced by that time, `{number}` by the site's own number.

use std::collections::BTreeMap;

use callpool_pool::Ts;
use chrono::TimeZone;
use chrono_tz::Tz;

/// Every text key and its English and Russian defaults.
pub const DEFAULTS: &[(&str, &str, &str)] = &[
    ("button", "Call me back", "Перезвоните мне"),
    ("title", "We will call you back", "Мы вам перезвоним"),
    (
        "prompt",
        "Leave your number and we will call you within a minute.",
        "Оставьте номер — мы перезвоним в течение минуты.",
    ),
    ("label", "Your phone number", "Ваш номер телефона"),
    ("submit", "Call me", "Позвоните мне"),
    ("close", "Close", "Закрыть"),
    ("closed_now", "We are closed now; we will call you back {when}.", "Сейчас мы не работаем; перезвоним {when}."),
    ("scheduled", "Thank you! We will call you back {when}.", "Спасибо! Мы перезвоним {when}."),
    ("accepted", "Thank you! We are calling you now.", "Спасибо! Мы уже звоним."),
    ("retrying", "Our phone line is busy; we will try again {when}.", "Линия занята; попробуем ещё раз {when}."),
    ("calling", "Calling our operator…", "Соединяем с оператором…"),
    ("connected", "Connected: please pick up your phone.", "Соединено: возьмите трубку."),
    ("completed", "Thank you for talking to us!", "Спасибо за разговор!"),
    (
        "missed",
        "We could not reach you. Please try again or call us at {number}.",
        "Не удалось дозвониться. Попробуйте ещё раз или позвоните нам: {number}.",
    ),
    (
        "failed",
        "Sorry, we could not place the call. Please call us at {number}.",
        "Не удалось позвонить. Позвоните нам: {number}.",
    ),
    (
        "invalid",
        "Please enter a phone number we can call, with its area code.",
        "Введите номер телефона с кодом города или оператора.",
    ),
    (
        "not_callable",
        "We cannot call this kind of number; please enter a mobile or landline number.",
        "На такой номер мы не звоним; укажите мобильный или городской номер.",
    ),
    (
        "abroad",
        "We only call numbers in our own country; please enter a local number.",
        "Мы звоним только на номера нашей страны; укажите местный номер.",
    ),
    ("blocked", "We cannot call this number back.", "На этот номер мы перезвонить не можем."),
    (
        "too_soon",
        "Please look around a little longer before asking for a call.",
        "Пожалуйста, побудьте на сайте ещё немного.",
    ),
    ("limited", "Too many requests; please try again later.", "Слишком много запросов; попробуйте позже."),
];

/// A site's texts: its language's defaults with its own overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Texts {
    pub lang: Lang,
    map: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Texts {
    /// The defaults of `lang` with `overrides`; an unknown key is an error naming it.
    pub fn new(lang: Lang, overrides: &BTreeMap<String, String>) -> Result<Texts, String> {
        let mut map: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, en, ru)| ((*k).to_owned(), (if lang == Lang::Ru { *ru } else { *en }).to_owned()))
            .collect();
        for (k, v) in overrides {
            if !map.contains_key(k) {
                let keys: Vec<&str> = DEFAULTS.iter().map(|d| d.0).collect();
                return Err(format!("{k:?} is not a text key (keys: {})", keys.join(", ")));
            }
            map.insert(k.clone(), v.clone());
        }
        Ok(Texts { lang, map })
    }

    pub fn get(&self, key: &str) -> &str {
        self.map.get(key).map_or("", String::as_str)
    }

    /// The texts the form shows before a request (sent to the snippet); `failed` is what it
    /// says when it cannot reach callpool, with the site's `number`.
    pub fn form(&self, number: &str) -> BTreeMap<String, String> {
        ["button", "title", "prompt", "label", "submit", "close", "failed"]
            .iter()
            .map(|k| ((*k).to_owned(), self.get(k).replace("{number}", number)))
            .collect()
    }

    /// `key`'s text with `{when}` (the time `at`, in words, seen from `now` in `tz`) and `{number}`.
    pub fn render(&self, key: &str, at: Option<Ts>, now: Ts, tz: Tz, number: &str) -> String {
        let mut s = self.get(key).replace("{number}", number);
        if s.contains("{when}") {
            s = s.replace("{when}", &at.map_or_else(String::new, |at| self.when(at, now, tz)));
        }
        s
    }

    /// "in 5 minutes", "today at 15:00", "tomorrow at 09:00", "on Mon 24 Nov at 09:00".
    pub fn when(&self, at: Ts, now: Ts, tz: Tz) -> String {
        let local = |t: Ts| tz.timestamp_millis_opt(t.as_millis()).single();
        let (Some(a), Some(n)) = (local(at), local(now)) else { return String::new() };
        let ru = self.lang == Lang::Ru;
        let mins = (at.as_millis() - now.as_millis()).div_euclid(60_000);
        if mins < 1 {
            return (if ru { "в течение минуты" } else { "within a minute" }).to_owned();
        }
        if mins < 60 {
            let mins = mins.unsigned_abs();
            return if ru {
                format!("через {}", minutes(Lang::Ru, mins))
            } else {
                format!("in {}", minutes(Lang::En, mins))
            };
        }
        let time = a.format("%H:%M");
        let days = (a.date_naive() - n.date_naive()).num_days();
        match (days, ru) {
            (0, false) => format!("today at {time}"),
            (0, true) => format!("сегодня в {time}"),
            (1, false) => format!("tomorrow at {time}"),
            (1, true) => format!("завтра в {time}"),
            (_, false) => format!("on {} at {time}", a.format("%a %-d %b")),
            (_, true) => {
                const MONTHS: [&str; 12] = [
                    "января",
                    "февраля",
                    "марта",
                    "апреля",
                    "мая",
                    "июня",
                    "июля",
                    "августа",
                    "сентября",
                    "октября",
                    "ноября",
                    "декабря",
                ];
                use chrono::Datelike;
                format!("{} {} в {time}", a.day(), MONTHS[a.month0() as usize])
            }
        }
    }
}

/// CLDR's plural categories of whole numbers that English and Russian use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plural {
    One,
    Few,
    Many,
    Other,
}

/// The plural category of `n` in `lang` (CLDR's rules for integers): English `one` for 1, else
/// `other`; Russian `one` for 1, 21, 31, ... (not 11), `few` for 2–4, 22–24, ... (not 12–14), `many`
/// for the rest.
pub fn plural(lang: Lang, n: u64) -> Plural {
    match lang {
        Lang::En if n == 1 => Plural::One,
        Lang::En => Plural::Other,
        Lang::Ru => match (n % 10, n % 100) {
            (1, r) if r != 11 => Plural::One,
            (2..=4, r) if !(12..=14).contains(&r) => Plural::Few,
            _ => Plural::Many,
        },
    }
}

/// `n` with its word in the right form: `forms` are English's one and other, or Russian's one,
/// few and many.
pub fn count(lang: Lang, n: u64, en: [&str; 2], ru: [&str; 3]) -> String {
    let word = match plural(lang, n) {
        Plural::One if lang == Lang::En => en[0],
        Plural::One => ru[0],
        Plural::Few => ru[1],
        Plural::Many => ru[2],
        Plural::Other => en[1],
    };
    format!("{n} {word}")
}

/// "5 minutes", "5 минут" (Russian in the accusative, as after «через»: 1 минуту, 2 минуты).
pub fn minutes(lang: Lang, n: u64) -> String {
    count(lang, n, ["minute", "minutes"], ["минуту", "минуты", "минут"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Ts {
        Ts::from_millis(chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis())
    }

    #[test]
    fn times_are_told_in_the_sites_zone_and_language() {
        let en = Texts::new(Lang::En, &BTreeMap::new()).unwrap();
        let ru = Texts::new(Lang::Ru, &BTreeMap::new()).unwrap();
        let tz: Tz = "Europe/Moscow".parse().unwrap();
        // Friday 21:30 in Moscow.
        let now = ts("2026-11-20T18:30:00Z");
        assert_eq!(en.when(ts("2026-11-21T06:00:00Z"), now, tz), "tomorrow at 09:00");
        assert_eq!(ru.when(ts("2026-11-21T06:00:00Z"), now, tz), "завтра в 09:00");
        assert_eq!(en.when(ts("2026-11-23T06:00:00Z"), now, tz), "on Mon 23 Nov at 09:00");
        assert_eq!(ru.when(ts("2026-11-23T06:00:00Z"), now, tz), "23 ноября в 09:00");
        assert_eq!(en.when(ts("2026-11-20T18:50:00Z"), now, tz), "in 20 minutes");
        assert_eq!(en.when(ts("2026-11-20T20:00:00Z"), now, tz), "today at 23:00");
        assert_eq!(
            en.render("scheduled", Some(ts("2026-11-21T06:00:00Z")), now, tz, "+74951234567"),
            "Thank you! We will call you back tomorrow at 09:00."
        );
    }

    #[test]
    fn sites_override_texts_and_unknown_keys_are_named() {
        let mut o = BTreeMap::new();
        o.insert("button".to_owned(), "Ring me".to_owned());
        assert_eq!(Texts::new(Lang::En, &o).unwrap().get("button"), "Ring me");
        o.insert("buton".to_owned(), "x".to_owned());
        assert!(Texts::new(Lang::En, &o).unwrap_err().contains("\"buton\""));
    }

    /// Every text with a number follows the language's plural rules.
    #[test]
    fn counts_follow_each_languages_plural_rules() {
        let cases = [
            (1, "1 minute", "1 минуту"),
            (2, "2 minutes", "2 минуты"),
            (5, "5 minutes", "5 минут"),
            (11, "11 minutes", "11 минут"),
            (12, "12 minutes", "12 минут"),
            (21, "21 minutes", "21 минуту"),
            (22, "22 minutes", "22 минуты"),
            (25, "25 minutes", "25 минут"),
            (111, "111 minutes", "111 минут"),
        ];
        for (n, en, ru) in cases {
            assert_eq!((minutes(Lang::En, n).as_str(), minutes(Lang::Ru, n).as_str()), (en, ru), "{n}");
        }
        let en = Texts::new(Lang::En, &BTreeMap::new()).unwrap();
        let ru = Texts::new(Lang::Ru, &BTreeMap::new()).unwrap();
        let tz: Tz = "Europe/Moscow".parse().unwrap();
        let now = ts("2026-11-20T18:30:00Z");
        for (mins, en_text, ru_text) in [
            (1, "in 1 minute", "через 1 минуту"),
            (2, "in 2 minutes", "через 2 минуты"),
            (5, "in 5 minutes", "через 5 минут"),
            (11, "in 11 minutes", "через 11 минут"),
            (21, "in 21 minutes", "через 21 минуту"),
            (22, "in 22 minutes", "через 22 минуты"),
        ] {
            let at = now.plus(std::time::Duration::from_secs(mins * 60));
            assert_eq!(
                en.render("retrying", Some(at), now, tz, ""),
                format!("Our phone line is busy; we will try again {en_text}.")
            );
            assert_eq!(ru.render("scheduled", Some(at), now, tz, ""), format!("Спасибо! Мы перезвоним {ru_text}."));
        }
    }
}
