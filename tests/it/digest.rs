//! The scheduled reports (digests) end to end, against a local SMTP server that speaks STARTTLS
//! with a throw-away certificate, wants AUTH PLAIN over TLS only, answers "try later" as a mail
//! server that is busy does, and keeps what it receives; and a strict fake of Telegram's
//! `sendMessage`. The mail is read back part by part: its headers, the text and HTML parts (the
//! HTML escaping what visitors sent), and the CSV attached. A digest falls due on its schedule
//! and goes out once, with two nodes looking for it on one Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use mail_parser::MimeHeaders;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::common::*;
use crate::pki::Pki;
use callpool::config::Config;

const PBX_SECRET: &str = "office-secret-0123456789";
const ORIGIN: &str = "https://shop.example";
const TOKEN: &str = "shop-report-token-0123456789";
const SMTP_USER: &str = "reports@callpool.test";
const SMTP_PASSWORD: &str = "smtp-password-0123456789";
const BOT_TOKEN: &str = "123456:test-bot-token";
const CHAT: &str = "-1001234567890";
const GOOGLE: &str = "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=winter";
const HOSTILE: &str =
    "https://shop.example/?utm_source=%3Cscript%3Ealert(1)%3C%2Fscript%3E&utm_campaign=%3DHYPERLINK(%22x%22)";

/// One mail as the SMTP server received it.
#[derive(Clone, Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

#[derive(Default)]
struct SmtpState {
    mails: Vec<Mail>,
    violations: Vec<String>,
    /// Transactions to answer "451 try again later" before accepting.
    busy: u32,
}

/// A local SMTP server (RFC 5321 with STARTTLS, RFC 3207, and AUTH PLAIN, RFC 4954).
struct Smtp {
    port: u16,
    state: Arc<Mutex<SmtpState>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Smtp {
    /// `implicit`: TLS from the first byte (port 465's way), else STARTTLS.
    async fn start(pki: &Pki, busy: u32, implicit: bool) -> Smtp {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(pki.path("server.crt")).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(SmtpState { busy, ..Default::default() }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, acceptor) = (shared.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let io: Box<dyn Io> = if implicit {
                        match acceptor.accept(stream).await {
                            Ok(tls) => Box::new(tls),
                            Err(e) => return state.lock().unwrap().violations.push(format!("TLS: {e}")),
                        }
                    } else {
                        Box::new(stream)
                    };
                    if let Err(e) = session(io, implicit, acceptor, state.clone()).await {
                        state.lock().unwrap().violations.push(format!("session: {e}"));
                    }
                });
            }
        });
        Smtp { port, state }
    }

    fn mails(&self) -> Vec<Mail> {
        self.state.lock().unwrap().mails.clone()
    }

    fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

