//! Every API route against the FakeAppliance, bad inputs answered as 4xx
//! JSON errors, and the OpenAPI document listing every route.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json as j};

#[tokio::test]
async fn every_route_does_what_it_says() {
    let s = start().await;
    let t = s.setup().await;
    let get = |p: &'static str| s.with(&t, Method::GET, p).send();
    let post = |p: String| s.with(&t, Method::POST, &p).send();

    let sys = json(get("/api/v1/system").await.unwrap(), StatusCode::OK).await;
    assert_eq!(sys["version"], env!("CARGO_PKG_VERSION"));
    let devs = json(get("/api/v1/devices").await.unwrap(), StatusCode::OK).await;
    assert_eq!(devs.as_array().unwrap().len(), 5);
    assert_eq!(devs[0]["state"], "ONLINE");
    assert!(devs[0]["smart"]["temperature_celsius"].is_number());
    let d = json(get("/api/v1/devices/nvme2").await.unwrap(), StatusCode::OK).await;
    assert_eq!(d["serial"], "INGOT1002");
    expect_error(
        get("/api/v1/devices/nvme9").await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let pool = json(get("/api/v1/pool").await.unwrap(), StatusCode::OK).await;
    assert_eq!(pool["state"], "ONLINE");
    assert_eq!(pool["members"].as_array().unwrap().len(), 4);

    // Scrub: start, conflict, pause, resume, progress to completion.
    let job = json(
        post("/api/v1/jobs/scrub".into()).await.unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["state"], "running");
    expect_error(
        post("/api/v1/jobs/scrub".into()).await.unwrap(),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let p = json(
        post(format!("/api/v1/jobs/{id}/pause")).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(p["state"], "paused");
    expect_error(
        post(format!("/api/v1/jobs/{id}/pause")).await.unwrap(),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    s.fake.advance_jobs(1 << 30, Duration::from_secs(1));
    let jobs = json(get("/api/v1/jobs").await.unwrap(), StatusCode::OK).await;
    assert_eq!(jobs[0]["bytes_done"], 0, "paused job must not progress");
    json(
        post(format!("/api/v1/jobs/{id}/resume")).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    s.fake.inject_checksum_errors(3);
    s.fake.advance_jobs(1 << 30, Duration::from_secs(1));
    let jobs = json(get("/api/v1/jobs").await.unwrap(), StatusCode::OK).await;
    assert_eq!(jobs[0]["bytes_done"], 1u64 << 30);
    assert_eq!(jobs[0]["rate_bytes_per_sec"], 1u64 << 30);
    assert!(jobs[0]["eta_secs"].as_u64().unwrap() > 0);
    for _ in 0..100 {
        s.fake.advance_jobs(1 << 30, Duration::from_secs(1));
    }
    let jobs = json(get("/api/v1/jobs").await.unwrap(), StatusCode::OK).await;
    assert_eq!(jobs[0]["state"], "completed");
    assert_eq!(jobs[0]["bytes_done"], jobs[0]["bytes_total"]);
    assert_eq!(jobs[0]["errors_repaired"], 3);
    expect_error(
        post(format!("/api/v1/jobs/{id}/cancel")).await.unwrap(),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    expect_error(
        post("/api/v1/jobs/job999/cancel".into()).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Fault, replace, resilver.
    s.fake.fault_device("nvme1").unwrap();
    let pool = json(get("/api/v1/pool").await.unwrap(), StatusCode::OK).await;
    assert_eq!(pool["state"], "DEGRADED");
    let rep = |o: &str, n: &str| {
        s.with(&t, Method::POST, "/api/v1/pool/replace")
            .json(&j!({"old": o, "new": n}))
            .send()
    };
    expect_error(
        rep("nvme1", "nvme2").await.unwrap(),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    expect_error(
        rep("nvme4", "nvme1").await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        rep("nvme1", "nvme1").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let rj = json(rep("nvme1", "nvme4").await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(rj["kind"], "resilver");
    assert_eq!(rj["device"], "nvme4");
    let pool = json(get("/api/v1/pool").await.unwrap(), StatusCode::OK).await;
    assert_eq!(pool["members"][1]["device"], "nvme4");
    assert_eq!(pool["members"][1]["state"], "RESILVERING");
    for _ in 0..100 {
        s.fake.advance_jobs(1 << 30, Duration::from_secs(1));
    }
    let pool = json(get("/api/v1/pool").await.unwrap(), StatusCode::OK).await;
    assert_eq!(pool["state"], "ONLINE");

    // Encryption and export.
    let e = json(get("/api/v1/encryption").await.unwrap(), StatusCode::OK).await;
    assert_eq!(e["locked"], false);
    expect_error(
        post("/api/v1/encryption/lock".into()).await.unwrap(),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let x = json(
        post("/api/v1/export/unmount".into()).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(x["state"], "unmounted");
    let e = json(
        post("/api/v1/encryption/lock".into()).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(e["locked"], true);
    expect_error(
        post("/api/v1/jobs/scrub".into()).await.unwrap(),
        StatusCode::LOCKED,
        "locked",
    )
    .await;
    expect_error(
        post("/api/v1/export/mount".into()).await.unwrap(),
        StatusCode::LOCKED,
        "locked",
    )
    .await;
    let unlock = |p: &str| {
        s.with(&t, Method::POST, "/api/v1/encryption/unlock")
            .json(&j!({"passphrase": p}))
            .send()
    };
    expect_error(
        unlock("wrong").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid",
    )
    .await;
    let e = json(
        unlock(ingot_console::testing::FAKE_PASSPHRASE)
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(e["locked"], false);
    let x = json(
        post("/api/v1/export/mount".into()).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(x["state"], "mounted");
    let x = json(get("/api/v1/export").await.unwrap(), StatusCode::OK).await;
    assert_eq!(x["mountpoint"], "/mnt/tank");
    let r = s
        .with(&t, Method::POST, "/api/v1/encryption/passphrase")
        .json(&j!({"old": ingot_console::testing::FAKE_PASSPHRASE, "new": "short"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = s
        .with(&t, Method::POST, "/api/v1/encryption/passphrase")
        .json(&j!({"old": ingot_console::testing::FAKE_PASSPHRASE, "new": "a new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Settings.
    let st = json(get("/api/v1/settings").await.unwrap(), StatusCode::OK).await;
    assert_eq!(st["scrub_schedule"], "weekly");
    let r = s
        .with(&t, Method::PUT, "/api/v1/settings")
        .json(&j!({"compression_level": 9, "txg_interval_ms": 2000, "scrub_schedule": "monthly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r, StatusCode::OK).await["compression_level"], 9);
    let r = s
        .with(&t, Method::PUT, "/api/v1/settings")
        .json(&j!({"compression_level": 30, "txg_interval_ms": 2000, "scrub_schedule": "monthly"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = s
        .with(&t, Method::PUT, "/api/v1/settings")
        .json(&j!({"compression_level": 1, "txg_interval_ms": 5, "scrub_schedule": "monthly"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid").await;
    assert_eq!(
        json(get("/api/v1/settings").await.unwrap(), StatusCode::OK).await["compression_level"],
        9
    );

    // Stats.
    s.fake.simulate_io();
    let st = json(get("/api/v1/stats").await.unwrap(), StatusCode::OK).await;
    assert!(st["pool"]["read_ops"].as_u64().unwrap() > 0);
    assert_eq!(st["devices"].as_array().unwrap().len(), 5);

    // Events: paging newest first, severity filter.
    let all = json(
        get("/api/v1/events?limit=500").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let n = all["events"].as_array().unwrap().len();
    assert!(n >= 10, "{n} events");
    assert!(all["next_before"].is_null());
    let ids: Vec<u64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let q = match before {
            Some(b) => format!("/api/v1/events?limit=3&before={b}"),
            None => "/api/v1/events?limit=3".to_string(),
        };
        let page = json(
            s.with(&t, Method::GET, &q).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_u64().unwrap()),
        );
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, ids, "paging visits every event once");
    let crit = json(
        get("/api/v1/events?severity=critical").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let crit = crit["events"].as_array().unwrap();
    assert!(!crit.is_empty());
    assert!(crit.iter().all(|e| e["severity"] == "critical"));
    assert!(
        crit.iter()
            .any(|e| e["message"].as_str().unwrap().contains("nvme1"))
    );
    s.stop().await;
}

async fn assert_4xx_json(r: reqwest::Response, what: &str) -> Value {
    let status = r.status();
    assert!(status.is_client_error(), "{what}: status {status}");
    let v: Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "{what}: {v}"
    );
    v
}

#[tokio::test]
async fn bad_requests_get_4xx_json_never_500() {
    let s = start().await;
    let t = s.setup().await;
    let put = |body: &str| {
        s.with(&t, Method::PUT, "/api/v1/settings")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let cases = [
        (
            "wrong type",
            r#"{"compression_level":"high","txg_interval_ms":1000,"scrub_schedule":"off"}"#,
        ),
        ("missing field", r#"{"compression_level":3}"#),
        (
            "unknown field",
            r#"{"compression_level":3,"txg_interval_ms":1000,"scrub_schedule":"off","x":1}"#,
        ),
        (
            "bad enum",
            r#"{"compression_level":3,"txg_interval_ms":1000,"scrub_schedule":"hourly"}"#,
        ),
        (
            "negative",
            r#"{"compression_level":-1,"txg_interval_ms":1000,"scrub_schedule":"off"}"#,
        ),
        ("syntax", r#"{"compression_level":"#),
        ("not an object", r#"[1,2,3]"#),
        ("empty", ""),
    ];
    for (what, body) in cases {
        assert_4xx_json(put(body).await.unwrap(), what).await;
    }
    // Wrong content type.
    let r = s
        .with(&t, Method::PUT, "/api/v1/settings")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    let v = assert_4xx_json(r, "content type").await;
    assert_eq!(v["error"]["code"], "unsupported_media_type");
    // Oversized body.
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(100 * 1024));
    let r = s
        .with(&t, Method::POST, "/api/v1/tokens")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        assert_4xx_json(r, "oversized").await["error"]["code"],
        "payload_too_large"
    );
    let huge_login = format!(r#"{{"password":"{}"}}"#, "a".repeat(100 * 1024));
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(huge_login)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown routes and wrong methods.
    let r = s
        .with(&t, Method::GET, "/api/v1/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_4xx_json(r, "unknown route").await["error"]["code"],
        "not_found"
    );
    let r = s
        .client
        .get(s.url("/does/not/exist.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_4xx_json(r, "unknown file").await["error"]["code"],
        "not_found"
    );
    let r = s
        .client
        .get(s.url("/../../etc/passwd"))
        .send()
        .await
        .unwrap();
    assert_4xx_json(r, "traversal").await;
    let r = s
        .with(&t, Method::DELETE, "/api/v1/pool")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        assert_4xx_json(r, "wrong method").await["error"]["code"],
        "method_not_allowed"
    );
    let r = s
        .client
        .get(s.url("/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Bad queries and paths.
    for q in [
        "limit=abc",
        "limit=0",
        "limit=100000",
        "severity=loud",
        "before=-1",
    ] {
        let r = s
            .with(&t, Method::GET, &format!("/api/v1/events?{q}"))
            .send()
            .await
            .unwrap();
        assert_4xx_json(r, q).await;
    }
    let r = s
        .with(
            &t,
            Method::GET,
            &format!("/api/v1/devices/{}", "x".repeat(300)),
        )
        .send()
        .await
        .unwrap();
    assert_4xx_json(r, "long id").await;
    let r = s
        .with(&t, Method::GET, "/api/v1/devices/a%20b")
        .send()
        .await
        .unwrap();
    assert_4xx_json(r, "bad id").await;
    let r = s
        .with(&t, Method::POST, "/api/v1/encryption/unlock")
        .json(&j!({"passphrase": ""}))
        .send()
        .await
        .unwrap();
    assert_4xx_json(r, "empty passphrase").await;
    let r = s
        .with(&t, Method::POST, "/api/v1/pool/replace")
        .json(&j!({"old": 1, "new": null}))
        .send()
        .await
        .unwrap();
    assert_4xx_json(r, "replace types").await;
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_4xx_json(r, "login syntax").await;
    // The server is still fine.
    assert_eq!(
        s.with(&t, Method::GET, "/api/v1/pool")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_route_and_schema() {
    let s = start().await;
    let t = s.setup().await;
    let doc = json(
        s.with(&t, Method::GET, "/api/openapi.json")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, ops) in paths {
        documented += ops.as_object().unwrap().len();
        for m in ops.as_object().unwrap().keys() {
            assert!(
                ingot_console::ROUTES.contains(&(m.as_str(), path.as_str())),
                "documented but not routed: {m} {path}"
            );
        }
    }
    for (m, p) in ingot_console::ROUTES {
        assert!(
            paths.get(*p).and_then(|o| o.get(*m)).is_some(),
            "route not documented: {m} {p}"
        );
        // And the route really exists (not a 404 from the fallback).
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let r = s
            .with(&t, method, &p.replace("{id}", "zz"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::NOT_FOUND {
            let v: Value = r.json().await.unwrap();
            assert!(
                !v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("no route"),
                "{m} {p} not routed"
            );
        }
    }
    assert_eq!(documented, ingot_console::ROUTES.len());
    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    for name in [
        "Device",
        "PoolStatus",
        "Job",
        "Event",
        "IoStats",
        "Settings",
        "ErrorBody",
        "LoginResponse",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    s.stop().await;
}

#[tokio::test]
async fn fault_drill_routes_validate_and_need_simulated_drives() {
    let s = start().await;
    let t = s.setup().await;
    // The FakeAppliance has no simulated drives: a clear 404, not a 5xx.
    let msg = expect_error(
        s.with(&t, Method::GET, "/api/v1/sim/drives")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(msg.contains("no simulated drives"), "{msg}");
    for body in [
        j!({"action": "remove"}),
        j!({"action": "fail", "sct": 2, "sc": 129, "count": 3}),
        j!({"action": "corrupt", "lba": 4, "blocks": 8}),
    ] {
        expect_error(
            s.with(&t, Method::POST, "/api/v1/sim/drives/nvme1/fault")
                .json(&body)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    expect_error(
        s.with(&t, Method::POST, "/api/v1/sim/drives")
            .json(&j!({}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Bad requests are refused before the appliance sees them.
    for (body, needle) in [
        (j!({"action": "delay", "ms": 0}), "ms must be"),
        (
            j!({"action": "corrupt", "lba": 0, "blocks": 0}),
            "blocks must be",
        ),
        (j!({"action": "fail", "sct": 0, "sc": 0}), "success"),
        (j!({"action": "fail", "sct": 9, "sc": 1}), "sct must be"),
        (
            j!({"action": "delay", "ms": 5, "count": 0}),
            "count must be",
        ),
    ] {
        let m = expect_error(
            s.with(&t, Method::POST, "/api/v1/sim/drives/nvme1/fault")
                .json(&body)
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert!(m.contains(needle), "{body}: {m}");
    }
    for body in [
        j!({"action": "explode"}),
        j!({"action": "remove", "extra": 1}),
    ] {
        let r = s
            .with(&t, Method::POST, "/api/v1/sim/drives/nvme1/fault")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
    }
    expect_error(
        s.with(&t, Method::POST, "/api/v1/sim/drives/bad%20id/fault")
            .json(&j!({"action": "remove"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    // Session auth needs the CSRF header on these state-changing routes.
    let r = s
        .raw(Method::POST, "/api/v1/sim/drives")
        .await
        .header("cookie", format!("ingot_session={}", t.cookie))
        .json(&j!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Clearing errors works on the FakeAppliance.
    let pool = json(
        s.with(&t, Method::POST, "/api/v1/pool/clear")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(pool["state"], "ONLINE");
    s.stop().await;
}
