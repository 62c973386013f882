//! The owner's reports end to end: visitors from two sources (one with hostile UTM values) get
//! tracking numbers and call, one more visitor only visits, one call goes to the default number;
//! the sources report (JSON, CSV, the page in both languages) counts them as the visit log and
//! the calls say, the calls report filters by a row's source, and hostile values come out escaped
//! on the page and as text in the CSV.

use serde_json::{json, Value};

use crate::common::*;
use callpool::config::Config;

const PBX_SECRET: &str = "office-secret-0123456789";
const ORIGIN: &str = "https://shop.example";
const TOKEN: &str = "shop-report-token-0123456789";
const GOOGLE: &str = "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=winter";
const HOSTILE: &str =
    "https://shop.example/?utm_source=%3Cscript%3Ealert(1)%3C%2Fscript%3E&utm_campaign=%3DHYPERLINK(%22x%22)";

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n\n[store]\nkind = \"embedded\"\ndata_dir = {:?}\n\n\
         [[pbx]]\nid = \"office\"\nsecrets = [\"{PBX_SECRET}\"]\n{}\nreport_token = \"{TOKEN}\"\nlanguage = \"en\"\n",
        dir.join("data").display().to_string(),
        // Three numbers: three visitors hold one each.
        shop_site(ORIGIN, "0s", "30m", "30m").replace(
            "numbers = [\"+74951230001\", \"+74951230002\"]",
            "numbers = [\"+74951230001\", \"+74951230002\", \"+74951230003\"]"
        ),
    );
    Config::parse(&text, "reports-test.toml", &std::collections::HashMap::new()).expect("test config")
}

async fn report_call(node: &Node, id: &str, called: &str, caller: &str, status: &str) {
    let duration = if status == "completed" { 30 } else { 0 };
    let call = json!({
        "call_id": id, "called": called, "caller": caller,
        "started_at": chrono::Utc::now().to_rfc3339(), "status": status, "duration": duration,
    });
    post_call(node, PBX_SECRET, &call).await;
}

