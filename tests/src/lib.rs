//! What the end-to-end tests share: building the server and the example plugins, starting the
//! server on a free loopback port, and fake servers (Coreapp, destinations) that record what
//! they receive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// The workspace folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Cargo's build folder: `CARGO_TARGET_DIR`, or `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// An On-Premises fixture body from `tests/fixtures/onprem/`.
pub fn fixture(name: &str) -> String {
    read_fixture("onprem", name)
}

/// A Cloud API fixture body from `tests/fixtures/cloud/`.
pub fn cloud_fixture(name: &str) -> String {
    read_fixture("cloud", name)
}

fn read_fixture(api: &str, name: &str) -> String {
    let path = root().join("tests/fixtures").join(api).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The server binary and the example plugins, built by `cargo xtask test` before the tests run
/// (cargo cannot build from inside `cargo test`: the build folder is locked). Returns the folder
/// with the plugins' `.wasm` and `.toml` files.
pub fn build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let plugins = target_dir().join("plugins");
        for needed in [
            target_dir().join("release/switchboard"),
            plugins.join("auto-reply.wasm"),
        ] {
            assert!(
                needed.exists(),
                "{} is missing: run the tests with `cargo xtask test`",
                needed.display()
            );
        }
        plugins
    })
}

/// A plugin built for the tests (`misbehave.wasm`, `misbehave-b.wasm`), from
/// `target/test-plugins/`.
pub fn test_plugin(file: &str) -> PathBuf {
    let path = target_dir().join("test-plugins").join(file);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// Put a plugin into a plugins folder the way an operator should: write under a temporary name,
/// then rename, so the server never sees half a file.
pub fn install(dir: &Path, name: &str, wasm: &Path, manifest: &str) {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, manifest).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.toml"))).unwrap();
    std::fs::copy(wasm, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

/// The manifest of the test plugin in `echo` mode: every notification is forwarded to the
/// destination `sink` as `{"build", "config": VERSION, "id"}`.
pub fn echo_manifest(version: &str) -> String {
    format!(
        "[config]\nmode = \"echo\"\ndestination = \"sink\"\nversion = \"{version}\"\n\
         [permissions]\ndestinations = [\"sink\"]\n"
    )
}

/// The text message of the `e1-text.json` fixture with message id `id`.
pub fn text_message(id: &str) -> String {
    fixture("e1-text.json").replace("ABEGVRGYdlABAgo-sKq3Yc7rN2Tz", id)
}

/// A request a fake server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body of {} is not JSON: {e}", self.path))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Responder = Arc<dyn Fn(&Received) -> (StatusCode, String) + Send + Sync>;

struct FakeState {
    received: Mutex<Vec<Received>>,
    /// Requests seen, kept or not.
    count: std::sync::atomic::AtomicUsize,
    /// Keep only the count (for load tests, where keeping every request would skew them).
    count_only: bool,
    respond: Mutex<Responder>,
}

/// An HTTP server on a loopback port that records every request and answers as told.
pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    _task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// A fake answering `200 {}` to everything.
    pub async fn start() -> Fake {
        Self::with(|_| (StatusCode::OK, "{}".into())).await
    }

    /// A fake answering with `respond`.
    pub async fn with(
        respond: impl Fn(&Received) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Fake {
        Self::serve(respond, false).await
    }

    /// A fake answering `200 {}` that keeps only the count of what it receives (for load
    /// tests, where keeping every request would skew them).
    pub async fn counting() -> Fake {
        Self::serve(|_| (StatusCode::OK, "{}".into()), true).await
    }

    /// A fake Coreapp (see [`Fake::coreapp`]) that keeps only the count.
    pub async fn counting_coreapp() -> Fake {
        Self::serve(coreapp, true).await
    }

    async fn serve(
        respond: impl Fn(&Received) -> (StatusCode, String) + Send + Sync + 'static,
        count_only: bool,
    ) -> Fake {
        let state = Arc::new(FakeState {
            received: Mutex::new(Vec::new()),
            count: Default::default(),
            count_only,
            respond: Mutex::new(Arc::new(respond)),
        });
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            addr,
            state,
            _task: task,
        }
    }

    /// A fake Coreapp: login gives a token, `POST /v1/messages` an id, the rest `{}`; requests
    /// without the token get 401.
    pub async fn coreapp() -> Fake {
        Self::with(coreapp).await
    }

    /// Change how the fake answers from now on.
    pub fn respond(
        &self,
        respond: impl Fn(&Received) -> (StatusCode, String) + Send + Sync + 'static,
    ) {
        *self.state.respond.lock().unwrap() = Arc::new(respond);
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.state.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// What was received on `path` (with any method).
    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

/// How the fake Coreapp answers: login gives a token (for admin:secret), `POST /v1/messages` an
/// id, the rest `{}`; requests without the token get 401.
pub fn coreapp(r: &Received) -> (StatusCode, String) {
    const DENIED: &str = r#"{"errors":[{"code":1005,"title":"Access denied"}]}"#;
    if r.path == "/v1/users/login" {
        return if r.header("authorization") == Some("Basic YWRtaW46c2VjcmV0") {
            (
                StatusCode::OK,
                r#"{"users":[{"token":"tok-1","expires_after":"2030-01-01 00:00:00+00:00"}]}"#
                    .into(),
            )
        } else {
            (StatusCode::UNAUTHORIZED, DENIED.into())
        };
    }
    if r.header("authorization") != Some("Bearer tok-1") {
        return (StatusCode::UNAUTHORIZED, DENIED.into());
    }
    if r.method == Method::POST && r.path == "/v1/messages" {
        return (
            StatusCode::OK,
            r#"{"messages":[{"id":"gBEGkYiEB1VXAglK1ZEqA1YKPrU"}]}"#.into(),
        );
    }
    (StatusCode::OK, "{}".into())
}

async fn record(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let r = Received {
        method,
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    };
    let respond = state.respond.lock().unwrap().clone();
    let (status, body) = respond(&r);
    state
        .count
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if !state.count_only {
        state.received.lock().unwrap().push(r);
    }
    (status, [("content-type", "application/json")], body)
}

/// A running `switchboard serve`, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    log: PathBuf,
    env: Vec<(String, String)>,
}

/// What a test server is made of.
pub struct ServerSetup {
    /// The folder for config, plugins and data (kept by the caller, usually a tempdir).
    pub dir: PathBuf,
    /// The fake Coreapp's base URL, if any.
    pub coreapp: Option<String>,
    /// `(name, url)` of each destination.
    pub destinations: Vec<(String, String)>,
    /// Extra keys of the `[server]` table.
    pub server_extra: String,
    /// Extra keys of the `[delivery]` table.
    pub delivery_extra: String,
    /// Extra TOML appended to the config.
    pub extra: String,
    /// Copy the example plugins into the plugins folder.
    pub example_plugins: bool,
    /// Environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// `[storage] url`.
    pub storage_url: String,
}

impl ServerSetup {
    /// A setup in `dir` with the example plugins and nothing else.
    pub fn new(dir: &Path) -> ServerSetup {
        ServerSetup {
            dir: dir.to_path_buf(),
            coreapp: None,
            destinations: Vec::new(),
            server_extra: String::new(),
            delivery_extra: String::new(),
            extra: String::new(),
            example_plugins: true,
            env: Vec::new(),
            storage_url: "sqlite://data/switchboard.db".into(),
        }
    }

    /// A setup in `dir` whose only plugin is the test plugin in `echo` mode, forwarding every
    /// notification to the destination `sink`.
    pub fn echo(dir: &Path, sink: &Fake) -> ServerSetup {
        let mut setup = ServerSetup::new(dir);
        setup.example_plugins = false;
        setup.destinations = vec![("sink".into(), sink.url())];
        std::fs::create_dir_all(setup.plugins_dir()).unwrap();
        install(
            &setup.plugins_dir(),
            "echo",
            &test_plugin("misbehave.wasm"),
            &echo_manifest("1"),
        );
        setup
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// Write config and plugins, then start the server (see [`Server::start`]).
    pub async fn start(&self) -> Server {
        let plugins = build();
        std::fs::create_dir_all(self.plugins_dir()).unwrap();
        if self.example_plugins {
            for entry in std::fs::read_dir(plugins).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, self.plugins_dir().join(path.file_name().unwrap())).unwrap();
            }
        }
        let port = free_port();
        let mut config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nwebhook_path = \"/webhook\"\n{}\n[plugins]\ndir = \"plugins\"\n\n\
             [storage]\nurl = \"{}\"\n\n[delivery]\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\ntimeout = \"2s\"\n{}\n",
            self.server_extra, self.storage_url, self.delivery_extra
        );
        if let Some(url) = &self.coreapp {
            config += &format!(
                "[whatsapp]\nbase_url = \"{url}\"\nusername = \"admin\"\npassword = \"secret\"\n\n"
            );
        }
        for (name, url) in &self.destinations {
            config += &format!("[destinations.{name}]\nurl = \"{url}\"\n\n");
        }
        config += &self.extra;
        std::fs::write(self.dir.join("switchboard.toml"), config).unwrap();
        Server::start(
            &self.dir,
            format!("127.0.0.1:{port}").parse().unwrap(),
            &self.env,
        )
        .await
    }
}

