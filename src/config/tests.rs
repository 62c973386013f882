//! The configuration's own tests, and the helpers other modules' tests share (`GOOD`, `env`,
//! `check`).

use std::collections::HashMap;
use std::time::Duration;

use super::*;

pub(crate) const GOOD: &str = r#"
    [pool]
    numbers = ["+74951230001", "+74951230002"]

    [[site]]
    id = "shop"
    key = "shop-public-key"
    allowed_origins = ["https://shop.example"]
    timezone = "Europe/Moscow"
    default_before = "+74951234567"
    default_after = "+74951234568"
    numbers = ["+74951230003"]
    max_numbers = 3
    delay_to_show = "50s"
"#;

pub(crate) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Parses `text` and checks that it fails with exactly the problems that contain `expected`.
pub(crate) fn check(text: &str, expected: &[&str]) {
    match Config::parse(text, "test.toml", &env(&[])) {
        Ok(_) if expected.is_empty() => {}
        Ok(_) => panic!("expected problems {expected:?}, the config was accepted"),
        Err(e) => {
            assert_eq!(e.problems.len(), expected.len(), "problems: {:#?}", e.problems);
            for (p, want) in e.problems.iter().zip(expected) {
                assert!(p.contains(want), "{p:?} does not contain {want:?}");
            }
        }
    }
}

#[test]
fn a_good_config_parses_with_defaults() {
    let c = Config::parse(GOOD, "test.toml", &env(&[])).unwrap();
    let s = &c.sites[0];
    assert_eq!(s.rules.cooldown, Duration::from_secs(7 * 86_400));
    assert_eq!(s.rules.reclaim_after_idle, Duration::from_secs(1800));
    assert_eq!(s.timezone, chrono_tz::Europe::Moscow);
    assert_eq!(c.store, StoreConfig::Embedded { data_dir: "data".into() });
    let spec = c.pool_spec();
    assert_eq!(spec.numbers.len(), 3);
    assert_eq!(spec.numbers[2].dedicated_to, Some(s.id.clone()));
}

