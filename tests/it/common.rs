//! What the service's integration tests share: configs, starting a node in-process on port 0,
//! and throw-away Redis servers.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use callpool::app::App;
use callpool::clock::{Clock, ManualClock, SystemClock};
use callpool::config::Config;
use callpool_pool::Ts;
use tokio_util::sync::CancellationToken;

/// 2026-01-01T00:00:00Z.
pub const T0: Ts = Ts::from_millis(1_767_225_600_000);
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The Redis the tests use: `CALLPOOL_TEST_REDIS_URL`, else the default local port.
pub fn redis_url() -> String {
    std::env::var("CALLPOOL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// The test RabbitMQ (`CALLPOOL_TEST_AMQP_URL`; ./deploy/test.sh starts one and sets it).
pub fn amqp_url() -> String {
    std::env::var("CALLPOOL_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test-{name}-{}-{nanos}", std::process::id())
}

/// A one-site config with the given `[store]` table.
pub fn config_text(store: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

{store}

[pool]
numbers = ["+74951230001", "+74951230002"]
reaper_interval = "20ms"

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230003"]
max_numbers = 3
delay_to_show = "10s"
reclaim_after_idle = "30m"
"#
    )
}

/// The `[pool]` and `[[site]]` tables of the websocket tests: site `shop` (key `shop-public-key`)
/// on `origin`, two dedicated numbers, a reaper every 50 ms and the given timeline.
pub fn shop_site(origin: &str, delay: &str, idle: &str, grace: &str) -> String {
    format!(
        r#"
[pool]
reaper_interval = "50ms"

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["{origin}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001", "+74951230002"]
delay_to_show = "{delay}"
reclaim_after_idle = "{idle}"
release_grace = "{grace}"
"#
    )
}

pub fn embedded_config(dir: &Path) -> Config {
    let store = format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}", dir.display().to_string());
    Config::parse(&config_text(&store), "test.toml", &std::collections::HashMap::new()).expect("test config")
}

pub fn redis_config(url: &str, prefix: &str) -> Config {
    let store = format!("[store]\nkind = \"redis\"\nredis_url = \"{url}\"\nredis_prefix = \"{prefix}\"");
    Config::parse(&config_text(&store), "test.toml", &std::collections::HashMap::new()).expect("test config")
}

/// A callpool node running in this process.
pub struct Node {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub shutdown: CancellationToken,
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    pub async fn start(config: Config, clock: Arc<ManualClock>) -> Node {
        Node::start_with(config, clock).await
    }

    /// A node on the wall clock (for the websocket timeline, whose timers sleep in real time).
    pub async fn start_real(config: Config) -> Node {
        Node::start_with(config, Arc::new(SystemClock)).await
    }

    async fn start_with(config: Config, clock: Arc<dyn Clock>) -> Node {
        let app = Arc::new(App::start(config, clock).await.expect("start the app"));
        Node::serve(app).await
    }

    /// A node on the wall clock on `config`'s store, once the node before it let go of the store
    /// (the embedded store's writer thread releases the file a moment after its node stopped; a
    /// real restart is a new process).
    pub async fn restart_on(config: Config) -> Node {
        let mut tries = 0;
        let app = loop {
            match App::start(config.clone(), Arc::new(SystemClock)).await {
                Ok(app) => break app,
                Err(e) if tries < 100 && e.to_string().contains("already open") => tries += 1,
                Err(e) => panic!("restart: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Node::serve(Arc::new(app)).await
    }

    /// Serves an app already started.
    pub async fn serve(app: Arc<App>) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(callpool::run(listener, app.clone(), shutdown.clone()));
        Node { addr, app, shutdown, served }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.expect("GET")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new().get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("GET")
    }

    /// The value of one metric line (`name{labels}`), or 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .find_map(|rest| rest.strip_prefix(' ').and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.served.await.expect("join").expect("served");
    }
}

/// Polls `f` every 20 ms for up to 10 s until it returns true.
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_for(what, Duration::from_secs(10), f).await;
}

