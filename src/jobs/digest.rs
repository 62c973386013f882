//! The digests: each site's report sent on the schedule of its `[site.digest]` — by email (kind
//! `digest_email`, over SMTP through `[mail]`, the period's calls attached as CSV) and to a
//! Telegram chat (kind `digest_telegram`, the same summary as text). [`reports::digest`] says
//! what a digest holds.
//!
//! Every node looks every [`LOOK_EVERY`] for digests that are due; the first to find one
//! writes its record with its jobs, only if it is not stored yet ([`Store::create_digest`]), so
//! each period's report is sent once however many nodes run, and a mail server that is away is
//! retried by the job runner. A node that was down when a digest fell due sends it late, up to
//! [`LATE`] after its time; older ones are not sent.
//!
//! [`reports::digest`]: crate::reports::digest
//! [`Store::create_digest`]: crate::store::Store::create_digest

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callpool_pool::{SiteId, Ts};
use chrono::{Datelike, Days, NaiveDate, TimeZone};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{dead, one_by_one, sent_with, skipped, Ctx, Event, Handler, Outcome};
use crate::app::App;
use crate::config::{DigestConfig, Every, MailConfig, Security, SiteConfig, TelegramChat};
use crate::reports::digest::Digest;
use crate::store::digests::DigestRecord;
use crate::store::jobs::{Claimed, Plan, Planned, Record, Records};

pub struct Digests;

pub const EMAIL: &str = "digest_email";
pub const TELEGRAM: &str = "digest_telegram";

/// How often each node looks for digests that are due.
pub const LOOK_EVERY: Duration = Duration::from_secs(30);
/// A digest not written this long after its time is not sent (the node was down for longer, or
/// the schedule was just set).
pub const LATE: Duration = Duration::from_secs(12 * 3600);

impl Handler for Digests {
    fn kinds(&self) -> &'static [&'static str] {
        &[EMAIL, TELEGRAM]
    }

    fn records(&self) -> Records {
        Records::Digests
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let Event::DigestDue { site, now, .. } = event else { return Vec::new() };
        let Some(cfg) = &site.digest else { return Vec::new() };
        let mut out = Vec::new();
        if !cfg.email.is_empty() {
            out.push(Planned { kind: EMAIL, plan: Plan::Due(now) });
        }
        if cfg.telegram.is_some() {
            out.push(Planned { kind: TELEGRAM, plan: Plan::Due(now) });
        }
        out
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        one_by_one(ctx, jobs, move |job| async move {
            let Record::Digest(d) = &job.record else { return skipped("not a digest") };
            let Some(site) = ctx.config.site(&d.site) else { return skipped("the site is no longer configured") };
            let Some(cfg) = &site.digest else { return skipped("the site no longer has a digest") };
            let Some(public_url) = ctx.config.server.public_url.as_deref() else {
                return skipped("[server] public_url is not set");
            };
            let digest =
                match crate::reports::digest::build(ctx.app, ctx.kinds, site, d, cfg.language, public_url).await {
                    Ok(digest) => digest,
                    Err(e) => return Outcome::Again(format!("cannot read the report: {e}")),
                };
            match (kind, ctx.config.mail.as_ref(), cfg.telegram.as_ref()) {
                (EMAIL, Some(mail), _) => send_mail(ctx, mail, cfg, site, d, &digest).await,
                (EMAIL, None, _) => skipped("[mail] is not configured"),
                (_, _, Some(chat)) => send_telegram(ctx, chat, &digest).await,
                _ => skipped("the digest no longer has a telegram chat"),
            }
        })
    }
}

/// The mail: the text and HTML parts (their link carries the site's report token, so a
/// recipient opens the page without one of their own), and the period's calls as a CSV file.
async fn send_mail(
    ctx: &Ctx<'_>,
    mail: &MailConfig,
    cfg: &DigestConfig,
    site: &SiteConfig,
    d: &DigestRecord,
    digest: &Digest,
) -> Outcome {
    use lettre::AsyncTransport;
    let attachment = match crate::reports::digest::calls_csv(ctx.app, site, d).await {
        Ok(a) => a,
        Err(e) => return Outcome::Again(format!("cannot read the calls: {e}")),
    };
    let message = match message(mail, cfg, site, d, digest, attachment) {
        Ok(m) => m,
        Err(e) => return dead(format!("the mail cannot be made: {e}")),
    };
    let transport = match transport(mail, ctx.config.server.public_url.as_deref()) {
        Ok(t) => t,
        Err(e) => return Outcome::Again(e),
    };
    match transport.send(message).await {
        Ok(answer) => {
            let line = answer.first_line().unwrap_or_default();
            sent_with(ctx, format!("{} {line}", answer.code()))
        }
        Err(e) if e.is_permanent() => dead(format!("the mail server refused it: {e}")),
        Err(e) => Outcome::Again(format!("the mail server: {e}")),
    }
}

