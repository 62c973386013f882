//! The report pages' words in Russian and English (all of them here, one table per language),
//! the reader's language (`?lang=`, else the browser's `Accept-Language`, else the site's
//! `language`), and numbers written the language's way.

pub use crate::callback::text::Lang;

/// Every text of the pages, in one language.
pub struct Words {
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub sources_title: &'static str,
    pub period: &'static str,
    pub by: &'static str,
    pub dimensions: [&'static str; 5],
    pub columns: [&'static str; 9],
    pub not_set: &'static str,
    pub total: &'static str,
    pub unattributed: &'static str,
    pub unattributed_note: &'static str,
    pub truncated: &'static str,
    pub no_data: &'static str,
    pub chart_label: &'static str,
    pub download_csv: &'static str,
    pub download_xlsx: &'static str,
    pub calls_of_row: &'static str,
    pub overview: &'static str,
    pub visits_note: &'static str,
    pub sources_link: &'static str,
    pub calls_title: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub any: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub apply: &'static str,
    /// Filters: source, match, answered, first-time caller.
    pub filters: [&'static str; 4],
    /// The calls table: started, number, caller, how matched, source / medium / campaign, status,
    /// talk (s), recording.
    pub call_columns: [&'static str; 8],
    pub no_calls: &'static str,
    /// Match kinds in `MatchKind::ALL`'s order.
    pub match_kinds: [&'static str; 8],
    /// Statuses: ringing, answered, completed, missed, busy, failed.
    pub statuses: [&'static str; 6],
    pub hidden: &'static str,
    pub truncated_calls: &'static str,
    pub all_sites: &'static str,
    /// Site, calls, share attributed, untracked, numbers (peak / of), pool ran out, last call,
    /// deliveries given up, needs attention.
    pub site_columns: [&'static str; 9],
    /// deliveries_failing, pool_exhausted, silent.
    pub attention: [&'static str; 3],
    pub nothing: &'static str,
    /// The site's page.
    pub site_title: &'static str,
    /// "{total} calls, {tracked} attributed to a visit: {share}."
    pub total_line: &'static str,
    pub chart_by_kind: &'static str,
    pub untracked_title: &'static str,
    /// No untracked calls; more before (`{before}`, `{after}`, `{delay}`); more after (`{idle}`);
    /// balanced.
    pub hints: [&'static str; 4],
    pub pool_title: &'static str,
    /// `{working}`, `{max}`, `{leased}`, `{exhausted}`.
    pub pool_line: &'static str,
    pub unknown: &'static str,
    pub advice_title: &'static str,
    pub advice_link: &'static str,
    pub advice_busy: &'static str,
    pub latest_title: &'static str,
    pub none_in_period: &'static str,
    pub callbacks_title: &'static str,
    /// Requested, number, source, status, operators rung, answered by.
    pub callback_columns: [&'static str; 6],
    /// In `CallbackStatus`'s order: scheduled, accepted, retrying, calling, connected, completed,
    /// missed, failed.
    pub callback_statuses: [&'static str; 8],
    pub by_day_title: &'static str,
    /// Date, total, then the match kinds of the chart, tracked share, peak leased, pool ran out.
    pub day_columns: [&'static str; 13],
    pub all_calls_link: &'static str,
    /// The advice: the pool is right (`{now}`), a better size (`{best}`, `{now}`), simulated on
    /// (`{visits}`, `{calls}`), not yet (`{why}`), failed.
    pub advice_texts: [&'static str; 5],
    /// A pool size: `{numbers}`, `{cost}` (may be empty), `{accuracy}`, `{wrong}`.
    pub sized: &'static str,
    /// `{amount}` `{currency}` a month, after the numbers.
    pub per_month: &'static str,
    /// A callback's call: `{requested}`, `{status}`, `{rung}`, `{answered}`.
    pub callback_story: &'static str,
    /// The digest's subject: `{site}`, `{from}`, `{to}`, `{total}`, `{share}`.
    pub digest_subject: &'static str,
    /// The digest's title: `{site}`, `{from}`, `{to}`.
    pub digest_title: &'static str,
    /// Its sections: the top sources, what needs attention, the link, the attachment.
    pub digest_sources: &'static str,
    pub digest_attention: &'static str,
    pub digest_all_well: &'static str,
    pub digest_link: &'static str,
    pub digest_attached: &'static str,
    /// More sources than the digest lists: `{n}`.
    pub digest_more: &'static str,
}

pub const EN: Words = Words {
    lang: "en",
    other_lang: "ru",
    other_lang_name: "Русский",
    sources_title: "Where the calls came from",
    period: "Period",
    by: "By",
    dimensions: ["source", "medium", "campaign", "keyword", "landing page"],
    columns: [
        "",
        "visits",
        "calls",
        "visits that called",
        "call rate",
        "answered",
        "missed",
        "first-time callers",
        "repeat callers",
    ],
    not_set: "(not set)",
    total: "Total",
    unattributed: "Calls not attributed to a visit",
    unattributed_note: "calls to the site's default, static or unmatched numbers",
    truncated: "The period holds more records than one report reads: narrow it.",
    no_data: "No visits or calls in this period.",
    chart_label: "Calls by",
    download_csv: "Download CSV",
    download_xlsx: "Download XLSX",
    calls_of_row: "calls",
    overview: "Overview",
    visits_note: "A visit counts once its last tab has closed.",
    sources_link: "Where the calls came from",
    calls_title: "Calls",
    from: "from",
    to: "to",
    any: "any",
    yes: "yes",
    no: "no",
    apply: "Show",
    filters: ["source", "how matched", "answered", "first-time caller"],
    call_columns: [
        "started",
        "number",
        "caller",
        "how matched",
        "source / medium / campaign",
        "status",
        "talk, s",
        "recording",
    ],
    no_calls: "No calls match.",
    match_kinds: [
        "default number (before)",
        "default number (after)",
        "static number",
        "visitor on the site",
        "visitor who just left",
        "repeat caller",
        "unmatched",
        "callback",
    ],
    statuses: ["ringing", "talking", "completed", "missed", "busy", "failed"],
    hidden: "hidden",
    truncated_calls: "The period holds more calls than one report reads (50,000): narrow it.",
    all_sites: "Every site",
    site_columns: [
        "site",
        "calls",
        "attributed",
        "untracked",
        "numbers: peak / of",
        "pool ran out",
        "last day with calls",
        "deliveries given up",
        "needs attention",
    ],
    attention: ["deliveries given up", "the pool ran out", "no call for 24 hours"],
    nothing: "—",
    site_title: "Calls of",
    total_line: "{total} calls, {tracked} attributed to a visit: {share} tracked.",
    chart_by_kind: "Calls per day by how they were matched",
    untracked_title: "Untracked calls",
    hints: [
        "No untracked calls in this period.",
        "More untracked calls on the default number before ({before}) than after ({after}): visitors call before the tracking number appears; shorten delay_to_show (now {delay}).",
        "More untracked calls on the default number after ({after}) than before ({before}): numbers are taken back while visitors still need them; lengthen reclaim_after_idle (now {idle}) or max_hold.",
        "Untracked calls are balanced between the default number before ({before}) and after ({after}).",
    ],
    pool_title: "Pool",
    pool_line: "{working} of {max} numbers in the working set, {leased} held now; {exhausted} requests found the pool exhausted since it was created.",
    unknown: "unknown",
    advice_title: "Pool size advice",
    advice_link: "Simulate the last 28 days of this site's traffic with other pool sizes (takes a few seconds)",
    advice_busy: "Another pool-size simulation is running on this server; reload this page in a minute.",
    latest_title: "Latest calls",
    none_in_period: "None in this period.",
    callbacks_title: "Callback requests",
    callback_columns: ["requested", "number", "source", "status", "operators rung", "answered by"],
    callback_statuses: ["scheduled", "accepted", "retrying", "calling", "connected", "completed", "missed", "failed"],
    by_day_title: "By day",
    day_columns: [
        "date", "total", "visitor on the site", "just left", "repeat", "default before", "default after", "static",
        "unmatched", "callback", "tracked", "peak leased", "pool ran out",
    ],
    all_calls_link: "All calls, with filters and recordings",
    advice_texts: [
        "{now}: more numbers would not help much.",
        "{best} instead of {now} now.",
        "Simulated on {visits} recorded visits and {calls} calls of the last 28 days.",
        "No advice yet: {why}.",
        "The simulation failed; see the logs.",
    ],
    sized: "{numbers} numbers{cost}, {accuracy} of calls attributed ({wrong} to the wrong visitor)",
    per_month: ", {amount} {currency} a month",
    callback_story: "requested {requested}, {status}; operators rung: {rung}; answered by {answered}",
    digest_subject: "{site}: {total} calls, {share} attributed ({from} — {to})",
    digest_title: "Calls of {site}, {from} — {to}",
    digest_sources: "Calls by source",
    digest_attention: "Needs attention",
    digest_all_well: "Nothing needs attention.",
    digest_link: "Open the report",
    digest_attached: "The period's calls are attached as CSV.",
    digest_more: "and {n} more sources",
};

pub const RU: Words = Words {
    lang: "ru",
    other_lang: "en",
    other_lang_name: "English",
    sources_title: "Откуда пришли звонки",
    period: "Период",
    by: "По",
    dimensions: ["источнику", "каналу", "кампании", "ключевому слову", "странице входа"],
    columns: [
        "",
        "визиты",
        "звонки",
        "визиты со звонком",
        "доля визитов со звонком",
        "отвеченные",
        "пропущенные",
        "новые звонящие",
        "повторные звонящие",
    ],
    not_set: "(не задано)",
    total: "Всего",
    unattributed: "Звонки без визита",
    unattributed_note: "звонки на основной, статический или неизвестный номер сайта",
    truncated: "В периоде больше записей, чем читает один отчёт: сузьте его.",
    no_data: "В этом периоде нет ни визитов, ни звонков.",
    chart_label: "Звонки по",
    download_csv: "Скачать CSV",
    download_xlsx: "Скачать XLSX",
    calls_of_row: "звонки",
    overview: "Обзор",
    visits_note: "Визит учитывается, когда закрыта его последняя вкладка.",
    sources_link: "Откуда пришли звонки",
    calls_title: "Звонки",
    from: "с",
    to: "по",
    any: "все",
    yes: "да",
    no: "нет",
    apply: "Показать",
    filters: ["источник", "как сопоставлен", "отвечен", "звонит впервые"],
    call_columns: [
        "начало",
        "номер",
        "кто звонил",
        "как сопоставлен",
        "источник / канал / кампания",
        "статус",
        "разговор, с",
        "запись",
    ],
    no_calls: "Нет подходящих звонков.",
    match_kinds: [
        "основной номер (до показа)",
        "основной номер (после визита)",
        "статический номер",
        "посетитель на сайте",
        "посетитель, только что ушедший",
        "повторный звонок",
        "не сопоставлен",
        "обратный звонок",
    ],
    statuses: ["звонит", "разговор", "завершён", "пропущен", "занято", "ошибка"],
    hidden: "скрыт",
    truncated_calls: "В периоде больше звонков, чем читает один отчёт (50 000): сузьте его.",
    all_sites: "Все сайты",
    site_columns: [
        "сайт",
        "звонки",
        "с источником",
        "без источника",
        "номера: пик / из",
        "пул исчерпан",
        "последний день со звонками",
        "недоставлено",
        "требует внимания",
    ],
    attention: ["есть недоставленные", "пул исчерпывался", "нет звонков 24 часа"],
    nothing: "—",
    site_title: "Звонки сайта",
    total_line: "Звонков: {total}, с источником: {tracked} — {share}.",
    chart_by_kind: "Звонки по дням и по тому, как они сопоставлены",
    untracked_title: "Звонки без источника",
    hints: [
        "В этом периоде нет звонков без источника.",
        "На основной номер до показа звонят чаще ({before}), чем после ухода ({after}): посетители звонят раньше, чем появляется номер для отслеживания; сократите delay_to_show (сейчас {delay}).",
        "На основной номер после ухода звонят чаще ({after}), чем до показа ({before}): номера забираются, пока они ещё нужны посетителям; увеличьте reclaim_after_idle (сейчас {idle}) или max_hold.",
        "Звонки без источника поровну до показа ({before}) и после ухода ({after}).",
    ],
    pool_title: "Пул номеров",
    pool_line: "В работе {working} из {max} номеров, заняты сейчас {leased}; с момента создания пул был исчерпан для {exhausted} запросов.",
    unknown: "неизвестно",
    advice_title: "Сколько нужно номеров",
    advice_link: "Смоделировать последние 28 дней трафика сайта с другим размером пула (несколько секунд)",
    advice_busy: "На сервере уже идёт моделирование пула; обновите страницу через минуту.",
    latest_title: "Последние звонки",
    none_in_period: "В этом периоде нет.",
    callbacks_title: "Заявки на обратный звонок",
    callback_columns: ["заявка", "номер", "источник", "статус", "обзвонено операторов", "ответил"],
    callback_statuses: ["запланирован", "принят", "повтор", "звоним", "соединено", "завершён", "пропущен", "ошибка"],
    by_day_title: "По дням",
    day_columns: [
        "дата", "всего", "на сайте", "только ушёл", "повторный", "основной до", "основной после", "статический",
        "не сопоставлен", "обратный", "с источником", "пик занятых", "пул исчерпан",
    ],
    all_calls_link: "Все звонки, с фильтрами и записями",
    advice_texts: [
        "{now}: больше номеров почти ничего не даст.",
        "{best} вместо нынешних: {now}.",
        "Смоделировано на {visits} записанных визитах и {calls} звонках за последние 28 дней.",
        "Пока нет совета: {why}.",
        "Моделирование не удалось; подробности в журнале.",
    ],
    sized: "номеров: {numbers}{cost}, звонков с верным источником: {accuracy} (с чужим: {wrong})",
    per_month: ", {amount} {currency} в месяц",
    callback_story: "заявка {requested}, {status}; обзвонено операторов: {rung}; ответил {answered}",
    digest_subject: "{site}: звонков {total}, с источником {share} ({from} — {to})",
    digest_title: "Звонки сайта {site}, {from} — {to}",
    digest_sources: "Звонки по источникам",
    digest_attention: "Требует внимания",
    digest_all_well: "Всё в порядке.",
    digest_link: "Открыть отчёт",
    digest_attached: "Звонки за период — во вложении (CSV).",
    digest_more: "и ещё источников: {n}",
};

pub fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Ru => &RU,
    }
}

/// The reader's language: `?lang=` if it names one, else the first of `Accept-Language` that is
/// Russian or English (by its order and weights), else the site's.
pub fn choose(query: Option<&str>, accept_language: Option<&str>, site: Lang) -> Lang {
    let named = |tag: &str| match tag.trim().split(['-', '_']).next().map(str::to_ascii_lowercase).as_deref() {
        Some("ru") => Some(Lang::Ru),
        Some("en") => Some(Lang::En),
        _ => None,
    };
    if let Some(lang) = query.and_then(named) {
        return lang;
    }
    let mut offered: Vec<(f32, usize, Lang)> = accept_language
        .unwrap_or("")
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut bits = part.split(';');
            let lang = named(bits.next()?)?;
            let q = bits.find_map(|b| b.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            (q > 0.0).then_some((q, i, lang))
        })
        .collect();
    offered.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    offered.first().map_or(site, |o| o.2)
}

/// A count: `12,345` in English, `12 345` (a narrow no-break space) in Russian.
pub fn int(lang: Lang, n: u64) -> String {
    let digits = n.to_string();
    let sep = match lang {
        Lang::En => ",",
        Lang::Ru => "\u{202f}",
    };
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(sep);
        }
        out.push(d);
    }
    out
}

/// A match kind in the reader's words.
pub fn match_kind(w: &Words, kind: crate::calls::MatchKind) -> &'static str {
    let i = crate::calls::MatchKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    w.match_kinds[i]
}

/// A call's status in the reader's words.
pub fn status(w: &Words, status: &str) -> &'static str {
    let i = ["ringing", "answered", "completed", "missed", "busy", "failed"].iter().position(|s| *s == status);
    i.map_or(w.statuses[5], |i| w.statuses[i])
}

/// `template` with each `{name}` replaced by its value.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |t, (k, v)| t.replace(&format!("{{{k}}}"), v))
}

/// An amount of money: two decimals, none for a whole amount, the language's decimal sign.
pub fn money(lang: Lang, amount: f64) -> String {
    let text = if (amount - amount.round()).abs() < 0.005 { format!("{amount:.0}") } else { format!("{amount:.2}") };
    match lang {
        Lang::En => text,
        Lang::Ru => text.replace('.', ","),
    }
}

/// A share as a percentage with one decimal: `12.5%`, `12,5 %`.
pub fn percent(lang: Lang, share: f64) -> String {
    let text = format!("{:.1}", share * 100.0);
    match lang {
        Lang::En => format!("{text}%"),
        Lang::Ru => format!("{}\u{a0}%", text.replace('.', ",")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_the_query_s_else_the_browser_s_else_the_site_s() {
        assert_eq!(choose(Some("en"), Some("ru-RU"), Lang::Ru), Lang::En);
        assert_eq!(choose(Some("de"), Some("de-DE,en;q=0.8,ru;q=0.9"), Lang::En), Lang::Ru);
        assert_eq!(choose(None, Some("en-GB,en;q=0.9"), Lang::Ru), Lang::En);
        assert_eq!(choose(None, Some("fr-FR, de;q=0.5"), Lang::Ru), Lang::Ru);
        assert_eq!(choose(None, Some("ru;q=0"), Lang::En), Lang::En);
        assert_eq!(choose(None, None, Lang::En), Lang::En);
    }

    #[test]
    fn numbers_are_written_the_languages_way() {
        assert_eq!(int(Lang::En, 1_234_567), "1,234,567");
        assert_eq!(int(Lang::Ru, 12_345), "12\u{202f}345");
        assert_eq!(int(Lang::En, 999), "999");
        assert_eq!(percent(Lang::En, 0.125), "12.5%");
        assert_eq!(percent(Lang::Ru, 0.125), "12,5\u{a0}%");
        assert_eq!(
            (money(Lang::En, 65.8), money(Lang::Ru, 66.0), money(Lang::Ru, 4.7)),
            ("65.80".into(), "66".into(), "4,70".into())
        );
    }

    #[test]
    fn both_languages_say_everything() {
        for w in [&EN, &RU] {
            let texts = [
                w.sources_title,
                w.period,
                w.by,
                w.not_set,
                w.total,
                w.unattributed,
                w.no_data,
                w.download_csv,
                w.digest_subject,
                w.digest_title,
                w.digest_sources,
                w.digest_attention,
                w.digest_all_well,
                w.digest_link,
                w.digest_attached,
                w.digest_more,
            ];
            assert!(texts.iter().all(|t| !t.is_empty()), "{}", w.lang);
            assert!(w.dimensions.iter().chain(&w.columns[1..]).all(|t| !t.is_empty()), "{}", w.lang);
            let lists = [
                &w.filters[..],
                &w.call_columns,
                &w.match_kinds,
                &w.statuses,
                &w.site_columns,
                &w.attention,
                &w.hints,
                &w.callback_columns,
                &w.callback_statuses,
                &w.day_columns,
                &w.advice_texts,
            ];
            assert!(lists.iter().all(|l| l.iter().all(|t| !t.is_empty())), "{}", w.lang);
        }
    }
}