#[test]
fn environment_overrides_secrets_and_urls() {
    let e = env(&[
        (ENV_STORE, "redis"),
        (ENV_REDIS_URL, "redis://10.0.0.1:6380/2"),
        (ENV_ADMIN_TOKEN, "0123456789abcdef"),
        (ENV_LISTEN, "0.0.0.0:9000"),
    ]);
    let c = Config::parse(GOOD, "test.toml", &e).unwrap();
    assert_eq!(
        c.store,
        StoreConfig::Redis {
            url: "redis://10.0.0.1:6380/2".into(),
            prefix: "callpool".into(),
            tls: Default::default(),
            sentinel: None
        }
    );
    assert_eq!(c.server.admin_token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
}

#[test]
fn bad_configs_name_the_site_and_field() {
    check(&GOOD.replace("+74951230002", "84951230002"), &["[pool] numbers[1]: \"84951230002\" is not an E.164"]);
    check(
        &GOOD.replace("default_after = \"+74951234568\"", "default_after = \"+74951230001\""),
        &["site \"shop\": default_after: +74951230001 is also a pool number"],
    );
    check(
        &GOOD.replace("numbers = [\"+74951230003\"]", "numbers = [\"+74951230002\"]"),
        &["site \"shop\": numbers[0]: +74951230002 is already used at [pool] numbers[1]"],
    );
    check(
        &GOOD.replace("delay_to_show = \"50s\"", "delay_to_show = \"5h\""),
        &["site \"shop\": delay_to_show: 5h is not shorter than max_hold"],
    );
    check(&GOOD.replace("timezone", "time_zone"), &["unknown field `time_zone`"]);
    check(&GOOD.replace("\"Europe/Moscow\"", "\"Mars/Olympus\""), &["site \"shop\": timezone"]);
    check(&GOOD.replace("\"50s\"", "\"fifty\""), &["site \"shop\": delay_to_show: \"fifty\" is not a duration"]);
    check(&GOOD.replace("https://shop.example", "shop.example/path"), &["allowed_origins[0]"]);
    check(
        &GOOD.replace("max_numbers = 3", "max_numbers = 0"),
        &["site \"shop\": max_numbers: the site has no numbers"],
    );
    check(
        &format!("{GOOD}\n{}", &GOOD[GOOD.find("[[site]]").unwrap()..].replace("+7495123000", "+7495124000")),
        &["site \"shop\": id: another site has the same id", "site \"shop\": key: another site has the same key"],
    );
}

#[test]
fn callback_configs_are_checked_field_by_field() {
    let pbx = "\n[[pbx]]\nid = \"office\"\nsecrets = [\"office-secret-0123456789\"]\n";
    let with = |cb: &str| format!("{GOOD}\n[site.callback]\n{cb}\n{pbx}");
    let generic =
        "trigger = { kind = \"generic\", url = \"https://pbx.example/cb\", secret = \"trigger-secret-0123456\" }";
    let good = with(&format!("operator = \"+74951230099\"\n{generic}"));
    let c = Config::parse(&good, "test.toml", &env(&[])).unwrap();
    let cb = c.sites[0].callback.as_ref().unwrap();
    assert_eq!((cb.pbx.as_str(), cb.attempts, cb.trigger.name()), ("office", 5, "generic"));
    assert_eq!(cb.limits.per_number.len(), 3, "the telecom defaults: 7/15m, 9/1h, 15/24h");
    assert_eq!(cb.limits.number_ban, Duration::from_secs(86_400));
    assert_eq!((cb.countries.clone(), cb.min_time_on_site), (vec!["RU".to_owned()], Duration::from_secs(10)));
    check(
        &with(&format!("operator = \"+74951230099\"\ncountries = [\"ru\", \"Narnia\"]\n{generic}")),
        &["callback.countries: \"NARNIA\" is not a region"],
    );
    check(&with(&format!("operator = \"+7\"\n{generic}")), &["site \"shop\": callback.operator"]);
    check(
        &with(&format!("operator = \"+74951230099\"\nregion = \"XX\"\nlanguage = \"de\"\n{generic}")),
        &["callback.region: \"XX\"", "callback.language: \"de\""],
    );
    check(
        &with("operator = \"+74951230099\"\ntrigger = { kind = \"voximplant\", account_id = \"1\" }"),
        &["callback.trigger.api_key: required", "callback.trigger.rule_id: required"],
    );
    check(
        &with(&format!(
            "operator = \"+74951230099\"\nhours = {{ mon = \"9-18\" }}\nlimits = {{ per_ip = [\"5\"] }}\n{generic}"
        )),
        &["callback.hours: mon: \"9-18\" is not HH:MM-HH:MM", "callback.limits.per_ip: \"5\" is not N/period"],
    );
    check(
        &with(&format!("operator = \"+74951230099\"\ntexts = {{ buton = \"x\" }}\nblocklist = [\"7916\"]\n{generic}")),
        &["callback.texts: \"buton\" is not a text key", "callback.blocklist: \"7916\""],
    );
    check(
        &with(&format!("operator = \"+74951230099\"\npbx = \"nope\"\n{generic}")),
        &["site \"shop\": callback.pbx: name the [[pbx]]"],
    );
}

#[test]
fn secrets_may_come_from_files_and_never_show_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let admin = file("admin", "admin-token-from-a-file-0123\n");
    let secrets = file("secrets", "office-secret-0123456789\nsecond-secret-0123456789\n");
    let password = file("redis", "p@ss word/1\n");
    let text = format!(
        "{GOOD}\n[server]\nadmin_token_file = {admin:?}\n[store]\nkind = \"redis\"\nredis_url = \"redis://10.0.0.1:6380/2\"\n\
         redis_username = \"callpool\"\nredis_password_file = {password:?}\n[[pbx]]\nid = \"office\"\nsecrets_file = {secrets:?}\n"
    );
    let c = Config::parse(&text, "test.toml", &env(&[])).unwrap();
    assert_eq!(c.server.admin_token.as_deref(), Some("admin-token-from-a-file-0123"), "the last line break dropped");
    let StoreConfig::Redis { url, .. } = &c.store else { panic!("{:?}", c.store) };
    assert_eq!(url, "redis://callpool:p%40ss%20word%2F1@10.0.0.1:6380/2", "written into the URL, encoded");
    assert!(!c.store.to_string().contains("p%40ss"), "shown redacted: {}", c.store);
    let missing = dir.path().join("nope").display().to_string();
    let bad = format!(
        "{GOOD}\n[server]\nadmin_token = \"x\"\nadmin_token_file = {admin:?}\nmetrics_token_file = {missing:?}\n"
    );
    let e = Config::parse(&bad, "test.toml", &env(&[])).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
    assert!(e.problems[0].contains("server.admin_token_file: give either admin_token or admin_token_file"));
    assert!(e.problems[1].contains("server.metrics_token_file") && e.problems[1].contains("cannot open it"));
    assert!(!format!("{e:?}").contains("admin-token-from-a-file"), "a secret's content is never in an error");
    check(
        &format!("{GOOD}\n[store]\nkind = \"redis\"\nredis_url = \"redis://u:p@h/\"\nredis_password = \"x\"\n"),
        &["[store] redis_password: the URL names a user already"],
    );
}

