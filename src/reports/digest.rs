//! What a site's digest says (the report sent on a schedule, `[site.digest]`): the period's
//! calls and the share attributed, the calls by source, the hint on the untracked calls, what
//! needs attention, a link to the site's page, and (for the mail) the period's calls as CSV; in the digest's
//! language, from the same figures as the pages. `jobs/digest.rs` sends it.

use askama::Template;

use super::i18n::{fill, int, percent, words, Lang, Words};
use super::overview::SiteLine;
use super::sources::{Dimension, SourceRow};
use super::{Access, Period};
use crate::app::App;
use crate::config::SiteConfig;
use crate::store::digests::DigestRecord;
use crate::store::StoreError;

/// The most sources a digest lists (the rest are counted).
const TOP_SOURCES: usize = 10;

/// A digest, ready to be written out.
#[derive(Clone, Debug)]
pub struct Digest {
    pub lang: Lang,
    pub site: String,
    pub from: String,
    pub to: String,
    pub line: SiteLine,
    pub hint: String,
    /// The sources with calls, most calls first (at most [`TOP_SOURCES`]), and how many more.
    pub sources: Vec<SourceRow>,
    pub more_sources: usize,
    /// Calls not attributed to a visit.
    pub unattributed: u64,
    /// The site's page for the period (without a token).
    pub link: String,
}

