//! Asterisk's callback trigger: AMI `Originate` on a connection of callpool's own (the module
//! above has the protocol and its sources).

use super::*;

/// Reads `[site.callback] trigger = { kind = "asterisk", ... }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

/// How a callback is placed through AMI: `Originate` rings the operator's `channel`; once the
/// operator answers, the dialplan's `context` dials the visitor.
#[derive(Clone)]
pub struct Originate {
    ami: String,
    username: String,
    secret: String,
    channel: String,
    context: String,
    caller_id: Option<String>,
    ring: Duration,
    /// The visitor's number as the dialplan dials it: E.164 digits, with `+`, or national
    /// digits after `dial_prefix`.
    dial: Dial,
    dial_prefix: String,
}

#[derive(Clone, Copy)]
enum Dial {
    Digits,
    E164,
    National,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginate {
    ami: Option<String>,
    username: Option<String>,
    secret: Option<String>,
    channel: Option<String>,
    context: Option<String>,
    caller_id: Option<String>,
    ring: Option<String>,
    dial: Option<String>,
    dial_prefix: Option<String>,
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("asterisk")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawOriginate = f.parse()?;
        const WHY: &str = " for kind = \"asterisk\" (an AMI user with originate rights)";
        let ami = address(f, raw.ami);
        let username = f.required("username", raw.username, WHY);
        let (_, from_env) = f.owner_var(crate::config::ENV_TRIGGER_SECRET_PREFIX);
        let secret = f.required("secret", from_env.or(raw.secret), WHY);
        let channel =
            f.required("channel", raw.channel, " for kind = \"asterisk\": the operator's channel, e.g. \"PJSIP/101\"");
        let ring = match raw.ring.as_deref().map(humantime::parse_duration).unwrap_or(Ok(Duration::from_secs(30))) {
            Ok(d) if (Duration::from_secs(5)..=Duration::from_secs(300)).contains(&d) => d,
            _ => {
                f.fail("ring", "how long the operator's phone rings: 5s to 5m, e.g. \"30s\"");
                Duration::from_secs(30)
            }
        };
        let dial = match raw.dial.as_deref().unwrap_or("digits") {
            "digits" => Dial::Digits,
            "e164" => Dial::E164,
            "national" => Dial::National,
            other => {
                f.fail("dial", format!("{other:?} is not one of \"digits\" (79161234567), \"e164\" (+79161234567), \"national\" (9161234567, after dial_prefix)"));
                Dial::Digits
            }
        };
        let originate = Originate {
            ami: ami?,
            username: username?,
            secret: secret?,
            channel: channel?,
            context: raw.context.unwrap_or_else(|| "from-internal".into()),
            caller_id: raw.caller_id,
            ring,
            dial,
            dial_prefix: raw.dial_prefix.unwrap_or_default(),
        };
        let trigger = originate;
        Some(crate::pbx::adapter::trigger_section("asterisk", trigger))
    }
}

impl crate::pbx::adapter::Trigger for Originate {
    fn request(
        &self,
        http: &reqwest::Client,
        _: &crate::pbx::adapter::Ring<'_>,
        _: &crate::callback::Callback,
        _: Ts,
    ) -> reqwest::RequestBuilder {
        // Not used: `place` asks over AMI.
        http.get("http://127.0.0.1:9/")
    }

    /// A channel, `<technology>/<resource>` (`PJSIP/101`, `SIP/trunk/74951230099`).
    fn check_operator(&self, raw: &str) -> Result<String, String> {
        match raw.split_once('/') {
            Some((tech, rest))
                if !tech.is_empty()
                    && !rest.is_empty()
                    && raw.len() <= 128
                    && !raw.contains(|c: char| c.is_whitespace() || c.is_control()) =>
            {
                Ok(raw.to_owned())
            }
            _ => Err(format!("{raw:?} is not an Asterisk channel such as \"PJSIP/101\"")),
        }
    }

    fn own_operator(&self) -> Option<&str> {
        Some(&self.channel)
    }

    fn answer(&self, _: reqwest::StatusCode, _: &str) -> crate::pbx::adapter::Answer {
        crate::pbx::adapter::Answer::Refused("Asterisk is asked over AMI".into())
    }

    fn place(
        &self,
        ring: &crate::pbx::adapter::Ring<'_>,
        cb: &crate::callback::Callback,
    ) -> Option<BoxFuture<'static, crate::pbx::adapter::Answer>> {
        let me = self.clone();
        let channel = ring.operator.to_owned();
        let exten = match self.dial {
            Dial::Digits => cb.number.as_str().trim_start_matches('+').to_owned(),
            Dial::E164 => cb.number.as_str().to_owned(),
            Dial::National => format!("{}{}", self.dial_prefix, cb.number.national_digits()),
        };
        let id = ring.call_id.to_owned();
        Some(Box::pin(async move { me.originate(&channel, &id, &exten).await }))
    }
}

impl Originate {
    /// Logs in on a connection of its own, asks for the call, and reads the answer to it.
    async fn originate(&self, channel: &str, id: &str, exten: &str) -> crate::pbx::adapter::Answer {
        use crate::pbx::adapter::Answer;
        let result = async {
            let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&self.ami))
                .await
                .map_err(|_| Answer::Again(format!("connecting to the AMI at {} timed out", self.ami)))?
                .map_err(|e| Answer::Again(format!("cannot connect to the AMI at {}: {e}", self.ami)))?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let again = |e: String| Answer::Again(e);
            within(SILENT_FOR, line(&mut read)).await.map_err(again)?;
            let login = format!(
                "Action: Login\r\nActionID: callpool-login\r\nUsername: {}\r\nSecret: {}\r\nEvents: off\r\n\r\n",
                clean(&self.username),
                clean(&self.secret)
            );
            let caller = self.caller_id.as_deref().map(|c| format!("CallerID: {}\r\n", clean(c))).unwrap_or_default();
            let originate = format!(
                "Action: Originate\r\nActionID: {id}\r\nChannel: {}\r\nContext: {}\r\nExten: {}\r\nPriority: 1\r\n{caller}Timeout: {}\r\nAsync: true\r\nVariable: CALLPOOL_CALLBACK={id}\r\n\r\n",
                clean(channel),
                clean(&self.context),
                clean(exten),
                self.ring.as_millis(),
            );
            write.write_all(login.as_bytes()).await.map_err(|e| Answer::Again(e.to_string()))?;
            let mut sent = false;
            loop {
                let msg = within(SILENT_FOR, message(&mut read))
                    .await
                    .map_err(again)?
                    .ok_or_else(|| Answer::Again("the AMI closed the connection".into()))?;
                let said = |k: &str| msg.get(k).map(String::as_str);
                match (said("ActionID"), said("Response")) {
                    (Some("callpool-login"), Some("Success")) if !sent => {
                        write.write_all(originate.as_bytes()).await.map_err(|e| Answer::Again(e.to_string()))?;
                        sent = true;
                    }
                    (Some("callpool-login"), _) => {
                        return Err(Answer::Refused(format!(
                            "the AMI refused callpool's login: {}",
                            said("Message").unwrap_or("")
                        )))
                    }
                    (Some(a), Some("Success")) if a == id => break,
                    (Some(a), _) if a == id => {
                        return Err(Answer::Refused(format!("the AMI refused the call: {}", said("Message").unwrap_or(""))))
                    }
                    _ => {}
                }
            }
            let _ = write.write_all(b"Action: Logoff\r\n\r\n").await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Answer::Placed { pbx_ref: None },
            Err(answer) => answer,
        }
    }
}
