//! Operating callpool: every metric the alert rules (`deploy/prometheus/`) and the dashboard
//! (`deploy/grafana/`) read is one a running node exposes, the working-hours gauges say what
//! they promise, and `GET /v1/admin/status` tells when each PBX and each destination was last
//! heard of. (`promtool` checks and tests the rules themselves: `deploy/test.sh`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use crate::common::*;
use callpool::config::Config;
use serde_json::{json, Value};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/landing?utm_source=google&utm_medium=cpc";
const PBX_SECRET: &str = "office-secret-0123456789";
const CLIENT_ID: &str = "1197596843.1673515099";
const RULES: &str = include_str!("../../deploy/prometheus/callpool.rules.yml");
const DASHBOARD: &str = include_str!("../../deploy/grafana/callpool.json");

/// Site `shop` (GA4, no working hours: always open) and site `closed` (a callback form whose
/// hours never open, reported through PBX `quiet`); PBX `office` is named by no form, so it
/// serves every site.
fn config(dir: &std::path::Path, fake: &str) -> Config {
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = {data:?}

[analytics]
ga4_base_url = "{fake}"
retry_base = "200ms"
request_timeout = "2s"

[[pbx]]
id = "office"
secrets = ["{PBX_SECRET}"]

[[pbx]]
id = "quiet"
secrets = ["{PBX_SECRET}"]

# An Asterisk callpool connects to; nothing listens there, so it stays disconnected.
[[pbx]]
id = "ami"
kind = "asterisk"
ami = "127.0.0.1:{closed}"
username = "callpool"
secret = "a-long-random-ami-secret"

{shop}

[site.ga4]
measurement_id = "{GA4_MEASUREMENT_ID}"
api_secret = "{GA4_API_SECRET}"

[[site]]
id = "closed"
key = "closed-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951239900"
default_after = "+74951239901"
numbers = ["+74951239902"]

[site.callback]
operator = "+74951239909"
pbx = "quiet"
hours = {{ mon = "closed" }}
trigger = {{ kind = "generic", url = "{fake}/trigger", secret = "a-long-random-trigger-secret" }}
"#,
        data = dir.join("data").display().to_string(),
        closed = free_port(),
        shop = shop_site(ORIGIN, "200ms", "30m", "200ms"),
    );
    Config::parse(&text, "ops-test.toml", &std::collections::HashMap::new()).expect("test config")
}

struct World {
    node: Node,
    fake: FakeAnalytics,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let fake = FakeAnalytics::default();
        let url = fake.start().await;
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start_real(config(dir.path(), &url)).await;
        World { node, fake, _dir: dir }
    }

    /// A visitor's tab that has been given its tracking number.
    async fn visitor_with_number(&self) -> (WsTab, String) {
        let mut tab = WsTab::open(self.node.addr, "shop-public-key", ORIGIN).await;
        let hello = json!({
            "type": "hello", "v": 1, "visitor": CLIENT_ID, "tab": unique("tab"), "page": PAGE,
            "ga_client_id": CLIENT_ID, "ga_session_id": "1747132561",
        });
        tab.send_text(&hello.to_string()).await;
        assert_eq!(tab.number().await.1, "default_before");
        let (number, kind) = tab.number().await;
        assert_eq!(kind, "tracking");
        (tab, number)
    }

    /// Posts a completed call to `called` as PBX `office`, signed with `secret`.
    async fn call(&self, call_id: &str, called: &str, secret: &str) -> reqwest::Response {
        let body = json!({
            "call_id": call_id, "called": called, "caller": "+79161234567",
            "started_at": chrono::Utc::now().to_rfc3339(), "status": "completed", "duration": 63,
        })
        .to_string();
        let t = callpool_pool::Ts::now().as_millis() / 1000;
        reqwest::Client::new()
            .post(self.node.url("/v1/pbx/calls?pbx=office"))
            .header("content-type", "application/json")
            .header("callpool-signature", callpool::pbx::signature::sign(secret, t, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn status(&self) -> Value {
        let resp = self.node.admin_get("/v1/admin/status").await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

/// The PromQL expressions of a rules file (`expr:` inline or as a block scalar) and the names
/// its recording rules define.
fn rule_exprs(yaml: &str) -> (Vec<String>, BTreeSet<String>) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let (mut exprs, mut records) = (Vec::new(), BTreeSet::new());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let field = line.trim_start().trim_start_matches("- ");
        if let Some(name) = field.strip_prefix("record:") {
            records.insert(name.trim().to_owned());
        }
        if let Some(value) = field.strip_prefix("expr:") {
            let value = value.trim();
            if value.starts_with('|') || value.starts_with('>') {
                let mut block = String::new();
                while i + 1 < lines.len() && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > indent(line)) {
                    i += 1;
                    block.push_str(lines[i]);
                    block.push('\n');
                }
                exprs.push(block);
            } else {
                exprs.push(value.trim_matches('\'').to_owned());
            }
        }
        i += 1;
    }
    (exprs, records)
}

/// The dashboard's PromQL expressions (its panels' targets), and the metrics its template
/// variables read (`label_values(metric, label)`).
fn dashboard_exprs(dashboard: &Value) -> (Vec<String>, BTreeSet<String>) {
    fn walk(v: &Value, exprs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    exprs.push(e.clone());
                }
                m.values().for_each(|v| walk(v, exprs));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard["panels"], &mut exprs);
    let mut variables = BTreeSet::new();
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let query = var["query"]["query"].as_str().or(var["query"].as_str()).unwrap_or("");
        let inner = query.strip_prefix("label_values(").expect("a label_values(metric, label) variable");
        let metric = inner.split([',', '{', ')']).next().unwrap().trim();
        variables.insert(metric.to_owned());
    }
    (exprs, variables)
}