fn message(
    mail: &MailConfig,
    cfg: &DigestConfig,
    site: &SiteConfig,
    d: &DigestRecord,
    digest: &Digest,
    (csv_name, csv): (String, String),
) -> Result<lettre::Message, String> {
    use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart};
    let from: Mailbox = mail.from.parse().map_err(|e| format!("[mail] from: {e}"))?;
    let link = match &site.report_token {
        Some(token) => {
            let token: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
            format!("{}&token={token}", digest.link)
        }
        None => digest.link.clone(),
    };
    // One id per digest: a copy sent again after a crash is recognised as the same mail.
    let message_id = format!("<digest.{}@{}>", d.id.replace(':', "."), from.email.domain());
    let mut b = lettre::Message::builder().from(from).subject(digest.subject()).message_id(Some(message_id));
    for to in &cfg.email {
        b = b.to(to.parse::<Mailbox>().map_err(|e| format!("{to:?}: {e}"))?);
    }
    let csv_type = ContentType::parse("text/csv; charset=utf-8").map_err(|e| e.to_string())?;
    let body = MultiPart::mixed()
        .multipart(MultiPart::alternative_plain_html(digest.text(&link), digest.html(&link)))
        .singlepart(Attachment::new(csv_name).body(csv, csv_type));
    b.multipart(body).map_err(|e| e.to_string())
}

/// A connection to `[mail]`'s server for one mail.
fn transport(
    mail: &MailConfig,
    public_url: Option<&str>,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    let tls = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(mail.host.clone());
        if let Some(path) = &mail.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("[mail] ca_file {}: {e}", path.display()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| format!("[mail] ca_file {}: {e}", path.display()))?;
            b = b.certificate_store(CertificateStore::None).add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| format!("[mail] TLS: {e}"))
    };
    let tls = match mail.security {
        Security::StartTls => Tls::Required(tls()?),
        Security::Tls => Tls::Wrapper(tls()?),
        Security::None => Tls::None,
    };
    let hello = mail.hello_name.clone().or_else(|| {
        let host = public_url?.split("://").nth(1)?.split(['/', ':']).next()?;
        Some(host.to_owned()).filter(|h| !h.is_empty())
    });
    let mut b = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(mail.host.clone())
        .port(mail.port)
        .tls(tls)
        .timeout(Some(mail.timeout))
        .hello_name(ClientId::Domain(hello.unwrap_or_else(|| "localhost".into())));
    if let (Some(user), Some(password)) = (&mail.username, &mail.password) {
        b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(user.clone(), password.clone()));
    }
    Ok(b.build())
}

/// The chat message: the same summary as the mail's text, its link without the token (a chat
/// is read by more people and kept longer than a mailbox).
async fn send_telegram(ctx: &Ctx<'_>, chat: &TelegramChat, digest: &Digest) -> Outcome {
    super::telegram::send(ctx, chat, &digest.text(&digest.link)).await
}

/// The digest `cfg` sends last at or before `now` in `tz`: when it falls due, and the local days
/// it covers (the day before, or the seven days before).
pub fn latest(cfg: &DigestConfig, tz: chrono_tz::Tz, now: Ts) -> Option<(Ts, NaiveDate, NaiveDate)> {
    let (mut day, span) = (
        now.to_chrono()?.with_timezone(&tz).date_naive(),
        match cfg.every {
            Every::Day => 1,
            Every::Week(_) => 7,
        },
    );
    if let Every::Week(weekday) = cfg.every {
        while day.weekday() != weekday {
            day = day.pred_opt()?;
        }
    }
    // A time a DST change skips falls due an hour later; one it repeats, the first time.
    let due_on = |day: NaiveDate| {
        let at = day.and_time(cfg.at);
        let t = tz
            .from_local_datetime(&at)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(at + chrono::Duration::hours(1))).earliest())?;
        Some(Ts::from_millis(t.timestamp_millis()))
    };
    let mut due = due_on(day)?;
    if due > now {
        day = day.checked_sub_days(Days::new(span))?;
        due = due_on(day)?;
    }
    Some((due, day.checked_sub_days(Days::new(span))?, day.pred_opt()?))
}