#[test]
fn sentinel_settings_are_checked_and_the_sentinel_password_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("sentinel");
    std::fs::write(&password, "sentinel-pw\n").unwrap();
    let store = |extra: &str| {
        format!(
            "{GOOD}\n[store]\nkind = \"redis\"\nredis_url = \"redis://mymaster/3\"\nredis_password = \"pw\"\n{extra}\n"
        )
    };
    let text = store(&format!(
        "redis_sentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\nredis_master_name = \"mymaster\"\n\
         redis_sentinel_password_file = {:?}",
        password.display().to_string()
    ));
    let c = Config::parse(&text, "test.toml", &env(&[])).unwrap();
    let StoreConfig::Redis { sentinel: Some(s), url, .. } = &c.store else { panic!("{:?}", c.store) };
    assert_eq!(s.sentinels, vec![("10.0.0.1".to_owned(), 26379), ("::1".to_owned(), 26380)]);
    assert_eq!((s.master_name.as_str(), s.password.as_deref()), ("mymaster", Some("sentinel-pw")));
    assert_eq!(url, "redis://:pw@mymaster/3");
    let shown = format!("{} {:?}", c.store, s);
    assert!(!shown.contains("pw@") && !shown.contains("sentinel-pw"), "{shown}");
    assert!(shown.contains("primary \"mymaster\" of sentinels 10.0.0.1:26379, ::1:26380"), "{shown}");

    check(
        &store("redis_sentinels = [\"10.0.0.1\", \"h:0\", \"a/b:1\"]"),
        &[
            "[store] redis_sentinels[0]: \"10.0.0.1\" is not a host:port",
            "[store] redis_sentinels[1]",
            "[store] redis_sentinels[2]",
            "[store] redis_master_name: must name the primary",
        ],
    );
    check(
        &store("redis_sentinels = []\nredis_master_name = \"m\""),
        &["[store] redis_sentinels: must name at least one"],
    );
    check(&store("redis_master_name = \"m\""), &["[store] redis_master_name: needs redis_sentinels"]);
    check(&store("redis_sentinel_password = \"x\""), &["[store] redis_sentinel_password: is for the sentinels"]);
}