/// PromQL's keywords (functions are told by the `(` that follows them).
const PROMQL_WORDS: &str = "and or unless by without on ignoring group_left group_right bool offset inf nan";

/// The metric (or recorded series) names an expression reads: its identifiers, less strings,
/// label matchers, ranges, grouping label lists, offsets, dashboard variables, keywords and
/// function names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings, `{...}` and `[...]` become a space.
    let mut plain = String::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                plain.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                plain.push(' ');
            }
            c => plain.push(c),
        }
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let bytes: Vec<char> = plain.chars().collect();
    let next_visible = |mut j: usize| {
        while j < bytes.len() && bytes[j].is_whitespace() {
            j += 1;
        }
        j
    };
    // Past a `by (...)` or `without (...)` at `j`, if there is one (`sum by (site) (x)`).
    let past_grouping = |j: usize| {
        let end = (j..bytes.len()).find(|&k| !word(bytes[k])).unwrap_or(bytes.len());
        let ident: String = bytes[j..end].iter().collect();
        let open = next_visible(end);
        if (ident == "by" || ident == "without") && bytes.get(open) == Some(&'(') {
            let close = (open..bytes.len()).find(|&k| bytes[k] == ')').unwrap_or(bytes.len());
            next_visible(close + 1)
        } else {
            j
        }
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '$' || c.is_ascii_digit() || c == '.' {
            // A dashboard variable, a number or a duration.
            i += 1;
            while i < bytes.len() && (word(bytes[i]) || bytes[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && word(bytes[i]) {
            i += 1;
        }
        let ident: String = bytes[start..i].iter().collect();
        let after = next_visible(i);
        let grouping = ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&ident.as_str());
        if grouping && bytes.get(after) == Some(&'(') {
            // Its label list.
            i = after;
            while i < bytes.len() && bytes[i] != ')' {
                i += 1;
            }
            continue;
        }
        if ident == "offset" {
            // Its duration.
            i = after;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            continue;
        }
        if bytes.get(past_grouping(after)) == Some(&'(')
            || PROMQL_WORDS.split(' ').any(|w| ident.eq_ignore_ascii_case(w))
        {
            continue;
        }
        names.insert(ident);
    }
    names
}

#[test]
fn the_promql_reader_finds_metrics_and_nothing_else() {
    let expr = r#"
        histogram_quantile(0.95, sum by (le, route) (rate(callpool_http_request_duration_seconds_bucket{route!~"/x|y"}[$__rate_interval])))
        / on (pbx) group_left (site) clamp_min(5 / callpool_pbx:rate1h offset 1d, 900)
        and ignoring(job) sum(up{job="callpool"}) without (instance) > bool 2e3 + max without (a) (b_c) or vector(0) unless label_replace(a_b, "x", "$1", "y", "(.*)")
    "#;
    let want: BTreeSet<String> =
        ["callpool_http_request_duration_seconds_bucket", "callpool_pbx:rate1h", "up", "b_c", "a_b"]
            .map(String::from)
            .into();
    assert_eq!(metric_names(expr), want);
}

/// The metric families of an exposition, by name, with their types.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// Whether `name` is in the exposition: a family, or a histogram's `_bucket`, `_sum` or `_count`.
fn exposed(families: &BTreeMap<String, String>, name: &str) -> bool {
    families.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|base| families.get(base))
                .is_some_and(|kind| kind == "histogram" || (kind == "summary" && *suffix != "_bucket"))
        })
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_read_is_exposed() {
    let w = World::start().await;
    // Traffic that makes the labelled series appear: a visitor with a number, a call sent to GA4,
    // a refused webhook, the visitor leaving (the lease ends), a tab for no site.
    let (mut tab, number) = w.visitor_with_number().await;
    assert_eq!(w.call("c-1", &number, PBX_SECRET).await.status(), 200);
    eventually("GA4 received the call", || async { !w.fake.ga4_accepted().is_empty() }).await;
    assert_eq!(w.call("c-2", &number, "not-the-secret-0123456789").await.status(), 401);
    tab.stream.close(None).await.unwrap();
    let mut stranger = WsTab::open(w.node.addr, "no-such-key", ORIGIN).await;
    assert!(matches!(stranger.next().await, Heard::Json(e) if e["code"] == "unknown_site"));
    assert_eq!(stranger.next().await, Heard::Closed(Some(4404)));
    eventually("the visitor's lease ended", || async {
        w.node.get("/metrics").await.text().await.unwrap().contains("callpool_pool_leases_ended_total{")
    })
    .await;
    let text = w.node.get("/metrics").await.text().await.unwrap();
    let families = families(&text);

    let (rule_exprs, records) = rule_exprs(RULES);
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let (panel_exprs, variables) = dashboard_exprs(&dashboard);
    assert!(
        rule_exprs.len() >= 15 && panel_exprs.len() >= 30,
        "{} rules, {} panels",
        rule_exprs.len(),
        panel_exprs.len()
    );
    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    for (source, exprs) in
        [("deploy/prometheus/callpool.rules.yml", &rule_exprs), ("deploy/grafana/callpool.json", &panel_exprs)]
    {
        for name in exprs.iter().flat_map(|e| metric_names(e)) {
            used.entry(name).or_insert(source);
        }
    }
    for name in variables {
        used.entry(name).or_insert("deploy/grafana/callpool.json (variables)");
    }
    // Prometheus's own series, and those the rules record, are not the node's.
    used.remove("up");
    for r in &records {
        assert!(r.contains(':'), "a recording rule is named level:metric:operations: {r}");
        used.remove(r);
    }
    for name in used.keys() {
        assert!(name.starts_with("callpool_"), "not a metric name: {name} (the PromQL reader missed something)");
    }
    for name in [
        "callpool_pbx_last_accepted_timestamp_seconds",
        "callpool_pbx_open",
        "callpool_pool_exhausted_requests",
        "callpool_http_request_duration_seconds_bucket",
        "callpool_calls_recorded_total",
        "callpool_ready",
    ] {
        assert!(used.contains_key(name), "{name} is read by the rules or the dashboard");
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exposed(&families, name))
        .map(|(name, source)| format!("{name} ({source})"))
        .collect();
    assert!(missing.is_empty(), "read but not exposed by a running node: {missing:#?}\n{text}");

    // The working hours: `shop` has none (open), `closed` never opens; `quiet` serves `closed`
    // alone, `office` (named by no form) every site.
    for (series, want) in [
        (r#"callpool_site_open{site="shop"}"#, 1.0),
        (r#"callpool_site_open{site="closed"}"#, 0.0),
        (r#"callpool_pbx_open{pbx="office"}"#, 1.0),
        (r#"callpool_pbx_open{pbx="quiet"}"#, 0.0),
        (r#"callpool_pbx_requests_total{outcome="recorded",pbx="office"}"#, 1.0),
        (r#"callpool_pbx_requests_total{outcome="refused",pbx="office"}"#, 1.0),
        (r#"callpool_pbx_requests_total{outcome="recorded",pbx="quiet"}"#, 0.0),
        ("callpool_store_up", 1.0),
        ("callpool_ready", 1.0),
        ("callpool_bus_connected", 1.0),
    ] {
        assert_eq!(w.node.metric(series).await, want, "{series}");
    }
    assert!(text.contains("callpool_pbx_requests_total{outcome=\"answered\",pbx=\"quiet\"} 0"), "created at start");
    // The last accepted request: now for `office`, the node's start for `quiet`.
    let now = callpool_pool::Ts::now().as_millis() as f64 / 1000.0;
    for pbx in ["office", "quiet"] {
        let at = w.node.metric(&format!("callpool_pbx_last_accepted_timestamp_seconds{{pbx=\"{pbx}\"}}")).await;
        assert!((now - 60.0..=now + 1.0).contains(&at), "{pbx}: {at} vs {now}");
    }
    w.node.stop().await;
}

#[tokio::test]
async fn the_status_says_when_each_pbx_and_destination_was_last_heard_of() {
    let w = World::start().await;
    assert_eq!(w.node.get("/v1/admin/status").await.status(), 401);
    let doc: Value = w.node.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/v1/admin/status"]["get"].is_object(), "documented");

    let st = w.status().await;
    let node_id = w.node.app.config().server.node_id.clone();
    assert_eq!((st["node"].as_str(), st["config"].as_str()), (Some(node_id.as_str()), Some("ops-test.toml")), "{st}");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["store"], json!({"kind": "embedded", "state": "up", "errors": {}}));
    assert_eq!(st["bus"]["kind"], "in_process");
    let pbx = |st: &Value, id: &str| st["pbxs"].as_array().unwrap().iter().find(|p| p["pbx"] == id).cloned().unwrap();
    let dest = |st: &Value, kind: &str| {
        st["destinations"].as_array().unwrap().iter().find(|d| d["kind"] == kind).cloned().unwrap()
    };
    let office = pbx(&st, "office");
    assert_eq!(office["kind"], "callpool");
    assert_eq!(office["open"], true);
    assert_eq!(pbx(&st, "quiet")["open"], false);
    for field in ["last_request", "last_accepted", "last_refusal"] {
        assert!(office[field].is_null(), "{field}: {office}");
    }
    assert_eq!(office["requests"], json!({"recorded": 0, "answered": 0, "refused": 0}));
    let ga4 = dest(&st, "ga4");
    assert_eq!((ga4["pending"].as_u64(), ga4["dead"].as_u64()), (Some(0), Some(0)), "{ga4}");
    assert!(ga4["last_sent"].is_null() && ga4["last_error"].is_null(), "{ga4}");
    let kinds: Vec<&str> = st["destinations"].as_array().unwrap().iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["ga4", "yandex", "trigger", "tg_request", "hook_request"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

    // A call comes and goes out to GA4.
    let (_tab, number) = w.visitor_with_number().await;
    assert_eq!(w.call("c-1", &number, PBX_SECRET).await.status(), 200);
    eventually("GA4 received the call", || async { !w.fake.ga4_accepted().is_empty() }).await;
    eventually("the delivery was noted", || async { !dest(&w.status().await, "ga4")["last_sent"].is_null() }).await;
    let st = w.status().await;
    let office = pbx(&st, "office");
    assert_eq!(office["last_request"]["outcome"], "recorded", "{office}");
    assert_eq!(office["last_request"]["at"], office["last_accepted"]);
    assert!(office["last_refusal"].is_null());
    assert_eq!(office["requests"]["recorded"], 1);
    assert!(pbx(&st, "quiet")["last_request"].is_null());

    // A request signed with the wrong secret is refused, and says so.
    assert_eq!(w.call("c-2", &number, "not-the-secret-0123456789").await.status(), 401);
    let office = pbx(&w.status().await, "office");
    assert_eq!(office["last_request"]["outcome"], "refused", "{office}");
    assert_eq!(office["last_refusal"]["code"], "bad_signature");
    assert!(office["last_refusal"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{office}");
    assert_eq!(office["requests"], json!({"recorded": 1, "answered": 0, "refused": 1}));
    assert_ne!(office["last_accepted"], office["last_request"]["at"]);

    // GA4 refuses the next call's event: a dead letter, with GA4's answer.
    w.fake.refusing.store(true, Ordering::SeqCst);
    assert_eq!(w.call("c-3", &number, PBX_SECRET).await.status(), 200);
    eventually("the dead letter was noted", || async { !dest(&w.status().await, "ga4")["last_error"].is_null() }).await;
    let ga4 = dest(&w.status().await, "ga4");
    assert_eq!(ga4["last_error"]["dead_lettered"], true, "{ga4}");
    assert!(ga4["last_error"]["error"].as_str().unwrap().contains("HTTP 400"), "{ga4}");
    assert_eq!((ga4["pending"].as_u64(), ga4["dead"].as_u64()), (Some(0), Some(1)), "{ga4}");
    assert_eq!(w.node.metric(r#"callpool_analytics_dead_lettered_total{kind="ga4"}"#).await, 1.0);
    w.node.stop().await;
}
