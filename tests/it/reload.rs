//! Live reload, as an operator does it: edit the file (or drop a site file into `sites.d/`), then
//! `POST /v1/admin/reload` (or `systemctl reload`, tested in `cli.rs`). A new site serves at once,
//! open tabs stay, a number taken out of a pool is retired when its lease ends, a broken or
//! restart-only change is refused with every problem and the running configuration stays, and
//! one reload reaches every node of a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use callpool::config::Config;

const ORIGIN: &str = "https://shop.example";
const BLOG: &str = "https://blog.example";
const PBX_TOKEN: &str = "office-token-0123456789";
const X: &str = "+74951230001";
const Y: &str = "+74951230002";

/// The main file: site `shop` with the dedicated `numbers`, a PBX `office`, and `extra` lines;
/// `node` names the node (none: every node reads the same file and makes up its id).
fn main_file(store: &str, node: &str, numbers: &[&str], extra: &str) -> String {
    let numbers = numbers.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    let node_id = if node.is_empty() { String::new() } else { format!("node_id = {node:?}") };
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
{node_id}

{store}

[pool]
reaper_interval = "50ms"

[[pbx]]
id = "office"
token = "{PBX_TOKEN}"
secrets = ["office-secret-0123456789"]

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = [{numbers}]
delay_to_show = "0s"
reclaim_after_idle = "30m"
release_grace = "300ms"
{extra}
"#
    )
}

/// A site file for `sites.d/`: site `blog` with one number of its own.
const BLOG_SITE: &str = r#"
id = "blog"
key = "blog-public-key"
allowed_origins = ["https://blog.example"]
default_before = "+74951235550"
default_after = "+74951235551"
numbers = ["+74951235555"]
delay_to_show = "0s"
"#;

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn load(path: &Path) -> Config {
    Config::load(path, &std::collections::HashMap::new()).expect("the test's config loads")
}

