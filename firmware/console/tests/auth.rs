//! Auth tests: first-time setup, login, cookie attributes, CSRF, bearer
//! tokens, rate limiting, state file, routes that need auth.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn public_routes_and_auth_required_elsewhere() {
    let s = start().await;
    let r = s.client.get(s.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(json(r, StatusCode::OK).await["status"], "ok");
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.headers().contains_key("content-security-policy"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r = s.client.get(s.url("/app.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].clone();
    let r = s
        .client
        .get(s.url("/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = s.client.get(s.url("/style.css")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );

    // Every non-public route needs auth.
    for (method, path) in ingot_console::ROUTES {
        let public = matches!(
            *path,
            "/api/v1/health" | "/api/v1/auth/status" | "/api/v1/auth/setup" | "/api/v1/auth/login"
        );
        if public {
            continue;
        }
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let p = path.replace("{id}", "x1");
        let r = s.client.request(m, s.url(&p)).send().await.unwrap();
        expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    s.stop().await;
}

#[tokio::test]
async fn setup_only_while_unset_then_login_and_logout() {
    let s = start().await;
    let st = json(
        s.client
            .get(s.url("/api/v1/auth/status"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(st["password_set"], false);
    // Login before a password exists.
    expect_error(
        s.login("whatever-pw").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // Too short.
    let r = s
        .client
        .post(s.url("/api/v1/auth/setup"))
        .json(&serde_json::json!({"password": "short"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    let r = s
        .client
        .post(s.url("/api/v1/auth/setup"))
        .json(&serde_json::json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "cookie {cookie} lacks {attr}");
    }
    let sess = session_from(r).await;
    assert_eq!(sess.cookie.len(), 64, "256-bit session id in hex");

    // Setup is closed now.
    let r = s
        .client
        .post(s.url("/api/v1/auth/setup"))
        .json(&serde_json::json!({"password": "another-password"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::CONFLICT, "conflict").await;

    // The state file holds an Argon2id PHC hash, mode 0600.
    let path = s.dir.path().join("console-state.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("$argon2id$"), "state: {text}");
    assert!(!text.contains(PASSWORD));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let st = json(
        s.with(&sess, Method::GET, "/api/v1/auth/status")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(st["authenticated"], true);
    assert_eq!(st["csrf_token"], sess.csrf.as_str());

    expect_error(
        s.login("wrong-password").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let r = s.login(PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s2 = session_from(r).await;
    assert_ne!(s2.cookie, sess.cookie);
    assert_eq!(
        s.with(&s2, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Logout ends that session only.
    let r = s
        .with(&s2, Method::POST, "/api/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    expect_error(
        s.with(&s2, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        s.with(&sess, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Password change: wrong old password refused, then new one works, other sessions end.
    let r = s
        .with(&sess, Method::POST, "/api/v1/auth/password")
        .json(&serde_json::json!({"old": "nope-nope", "new": "new-password-1"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = s.login(PASSWORD).await;
    let s3 = session_from(r).await;
    let r = s
        .with(&sess, Method::POST, "/api/v1/auth/password")
        .json(&serde_json::json!({"old": PASSWORD, "new": "new-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        s.with(&s3, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        s.with(&sess, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(s.login("new-password-1").await.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn csrf_is_enforced_for_cookie_sessions_only() {
    let s = start().await;
    let sess = s.setup().await;
    let cookie = format!("ingot_session={}", sess.cookie);
    // No header.
    let r = s
        .client
        .post(s.url("/api/v1/jobs/scrub"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "csrf").await;
    // Wrong header.
    let r = s
        .client
        .post(s.url("/api/v1/jobs/scrub"))
        .header("cookie", &cookie)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "csrf").await;
    let r = s.client.put(s.url("/api/v1/settings")).header("cookie", &cookie)
        .json(&serde_json::json!({"compression_level": 1, "txg_interval_ms": 1000, "scrub_schedule": "off"})).send().await.unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "csrf").await;
    assert!(s.fake_jobs_empty().await);
    // GET needs no CSRF header.
    let r = s
        .client
        .get(s.url("/api/v1/jobs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Right header.
    let r = s
        .with(&sess, Method::POST, "/api/v1/jobs/scrub")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Bearer tokens are exempt.
    let tok = json(
        s.with(&sess, Method::POST, "/api/v1/tokens")
            .json(&serde_json::json!({"name": "ci"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let token = tok["token"].as_str().unwrap();
    let job = json(
        s.bearer(token, Method::GET, "/api/v1/jobs")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let id = job[0]["id"].as_str().unwrap();
    let r = s
        .bearer(token, Method::POST, &format!("/api/v1/jobs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r, StatusCode::OK).await["state"], "cancelled");
    s.stop().await;
}

trait FakeJobs {
    async fn fake_jobs_empty(&self) -> bool;
}
impl FakeJobs for Server {
    async fn fake_jobs_empty(&self) -> bool {
        use ingot_console::Appliance;
        self.fake.jobs().await.unwrap().is_empty()
    }
}

#[tokio::test]
async fn api_tokens_are_hashed_shown_once_and_revocable() {
    let s = start().await;
    let sess = s.setup().await;
    let r = s
        .with(&sess, Method::POST, "/api/v1/tokens")
        .json(&serde_json::json!({"name": ""}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let created = json(
        s.with(&sess, Method::POST, "/api/v1/tokens")
            .json(&serde_json::json!({"name": "prometheus"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["info"]["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("ingot_") && token.len() == 6 + 64);
    let state = std::fs::read_to_string(s.dir.path().join("console-state.json")).unwrap();
    assert!(!state.contains(&token), "secret must not be stored");
    let list = json(
        s.with(&sess, Method::GET, "/api/v1/tokens")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&token));
    assert_eq!(list[0]["name"], "prometheus");

    assert_eq!(
        s.bearer(&token, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = s
        .bearer(&token, Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    expect_error(
        s.bearer("ingot_0000", Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        s.bearer("garbage", Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let r = s
        .with(&sess, Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        s.bearer(&token, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let r = s
        .with(&sess, Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    s.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_client() {
    let s = start().await;
    let _ = s.setup().await;
    for _ in 0..5 {
        expect_error(
            s.login("wrong-password").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let r = s.login("wrong-password").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Even the right password is refused while limited.
    expect_error(
        s.login(PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn preset_password_hash_from_config() {
    let phc = ingot_console::hash_password("preset-password").unwrap();
    let s = start_with(|c| c.admin_password_hash = Some(phc.clone())).await;
    let st = json(
        s.client
            .get(s.url("/api/v1/auth/status"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(st["password_set"], true);
    let r = s
        .client
        .post(s.url("/api/v1/auth/setup"))
        .json(&serde_json::json!({"password": "taking-over"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(s.login("preset-password").await.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn unreadable_state_file_makes_console_unavailable_not_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let err = ingot_console::try_router(
        std::sync::Arc::new(ingot_console::testing::FakeAppliance::new()),
        ingot_console::ConsoleConfig::new(&path),
    )
    .expect_err("bad state file rejected");
    assert!(err.to_string().contains("state.json"), "{err}");
    let bad_hash = ingot_console::try_router(
        std::sync::Arc::new(ingot_console::testing::FakeAppliance::new()),
        ingot_console::ConsoleConfig {
            admin_password_hash: Some("plaintext".into()),
            ..ingot_console::ConsoleConfig::new(dir.path().join("other.json"))
        },
    );
    assert!(bad_hash.is_err());

    let s = start_with(|c| c.state_file = path.clone()).await;
    let r = s.client.get(s.url("/api/v1/health")).send().await.unwrap();
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    s.stop().await;
}

#[tokio::test]
async fn password_and_tokens_survive_a_restart() {
    let s1 = start().await;
    let sess = s1.setup().await;
    let created = json(
        s1.with(&sess, Method::POST, "/api/v1/tokens")
            .json(&serde_json::json!({"name": "backup"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let token = created["token"].as_str().unwrap().to_string();
    let path = s1.dir.path().join("console-state.json");
    let s2 = start_with(|c| c.state_file = path.clone()).await;
    // Sessions are in memory only: the old cookie is not valid on the new console.
    expect_error(
        s2.with(&sess, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(s2.login(PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        s2.bearer(&token, Method::GET, "/api/v1/system")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    s2.stop().await;
    s1.stop().await;
}