/// Polls `f` every 20 ms until it returns true: `limit` / 20 ms times (longer when `f` takes a
/// while).
pub async fn eventually_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..limit.as_millis() / 20 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throw-away redis-server of the test's own, on `port`, stopped on drop.
pub struct OwnRedis {
    child: Child,
    port: u16,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub fn start(port: u16) -> OwnRedis {
        OwnRedis::start_with(port, &[])
    }

    /// With more `redis-server` arguments (`--requirepass`, `--appendonly yes`).
    pub fn start_with(port: u16, extra: &[&str]) -> OwnRedis {
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = OwnRedis::spawn(port, &extra, dir.path());
        OwnRedis { child, port, extra, dir }
    }

    fn spawn(port: u16, extra: &[String], dir: &Path) -> Child {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (./deploy/test.sh installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on port {port}");
    }

    /// Stops it as an operator does (SIGTERM: with AOF on, it writes what it has), waits
    /// `down`, and starts it again on the same data.
    pub async fn restart(&mut self, down: Duration) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let _ = self.child.wait();
        tokio::time::sleep(down).await;
        self.child = OwnRedis::spawn(self.port, &self.extra, self.dir.path());
    }
}
impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's nginx as the test user, everything it writes in a temporary prefix; stopped on drop
/// (also when the test fails).
pub struct OwnNginx {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnNginx {
    /// nginx in front of a node on `127.0.0.1:{port}`, with the `location` block of the README
    /// (`/cp/` proxied to the node, `X-Forwarded-For` appended), so the documented setup is the
    /// tested one.
    pub fn start(node: SocketAddr) -> OwnNginx {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let location =
            readme.split("```nginx\n").nth(1).and_then(|b| b.split("```").next()).expect("README's nginx block");
        let location = location.replace("http://127.0.0.1:8080/", &format!("http://{node}/"));
        OwnNginx::serve(|_, port| format!("server {{\n listen 127.0.0.1:{port};\n{location}\n}}\n"))
    }