async fn get(node: &Node, path: &str, lang: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(node.url(path)).bearer_auth(TOKEN);
    if let Some(l) = lang {
        req = req.header("accept-language", l);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp
}

#[tokio::test]
async fn the_sources_report_counts_visits_and_calls_per_source_and_escapes_what_visitors_sent() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_real(config(dir.path())).await;

    // Three visitors: from Google Ads, from a hostile link, and one who comes straight and leaves.
    let mut numbers = Vec::new();
    for (visitor, page) in [("v-google", GOOGLE), ("v-hostile", HOSTILE), ("v-direct", "https://shop.example/")] {
        let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
        tab.hello(visitor, page).await;
        numbers.push((tab.until_kind("tracking").await, tab));
    }
    report_call(&node, "c-google", &numbers[0].0, "+79161110001", "completed").await;
    report_call(&node, "c-hostile", &numbers[1].0, "+79161110002", "missed").await;
    report_call(&node, "c-default", "+74951234567", "+79161110003", "completed").await;
    // The visits end: each is recorded as its last tab closes.
    for (_, mut tab) in numbers {
        let _ = tab.stream.close(None).await;
    }
    let shop = callpool_pool::SiteId::new("shop").unwrap();
    eventually("the three visits are recorded", || async {
        let now = callpool_pool::Ts::now();
        let visits =
            node.app.store.visits(&shop, now.minus(std::time::Duration::from_secs(3600)), now, 10).await.unwrap();
        visits.len() == 3
    })
    .await;

    let r: Value = get(&node, "/v1/reports/shop/sources", None).await.json().await.unwrap();
    let row = |key: &str| r["rows"].as_array().unwrap().iter().find(|x| x["key"] == key).cloned().unwrap();
    let google = row("google");
    assert_eq!(
        (google["visits"].as_u64(), google["calls"].as_u64(), google["visits_that_called"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        (google["answered"].as_u64(), google["first_time"].as_u64(), google["call_rate"].as_f64()),
        (Some(1), Some(1), Some(1.0))
    );
    let hostile = row("<script>alert(1)</script>");
    assert_eq!((hostile["calls"].as_u64(), hostile["missed"].as_u64()), (Some(1), Some(1)));
    let direct = row("direct");
    assert_eq!(
        (direct["visits"].as_u64(), direct["calls"].as_u64(), direct["call_rate"].as_f64()),
        (Some(1), Some(0), Some(0.0))
    );
    assert_eq!(
        (r["visits"].as_u64(), r["calls"].as_u64(), r["unattributed"]["calls"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(r["rows"][0]["calls"], 1, "most calls first");

    // By campaign: the hostile one is a row; CSV makes it text for a spreadsheet.
    let csv = get(&node, "/v1/reports/shop/sources?by=campaign&format=csv", None).await.text().await.unwrap();
    assert!(csv.starts_with("campaign,visits,calls,"), "{csv}");
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\",1,1,1,1.0000,0,1,1,0"), "{csv}");
    assert!(csv.contains("winter,1,1,1,1.0000,1,0,1,0"), "{csv}");
    // XLSX: the same rows; the hostile campaign a string cell, never a formula.
    let resp = get(&node, "/v1/reports/shop/sources?by=campaign&format=xlsx", None).await;
    assert_eq!(resp.headers()["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    let bytes = resp.bytes().await.unwrap();
    let mut book = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut part = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut book.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let (sheet, strings) = (part("xl/worksheets/sheet1.xml"), part("xl/sharedStrings.xml"));
    assert!(strings.contains("<t>=HYPERLINK(\"x\")</t>") && strings.contains(">winter<"), "{strings}");
    assert!(!sheet.contains("<f>"), "no formula: {sheet}");
    let calls_xlsx = get(&node, "/v1/reports/shop/calls?format=xlsx&source=google", None).await.bytes().await.unwrap();
    let mut calls_book = zip::ZipArchive::new(std::io::Cursor::new(calls_xlsx.to_vec())).unwrap();
    let mut calls_strings = String::new();
    std::io::Read::read_to_string(&mut calls_book.by_name("xl/sharedStrings.xml").unwrap(), &mut calls_strings)
        .unwrap();
    assert!(calls_strings.contains(">c-google<") && !calls_strings.contains("c-default"), "the filter holds");

    // The page: the browser's language, the figures of the JSON, the hostile source escaped.
    let html =
        get(&node, "/v1/reports/shop/sources?format=html", Some("ru-RU,ru;q=0.9,en;q=0.8")).await.text().await.unwrap();
    assert!(html.contains("<html lang=\"ru\">") && html.contains("Откуда пришли звонки"), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;") && !html.contains("<script>alert"),
        "escaped: {}",
        html.lines().filter(|l| l.contains("alert")).collect::<Vec<_>>().join("\n")
    );
    assert!(html.contains("<a href=\"calls?format=html&#38;from="), "a row's calls");
    let en = get(&node, "/v1/reports/shop/sources?format=html&lang=en&sort=visits&order=asc", Some("ru"))
        .await
        .text()
        .await
        .unwrap();
    assert!(en.contains("Where the calls came from") && en.contains("visits ↑"), "the query's language and sort");
    // A row's link lists its calls.
    let calls: Value = get(&node, "/v1/reports/shop/calls?source=google", None).await.json().await.unwrap();
    let ids: Vec<&str> = calls["calls"].as_array().unwrap().iter().map(|c| c["call_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c-google"]);
    let missed: Value = get(&node, "/v1/reports/shop/calls?answered=false", None).await.json().await.unwrap();
    assert_eq!(missed["calls"].as_array().unwrap().len(), 1);
    let untracked: Value = get(&node, "/v1/reports/shop/calls?match=default_before", None).await.json().await.unwrap();
    assert_eq!(untracked["calls"][0]["call_id"], "c-default");

    // The calls page: newest first, the filters as the form sends them (empty: no filter).
    let page = get(&node, "/v1/reports/shop/calls?format=html&source=&match=&answered=&first_time=", Some("en")).await;
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">") && html.contains("Calls: 3"), "every call");
    assert!(html.contains("default number (before)") && html.contains("visitor on the site"));
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;") && !html.contains("<script>alert"));
    assert!(html.contains("+7********01"), "callers masked for the report token");
    let ru = get(&node, "/v1/reports/shop/calls?format=html&source=google", Some("ru")).await.text().await.unwrap();
    assert!(ru.contains("Звонки: 1") && ru.contains("google / cpc / winter"), "{ru}");
    let none = get(&node, "/v1/reports/shop/calls?campaign=(not%20set)", None).await.json::<Value>().await.unwrap();
    assert_eq!(none["calls"].as_array().unwrap().len(), 0, "both tracked calls had a campaign");

    // The overview of every site (the admin token): the same figures, nothing needing attention.
    let o: Value = node.admin_get("/v1/reports").await.json().await.unwrap();
    let line = &o["sites"][0];
    assert_eq!(
        (line["site"].as_str(), line["calls"].as_u64(), line["tracked"].as_u64(), line["untracked"].as_u64()),
        (Some("shop"), Some(3), Some(2), Some(1))
    );
    assert_eq!(line["attention"], json!([]));
    let page = node.admin_get("/v1/reports?format=html&lang=en").await.text().await.unwrap();
    assert!(page.contains("Every site") && page.contains("<a href=\"reports/shop?from="), "{page}");
    let refused = reqwest::Client::new().get(node.url("/v1/reports")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(refused.status(), 401, "a site's report token does not see every site");

    // The overview's ?token= link keeps the admin token for every report; beside a site's own
    // report cookie it still sees callers in full.
    let redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let moved = redirect.get(node.url(&format!("/v1/reports?token={ADMIN_TOKEN}"))).send().await.unwrap();
    assert_eq!(moved.status(), 303);
    let cookie = moved.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Path=/v1/reports;"), "{cookie}");
    let both = format!("callpool_report={TOKEN}; callpool_report={ADMIN_TOKEN}");
    let full: Value = redirect
        .get(node.url("/v1/reports/shop/calls?source=google"))
        .header("cookie", both)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["calls"][0]["caller"], "+79161110001", "the admin token's access");
    let csv = get(&node, "/v1/reports/shop/calls?format=csv", None).await.text().await.unwrap();
    assert!(csv.contains("+7********01") && !csv.contains("+79161110001"), "masked in the CSV too");

    let bad = reqwest::Client::new()
        .get(node.url("/v1/reports/shop/sources?by=planet"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    node.stop().await;
}
