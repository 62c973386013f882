//! Mango Office's callback trigger: `commands/callback`, signed as the events are (the module
//! above has the protocol and its sources).

use super::*;

/// Mango's API, unless the trigger's `url` says otherwise (tests point it at a fake).
pub const DEFAULT_API_URL: &str = "https://app.mango-office.ru";
/// The command that has an employee call a number: Mango rings the employee, then the number.
pub const CALLBACK_COMMAND: &str = "/vpbx/commands/callback";

/// The callback trigger's settings: the VPBX's key and salt (the same as its `[[pbx]]`'s), the
/// employee who calls, and optionally the device Mango rings them on and the line the visitor sees.
pub struct CallbackCommand {
    pub(super) base_url: String,
    pub(super) api_key: String,
    pub(super) api_salt: String,
    /// The employee's extension (internal number), digits.
    pub(super) extension: String,
    /// The employee's device to ring instead of their default: a number's digits or a SIP address.
    pub(super) number: Option<String>,
    /// The line the call goes out on: a number's digits, or a SIP line's name.
    pub(super) line_number: Option<String>,
}

/// Reads `trigger = { kind = "mango", api_key, api_salt, extension, number?, line_number?, url? }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    url: Option<String>,
    api_key: Option<String>,
    api_salt: Option<String>,
    extension: Option<Digits>,
    number: Option<String>,
    line_number: Option<Digits>,
}

/// A setting that may be written as a string or as a bare number (`extension = 101`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Digits {
    Text(String),
    Number(u64),
}

impl Digits {
    fn text(self) -> String {
        match self {
            Digits::Text(s) => s.trim().to_owned(),
            Digits::Number(n) => n.to_string(),
        }
    }
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("mango")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawTrigger = f.parse()?;
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| DEFAULT_API_URL.into()));
        let api_key = f.required(
            "api_key",
            raw.api_key,
            " for kind = \"mango\" (the VPBX's unique code, vpbx_api_key: Integrations, API connector)",
        );
        let (env_name, from_env) = f.owner_var(ENV_TRIGGER_SECRET_PREFIX);
        let salt = from_env.or(raw.api_salt);
        let why =
            format!(" for kind = \"mango\" (the signing key, vpbx_api_salt, on the same page; or set {env_name})");
        let api_salt = f.required("api_salt", salt, &why).map(|s| f.secret("api_salt", s));
        let extension = match raw.extension.map(Digits::text) {
            Some(e) => extension(&e).map_err(|e| f.fail("extension", e)).ok(),
            None => {
                f.fail(
                    "extension",
                    "required for kind = \"mango\": the extension (internal number) of the employee Mango rings first",
                );
                None
            }
        };
        let number = match raw.number {
            None => Some(None),
            Some(n) => employee_number(n.trim()).map(Some).map_err(|e| f.fail("number", e)).ok(),
        };
        let line_number = match raw.line_number.map(Digits::text) {
            None => Some(None),
            Some(l) => line_name(&l).map(Some).map_err(|e| f.fail("line_number", e)).ok(),
        };
        let trigger = CallbackCommand {
            base_url,
            api_key: api_key?,
            api_salt: api_salt?,
            extension: extension?,
            number: number?,
            line_number: line_number?,
        };
        Some(crate::pbx::adapter::trigger_section("mango", trigger))
    }
}

/// An employee's extension: their internal number in the VPBX, digits.
fn extension(raw: &str) -> Result<String, String> {
    if (1..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not an extension: the employee's internal number in the VPBX, digits (\"101\")"))
    }
}

/// A number as Mango writes it: the digits with the country code, without `+`.
fn mango_digits(raw: &str) -> Option<String> {
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    ((7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_owned())
}

/// The employee's device Mango rings: a phone number (international, `+` optional) or a SIP
/// address; not an extension or a group (Mango refuses those here).
fn employee_number(raw: &str) -> Result<String, String> {
    if let Some(digits) = mango_digits(raw) {
        return Ok(digits);
    }
    let sip = raw.strip_prefix("sip:").filter(|a| a.contains('@'));
    match sip {
        Some(_) if raw.len() <= 128 && !raw.contains(char::is_whitespace) => Ok(raw.to_owned()),
        _ => Err(format!(
            "{raw:?} is neither a phone number in international format (\"+74951230099\") nor a SIP address \
             (\"sip:user@vpbx400000000.mangosip.ru\")"
        )),
    }
}

/// The line the call goes out on: a line's number (international, `+` optional), or the name a
/// SIP line has in Mango's personal account (not its SIP address).
fn line_name(raw: &str) -> Result<String, String> {
    if let Some(digits) = mango_digits(raw) {
        return Ok(digits);
    }
    if raw.is_empty() || raw.len() > 128 || raw.contains(char::is_control) || raw.starts_with("sip:") {
        return Err(format!(
            "{raw:?} is neither a line's number (\"+74951230001\") nor a SIP line's name as Mango's personal \
             account shows it (up to 128 bytes)"
        ));
    }
    Ok(raw.to_owned())
}

/// The `json` of `commands/callback`, its fields in the order of Mango's example (§3.2.1).
#[derive(Serialize)]
struct Command<'a> {
    command_id: &'a str,
    from: CommandFrom<'a>,
    to_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_number: Option<&'a str>,
}