/// The digest of `d` for `site`, in `lang`, linking to the site's page under `public_url`
/// (`kinds`: every kind of job, for the deliveries given up).
pub async fn build(
    app: &App,
    kinds: &[(&'static str, crate::store::jobs::Records)],
    site: &SiteConfig,
    d: &DigestRecord,
    lang: Lang,
    public_url: &str,
) -> Result<Digest, StoreError> {
    let (first, last) = (d.first.to_string(), d.last.to_string());
    let p = period(site, d, app.clock.now())?;
    let dead = super::overview::dead_by_site(app, p.from, kinds).await?;
    let summary = super::summary(app, site, &p).await?;
    let line = super::overview::site_line(app, site, &summary, dead.get(site.id.as_str()).cloned().unwrap_or_default())
        .await?;
    let hint = super::page::untracked_hint(lang, &summary.total, site.delay_to_show, site.rules.reclaim_after_idle);
    // Most calls first, as the sources report lists them.
    let report = super::sources::sources(app, site, &p, Dimension::Source).await?;
    let mut sources: Vec<SourceRow> = report.rows.into_iter().filter(|r| r.calls > 0).collect();
    let more_sources = sources.len().saturating_sub(TOP_SOURCES);
    sources.truncate(TOP_SOURCES);
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("from", &first).append_pair("to", &last).append_pair("lang", words(lang).lang);
    Ok(Digest {
        lang,
        site: site.id.to_string(),
        from: first,
        to: last,
        line,
        hint,
        sources,
        more_sources,
        unattributed: report.unattributed.calls,
        link: format!("{public_url}/v1/reports/{}?{}", site.id, q.finish()),
    })
}

/// The period's calls as the calls report's CSV (callers masked), and the file's name: what the
/// mail attaches (read only for it; a chat message has no attachment).
pub async fn calls_csv(app: &App, site: &SiteConfig, d: &DigestRecord) -> Result<(String, String), StoreError> {
    let p = period(site, d, app.clock.now())?;
    let calls = super::calls(app, site, &p, Access::Masked).await?;
    Ok((calls.file_name("csv"), super::calls_table(&calls).csv()))
}

/// The local days a digest covers.
fn period(site: &SiteConfig, d: &DigestRecord, now: callpool_pool::Ts) -> Result<Period, StoreError> {
    Period::new(site.timezone, Some(&d.first.to_string()), Some(&d.last.to_string()), now)
        .map_err(|e| StoreError::Failed(format!("digest {}: {e}", d.id)))
}

/// One source's line, as both parts show it.
struct SourceLine {
    name: String,
    calls: String,
    visits: String,
    rate: String,
}

#[derive(Template)]
#[template(path = "digest.html")]
struct DigestHtml<'a> {
    w: &'static Words,
    title: String,
    total: String,
    hint: &'a str,
    sources: Vec<SourceLine>,
    more: Option<String>,
    unattributed: String,
    attention: Vec<&'static str>,
    link: &'a str,
}

impl Digest {
    fn words(&self) -> &'static Words {
        words(self.lang)
    }

    pub fn subject(&self) -> String {
        let w = self.words();
        fill(
            w.digest_subject,
            &[
                ("site", self.site.clone()),
                ("from", self.from.clone()),
                ("to", self.to.clone()),
                ("total", int(self.lang, self.line.calls)),
                ("share", self.share()),
            ],
        )
    }

    fn share(&self) -> String {
        self.line.share_tracked.map_or(self.words().nothing.to_owned(), |s| percent(self.lang, s))
    }

    fn title(&self) -> String {
        fill(
            self.words().digest_title,
            &[("site", self.site.clone()), ("from", self.from.clone()), ("to", self.to.clone())],
        )
    }

    fn total(&self) -> String {
        fill(
            self.words().total_line,
            &[
                ("total", int(self.lang, self.line.calls)),
                ("tracked", int(self.lang, self.line.tracked)),
                ("share", self.share()),
            ],
        )
    }

    fn source_lines(&self) -> Vec<SourceLine> {
        let w = self.words();
        self.sources
            .iter()
            .map(|r| SourceLine {
                name: r.key.clone().unwrap_or_else(|| w.not_set.to_owned()),
                calls: int(self.lang, r.calls),
                visits: int(self.lang, r.visits),
                rate: r.call_rate.map_or(w.nothing.to_owned(), |x| percent(self.lang, x)),
            })
            .collect()
    }

    fn more(&self) -> Option<String> {
        (self.more_sources > 0)
            .then(|| fill(self.words().digest_more, &[("n", int(self.lang, self.more_sources as u64))]))
    }

    /// The plain text: the mail's text part, and the chat message (`link` is the page's
    /// address as the reader gets it).
    pub fn text(&self, link: &str) -> String {
        let w = self.words();
        let mut out = vec![self.title(), String::new(), self.total(), self.hint.clone(), String::new()];
        out.push(format!("{}:", w.digest_sources));
        for s in self.source_lines() {
            out.push(format!("  {}: {} ({} {}, {})", s.name, s.calls, w.columns[1], s.visits, s.rate));
        }
        out.extend(self.more().map(|m| format!("  {m}")));
        out.push(format!("  {}: {}", w.unattributed, int(self.lang, self.unattributed)));
        out.push(String::new());
        let attention = self.line.attention_in(w);
        if attention.is_empty() {
            out.push(w.digest_all_well.to_owned());
        } else {
            out.push(format!("{}: {}", w.digest_attention, attention.join(", ")));
        }
        out.push(String::new());
        out.push(format!("{}: {link}", w.digest_link));
        out.join("\n")
    }

    /// The mail's HTML part (every value escaped by the template).
    pub fn html(&self, link: &str) -> String {
        let w = self.words();
        let page = DigestHtml {
            w,
            title: self.title(),
            total: self.total(),
            hint: &self.hint,
            sources: self.source_lines(),
            more: self.more(),
            unattributed: int(self.lang, self.unattributed),
            attention: self.line.attention_in(w),
            link,
        };
        page.render().unwrap_or_else(|e| format!("the digest could not be rendered: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(lang: Lang) -> Digest {
        let line = SiteLine {
            site: "shop".into(),
            calls: 1234,
            tracked: 1000,
            share_tracked: Some(0.875),
            untracked: 234,
            max_numbers: 10,
            peak_leased: Some(9),
            exhausted: 3,
            last_call_day: Some("2026-12-06".into()),
            dead_letters: Default::default(),
            attention: vec!["pool_exhausted".into()],
        };
        let row = |key: Option<&str>, calls| SourceRow {
            key: key.map(str::to_owned),
            visits: 20_000,
            calls,
            visits_that_called: calls,
            call_rate: Some(calls as f64 / 20_000.0),
            ..Default::default()
        };
        Digest {
            lang,
            site: "shop".into(),
            from: "2026-11-30".into(),
            to: "2026-12-06".into(),
            line,
            hint: "hint".into(),
            sources: vec![row(Some("yandex"), 700), row(None, 300)],
            more_sources: 4,
            unattributed: 234,
            link: "https://track.example/v1/reports/shop?from=2026-11-30&to=2026-12-06&lang=ru".into(),
        }
    }

    /// The digest speaks its language: words, numbers and shares written its way.
    #[test]
    fn a_digest_is_written_in_its_language() {
        let ru = digest(Lang::Ru);
        assert_eq!(ru.subject(), "shop: звонков 1\u{202f}234, с источником 87,5\u{a0}% (2026-11-30 — 2026-12-06)");
        let text = ru.text(&ru.link);
        assert!(text.starts_with("Звонки сайта shop, 2026-11-30 — 2026-12-06\n"), "{text}");
        assert!(text.contains("  yandex: 700 (визиты 20\u{202f}000, 3,5\u{a0}%)"), "{text}");
        assert!(text.contains("  (не задано): 300"), "{text}");
        assert!(text.contains("  и ещё источников: 4"), "{text}");
        assert!(text.contains("Требует внимания: пул исчерпывался"), "{text}");
        assert!(text
            .ends_with("Открыть отчёт: https://track.example/v1/reports/shop?from=2026-11-30&to=2026-12-06&lang=ru"));
        let html = ru.html(&ru.link);
        assert!(
            html.starts_with("<!doctype html><html lang=\"ru\">") && html.contains("Звонки по источникам"),
            "{html}"
        );
        let en = digest(Lang::En);
        assert_eq!(en.subject(), "shop: 1,234 calls, 87.5% attributed (2026-11-30 — 2026-12-06)");
        assert!(en.text(&en.link).contains("Needs attention: the pool ran out"));
    }
}