#[test]
fn a_callback_may_ring_several_operators_as_its_pbx_can() {
    let pbx = "\n[[pbx]]\nid = \"office\"\nsecrets = [\"office-secret-0123456789\"]\n";
    let with = |cb: &str| format!("{GOOD}\n[site.callback]\n{cb}\n{pbx}");
    let generic =
        "trigger = { kind = \"generic\", url = \"https://pbx.example/cb\", secret = \"trigger-secret-0123456\" }";
    let c = Config::parse(
        &with(&format!("operators = [\"+74951230099\", \"+7 495 123-00-98\"]\nhunt = \"all\"\n{generic}")),
        "test.toml",
        &env(&[]),
    );
    let c = c.unwrap();
    let cb = c.sites[0].callback.as_ref().unwrap();
    assert_eq!(cb.operators, ["+74951230099", "+74951230098"], "read as E.164");
    assert_eq!((cb.hunt, cb.ring_for), (Hunt::All, Duration::from_secs(25)));
    // Mango rings its own extension unless the form lists others (extensions, then).
    let mango = "trigger = { kind = \"mango\", api_key = \"mango-key-0123\", api_salt = \"mango-salt-0123456789\", extension = \"101\" }";
    let c = Config::parse(&with(mango), "test.toml", &env(&[])).unwrap();
    assert_eq!(c.sites[0].callback.as_ref().unwrap().operators, ["101"]);
    let c = Config::parse(&with(&format!("operators = [\"102\", 103]\n{mango}")), "test.toml", &env(&[]));
    assert!(c.is_err(), "a bare number is not a string");
    let c = Config::parse(&with(&format!("operators = [\"102\", \"103\"]\n{mango}")), "test.toml", &env(&[]));
    assert_eq!(c.unwrap().sites[0].callback.as_ref().unwrap().operators, ["102", "103"]);
    check(
        &with(&format!("operators = [\"102\", \"103\", \"+7495\"]\nhunt = \"all\"\n{mango}")),
        &["callback.operators: \"+7495\" is not an extension", "callback.hunt: this trigger's PBX cannot"],
    );
    let zadarma = "trigger = { kind = \"zadarma\", key = \"a248a6a984459935b569\", secret = \"zadarma-secret-0123456789\", from = \"100\" }";
    check(
        &with(&format!("operators = [\"100\", \"101\"]\n{zadarma}")),
        &["callback.operators: this trigger's PBX does not report the callback's call"],
    );
    check(
        &with(&format!(
            "operators = [\"+74951230099\", \"+74951230099\"]\nhunt = \"first\"\nring_for = \"2s\"\n{generic}"
        )),
        &[
            "callback.ring_for: between 5s and 5m",
            "callback.hunt: \"first\" is neither",
            "callback.operators: \"+74951230099\" is listed twice",
        ],
    );
    check(&with(generic), &["callback.operator: required"]);
}