async fn reload(node: &Node) -> (u16, Value) {
    let resp = reqwest::Client::new().post(node.url("/v1/admin/reload")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn running(node: &Node) -> Value {
    let resp = node.admin_get("/v1/admin/config").await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A new visitor's tab on the site of `key`, and the number it is shown.
async fn tab(node: &Node, key: &str, origin: &str, visitor: &str) -> (WsTab, String) {
    let mut tab = WsTab::open(node.addr, key, origin).await;
    tab.hello(visitor, &format!("{origin}/?utm_source=yandex")).await;
    let (number, _) = tab.number().await;
    (tab, number)
}

fn problems(body: &Value) -> Vec<String> {
    body["error"]["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_reload_adds_a_site_keeps_tabs_retires_a_removed_number_and_refuses_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("callpool.toml");
    let store = format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}", dir.path().join("data").display().to_string());
    write(&file, &main_file(&store, "one", &[X, Y], ""));
    let node = Node::start_real(load(&file)).await;
    let first = running(&node).await;
    let v1 = first["version"].as_str().unwrap().to_owned();
    assert_eq!(first["nodes"][0]["node"], "one");
    assert_eq!(first["nodes"][0]["version"], v1.as_str());

    // A visitor holds X (the first of the site's numbers).
    let (mut held, number) = tab(&node, "shop-public-key", ORIGIN, "v-held").await;
    assert_eq!(number, X);
    // Unknown to the node yet: the blog's key.
    let mut refused = WsTab::open(node.addr, "blog-public-key", BLOG).await;
    refused.hello("v-blog", BLOG).await;
    match refused.next().await {
        Heard::Json(v) => assert_eq!(v["code"], "unknown_site", "{v}"),
        other => panic!("an unknown site's tab is told why: {other:?}"),
    }

    // The operator takes X out of the shop's numbers, adds a PBX and drops the blog's file in.
    let extra_pbx = "\n[[pbx]]\nid = \"branch\"\nsecrets = [\"branch-secret-0123456789\"]\n";
    write(&file, &main_file(&store, "one", &[Y], "").replace("\n[[site]]", &format!("{extra_pbx}\n[[site]]")));
    write(&dir.path().join("sites.d/blog.toml"), BLOG_SITE);
    write(&dir.path().join("sites.d/notes.txt"), "not a site: ignored");
    let (status, body) = reload(&node).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["changed"].as_bool(), body["previous"].as_str()), (Some(true), Some(v1.as_str())), "{body}");
    let v2 = body["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);

    // The new site serves at once; the new PBX is known (its series exist).
    let (_blog_tab, blog_number) = tab(&node, "blog-public-key", BLOG, "v-blog").await;
    assert_eq!(blog_number, "+74951235555");
    assert!(node.get("/metrics").await.text().await.unwrap().contains("pbx=\"branch\""));
    let now = running(&node).await;
    assert_eq!(now["version"], v2.as_str());
    let sites: Vec<&str> = now["sites"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(sites, ["shop", "blog"]);
    assert_eq!((now["nodes"][0]["version"].as_str(), now["consistent"].as_bool()), (Some(v2.as_str()), Some(true)));
    let shown = now.to_string();
    for secret in [ADMIN_TOKEN, PBX_TOKEN, "office-secret-0123456789", "branch-secret-0123456789"] {
        assert!(!shown.contains(secret), "a secret in /v1/admin/config: {shown}");
    }

    // The open tab was not dropped, and the visitor keeps X while it is open (a second tab of
    // the same visitor is shown X too): a held lease ends at its normal time.
    assert_eq!(node.metric("callpool_ws_tabs").await, 2.0);
    let (mut second, number) = tab(&node, "shop-public-key", ORIGIN, "v-held").await;
    assert_eq!(number, X, "the visitor keeps the retired number while the lease lasts");
    // The visitor leaves: after the grace the lease ends and X leaves the shop for good.
    second.stream.close(None).await.unwrap();
    held.stream.close(None).await.unwrap();
    eventually("the held lease ended", || async {
        let pool: Value = node.admin_get("/v1/admin/pool/shop").await.json().await.unwrap();
        pool["leased"] == 0
    })
    .await;
    let (_a, first_number) = tab(&node, "shop-public-key", ORIGIN, "v-new-1").await;
    let (_b, second_number) = tab(&node, "shop-public-key", ORIGIN, "v-new-2").await;
    assert_eq!(first_number, Y);
    assert_eq!(
        second_number, "+74951234567",
        "X is retired: the second visitor sees the default (the pool is exhausted)"
    );

    // A broken site file and a bad setting in the main file: refused, every problem listed with
    // where it is, and the running configuration stays.
    write(
        &dir.path().join("sites.d/broken.toml"),
        "id = \"broken\"\nkey = \"broken-key-0001\"\ndefault_before = \"12\"\ndefault_after = \"34\"\n",
    );
    write(&file, &std::fs::read_to_string(&file).unwrap().replace("[pool]", "[pool]\nbogus = 1"));
    let (status, body) = reload(&node).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_invalid");
    let listed = problems(&body);
    assert!(listed.iter().any(|p| p.contains("bogus")), "{listed:?}");
    assert!(running(&node).await["version"] == v2.as_str(), "the running configuration stays");
    assert_eq!(running(&node).await["nodes"][0]["refused"].as_str().map(|r| r.contains("bogus")), Some(true));
    // Only the site file broken now: its problems name the file.
    write(&file, &std::fs::read_to_string(&file).unwrap().replace("[pool]\nbogus = 1", "[pool]"));
    let (status, body) = reload(&node).await;
    assert_eq!(status, 422, "{body}");
    let listed = problems(&body);
    assert!(listed.len() >= 2, "every problem: {listed:?}");
    assert!(listed.iter().all(|p| p.contains("sites.d/broken.toml")), "{listed:?}");
    std::fs::remove_file(dir.path().join("sites.d/broken.toml")).unwrap();

    // A change that needs a restart is refused too, naming the setting.
    let moved = std::fs::read_to_string(&file).unwrap().replace("/data\"", "/elsewhere\"");
    write(&file, &moved);
    let (status, body) = reload(&node).await;
    assert_eq!(status, 422, "{body}");
    assert!(problems(&body).iter().any(|p| p.starts_with("[store]") && p.contains("restart")), "{body}");
    assert_eq!(running(&node).await["version"], v2.as_str());

    // Back to the running files: nothing changes.
    write(&file, &moved.replace("/elsewhere\"", "/data\""));
    let (status, body) = reload(&node).await;
    assert_eq!((status, body["changed"].as_bool(), body["version"].as_str()), (200, Some(false), Some(v2.as_str())));
    assert_eq!(running(&node).await["nodes"][0]["refused"], Value::Null);

    // Removing the PBX again takes its series away.
    write(&file, &main_file(&store, "one", &[Y], ""));
    assert_eq!(reload(&node).await.0, 200);
    assert!(!node.get("/metrics").await.text().await.unwrap().contains("pbx=\"branch\""));
    node.stop().await;
}

/// A node started on text, not a file, has nothing to read again: refused, saying why.
#[tokio::test]
async fn a_node_without_a_file_refuses_to_reload() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_real(embedded_config(dir.path())).await;
    let (status, body) = reload(&node).await;
    assert_eq!(status, 422, "{body}");
    assert!(problems(&body)[0].contains("no configuration file"), "{body}");
    node.stop().await;
}

/// Each node's copy of the same files (the node ids are made up at start).
fn cluster_file(dir: &Path, prefix: &str, node: &str) -> PathBuf {
    let store = format!(
        "[store]\nkind = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"\n\n[bus]\nkind = \"rabbitmq\"\namqp_url = \"{}\"",
        redis_url(),
        amqp_url()
    );
    let file = dir.join(node).join("callpool.toml");
    write(&file, &main_file(&store, "", &[X, Y], ""));
    file
}

/// Two nodes on one Redis and RabbitMQ, each with its own copy of the files (as a deployment
/// has): the operator updates both copies and reloads one node; the other follows over the bus,
/// and `/v1/admin/config` on either shows both nodes' versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reload_reaches_every_node_of_a_cluster() {
    let _broker = crate::cluster::BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("reload");
    let (file_a, file_b) = (cluster_file(dir.path(), &prefix, "node-a"), cluster_file(dir.path(), &prefix, "node-b"));
    let a = Node::start_real(load(&file_a)).await;
    let b = Node::start_real(load(&file_b)).await;
    eventually("each node hears of the other", || async {
        running(&a).await["nodes"].as_array().unwrap().len() == 2
            && running(&b).await["nodes"].as_array().unwrap().len() == 2
    })
    .await;
    let v1b = running(&b).await["version"].as_str().unwrap().to_owned();
    let b_id = b.app.config().server.node_id.clone();

    for file in [&file_a, &file_b] {
        write(&file.parent().unwrap().join("sites.d/blog.toml"), BLOG_SITE);
    }
    let (status, body) = reload(&a).await;
    assert_eq!((status, body["changed"].as_bool()), (200, Some(true)), "{body}");
    eventually("node b runs the new configuration", || async { running(&b).await["version"] != v1b.as_str() }).await;
    let (_tab, number) = tab(&b, "blog-public-key", BLOG, "v-blog").await;
    assert_eq!(number, "+74951235555", "node b serves the new site");
    eventually("node a sees node b on the new version", || async {
        let seen = running(&a).await;
        let nodes = seen["nodes"].as_array().unwrap().clone();
        nodes.len() == 2 && nodes.iter().all(|n| n["version"] == seen["version"]) && seen["consistent"] == true
    })
    .await;

    // Node b's copy is broken: node a's reload goes through, node b refuses and says so.
    write(
        &file_a,
        &std::fs::read_to_string(&file_a).unwrap().replace("delay_to_show = \"0s\"", "delay_to_show = \"1s\""),
    );
    write(&file_b, &std::fs::read_to_string(&file_b).unwrap().replace("[pool]", "[pool]\nbogus = 1"));
    let (status, _) = reload(&a).await;
    assert_eq!(status, 200);
    eventually("node a lists node b's refusal", || async {
        let seen = running(&a).await;
        let nodes = seen["nodes"].as_array().unwrap().clone();
        seen["consistent"] == false
            && nodes
                .iter()
                .any(|n| n["node"] == b_id.as_str() && n["refused"].as_str().is_some_and(|r| r.contains("bogus")))
    })
    .await;
    // Tabs on node b are untouched by its refusal.
    let (_shop, number) = tab(&b, "shop-public-key", ORIGIN, "v-shop").await;
    assert!(number == X || number == Y, "{number}");
    a.stop().await;
    b.stop().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}
