//! Test support: a fresh PostgreSQL database per test, the real server started on port 0
//! against it, and a small JSON client.
//!
//! Every test gets its own database, created when it starts and dropped (with its
//! connections) when it ends, so tests run in parallel and leave nothing behind.

// JSON answers are read with `value["field"]`, which yields `Null` for a missing field
// rather than panicking; the lint cannot tell `serde_json::Value` from a slice.
#![allow(clippy::indexing_slicing)]

mod probe;

use std::sync::Arc;
use std::time::Duration;

use letip_domain::Repository;

use letip_server::{CacheBackend, Config, Running};
use serde_json::Value;

pub use probe::{PauseHandle, Probe};

/// PostgreSQL server the tests use; `TEST_DATABASE_URL` overrides it. Any database path in
/// it is replaced by a fresh database per test.
fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for the life of this value.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    /// Names a new database; the server under test creates and migrates it, as it does
    /// in production.
    pub fn new() -> Self {
        let mut url = url::Url::parse(&server_url()).expect("TEST_DATABASE_URL is a URL");
        let name = format!("letip_test_{}", uuid::Uuid::new_v4().simple());
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
        }
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async code, possibly inside a runtime: use a thread of its own.
        let url = self.url.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database")
                .block_on(letip_store::drop_database(&url))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.url);
        }
    }
}

#[derive(diesel::QueryableByName)]
struct JsonRows {
    #[diesel(sql_type = diesel::sql_types::Text)]
    rows: String,
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> String {
        url::Url::parse(&self.url)
            .expect("a database URL")
            .path()
            .trim_start_matches('/')
            .to_owned()
    }

    /// Where its PostgreSQL server listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        let url = url::Url::parse(&self.url).expect("a database URL");
        format!(
            "{}:{}",
            url.host_str().expect("a host"),
            url.port().unwrap_or(5432)
        )
        .parse()
        .expect("PostgreSQL on a numeric address")
    }

    /// Creates the database now, for tests that arrange it before any server runs (a
    /// database the original backend made).
    pub async fn create(&self) {
        letip_store::ensure_database(&self.url)
            .await
            .expect("the test database is created");
    }

    /// Runs a script of several statements (a schema, a data fixture).
    pub async fn batch(&self, sql: &str) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .expect("the test database accepts connections");
        conn.batch_execute(sql).await.expect("the script runs");
    }

    /// The rows of a query, as JSON objects (PostgreSQL's `row_to_json`).
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .expect("the test database accepts connections");
        let JsonRows { rows } = diesel::sql_query(format!(
            "SELECT coalesce(json_agg(row_to_json(t)), '[]')::text AS rows FROM ({sql}) AS t"
        ))
        .get_result(&mut conn)
        .await
        .expect("the query runs");
        serde_json::from_str(&rows).expect("PostgreSQL answers JSON")
    }

    /// Runs SQL directly, for arranging what the API cannot (such as equal timestamps).
    pub async fn execute(&self, sql: &str) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .expect("the test database accepts connections");
        diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .expect("the arranging SQL runs");
    }
}

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the contract's error shape and answers its message.
    pub fn error(&self, status: u16) -> &str {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert_eq!(self.body["statusCode"], status, "{}", self.text);
        let error = self.body["error"].as_str().expect("error is a string");
        assert!(!error.is_empty());
        self.body["message"].as_str().expect("message is a string")
    }
}

/// The real server, listening on a free port against its own database.
#[derive(Debug)]
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub config: Config,
    running: Option<Running>,
    // Declared last: dropped after the server has stopped. Shared by the instances of a
    // multi-instance test; the database goes with the last of them.
    pub db: Arc<TestDb>,
}