#[test]
fn vendors_and_destinations_read_their_own_tables() {
    let pbx = |fields: &str| format!("{GOOD}\n[[pbx]]\nid = \"tw\"\n{fields}\n");
    let c = Config::parse(
        &pbx("kind = \"twilio\"\nauth_token = \"t\"\nurl = \"https://cp.example/v1/pbx/calls?pbx=tw\""),
        "test.toml",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(c.pbxs[0].adapter.name(), "twilio");
    check(
        &pbx("kind = \"twilio\""),
        &["[[pbx]] #1 (\"tw\") auth_token: required", "[[pbx]] #1 (\"tw\") url: required"],
    );
    check(
        &pbx("kind = \"no-such-vendor\""),
        &["[[pbx]] #1 (\"tw\") kind: \"no-such-vendor\" is not one of \"callpool\", \"twilio\""],
    );
    check(&pbx("secrets = [\"long-enough-secret-0123\"]\nsecret = \"typo\""), &["unknown field `secret`"]);
    // No secret: only with a token (or addresses) of its own.
    check(&pbx(""), &["[[pbx]] #1 (\"tw\") secrets: list at least one signing secret"]);
    check(&pbx("token = \"a-long-enough-token-0123\""), &[]);
    check(&pbx("allow_from = [\"10.0.0.0/8\", \"nonsense\"]"), &["[[pbx]] #1 (\"tw\") allow_from[1]: \"nonsense\""]);
    let site = |table: &str| format!("{GOOD}\n{table}\n");
    let c = Config::parse(&site("[site.ga4]\nmeasurement_id = \"G-ABC1\"\napi_secret = \"s\""), "test.toml", &env(&[]))
        .unwrap();
    assert!(c.sites[0].sections.get::<crate::jobs::ga4::Ga4Site>("ga4").is_some());
    check(
        &site("[site.ga4]\nmeasurement_id = \"UA-1\"\napi_secret = \"s\""),
        &["site \"shop\": ga4.measurement_id: \"UA-1\""],
    );
    check(&site("[site.salesforce]\nsubdomain = \"x\""), &["site \"shop\": unknown field `salesforce`"]);
}

#[test]
fn the_demo_config_is_valid() {
    let c = Config::demo(&env(&[])).unwrap();
    assert_eq!(c.sites.len(), 1);
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../callpool.example.toml");
    Config::parse(text, "callpool.example.toml", &env(&[])).unwrap();
}

/// `sites.d/` beside the file: one site per `*.toml` file, read in name order; other files
/// are not sites; a problem in a site file names the file; the version follows every file.
#[test]
fn site_files_in_sites_d_are_read_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("callpool.toml");
    std::fs::write(&file, GOOD).unwrap();
    let load = || Config::load(&file, &env(&[]));
    let alone = load().unwrap();
    assert_eq!(alone.version.len(), 12);
    let sites = dir.path().join(SITES_DIR);
    std::fs::create_dir(&sites).unwrap();
    let site = |id: &str, n: u8| {
        format!(
            "id = {id:?}\nkey = \"{id}-public-key\"\nallowed_origins = [\"https://{id}.example\"]\n\
             default_before = \"+7495123450{n}\"\ndefault_after = \"+7495123451{n}\"\nnumbers = [\"+7495123000{n}\"]\n"
        )
    };
    std::fs::write(sites.join("b-news.toml"), site("news", 5)).unwrap();
    std::fs::write(sites.join("a-blog.toml"), site("blog", 4)).unwrap();
    std::fs::write(sites.join("README"), "not a site").unwrap();
    std::fs::write(sites.join(".blog.toml.swp"), "not a site").unwrap();
    let with = load().unwrap();
    let ids: Vec<&str> = with.sites.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["shop", "blog", "news"]);
    assert_ne!(with.version, alone.version);
    assert_eq!(load().unwrap().version, with.version, "the same files, the same version");

    // A syntax error, and a site that clashes with another: each named with its file.
    std::fs::write(sites.join("c-bad.toml"), "id = \"bad\"\nkey = ").unwrap();
    let e = load().unwrap_err();
    assert!(e.problems.len() == 1 && e.problems[0].starts_with("sites.d/c-bad.toml: "), "{:?}", e.problems);
    std::fs::write(sites.join("c-bad.toml"), site("blog", 6)).unwrap();
    let e = load().unwrap_err();
    assert!(e.problems.iter().any(|p| p.contains("site \"blog\" (sites.d/c-bad.toml): id")), "{:?}", e.problems);
}

/// A problem never quotes the line it is on (it may hold a secret), and a rotated secret
/// file makes a new version without showing in it.
#[test]
fn problems_do_not_quote_lines_and_secret_files_count_in_the_version() {
    let typo = GOOD.replace("[pool]", "[server]\nadmin_tokn = \"s3cret-value-0123456789\"\n\n[pool]");
    let e = Config::parse(&typo, "test.toml", &env(&[])).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(e.problems[0].starts_with("line 3, column 1: unknown field `admin_tokn`"), "{:?}", e.problems);
    assert!(!e.to_string().contains("s3cret"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let (file, secret) = (dir.path().join("callpool.toml"), dir.path().join("admin_token"));
    let text =
        GOOD.replace("[pool]", &format!("[server]\nadmin_token_file = {:?}\n\n[pool]", secret.display().to_string()));
    std::fs::write(&file, text).unwrap();
    std::fs::write(&secret, "first-admin-token-0123456789\n").unwrap();
    let first = Config::load_with(&file, &env(&[]), &[]).unwrap();
    std::fs::write(&secret, "second-admin-token-0123456789\n").unwrap();
    let second = Config::load_with(&file, &env(&[]), &[]).unwrap();
    assert_eq!(second.server.admin_token.as_deref(), Some("second-admin-token-0123456789"));
    assert_ne!(first.version, second.version);
}