    /// nginx with the `http` block's content that `conf` gives for the prefix directory (where it
    /// may write files it includes) and a free loopback port to listen on.
    pub fn serve(conf: impl FnOnce(&Path, u16) -> String) -> OwnNginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http = conf(dir.path(), port);
        let d = dir.path().display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{http}}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let bin = if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (./deploy/test.sh installs it)");
        let mut nginx = None;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return OwnNginx { child, port, dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                nginx = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        panic!("nginx did not start on port {port} ({nginx:?}): {log}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for OwnNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A websocket tab of a test visitor.
pub struct WsTab {
    pub stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server said, or how it closed.
#[derive(Debug, PartialEq)]
pub enum Heard {
    Json(serde_json::Value),
    Closed(Option<u16>),
}

impl WsTab {
    /// Opens `/v1/ws?site=KEY` with an `Origin` header.
    pub async fn open(addr: SocketAddr, key: &str, origin: &str) -> WsTab {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/v1/ws?site={key}").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(req).await.expect("websocket connects");
        WsTab { stream }
    }

    /// Opens it from the local address `from` (a 127.0.0.x of its own: another client).
    pub async fn open_from(addr: SocketAddr, key: &str, origin: &str, from: [u8; 4]) -> WsTab {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        let tcp = socket.connect(addr).await.expect("connect");
        let mut req = format!("ws://{addr}/v1/ws?site={key}").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let (stream, _) = tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket connects");
        WsTab { stream }
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.stream.send(tokio_tungstenite::tungstenite::Message::text(text)).await.expect("send");
    }

    /// The standard hello of `visitor` from `page`.
    pub async fn hello(&mut self, visitor: &str, page: &str) {
        let hello =
            serde_json::json!({"type": "hello", "v": 1, "visitor": visitor, "tab": unique("tab"), "page": page});
        self.send_text(&hello.to_string()).await;
    }

    /// The next message (pings skipped), within 10 s.
    pub async fn next(&mut self) -> Heard {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg =
                tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await.expect("a message within 10 s");
            match msg {
                Some(Ok(Message::Text(t))) => return Heard::Json(serde_json::from_str(&t).expect("JSON")),
                Some(Ok(Message::Close(frame))) => return Heard::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Heard::Closed(None),
            }
        }
    }

    /// The next `number` message's (number, kind); skips `site`.
    pub async fn number(&mut self) -> (String, String) {
        loop {
            match self.next().await {
                Heard::Json(v) if v["type"] == "number" => {
                    return (v["number"].as_str().unwrap().to_owned(), v["kind"].as_str().unwrap().to_owned())
                }
                Heard::Json(v) if v["type"] == "site" || v["type"] == "callback_form" => continue,
                other => panic!("expected a number, got {other:?}"),
            }
        }
    }

    /// The next number message whose kind is `kind` (`tracking`, `default`), skipping others (a
    /// resync repeats what a tab shows).
    pub async fn until_kind(&mut self, kind: &str) -> String {
        loop {
            let (number, k) = self.number().await;
            if k == kind {
                return number;
            }
        }
    }
}

/// Serves `handle` for every request on a loopback port (a stand-in for a service on the
/// internet); returns its base URL.
pub async fn serve_fake<H, F>(handle: H) -> String
where
    H: Fn(axum::extract::Request) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = (axum::http::StatusCode, String)> + Send + 'static,
{
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| handle(req));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// What a fake internet service received: the path and body, and the status it answered.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub body: Vec<u8>,
    /// The status the fake answered.
    pub status: u16,
}

/// A local stand-in for GA4's collector and Metrica's upload API: records every request, checks
/// each strictly (anything unexpected is answered 400 and listed in `violations`), and answers
/// 503 while `failing` is above zero (counting down).
#[derive(Clone, Default)]
pub struct FakeAnalytics {
    pub requests: Arc<std::sync::Mutex<Vec<Captured>>>,
    pub violations: Arc<std::sync::Mutex<Vec<String>>>,
    pub failing: Arc<std::sync::atomic::AtomicU32>,
    /// Answer 503 to everything while set.
    pub down: Arc<std::sync::atomic::AtomicBool>,
    /// Answer 400 to everything while set (as GA4 does to a request it will never take).
    pub refusing: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds to wait after taking a request before answering it (a slow collector).
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

pub const GA4_MEASUREMENT_ID: &str = "G-TEST1";
pub const GA4_API_SECRET: &str = "ga4-test-secret";
pub const YM_COUNTER: u64 = 4242;
pub const YM_TOKEN: &str = "ym-test-token";

impl FakeAnalytics {
    /// Serves on a loopback port; returns its base URL.
    pub async fn start(&self) -> String {
        let me = self.clone();
        serve_fake(move |req| {
            let me = me.clone();
            async move { me.handle(req).await }
        })
        .await
    }

    async fn handle(&self, req: axum::extract::Request) -> (axum::http::StatusCode, String) {
        use std::sync::atomic::Ordering;
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let problems = check_request(parts.method.as_str(), &path, &query, &parts.headers, &body);
        let status = if !problems.is_empty() {
            self.violations.lock().unwrap().extend(problems);
            400
        } else if self.refusing.load(Ordering::SeqCst) {
            400
        } else if self.down.load(Ordering::SeqCst)
            || self.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            503
        } else {
            200
        };
        self.requests.lock().unwrap().push(Captured { path: path.clone(), body, status });
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let answer = if path.contains("upload_calls") {
            r#"{"uploading":{"id":1,"status":"UPLOADED"}}"#.to_owned()
        } else if path == "/debug/mp/collect" {
            r#"{"validationMessages":[]}"#.to_owned()
        } else {
            String::new()
        };
        (axum::http::StatusCode::from_u16(status).unwrap(), answer)
    }

    /// GA4 events the fake accepted (answered 200), as JSON bodies.
    pub fn ga4_accepted(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == "/mp/collect" && c.status == 200)
            .map(|c| serde_json::from_slice(&c.body).unwrap())
            .collect()
    }

    /// Metrica uploads the fake accepted, as CSV text.
    pub fn yandex_accepted(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.contains("upload_calls") && c.status == 200)
            .map(|c| String::from_utf8_lossy(&c.body).into_owned())
            .collect()
    }