/// One SMTP session, held to the order the RFCs give: EHLO, STARTTLS, EHLO again, AUTH, then
/// transactions (MAIL, RCPT..., DATA).
async fn session(
    stream: Box<dyn Io>,
    mut tls: bool,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<SmtpState>>,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    io.write_all(b"220 smtp.callpool.test ESMTP test server\r\n").await?;
    let (mut helo, mut authed) = (false, false);
    let (mut from, mut to): (Option<String>, Vec<String>) = (None, Vec::new());
    let violation = |what: String| state.lock().unwrap().violations.push(what);
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if !line.ends_with("\r\n") {
            violation(format!("a line not ended by CRLF: {line:?}"));
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO ") {
            helo = true;
            if tls {
                "250-smtp.callpool.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 10000000".into()
            } else {
                "250-smtp.callpool.test\r\n250-STARTTLS\r\n250-8BITMIME\r\n250 SIZE 10000000".into()
            }
        } else if upper == "STARTTLS" {
            if tls || !helo {
                violation("STARTTLS out of order".into());
            }
            io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
            let inner = io.into_inner();
            let stream = acceptor.accept(inner).await?;
            io = BufReader::new(Box::new(stream));
            (tls, helo) = (true, false);
            continue;
        } else if let Some(rest) = upper.strip_prefix("AUTH PLAIN") {
            if !tls {
                violation("AUTH before STARTTLS: the password in the clear".into());
            }
            let given = if rest.trim().is_empty() {
                io.write_all(b"334 \r\n").await?;
                let mut answer = String::new();
                io.read_line(&mut answer).await?;
                answer.trim().to_owned()
            } else {
                line["AUTH PLAIN".len()..].trim().to_owned()
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(&given).unwrap_or_default();
            if decoded == format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_bytes() {
                authed = true;
                "235 2.7.0 Authentication successful".into()
            } else {
                violation("wrong credentials".into());
                "535 5.7.8 Authentication credentials invalid".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if !authed {
                violation("MAIL without AUTH".into());
            }
            let busy = {
                let mut s = state.lock().unwrap();
                let busy = s.busy > 0;
                s.busy = s.busy.saturating_sub(1);
                busy
            };
            if busy {
                "451 4.3.2 Busy, try again later".into()
            } else {
                from = Some(line[10..].trim().to_owned());
                "250 2.1.0 Ok".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                violation("RCPT before MAIL".into());
            }
            to.push(line[8..].trim().to_owned());
            "250 2.1.5 Ok".into()
        } else if upper == "DATA" {
            if to.is_empty() {
                violation("DATA without RCPT".into());
            }
            io.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if io.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                // Dot-stuffing (RFC 5321 4.5.2).
                data.extend_from_slice(if l.starts_with(b"..") { &l[1..] } else { &l });
            }
            let mail = Mail { from: from.take().unwrap_or_default(), to: std::mem::take(&mut to), data };
            state.lock().unwrap().mails.push(mail);
            "250 2.0.0 Ok: queued as TEST".into()
        } else if upper == "RSET" {
            (from, to) = (None, Vec::new());
            "250 2.0.0 Ok".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            violation(format!("unexpected command {line:?}"));
            "500 5.5.2 Unknown command".into()
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// A strict fake of the Bot API's sendMessage: what it accepted.
async fn fake_telegram(accepted: Arc<Mutex<Vec<Value>>>) -> String {
    serve_fake(move |req: axum::extract::Request| {
        let accepted = accepted.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let path = parts.uri.path().to_owned();
            let json_body = parts.headers.get("content-type").is_some_and(|v| v == "application/json");
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let ok = parts.method == "POST"
                && json_body
                && path == format!("/bot{BOT_TOKEN}/sendMessage")
                && v["chat_id"] == CHAT
                && v["text"].as_str().is_some_and(|t| !t.is_empty() && t.chars().count() <= 4096);
            if !ok {
                let answer = json!({"ok": false, "error_code": 400, "description": format!("Bad Request: {path} {v}")});
                return (StatusCode::BAD_REQUEST, answer.to_string());
            }
            accepted.lock().unwrap().push(v);
            (StatusCode::OK, json!({"ok": true, "result": {"message_id": 1}}).to_string())
        }
    })
    .await
}

/// When the digest of [`config`] falls due: a minute ago (to the minute).
fn due() -> chrono::DateTime<chrono::Utc> {
    use chrono::Timelike;
    let t = chrono::Utc::now() - chrono::Duration::minutes(1);
    t.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap()
}

/// The config: site `shop` (UTC) with a daily digest due at `due`, by mail through `smtp`
/// (STARTTLS, the throw-away CA) and to `telegram`.
fn config(
    store: &str,
    pki: &Pki,
    smtp: u16,
    telegram: &str,
    dir: &std::path::Path,
    due: chrono::DateTime<chrono::Utc>,
) -> Config {
    let password = dir.join("smtp-password");
    std::fs::write(&password, format!("{SMTP_PASSWORD}\n")).unwrap();
    let at = due.format("%H:%M");
    let text = format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\npublic_url = \"https://track.example\"\n\n{store}\n\n\
         [analytics]\nretry_base = \"200ms\"\n\n\
         [mail]\nhost = \"127.0.0.1\"\nport = {smtp}\nusername = \"{SMTP_USER}\"\npassword_file = {:?}\n\
         ca_file = {:?}\nfrom = \"callpool reports <{SMTP_USER}>\"\ntimeout = \"10s\"\n\n\
         [[pbx]]\nid = \"office\"\nsecrets = [\"{PBX_SECRET}\"]\n{}\nreport_token = \"{TOKEN}\"\nlanguage = \"en\"\n\n\
         [site.digest]\nevery = \"daily\"\nat = \"{at}\"\nemail = [\"Shop Owner <owner@shop.example>\", \"marketing@shop.example\"]\n\
         telegram = {{ base_url = \"{telegram}\", bot_token = \"{BOT_TOKEN}\", chat_id = \"{CHAT}\" }}\n",
        password.display().to_string(),
        pki.path("ca.crt"),
        shop_site(ORIGIN, "0s", "30m", "30m").replace(
            "numbers = [\"+74951230001\", \"+74951230002\"]",
            "numbers = [\"+74951230001\", \"+74951230002\", \"+74951230003\"]"
        ),
    );
    Config::parse(&text, "digest-test.toml", &std::collections::HashMap::new()).expect("test config")
}

/// Visitors from Google Ads and from a hostile link call their tracking numbers and leave; a
/// third call goes to the default number.
async fn calls_of_today(node: &Node) {
    let mut tabs = Vec::new();
    for (visitor, page) in [("v-google", GOOGLE), ("v-hostile", HOSTILE)] {
        let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
        tab.hello(visitor, page).await;
        tabs.push((tab.until_kind("tracking").await, tab));
    }
    for (i, (number, _)) in tabs.iter().enumerate() {
        let call = json!({
            "call_id": format!("c-{i}"), "called": number, "caller": format!("+7916111000{i}"),
            "started_at": chrono::Utc::now().to_rfc3339(), "status": "completed", "duration": 30,
        });
        post_call(node, PBX_SECRET, &call).await;
    }
    let call = json!({
        "call_id": "c-default", "called": "+74951234567", "caller": "+79161110009",
        "started_at": chrono::Utc::now().to_rfc3339(), "status": "missed", "duration": 0,
    });
    post_call(node, PBX_SECRET, &call).await;
    // The visits end: each is recorded as its last tab closes.
    for (_, mut tab) in tabs {
        let _ = tab.stream.close(None).await;
    }
    let shop = callpool_pool::SiteId::new("shop").unwrap();
    eventually("the two visits are recorded", || async {
        let now = callpool_pool::Ts::now();
        node.app.store.visits(&shop, now.minus(Duration::from_secs(3600)), now, 10).await.unwrap().len() == 2
    })
    .await;
}

/// Writes the digest of today (its jobs as the scheduler plans them), as the scheduler will
/// tomorrow.
async fn digest_of_today(node: &Node) -> (String, chrono::NaiveDate) {
    use callpool::store::digests::DigestRecord;
    let config = node.app.config();
    let site = config.site(&callpool_pool::SiteId::new("shop").unwrap()).unwrap();
    let today = chrono::Utc::now().date_naive();
    let now = node.app.clock.now();
    let d = DigestRecord::new(site.id.clone(), today, today, now);
    let jobs = callpool::jobs::registry::plan(&node.app, callpool::jobs::Event::DigestDue { digest: &d, site, now });
    assert_eq!(jobs.len(), 2, "a mail and a chat message: {jobs:?}");
    assert!(node.app.store.create_digest(&d, &jobs).await.unwrap());
    assert!(!node.app.store.create_digest(&d, &jobs).await.unwrap(), "written once");
    (d.id, today)
}

#[tokio::test]
async fn a_digest_goes_out_once_by_mail_with_both_parts_and_the_calls_attached_and_to_the_chat() {
    let pki = Pki::new();
    // The server is busy for the first two attempts: the job runner tries again.
    let smtp = Smtp::start(&pki, 2, false).await;
    let chat = Arc::new(Mutex::new(Vec::new()));
    let telegram = fake_telegram(chat.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}", dir.path().join("data").display().to_string());
    let due = due();
    let node = Node::start_real(config(&store, &pki, smtp.port, &telegram, dir.path(), due)).await;
    calls_of_today(&node).await;
    let (id, today) = digest_of_today(&node).await;

    // The scheduled one covers the day before the day it fell due.
    let yesterday = due.date_naive().pred_opt().unwrap();
    let subject_of_today = format!("shop: 3 calls, 66.7% attributed ({today} — {today})");
    eventually_for("both digests are mailed: the scheduled one and today's", Duration::from_secs(30), || async {
        smtp.mails().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "each sent once");
    assert!(smtp.violations().is_empty(), "{:?}", smtp.violations());

    let mail = mails
        .iter()
        .find(|m| String::from_utf8_lossy(&m.data).contains(&format!("digest.{}", id.replace(':', "."))))
        .expect("today's digest");
    assert_eq!(mail.from, format!("<{SMTP_USER}>"));
    assert_eq!(mail.to, ["<owner@shop.example>", "<marketing@shop.example>"]);
    let m = mail_parser::MessageParser::default().parse(&mail.data).expect("a mail");
    assert_eq!(m.subject(), Some(subject_of_today.as_str()));
    assert_eq!(m.from().and_then(|a| a.first()).and_then(|a| a.address()), Some(SMTP_USER));
    let to: Vec<&str> = m.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["owner@shop.example", "marketing@shop.example"]);
    assert!(m.date().is_some(), "a Date header");
    assert_eq!(m.message_id(), Some(format!("digest.{}@callpool.test", id.replace(':', ".")).as_str()));
    let ct = m.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));

    let text = m.body_text(0).expect("a text part");
    let link = format!("https://track.example/v1/reports/shop?from={today}&to={today}&lang=en&token={TOKEN}");
    assert!(text.contains(&format!("Calls of shop, {today} — {today}")), "{text}");
    assert!(text.contains("3 calls, 2 attributed to a visit: 66.7% tracked."), "{text}");
    assert!(text.contains("  google: 1 (visits 1, 100.0%)"), "{text}");
    assert!(text.contains("  Calls not attributed to a visit: 1"), "{text}");
    assert!(text.contains(&link), "{text}");
    let html = m.body_html(0).expect("an HTML part");
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;") && !html.contains("<script>"), "{html}");
    assert!(html.contains(&link.replace('&', "&#38;")), "{html}");

    let attachment = m.attachment(0).expect("the calls attached");
    assert_eq!(attachment.attachment_name(), Some(format!("calls-shop-{today}-{today}.csv").as_str()));
    let act = attachment.content_type().unwrap();
    assert_eq!((act.ctype(), act.subtype()), ("text", Some("csv")));
    let csv = String::from_utf8_lossy(attachment.contents()).into_owned();
    assert!(csv.lines().count() == 4, "a header and three calls: {csv}");
    assert!(csv.contains("'<script>") || csv.contains("<script>alert(1)</script>"), "{csv}");
    assert!(csv.contains("'=HYPERLINK"), "a formula made text: {csv}");
    assert!(!csv.contains("+79161110009"), "callers masked: {csv}");

    // The scheduled one: the day before, at its time.
    let scheduled = mails.iter().find(|m| !std::ptr::eq(*m, mail)).unwrap();
    let m = mail_parser::MessageParser::default().parse(&scheduled.data).unwrap();
    assert_eq!(m.subject(), Some(format!("shop: 0 calls, — attributed ({yesterday} — {yesterday})").as_str()));

    // The chat: the same summary, its link without the token.
    eventually("both digests reach the chat", || async { chat.lock().unwrap().len() == 2 }).await;
    let messages = chat.lock().unwrap().clone();
    let of_today = messages.iter().find(|v| v["text"].as_str().unwrap().contains("3 calls")).expect("today's");
    let text = of_today["text"].as_str().unwrap();
    assert!(text.contains(&link.replace(&format!("&token={TOKEN}"), "")) && !text.contains(TOKEN), "{text}");
    assert_eq!(of_today["disable_web_page_preview"], true);
    node.stop().await;
}

/// Two nodes on one Redis find the same digest due: one mail (through TLS from the first byte).
#[tokio::test]
async fn two_nodes_send_a_due_digest_once() {
    let pki = Pki::new();
    let smtp = Smtp::start(&pki, 0, true).await;
    let chat = Arc::new(Mutex::new(Vec::new()));
    let telegram = fake_telegram(chat.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store =
        format!("[store]\nkind = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{}\"", redis_url(), unique("digest"));
    let mut config = config(&store, &pki, smtp.port, &telegram, dir.path(), due());
    config.mail.as_mut().unwrap().security = callpool::config::Security::Tls;
    let (a, b) = (Node::start_real(config.clone()).await, Node::start_real(config).await);
    eventually_for("the due digest is mailed", Duration::from_secs(20), || async { !smtp.mails().is_empty() }).await;
    eventually("and reaches the chat", || async { !chat.lock().unwrap().is_empty() }).await;
    // Both nodes have looked (each looks when it starts, then every 30 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((smtp.mails().len(), chat.lock().unwrap().len()), (1, 1), "sent once");
    assert!(smtp.violations().is_empty(), "{:?}", smtp.violations());
    a.stop().await;
    b.stop().await;
}
