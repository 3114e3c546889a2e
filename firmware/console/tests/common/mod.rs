//! Shared helpers of the console API tests: a console on a real TCP listener
//! over a [`FakeAppliance`], and a small cookie/CSRF-aware client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ingot_console::testing::FakeAppliance;
use ingot_console::{ConsoleConfig, router, serve};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "s3cret-admin-pw";

/// A console served on 127.0.0.1:0.
#[derive(Debug)]
pub struct Server {
    pub base: String,
    pub fake: Arc<FakeAppliance>,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Logged-in browser credentials.
#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub async fn start() -> Server {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut ConsoleConfig)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ConsoleConfig::new(dir.path().join("console-state.json"));
    cfg.stats_interval = Duration::from_millis(50);
    tweak(&mut cfg);
    let fake = Arc::new(FakeAppliance::new());
    let r = router(fake.clone(), cfg);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, r, async {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        fake,
        dir,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        stop: Some(tx),
        task: Some(task),
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server and waits for it (checks graceful shutdown works).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("serve");
        }
    }

    pub async fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sets the password (first start) and returns the session.
    pub async fn setup(&self) -> Session {
        let r = self
            .client
            .post(self.url("/api/v1/auth/setup"))
            .json(&serde_json::json!({ "password": PASSWORD }))
            .send()
            .await
            .expect("setup");
        assert_eq!(r.status(), StatusCode::OK, "setup failed");
        session_from(r).await
    }

    pub async fn login(&self, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "password": password }))
            .send()
            .await
            .expect("login")
    }

    /// A request with the session cookie and CSRF header.
    pub fn with(&self, s: &Session, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("cookie", format!("ingot_session={}", s.cookie))
            .header("x-csrf-token", &s.csrf)
    }

    pub fn bearer(&self, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }
}

pub async fn session_from(r: Response) -> Session {
    let set = r
        .headers()
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()
        .expect("ascii")
        .to_string();
    let cookie = set
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("ingot_session="))
        .expect("session cookie")
        .to_string();
    let body: Value = r.json().await.expect("json");
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().expect("csrf").to_string(),
    }
}

/// Asserts a JSON error body with the code and status.
pub async fn expect_error(r: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(r.status(), status, "status for expected {code}");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        ct.starts_with("application/json"),
        "error content type {ct}"
    );
    let v: Value = r.json().await.expect("error json");
    assert_eq!(v["error"]["code"], code, "error body {v}");
    let msg = v["error"]["message"].as_str().expect("message").to_string();
    assert!(!msg.is_empty());
    msg
}

pub async fn json(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status, "unexpected status");
    r.json().await.expect("json body")
}