    pub fn attempts(&self, path: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|c| c.path == path).count()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

/// What GA4's collector and Metrica's upload API require of a request.
fn check_request(method: &str, path: &str, query: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> Vec<String> {
    let mut p = Vec::new();
    let q: std::collections::HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if method != "POST" {
        p.push(format!("{method} {path}: only POST"));
    }
    if path == "/mp/collect" || path == "/debug/mp/collect" {
        if q.get("measurement_id").map(String::as_str) != Some(GA4_MEASUREMENT_ID) {
            p.push(format!("measurement_id missing or wrong: {query}"));
        }
        if q.get("api_secret").map(String::as_str) != Some(GA4_API_SECRET) {
            p.push("api_secret missing or wrong".into());
        }
        if !header("content-type").starts_with("application/json") {
            p.push("content-type is not application/json".into());
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            p.push("body is not JSON".into());
            return p;
        };
        let cid = v["client_id"].as_str().unwrap_or("");
        let parts: Vec<&str> = cid.split('.').collect();
        if parts.len() != 2 || parts.iter().any(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit())) {
            p.push(format!("client_id {cid:?} is not two numbers joined by '.'"));
        }
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        match v["timestamp_micros"].as_i64() {
            Some(t) if t <= now_us + 60_000_000 && t >= now_us - 72 * 3600 * 1_000_000 => {}
            other => p.push(format!("timestamp_micros {other:?} is not within the past 72 hours")),
        }
        let events = v["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() || events.len() > 25 {
            p.push(format!("{} events", events.len()));
        }
        for e in &events {
            let name = e["name"].as_str().unwrap_or("");
            if name.is_empty() || name.len() > 40 || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                p.push(format!("event name {name:?}"));
            }
            let params = e["params"].as_object().cloned().unwrap_or_default();
            if params.len() > 25 {
                p.push("more than 25 params".into());
            }
            for (k, val) in &params {
                if k.len() > 40 || k.starts_with('_') || k.starts_with("ga_") || k.starts_with("google_") {
                    p.push(format!("param name {k:?}"));
                }
                if val.as_str().is_some_and(|s| s.chars().count() > 100) {
                    p.push(format!("param {k:?} longer than 100 characters"));
                }
            }
        }
    } else if path == format!("/management/v1/counter/{YM_COUNTER}/offline_conversions/upload_calls") {
        if header("authorization") != format!("OAuth {YM_TOKEN}") {
            p.push("Authorization is not 'OAuth <token>'".into());
        }
        let ct = header("content-type");
        let Some(boundary) = ct.strip_prefix("multipart/form-data; boundary=") else {
            p.push(format!("content-type {ct:?} is not multipart/form-data"));
            return p;
        };
        let text = String::from_utf8_lossy(body);
        if !text.starts_with(&format!("--{boundary}\r\n")) || !text.trim_end().ends_with(&format!("--{boundary}--")) {
            p.push("the multipart body is not framed by its boundary".into());
        }
        if !text.contains("Content-Disposition: form-data; name=\"file\"; filename=") {
            p.push("no 'file' part".into());
        }
        if !text.contains("\r\n\r\nClientId,DateTime,") {
            p.push("the CSV has no header line starting ClientId,DateTime".into());
        }
        // Optional in Metrica's API; callpool always names the calls goal to make.
        if q.get("new_goal_name").is_none_or(|n| n.trim().is_empty()) {
            p.push("no new_goal_name".into());
        }
    } else {
        p.push(format!("unexpected path {path}"));
    }
    p
}

/// The PBX `office` reports a call (callpool's signed JSON, signed with `secret`); answered 200.
pub async fn post_call(node: &Node, secret: &str, call: &serde_json::Value) {
    let body = call.to_string();
    let t = callpool_pool::Ts::now().as_millis() / 1000;
    let resp = reqwest::Client::new()
        .post(node.url("/v1/pbx/calls?pbx=office"))
        .header("content-type", "application/json")
        .header("callpool-signature", callpool::pbx::signature::sign(secret, t, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("the webhook answers");
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
}