/// Every [`LOOK_EVERY`] until `shutdown`: writes each site's latest digest (with the jobs `plan`
/// gives it: the registry's) that is due and not older than [`LATE`], unless stored already.
pub async fn schedule(app: Arc<App>, plan: fn(&App, Event<'_>) -> Vec<Planned>, shutdown: CancellationToken) {
    // The digest each site had written last, as this node knows: looked at again only when the
    // next one is due (the store is asked once per site and period).
    let mut written: HashMap<SiteId, String> = HashMap::new();
    // The first look at once: a digest that fell due while no node ran goes out now.
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let config = app.config();
        let now = app.clock.now();
        written.retain(|site, _| config.site(site).is_some_and(|s| s.digest.is_some()));
        for site in config.sites.iter() {
            let Some(cfg) = &site.digest else { continue };
            let Some((due, first, last)) = latest(cfg, site.timezone, now) else { continue };
            let d = DigestRecord::new(site.id.clone(), first, last, due);
            if written.get(&site.id) == Some(&d.id) || now.minus(LATE) > due {
                continue;
            }
            let jobs = plan(&app, Event::DigestDue { digest: &d, site, now });
            match app.store.create_digest(&d, &jobs).await {
                Ok(new) => {
                    if new {
                        tracing::info!(site = %site.id, digest = %d.id, "A digest fell due; its deliveries are queued.");
                        app.job_wake.wake_all(&jobs);
                    }
                    written.insert(site.id.clone(), d.id);
                }
                Err(e) => {
                    app.metrics.store_errors.with_label_values(&["digest_create"]).inc();
                    tracing::warn!(site = %site.id, error = %e, "Cannot write a due digest; trying again shortly.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveTime, Weekday};

    use super::*;

    fn cfg(every: Every, at: &str) -> DigestConfig {
        DigestConfig {
            every,
            at: NaiveTime::parse_from_str(at, "%H:%M").unwrap(),
            email: vec!["o@example.com".into()],
            telegram: None,
            language: crate::callback::text::Lang::En,
        }
    }

    fn utc(s: &str) -> Ts {
        Ts::from_millis(chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis())
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_daily_digest_covers_the_day_before_and_falls_due_at_its_local_time() {
        let moscow: chrono_tz::Tz = "Europe/Moscow".parse().unwrap();
        let c = cfg(Every::Day, "09:00");
        // 08:59 in Moscow: yesterday's digest (about the day before yesterday).
        let (due, first, last) = latest(&c, moscow, utc("2026-12-07T05:59:00Z")).unwrap();
        assert_eq!((due, first, last), (utc("2026-12-06T06:00:00Z"), day("2026-12-05"), day("2026-12-05")));
        let (due, first, last) = latest(&c, moscow, utc("2026-12-07T06:00:00Z")).unwrap();
        assert_eq!((due, first, last), (utc("2026-12-07T06:00:00Z"), day("2026-12-06"), day("2026-12-06")));
    }

    #[test]
    fn a_weekly_digest_covers_the_seven_days_before_its_weekday() {
        let c = cfg(Every::Week(Weekday::Mon), "09:00");
        // Monday 2026-12-07, 10:00 UTC; the week from Monday 2026-11-30 to Sunday 2026-12-06.
        let (due, first, last) = latest(&c, chrono_tz::UTC, utc("2026-12-07T10:00:00Z")).unwrap();
        assert_eq!((due, first, last), (utc("2026-12-07T09:00:00Z"), day("2026-11-30"), day("2026-12-06")));
        // Sunday: the week before.
        let (due, first, _) = latest(&c, chrono_tz::UTC, utc("2026-12-06T23:00:00Z")).unwrap();
        assert_eq!((due, first), (utc("2026-11-30T09:00:00Z"), day("2026-11-23")));
    }

    #[test]
    fn a_time_a_dst_change_skips_falls_due_an_hour_later() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: 02:00 becomes 03:00 in Berlin.
        let c = cfg(Every::Day, "02:30");
        let (due, first, _) = latest(&c, berlin, utc("2026-03-29T02:00:00Z")).unwrap();
        assert_eq!((due, first), (utc("2026-03-29T01:30:00Z"), day("2026-03-28")));
        // Just before (03:20 local, after 02:30 but before the instant it falls due): the day before's.
        let (due, first, _) = latest(&c, berlin, utc("2026-03-29T01:20:00Z")).unwrap();
        assert_eq!((due, first), (utc("2026-03-28T01:30:00Z"), day("2026-03-27")));
    }
}