#[derive(Serialize)]
struct CommandFrom<'a> {
    extension: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<&'a str>,
}

impl CallbackCommand {
    /// The command's `json`: the callback's id as `command_id` (Mango hands it back in every
    /// event of the call), the employee, the visitor's digits, the line.
    fn command(&self, ring: &Ring<'_>, cb: &Callback) -> String {
        serde_json::to_string(&Command {
            command_id: ring.call_id,
            from: CommandFrom { extension: ring.operator, number: self.number.as_deref() },
            to_number: cb.number.as_str().trim_start_matches('+'),
            line_number: self.line_number.as_deref(),
        })
        .expect("the command serializes")
    }
}

impl Trigger for CallbackCommand {
    /// Mango rings an employee: the operator (an extension; by default the trigger's own).
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, _now: Ts) -> reqwest::RequestBuilder {
        let json = self.command(ring, cb);
        let sign = sign(&self.api_key, &json, &self.api_salt);
        http.post(format!("{}{CALLBACK_COMMAND}", self.base_url)).form(&[
            ("vpbx_api_key", self.api_key.as_str()),
            ("sign", sign.as_str()),
            ("json", json.as_str()),
        ])
    }

    /// An employee's extension.
    fn check_operator(&self, raw: &str) -> Result<String, String> {
        extension(raw)
    }

    fn own_operator(&self) -> Option<&str> {
        Some(&self.extension)
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let result =
            json.as_ref().and_then(|j| j.get("result")).and_then(json_text).and_then(|r| r.parse::<i64>().ok());
        let message: String = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(json_text)
            .map(|m| m.chars().take(200).collect())
            .unwrap_or_default();
        let said = |code: i64| format!("{code} ({}) {message}", meaning(code)).trim_end().to_owned();
        if status.as_u16() == 401 {
            // Mango blocks a key for two minutes after its second bad request in two minutes.
            return Answer::Again(
                "Mango answered HTTP 401 (the key is blocked for 2 minutes after bad requests)".into(),
            );
        }
        if let Some(answer) = http_answer(status, body) {
            return match (answer, result) {
                (Answer::Refused(_), Some(code)) => {
                    Answer::Refused(format!("Mango refused the callback command: HTTP {status}, {}", said(code)))
                }
                (answer, _) => answer,
            };
        }
        match (result, json.is_some()) {
            (Some(1000..=1099), _) => Answer::Placed { pbx_ref: None },
            (Some(code), _) if retriable(code) => {
                Answer::Again(format!("Mango could not take the callback command now: {}", said(code)))
            }
            (Some(code), _) => Answer::Refused(format!("Mango refused the callback command: {}", said(code))),
            // Mango's asynchronous requests may be answered with the status alone.
            (None, false) if body.trim().is_empty() => Answer::Placed { pbx_ref: None },
            (None, false) => Answer::Again("Mango answered something that is not JSON".into()),
            (None, true) => Answer::Refused(format!(
                "Mango's answer has no result code: {}",
                body.chars().take(200).collect::<String>()
            )),
        }
    }
}

/// Result codes worth another try: a limit on calls at once (2220), the rate limit (4290), and
/// Mango's own trouble (50xx: overload, restart, technical problems, the service unavailable,
/// "pause or send fewer requests"), except 5009 and 5010 (a service that cannot be added, no
/// money to add it).
fn retriable(code: i64) -> bool {
    matches!(code, 2220..=2229 | 4290 | 5000..=5008 | 5011..=5099)
}

/// What a result code means (Mango's list of result codes, by class when a code is not listed).
fn meaning(code: i64) -> &'static str {
    match code {
        1000..=1099 => "done",
        2100..=2199 => "the account cannot be used: blocked, closed or frozen",
        2210..=2219 => "the service's limit for the period is reached",
        2220..=2229 => "too many calls or actions at once",
        2230..=2239 => "the service is not available",
        2240..=2249 => "not enough money on the account",
        2300..=2399 => "calls in this direction are blocked",
        2000..=2999 => "refused by billing",
        3101 => "the request is not a POST",
        3102 => "the sign does not match: check api_key and api_salt",
        3103 => "a required parameter is missing",
        3104 => "a parameter is in the wrong format: check extension, number and line_number",
        3105 => "the key is wrong: check api_key",
        3124 => "the line cannot be used for outgoing calls: check line_number",
        3100..=3199 => {
            "wrong parameters, or the command cannot be done with them: check extension, number and line_number"
        }
        3200..=3299 => "the number is wrong",
        3300..=3399 => "no such object: check extension and line_number",
        3400..=3499 => "the json is not valid",
        3000..=3999 => "a wrong request",
        4001 => "the command is not supported",
        4290 => "too many requests",
        4000..=4999 => "the action cannot be done",
        5001 => "overload",
        5002 => "restart",
        5003 => "technical problems",
        5008 => "the service is unavailable: pause or send fewer requests",
        5009 => "the service cannot be added",
        5010 => "not enough money to add the service",
        5000..=5999 => "a server error",
        _ => "a code Mango does not list",
    }
}