impl TestApp {
    /// A server with caching disabled.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_wrapped(adjust, |store| store).await
    }

    /// A server reading through a private Redis at `redis_url`.
    pub async fn spawn_redis(redis_url: &str) -> Self {
        Self::spawn_with(|c| {
            c.cache_backend = CacheBackend::Redis;
            c.redis_url = redis_url.to_owned();
        })
        .await
    }

    /// A server whose PostgreSQL repository is wrapped by `wrap` (to count or pause its
    /// reads) before the cache is put in front of it.
    pub async fn spawn_wrapped(
        adjust: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn Repository>) -> Arc<dyn Repository>,
    ) -> Self {
        Self::spawn_on(Arc::new(TestDb::new()), adjust, wrap).await
    }

    /// Another instance of the same service: same database, its own port, configured by
    /// `adjust` (point it at the same Redis to share the cache).
    pub async fn spawn_beside(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(self.db.clone(), adjust, |store| store).await
    }

    /// A server on a database of its own whose connections to PostgreSQL all pass
    /// through the proxy answered with it, which cuts or closes them on demand.
    pub async fn spawn_through_proxy() -> (Self, letip_testkit::FaultProxy) {
        Self::spawn_through_proxy_with(|_| {}).await
    }

    /// [`Self::spawn_through_proxy`], configured by `adjust` too.
    pub async fn spawn_through_proxy_with(
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, letip_testkit::FaultProxy) {
        Self::spawn_through_proxy_on(Arc::new(TestDb::new()), adjust).await
    }

    /// [`Self::spawn_through_proxy_with`], on the database `db` names (on a server of
    /// the test's own, say).
    pub async fn spawn_through_proxy_on(
        db: Arc<TestDb>,
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, letip_testkit::FaultProxy) {
        let mut url = url::Url::parse(&db.url).expect("a database URL");
        let postgres = db.addr();
        let proxy = letip_testkit::FaultProxy::start(postgres).await;
        url.set_port(Some(proxy.addr().port()))
            .expect("a URL with a port");
        let proxied = url.to_string();
        let app = Self::spawn_on_db(db, |c| {
            adjust(c);
            c.database_url = proxied;
        })
        .await;
        (app, proxy)
    }

    /// A server on a database the test arranged (see [`TestDb::create`]).
    pub async fn spawn_on_db(db: Arc<TestDb>, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(db, adjust, |store| store).await
    }

    async fn spawn_on(
        db: Arc<TestDb>,
        adjust: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn Repository>) -> Arc<dyn Repository>,
    ) -> Self {
        let mut config = Config::from_env();
        config.database_url = db.url.clone();
        config.host = "127.0.0.1".into();
        config.port = 0;
        config.workers = 2;
        config.database_pool_size = 8;
        config.cache_backend = CacheBackend::None;
        adjust(&mut config);
        let running = letip_server::start_with(&config, wrap)
            .await
            .expect("the server starts");
        let client = client_for(&config);
        Self {
            addr: running.addr,
            client,
            config,
            running: Some(running),
            db,
        }
    }

    /// An instance running as a process of its own at `addr`, on `db`, configured as
    /// `config` says (for its client and what tests read of it).
    pub fn external(addr: std::net::SocketAddr, config: Config, db: Arc<TestDb>) -> Self {
        Self {
            addr,
            client: client_for(&config),
            config,
            running: None,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Res {
        self.try_send(req).await.expect("the server answers")
    }

    /// [`Self::send`], answering a transport error (a connection closed before the
    /// answer, say) instead of panicking.
    pub async fn try_send(&self, req: reqwest::RequestBuilder) -> Result<Res, reqwest::Error> {
        let res = req.send().await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Res {
            status,
            headers,
            body,
            text,
        })
    }

    pub async fn get(&self, path: &str) -> Res {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Res {
        self.send(self.client.patch(self.url(path)).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Res {
        self.send(self.client.delete(self.url(path))).await
    }

    pub async fn try_get(&self, path: &str) -> Result<Res, reqwest::Error> {
        self.try_send(self.client.get(self.url(path))).await
    }

    pub async fn try_post(&self, path: &str, body: Value) -> Result<Res, reqwest::Error> {
        self.try_send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn try_patch(&self, path: &str, body: Value) -> Result<Res, reqwest::Error> {
        self.try_send(self.client.patch(self.url(path)).json(&body))
            .await
    }

    pub async fn try_delete(&self, path: &str) -> Result<Res, reqwest::Error> {
        self.try_send(self.client.delete(self.url(path))).await
    }

    /// Sends a raw body with the given content type.
    pub async fn raw(&self, method: reqwest::Method, path: &str, ct: &str, body: &str) -> Res {
        self.send(
            self.client
                .request(method, self.url(path))
                .header("content-type", ct)
                .body(body.to_owned()),
        )
        .await
    }

    /// Creates a business and answers it.
    pub async fn business(&self, body: Value) -> Value {
        let res = self.post("/api/businesses", body).await;
        assert_eq!(res.status, 201, "{}", res.text);
        res.body
    }

    pub async fn stats(&self) -> Value {
        let res = self.get("/api/businesses/stats").await;
        assert_eq!(res.status, 200, "{}", res.text);
        res.body
    }

    /// The number of businesses, contacts and messages, to prove a request wrote nothing.
    pub async fn counts(&self) -> (i64, i64, i64, i64) {
        let s = self.stats().await;
        let n = |k: &str| s[k].as_i64().expect("a count");
        (
            n("totalBusinesses"),
            n("enrichedBusinesses"),
            n("totalContacts"),
            n("messagesSent") + n("messagesPending"),
        )
    }

    /// How many announced database changes this instance has applied to its cache.
    pub async fn changes_applied(&self) -> u64 {
        self.counter("letip_changes_applied_total").await
    }

    /// The value of one metric series of this instance (`name` or `name{labels}`, as
    /// `/metrics` prints it), 0 while it has none.
    pub async fn counter(&self, series: &str) -> u64 {
        let metrics = self.get("/metrics").await.text;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// The server as a process of its own beside this one (same database), with
    /// `backend` through `redis_url`: an instance a test can pause (SIGSTOP) or kill
    /// (SIGKILL). Killed when the child is dropped. `program` is the test binary
    /// `letip-instance` (`env!("CARGO_BIN_EXE_letip-instance")`, which only an
    /// integration test can name).
    pub async fn spawn_process(
        &self,
        program: &str,
        backend: CacheBackend,
        redis_url: &str,
    ) -> (TestApp, tokio::process::Child) {
        use tokio::io::AsyncBufReadExt;
        let name = match backend {
            CacheBackend::Redis => "redis",
            CacheBackend::Tiered => "tiered",
            CacheBackend::Memory => "memory",
            CacheBackend::None => "none",
        };
        let mut child = tokio::process::Command::new(program)
            .env("DATABASE_URL", &self.config.database_url)
            .env("REDIS_URL", redis_url)
            .env("CACHE_BACKEND", name)
            .env("CACHE_NAMESPACE", &self.config.cache_namespace)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("WORKERS", "2")
            .env("DATABASE_POOL_SIZE", "8")
            .env(
                "DATABASE_REPLICA_URLS",
                self.config.database_replica_urls.join(","),
            )
            .env("REDIS_SENTINEL_NODES", &self.config.redis_sentinel_nodes)
            .env("REDIS_SENTINEL_MASTER", &self.config.redis_sentinel_master)
            .stdout(std::process::Stdio::piped())
            .stderr(if std::env::var_os("RUST_LOG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("the instance starts");
        let stdout = child.stdout.take().expect("the instance's stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("the instance answers its address within a minute")
                .expect("the instance's stdout")
                .expect("the instance prints its address");
            if let Some(addr) = line.strip_prefix("listening ") {
                break addr.parse().expect("an address");
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut config = self.config.clone();
        config.cache_backend = backend;
        config.redis_url = redis_url.to_owned();
        (TestApp::external(addr, config, self.db.clone()), child)
    }

    /// Stops the server gracefully, waiting for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("the server stops cleanly");
        }
    }
}

/// An HTTP client for a server configured by `config`. Its pool closes an idle
/// connection well before the server would (`HTTP_KEEP_ALIVE_SECS`): a request sent on
/// a connection at the moment the server closes it is lost, so the client must always be
/// the side that gives up on idle connections.
pub fn client_for(config: &Config) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    let builder = match config.keep_alive() {
        Some(server) => builder.pool_idle_timeout(client_idle_timeout(server)),
        None => builder.pool_max_idle_per_host(0),
    };
    builder.build().expect("an HTTP client")
}

/// Half the server's keep-alive, and at most 30 s.
pub fn client_idle_timeout(server_keep_alive: Duration) -> Duration {
    (server_keep_alive / 2).min(Duration::from_secs(30))
}

/// `id` of a JSON record.
pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("the record has an id")
}
