//! The `callpool` binary as an operator uses it: check-config, serve (with Redis late to
//! start), graceful stop, and pool status.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn callpool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpool"))
        .args(args)
        .env_remove("CALLPOOL_STORE")
        .env_remove("CALLPOOL_REDIS_URL")
        .output()
        .expect("run callpool")
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn check_config_accepts_the_example_and_names_each_problem() {
    let ok = callpool(&["--config", "callpool.example.toml", "check-config"]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let summary = String::from_utf8_lossy(&ok.stdout);
    assert!(summary.contains("site shop"), "{summary}");
    assert!(
        summary.contains("callback: generic trigger, outcomes from pbx office, operator +74951234500"),
        "{summary}"
    );
    assert!(summary.contains("per number 7/15m, 9/1h, 15/1day"), "{summary}");

    let dir = tempfile::tempdir().unwrap();
    let bad = config_text("")
        .replace("\"+74951230002\"", "\"+7 495 123-00-02\"")
        .replace("delay_to_show = \"10s\"", "delay_to_show = \"10h\"")
        .replace("default_after = \"+74951234568\"", "default_after = \"+74951230001\"");
    let path = write(dir.path(), "bad.toml", &bad);
    let out = callpool(&["--config", &path, "check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path) && err.contains("3 problems"), "{err}");
    assert!(err.contains("[pool] numbers[1]: \"+7 495 123-00-02\" is not an E.164 number"), "{err}");
    assert!(err.contains("site \"shop\": delay_to_show: 10h is not shorter than max_hold"), "{err}");
    assert!(err.contains("site \"shop\": default_after: +74951230001 is also a pool number"), "{err}");

    let path = write(dir.path(), "typo.toml", &config_text("").replace("max_numbers", "max_number"));
    let out = callpool(&["--config", &path, "check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `max_number`"));

    let out = callpool(&["--config", "/nonexistent/callpool.toml", "check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

/// Starts `callpool serve`, collecting its log lines in a thread.
fn spawn_serve(config: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callpool"))
        .args(["--config", config, "serve"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callpool");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line containing {needle:?}");
}

fn stop(child: &mut Child) -> Option<i32> {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap().code()
}

#[test]
fn serve_waits_for_redis_then_serves_and_stops_cleanly() {
    let (redis_port, http_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\nkind = \"redis\"\nredis_url = \"redis://127.0.0.1:{redis_port}/\"\nredis_prefix = \"{}\"",
        unique("cli")
    );
    let text = config_text(&store).replace("[server]", &format!("[server]\nlisten = \"127.0.0.1:{http_port}\""));
    let path = write(dir.path(), "redis.toml", &text);

    let (mut child, rx) = spawn_serve(&path);
    wait_for_line(&rx, "Redis is not reachable yet; retrying");
    let _redis = OwnRedis::start(redis_port);
    wait_for_line(&rx, "callpool is serving");
    let ready = std::net::TcpStream::connect(("127.0.0.1", http_port));
    assert!(ready.is_ok(), "listening once Redis answered");
    // `systemctl reload`: the file is read again; unchanged, nothing happens.
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    wait_for_line(&rx, "Reload: the configuration has not changed");
    // A second site added: it runs from the hang-up on.
    let blog = "\n[[site]]\nid = \"blog\"\nkey = \"blog-public-key\"\nallowed_origins = [\"https://blog.example\"]\ndefault_before = \"+74951235550\"\ndefault_after = \"+74951235551\"\nmax_numbers = 1\n";
    std::fs::write(&path, format!("{text}{blog}")).unwrap();
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    let said = wait_for_line(&rx, "The configuration was reloaded");
    assert!(said.contains("sites=2"), "{said}");
    // A broken file: refused, the problem logged, the running configuration kept.
    std::fs::write(&path, format!("{text}{blog}").replace("[pool]", "[pool]\nbogus = 1")).unwrap();
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    let said = wait_for_line(&rx, "The reload was refused");
    assert!(said.contains("bogus"), "{said}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok(), "still serving after the hang-ups");
    assert_eq!(stop(&mut child), Some(0), "a clean exit on SIGTERM");
}

/// Secrets given as files (a systemd credential, a container secret): the admin token, and a
/// Redis ACL user's password beside the URL; the node logs in with them and never shows them.
#[test]
fn secrets_from_files_open_redis_and_the_admin_api() {
    let (redis_port, http_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let password = "SECRET redis: p@ss/word";
    let _redis = OwnRedis::start_with(
        redis_port,
        &["--user", "default", "off", "--user", "callpool", "on", &format!(">{password}"), "~*", "&*", "+@all"],
    );
    let password_file = write(dir.path(), "redis-password", &format!("{password}\n"));
    let token_file = write(dir.path(), "admin-token", "SECRET-admin-token-from-file\n");
    let store = format!(
        "[store]\nkind = \"redis\"\nredis_url = \"redis://127.0.0.1:{redis_port}/\"\nredis_prefix = \"{}\"\n\
         redis_username = \"callpool\"\nredis_password_file = {password_file:?}",
        unique("files")
    );
    let text = config_text(&store).replace(&format!("admin_token = \"{ADMIN_TOKEN}\""), "").replace(
        "[server]",
        &format!("[server]\nlisten = \"127.0.0.1:{http_port}\"\nadmin_token_file = {token_file:?}"),
    );
    let path = write(dir.path(), "files.toml", &text);
    let checked = callpool(&["--config", &path, "check-config"]);
    assert_eq!(checked.status.code(), Some(0), "{}", all_output(&checked));
    assert!(!all_output(&checked).contains("SECRET"), "{}", all_output(&checked));
    let (mut child, rx) = spawn_serve(&path);
    wait_for_line(&rx, "callpool is serving");
    let admin = |token: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /v1/admin/pool HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or("").to_owned()
    };
    assert!(admin("SECRET-admin-token-from-file").contains(" 200 "), "the token from the file opens the admin API");
    assert!(admin("SECRET-admin-token-from").contains(" 401 "), "only the whole token");
    assert_eq!(stop(&mut child), Some(0));
    let log: Vec<String> = rx.try_iter().collect();
    assert!(!log.iter().any(|l| l.contains("SECRET")), "{log:#?}");
}

/// Every secret a configuration can hold, each one recognisable in output.
const SECRETS: [&str; 10] = [
    "SECRET-admin-token-0001",
    "SECRET-pbx-signing-0002",
    "SECRET-report-token-0003",
    "SECRET-site-admin-0004",
    "SECRET-ga4-api-0005",
    "SECRET-metrica-oauth-0006",
    "SECRET-trigger-0007",
    "SECRET-notify-0008",
    "SECRET-redis-pw-0009",
    "SECRET-amqp-pw-0010",
];

/// The example configuration with every secret set, Redis at `redis_url`, and RabbitMQ.
fn config_with_secrets(redis_url: &str, http_port: u16) -> String {
    let [admin, pbx, report, site_admin, ga4, metrica, trigger, notify, _, amqp] = SECRETS;
    std::fs::read_to_string("callpool.example.toml")
        .unwrap()
        .replace("# admin_token = \"a-long-random-secret\"", &format!("admin_token = \"{admin}\""))
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{http_port}\""))
        .replace("change-me-to-a-long-random-secret", pbx)
        .replace("# report_token = \"a-long-random-report-token\"", &format!("report_token = \"{report}\""))
        .replace("# admin_token = \"a-long-random-site-admin-token\"", &format!("admin_token = \"{site_admin}\""))
        .replace(
            "# [site.ga4]\n# measurement_id = \"G-XXXXXXXXXX\"\n# api_secret = \"...\"",
            &format!("[site.ga4]\nmeasurement_id = \"G-ABCDEF1234\"\napi_secret = \"{ga4}\""),
        )
        .replace(
            "# [site.yandex]\n# counter_id = 12345678\n# token = \"...\"",
            &format!("[site.yandex]\ncounter_id = 12345678\ntoken = \"{metrica}\""),
        )
        .replace("a-long-random-trigger-secret", trigger)
        .replace(
            "# notify = { url = \"https://crm.example.com/hooks/callpool\", secret = \"a-long-random-notify-secret\" }",
            &format!("notify = {{ url = \"https://crm.example.com/hooks/callpool\", secret = \"{notify}\" }}"),
        )
        .replace("kind = \"embedded\"", "kind = \"redis\"")
        .replace("redis_url = \"redis://127.0.0.1:6379/\"", &format!("redis_url = \"{redis_url}\""))
        .replace("redis_prefix = \"callpool\"", &format!("redis_prefix = \"{}\"", unique("secrets")))
        .replace("kind = \"in_process\"", "kind = \"rabbitmq\"")
        .replace("amqp://127.0.0.1:5672/%2f", &format!("amqp://callpool:{amqp}@127.0.0.1:1/%2f"))
}

fn assert_no_secret(what: &str, output: &str) {
    for s in SECRETS {
        assert!(!output.contains(s), "{what} shows the secret {s}:\n{output}");
    }
}

fn all_output(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// What an operator sees (check-config, start-up failures, a served run's log at debug level)
/// never holds a secret; a wrong Redis password stops start-up with a clear error; TLS URLs are
/// accepted (their passwords hidden alike) and their certificate files checked; a signal stops a
/// node still waiting for Redis.
#[tokio::test]
async fn secrets_never_appear_and_redis_credentials_are_checked() {
    let redis_pw = SECRETS[8];
    let (redis_port, http_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let good_url = format!("redis://:{redis_pw}@127.0.0.1:{redis_port}/");
    let text = config_with_secrets(&good_url, http_port);
    assert!(SECRETS.iter().all(|s| text.contains(s)), "the test configuration holds every secret");
    let path = write(dir.path(), "secrets.toml", &text);

    let checked = callpool(&["--config", &path, "check-config"]);
    assert_eq!(checked.status.code(), Some(0), "{}", all_output(&checked));
    let summary = all_output(&checked);
    assert!(
        summary.contains("redis at redis://:***@127.0.0.1") && summary.contains("rabbitmq at amqp://callpool:***@")
    );
    assert_no_secret("check-config", &summary);

    let tls_text = text.replace("redis://:", "rediss://:").replace("amqp://callpool", "amqps://callpool");
    let tls = write(dir.path(), "tls.toml", &tls_text);
    let accepted = callpool(&["--config", &tls, "check-config"]);
    assert_eq!(accepted.status.code(), Some(0), "TLS URLs: {}", all_output(&accepted));
    let summary = all_output(&accepted);
    assert!(
        summary.contains("redis at rediss://:***@127.0.0.1") && summary.contains("rabbitmq at amqps://callpool:***@"),
        "{summary}"
    );
    assert_no_secret("check-config with TLS URLs", &summary);
    let key = write(
        dir.path(),
        "client.key",
        "-----BEGIN PRIVATE KEY-----\nSECRET-not-a-real-key\n-----END PRIVATE KEY-----\n",
    );
    let files = format!(
        "redis_ca_file = \"/nonexistent/ca.pem\"\nredis_client_key_path = {key:?}\n\n\
         [bus]\namqp_ca_file = {key:?}\namqp_client_key_file = {key:?}\n"
    );
    let bad_files = write(dir.path(), "tls-files.toml", &tls_text.replacen("\n[bus]\n", &format!("\n{files}"), 1));
    let refused = callpool(&["--config", &bad_files, "check-config"]);
    let said = all_output(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("[store] redis_ca_file: /nonexistent/ca.pem: cannot read it"), "{said}");
    assert!(said.contains("[store] redis_client_cert_file: mutual TLS needs both"), "{said}");
    assert!(said.contains("[bus] amqp_ca_file:") && said.contains("no PEM certificate in it"), "{said}");
    assert!(said.contains("[bus] amqp_client_key: not a setting: give the path"), "a key_file names a secret: {said}");
    assert!(!said.contains("SECRET"), "{said}");
    let plain =
        write(dir.path(), "plain-ca.toml", &text.replacen("\n[bus]\n", "\nredis_ca_file = \"/x.pem\"\n\n[bus]\n", 1));
    let said = all_output(&callpool(&["--config", &plain, "check-config"]));
    assert!(said.contains("[store] redis_ca_file: is for TLS: the URL must start with rediss://"), "{said}");

    // Nothing listens yet: the node waits for Redis, and SIGTERM ends the wait.
    let (mut child, rx) = spawn_serve(&path);
    wait_for_line(&rx, "Redis is not reachable yet; retrying");
    assert_eq!(stop(&mut child), Some(0), "a signal stops a node that is still starting");
    assert_no_secret("the log of a node waiting for Redis", &rx.try_iter().collect::<Vec<_>>().join("\n"));

    let _redis = OwnRedis::start_with(redis_port, &["--requirepass", redis_pw]);
    let wrong = write(dir.path(), "wrong.toml", &text.replace(redis_pw, "not-the-password"));
    let failed = Command::new(env!("CARGO_BIN_EXE_callpool")).args(["--config", &wrong, "serve"]).output().unwrap();
    let said = all_output(&failed);
    assert_eq!(failed.status.code(), Some(1), "a wrong password stops start-up: {said}");
    assert!(said.contains("Redis refused the credentials of [store] redis_url"), "{said}");
    assert!(!said.contains("not-the-password"), "{said}");
    assert_no_secret("a failed start", &said);

    // A served run at debug level, with a webhook, a report and an admin request.
    let mut child = Command::new(env!("CARGO_BIN_EXE_callpool"))
        .args(["--config", &path, "serve"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    wait_for_line(&rx, "callpool is serving");
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "call_id": "c-secret", "called": "+74951230201", "caller": "+79161234567",
        "started_at": chrono::Utc::now().to_rfc3339(), "status": "completed", "duration": 5,
    })
    .to_string();
    let t = chrono::Utc::now().timestamp();
    let posted = http
        .post(format!("{base}/v1/pbx/calls?pbx=office"))
        .header("callpool-signature", callpool::pbx::signature::sign(SECRETS[1], t, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let report = http.get(format!("{base}/v1/reports/shop/calls")).bearer_auth(SECRETS[2]).send().await.unwrap();
    assert_eq!(report.status(), 200);
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let link = browser.get(format!("{base}/v1/reports/shop?token={}", SECRETS[2])).send().await.unwrap();
    assert_eq!(link.status(), 303, "a token in a link becomes a cookie");
    let pool = http.get(format!("{base}/v1/admin/pool")).bearer_auth(SECRETS[0]).send().await.unwrap();
    assert_eq!(pool.status(), 200);
    let wrong = http.get(format!("{base}/v1/reports/shop/calls")).bearer_auth(SECRETS[3].to_owned() + "x").send();
    assert_eq!(wrong.await.unwrap().status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stop(&mut child), Some(0));
    let log = rx.try_iter().collect::<Vec<_>>().join("\n");
    assert!(log.contains("RabbitMQ"), "the run tried the broker: {log}");
    assert_no_secret("a served run's log", &log);
}

#[test]
fn pool_status_reads_the_embedded_store_after_the_server_stopped() {
    let http_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}", dir.path().join("data").display().to_string());
    let text = config_text(&store).replace("[server]", &format!("[server]\nlisten = \"127.0.0.1:{http_port}\""));
    let path = write(dir.path(), "embedded.toml", &text);

    let (mut child, rx) = spawn_serve(&path);
    wait_for_line(&rx, "callpool is serving");
    // While the server holds the store, the command says how to ask the server instead.
    let busy = callpool(&["--config", &path, "pool", "status"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("/v1/admin/pool"));
    assert_eq!(stop(&mut child), Some(0));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("data")), 0o700, "the data directory is its owner's alone");
        for file in ["pool.redb", "calls.redb"] {
            assert_eq!(mode(dir.path().join("data").join(file)), 0o600, "{file} holds callers' data");
        }
    }

    let out = callpool(&["--config", &path, "pool", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> =
        text.lines().find(|l| l.starts_with("shop")).expect("a row for shop").split_whitespace().collect();
    assert_eq!(row, ["shop", "3", "1", "1", "0", "1", "0", "0"], "{text}");
    let unknown = callpool(&["--config", &path, "pool", "status", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn simulate_runs_sweeps_and_advises_from_a_model_file_and_a_population_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(
        dir.path(),
        "sim.toml",
        "preset = \"lead-gen\"\n[traffic]\nvisitors_per_day = 300\n[settings]\npool_size = 8\ndelay_to_show = \"20s\"\n",
    );
    let pop = dir.path().join("pop.jsonl").display().to_string();
    let run = callpool(&["simulate", "run", "--model", &model, "--days", "3", "--json", "--write-population", &pop]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let calls = outcome["calls"].as_u64().unwrap();
    assert!(calls > 0, "{outcome}");
    let parts: u64 = ["correct", "wrong", "default_before", "default_after", "unmatched"]
        .iter()
        .map(|k| outcome[k].as_u64().unwrap())
        .sum();
    assert_eq!(parts, calls, "every call is counted once: {outcome}");

    // The population written out gives the same outcome when read back.
    let again = callpool(&["simulate", "run", "--model", &model, "--days", "3", "--json", "--population", &pop]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(), outcome);

    let (csv, svg) = (dir.path().join("s.csv"), dir.path().join("s.svg"));
    let sweep = callpool(&[
        "simulate",
        "sweep",
        "--model",
        &model,
        "--days",
        "3",
        "--pools",
        "2,8",
        "--delays",
        "0s,20s",
        "--seeds",
        "2",
        "--csv",
        csv.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(sweep.status.code(), Some(0), "{}", String::from_utf8_lossy(&sweep.stderr));
    assert_eq!(String::from_utf8_lossy(&sweep.stdout).lines().count(), 1 + 4, "a header and four points");
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1 + 4 * 2, "a line per point and seed");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let advice =
        callpool(&["simulate", "advise", "--model", &model, "--days", "3", "--pools", "1,30", "--target", "0.3"]);
    assert_eq!(advice.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&advice.stdout).contains("30 numbers"),
        "{}",
        String::from_utf8_lossy(&advice.stdout)
    );

    let bad = write(dir.path(), "bad.toml", "[traffic]\ncall_share = 3\n");
    let refused = callpool(&["simulate", "run", "--model", &bad]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("traffic.call_share"));
}

#[test]
fn simulate_fits_a_sites_recorded_traffic_and_advises_against_its_current_settings() {
    use callpool::calls::{Call, CallKey, CallStatus, Match, MatchKind, NumberKind};
    use callpool::store::calls::CallWrite;
    use callpool::store::visits::VisitRecord;
    use callpool_pool::{PhoneNumber, SessionAttrs, SiteId, Ts, VisitorId};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}", data.display().to_string());
    let config = write(dir.path(), "callpool.toml", &config_text(&store));
    // Three days of a small site's visits and calls, as the hub and the webhook would have recorded them.
    let shop = SiteId::new("shop").unwrap();
    let now = Ts::now().as_millis();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let calls = callpool::store::Store::embedded(&data).unwrap();
        for i in 0..300i64 {
            let first_seen = now - 3 * 86_400_000 + i * 800_000;
            let active = if i % 3 == 0 { 15_000 } else { 60_000 + (i % 7) * 40_000 };
            let visit = VisitRecord {
                visitor: format!("v{i}"),
                first_seen,
                last_active: first_seen + active,
                closed: first_seen + active + 2_000,
                tabs: 1 + (i % 4 == 0) as u32,
                source: "google".into(),
                tracked: true,
                ..Default::default()
            };
            calls.record_visit(&shop, &visit).await.unwrap();
            if i % 15 == 1 {
                let call = Call {
                    key: CallKey::new("pbx", &format!("c{i}")).unwrap(),
                    called: PhoneNumber::parse("+74951230001").unwrap(),
                    caller: None,
                    started_at: Ts::from_millis(first_seen + active / 2),
                    answered_at: None,
                    ended_at: None,
                    status: CallStatus::Completed,
                    duration: Some(60),
                    recording_url: None,
                    received_at: Ts::from_millis(now),
                    updated_at: Ts::from_millis(now),
                    matched: Match {
                        kind: if i % 2 == 1 { MatchKind::Active } else { MatchKind::Recent },
                        site: Some(shop.clone()),
                        number_kind: NumberKind::Tracking,
                        visitor: Some(VisitorId::new(format!("v{i}")).unwrap()),
                        lease: None,
                        attrs: SessionAttrs::default(),
                    },
                    first_time_caller: true,
                    version: 1,
                };
                let save = CallWrite { call: &call, expected: 0, caller: None, jobs: &[], hurry: &[] };
                assert!(calls.save_call(Some(&shop), save).await.unwrap());
            }
        }
    });
    drop(rt);
    let out = callpool(&[
        "--config",
        &config,
        "simulate",
        "advise",
        "--site",
        "shop",
        "--days",
        "3",
        "--pools",
        "1,3,12",
        "--target",
        "0.5",
        "--max-wrong",
        "0.5",
        "--seeds",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Fitted to site shop") && text.contains("300 visits") && text.contains("20 calls"), "{text}");
    assert!(text.contains("Now: 3 numbers, delay 10s"), "{text}");
    let advised = ["numbers instead of 3 you would attribute", "With its 3 numbers the site attributes", "No setting"];
    assert!(advised.iter().any(|a| text.contains(a)), "{text}");

    let unknown = callpool(&["--config", &config, "simulate", "run", "--site", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--site"));
}
