//! `[mail]`: the SMTP server callpool sends mail through; and `[site.digest]`: a site's report
//! sent on a schedule (daily or weekly, at a local time) by email and to a Telegram chat.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use serde::Deserialize;

use super::validate::Validator;
use crate::callback::text::Lang;

/// The SMTP server, `[mail]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The CA certificates (PEM) that sign the server's certificate; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// The name this node gives itself in `EHLO` (default: `[server] public_url`'s host).
    pub hello_name: Option<String>,
    /// How long one conversation with the server may take.
    pub timeout: Duration,
}

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain, upgraded with STARTTLS, which the server must offer (submission, port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption and no password (a relay on the same machine or network only).
    None,
}

/// A site's scheduled report, `[site.digest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    pub every: Every,
    /// The local time (the site's `timezone`) it goes out.
    pub at: NaiveTime,
    /// Who gets it by email (each `Name <address>` or an address).
    pub email: Vec<String>,
    pub telegram: Option<TelegramChat>,
    /// Its language (default: the site's `language`).
    pub language: Lang,
}

/// How often a digest goes out, and the period it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// Each day, on the day before.
    Day,
    /// On this weekday, on the seven days before.
    Week(Weekday),
}

/// A Telegram chat a bot writes to (Bot API `sendMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelegramChat {
    pub base_url: String,
    pub bot_token: String,
    pub chat_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    host: String,
    port: Option<u16>,
    security: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    from: String,
    hello_name: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDigest {
    every: String,
    weekday: Option<String>,
    at: Option<String>,
    #[serde(default)]
    email: Vec<String>,
    telegram: Option<RawTelegram>,
    language: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelegram {
    base_url: Option<String>,
    bot_token: String,
    chat_id: String,
}

impl Validator {
    pub(super) fn mail(&mut self, raw: RawMail) -> MailConfig {
        let at = |field: &str| format!("[mail] {field}");
        let security = match raw.security.as_deref().unwrap_or("starttls") {
            "starttls" => Security::StartTls,
            "tls" => Security::Tls,
            "none" => Security::None,
            other => {
                self.fail(&at("security"), format!("{other:?} is not \"starttls\", \"tls\" or \"none\""));
                Security::StartTls
            }
        };
        if raw.host.trim().is_empty() {
            self.fail(&at("host"), "the SMTP server's name or address is required");
        }
        let port = raw.port.unwrap_or(match security {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        });
        if security == Security::None && (raw.username.is_some() || raw.password.is_some()) {
            self.fail(&at("security"), "\"none\" sends the password in the clear: use \"starttls\" or \"tls\"");
        }
        if raw.username.is_some() != raw.password.is_some() {
            self.fail(&at("password"), "give both username and password (or password_file), or neither");
        }
        if let Err(e) = raw.from.parse::<lettre::message::Mailbox>() {
            self.fail(
                &at("from"),
                format!("{:?} is not an address such as \"callpool <reports@example.com>\": {e}", raw.from),
            );
        }
        let timeout = self.duration(&at("timeout"), raw.timeout.as_deref(), "30s", false);
        MailConfig {
            host: raw.host,
            port,
            security,
            username: raw.username,
            password: raw.password,
            ca_file: raw.ca_file,
            from: raw.from,
            hello_name: raw.hello_name,
            timeout,
        }
    }

    /// A site's `[site.digest]` (`at` names the site's fields; `language` is the site's).
    pub(super) fn digest(&mut self, at: &dyn Fn(&str) -> String, raw: RawDigest, language: Lang) -> DigestConfig {
        let every = match (raw.every.as_str(), raw.weekday.as_deref()) {
            ("daily", None) => Every::Day,
            ("daily", Some(_)) => {
                self.fail(&at("digest.weekday"), "only a weekly digest has a weekday");
                Every::Day
            }
            ("weekly", day) => match day.unwrap_or("monday").parse::<Weekday>() {
                Ok(d) => Every::Week(d),
                Err(_) => {
                    self.fail(&at("digest.weekday"), format!("{day:?} is not a weekday such as \"monday\""));
                    Every::Week(Weekday::Mon)
                }
            },
            (other, _) => {
                self.fail(&at("digest.every"), format!("{other:?} is neither \"daily\" nor \"weekly\""));
                Every::Day
            }
        };
        let time = raw.at.as_deref().unwrap_or("09:00");
        let at_time = NaiveTime::parse_from_str(time, "%H:%M").unwrap_or_else(|_| {
            self.fail(&at("digest.at"), format!("{time:?} is not a local time such as \"09:00\""));
            NaiveTime::MIN
        });
        for (i, e) in raw.email.iter().enumerate() {
            if let Err(why) = e.parse::<lettre::message::Mailbox>() {
                self.fail(&at(&format!("digest.email[{i}]")), format!("{e:?} is not an email address: {why}"));
            }
        }
        let telegram = raw.telegram.map(|t| {
            let base_url = self.base_url(
                &at("digest.telegram.base_url"),
                t.base_url.unwrap_or_else(|| "https://api.telegram.org".into()),
            );
            if t.bot_token.is_empty() || t.chat_id.is_empty() {
                self.fail(&at("digest.telegram"), "bot_token and chat_id are required");
            }
            TelegramChat { base_url, bot_token: t.bot_token, chat_id: t.chat_id }
        });
        if raw.email.is_empty() && telegram.is_none() {
            self.fail(&at("digest"), "say who gets it: email = [\"owner@example.com\"], or a telegram chat, or both");
        }
        let language = self.language(&at("digest.language"), raw.language.as_deref(), language);
        DigestConfig { every, at: at_time, email: raw.email, telegram, language }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, GOOD};
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(text, "test.toml", &env(&[])).map_err(|e| e.problems)
    }

    #[test]
    fn a_digest_needs_mail_for_email_and_a_public_url_for_its_link() {
        let digest = "[site.digest]\nevery = \"weekly\"\nweekday = \"friday\"\nat = \"18:30\"\nemail = [\"Owner <owner@shop.example>\"]\n";
        let problems = parse(&format!("{GOOD}\n{digest}")).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("[mail]")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("public_url")), "{problems:?}");
        let mail = "[mail]\nhost = \"smtp.example.com\"\nusername = \"reports\"\npassword = \"smtp-password\"\nfrom = \"callpool <reports@example.com>\"\n";
        let server = "[server]\npublic_url = \"https://track.example.com\"\n";
        let config = parse(&format!("{GOOD}\n{digest}\n{mail}\n{server}")).unwrap();
        let d = config.sites[0].digest.as_ref().unwrap();
        assert_eq!(d.every, super::Every::Week(chrono::Weekday::Fri));
        assert_eq!(d.at.format("%H:%M").to_string(), "18:30");
        let m = config.mail.as_ref().unwrap();
        assert_eq!((m.port, m.security), (587, super::Security::StartTls));
    }

    #[test]
    fn bad_digest_and_mail_settings_are_named() {
        let text = format!(
            "{GOOD}\n[site.digest]\nevery = \"hourly\"\nat = \"25:00\"\nemail = [\"not an address\"]\n\
             [mail]\nhost = \"smtp.example.com\"\nsecurity = \"none\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"nobody\"\n\
             [server]\npublic_url = \"https://track.example.com\"\n"
        );
        let problems = parse(&text).unwrap_err().join("\n");
        for needle in ["digest.every", "digest.at", "digest.email[0]", "[mail] security", "[mail] from"] {
            assert!(problems.contains(needle), "{needle}: {problems}");
        }
        let nobody =
            format!("{GOOD}\n[site.digest]\nevery = \"daily\"\n[server]\npublic_url = \"https://t.example\"\n");
        assert!(parse(&nobody).unwrap_err().join("\n").contains("say who gets it"));
    }
}