/// An HTTP client for the tests (the workspace builds reqwest with rustls and no default crypto
/// provider: this installs ring's).
/// An HTTP client for the tests; a request that gets no answer within a minute fails.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Start the server on `dir/switchboard.toml` and wait until it answers `/health`.
    pub async fn start(dir: &Path, addr: SocketAddr, env: &[(String, String)]) -> Server {
        build();
        let log = dir.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(target_dir().join("release/switchboard"))
            .current_dir(dir)
            .args(["serve", "--config", "switchboard.toml"])
            .env("RUST_LOG", "info,switchboard=debug")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start switchboard");
        let tls = std::fs::read_to_string(dir.join("switchboard.toml"))
            .unwrap_or_default()
            .contains("tls_cert");
        let mut server = Server {
            addr,
            dir: dir.to_path_buf(),
            child,
            log,
            env: env.to_vec(),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let health = if tls {
            format!("https://{addr}/health")
        } else {
            server.url("/health")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("switchboard exited with {status}:\n{}", server.log());
            }
            if let Ok(r) = client.get(&health).send().await
                && r.status().is_success()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "switchboard did not come up:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST a webhook body; returns the status and the response body.
    pub async fn post(&self, body: &str) -> (StatusCode, String) {
        self.post_to("/webhook", body).await
    }

    /// POST a JSON body to `path` (with a query, if any).
    pub async fn post_to(&self, path: &str, body: &str) -> (StatusCode, String) {
        let r = http()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST the webhook");
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        (status, r.text().await.unwrap_or_default())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The body of a GET of `path`, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        http()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The body of a GET of `path` as JSON, whatever the status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        http()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A counter of `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.get_text("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("switchboard_{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Run `switchboard ARGS --config` with this server's config; returns (success, output).
    pub async fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut args = args.to_vec();
        args.extend(["--config", "switchboard.toml"]);
        self.cli_in(&self.dir, &args).await
    }

    /// Run `switchboard ARGS` in `dir`; returns (success, output).
    pub async fn cli_in(&self, dir: &Path, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new(target_dir().join("release/switchboard"))
            .current_dir(dir)
            .args(args)
            .output()
            .await
            .expect("run switchboard");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Start the server again on the same folder and port, as after a crash.
    pub async fn restart(&mut self) {
        self.kill();
        *self = Server::start(&self.dir, self.addr, &self.env.clone()).await;
    }

    /// Send SIGTERM and wait for the process to exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kill the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` until it returns true or `timeout` passes; returns the last result.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Group requests by path, for readable assertion messages.
pub fn by_path(received: &[Received]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in received {
        *m.entry(format!("{} {}", r.method, r.path)).or_insert(0) += 1;
    }
    m
}

/// A fresh PostgreSQL database for one test, dropped with the guard: on the server of
/// `SWITCHBOARD_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`). `None`,
/// after saying why the test is skipped, when no server answers.
pub async fn postgres_database(test: &str) -> Option<(String, PostgresDatabase)> {
    let server = std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("sb_e2e_{}_{}", std::process::id(), rand_suffix());
    let created = async {
        let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = created {
        eprintln!(
            "SKIPPED {test}: no PostgreSQL at {server} ({e:#}); start one or set SWITCHBOARD_TEST_POSTGRES"
        );
        return None;
    }
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    Some((format!("{base}/{name}"), PostgresDatabase { server, name }))
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % 1_000_000_000
}

/// A test database, dropped (with its connections) when this is.
pub struct PostgresDatabase {
    server: String,
    pub name: String,
}

impl PostgresDatabase {
    /// Run SQL on the test database's server (as its administrator).
    pub async fn admin(&self, sql: &str) -> anyhow::Result<()> {
        let (client, conn) = tokio_postgres::connect(&self.server, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(sql).await?;
        Ok(())
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // A runtime of its own: this may be dropped inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (client, conn) =
                    tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}
