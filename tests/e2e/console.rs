//! End-to-end test of the console served by a real `ingot up`: auth, pool and devices views,
//! a scrub job to completion, unmount, lock, a wrong passphrase, unlock and mount again,
//! with the data still there. Uses curl as the HTTP client.

use ingot_tests::{Up, passphrase_file, sh};
use serde_json::Value;
use std::path::Path;

struct Client<'a> {
    dir: &'a Path,
    url: String,
    csrf: String,
}

impl Client<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let data = body.map_or(String::new(), |b| {
            format!("-H 'content-type: application/json' --data '{b}'")
        });
        let out = sh(
            self.dir,
            &format!(
                "curl -s -b cj -c cj -X {method} -H 'X-CSRF-Token: {}' {data} \
                 -w '\\n%{{http_code}}' {}{path}",
                self.csrf, self.url
            ),
        );
        let (json, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        let v = if json.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {json}"))
        };
        (code.parse().unwrap(), v)
    }
}

#[test]
fn console_manages_the_real_appliance() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "console pass");
    let admin = t.path().join("admin");
    std::fs::write(&admin, "admin secret\n").unwrap();
    let up = Up::start(
        &data,
        &pass,
        &[
            "--drive-size",
            "1G",
            "--admin-password-file",
            admin.to_str().unwrap(),
        ],
    );
    sh(
        &up.mnt,
        "seq 1 200000 > numbers && sha256sum numbers > ../sum",
    );
    let mut c = Client {
        dir: t.path(),
        url: up.console.clone(),
        csrf: String::new(),
    };
    // Nothing but health and login without a session.
    assert_eq!(c.call("GET", "/api/v1/health", None).0, 200);
    let (code, err) = c.call("GET", "/api/v1/pool", None);
    assert_eq!(code, 401);
    assert_eq!(err["error"]["code"], "unauthorized");
    let (code, _) = c.call("POST", "/api/v1/auth/login", Some(r#"{"password":"nope"}"#));
    assert_eq!(code, 401);
    let (code, login) = c.call(
        "POST",
        "/api/v1/auth/login",
        Some(r#"{"password":"admin secret"}"#),
    );
    assert_eq!(code, 200, "{login}");
    c.csrf = login["csrf_token"].as_str().unwrap().to_string();

    let (_, pool) = c.call("GET", "/api/v1/pool", None);
    assert_eq!(pool["state"], "ONLINE");
    assert_eq!(pool["layout"], "raidz1");
    assert_eq!(pool["members"].as_array().unwrap().len(), 4);
    // Settings: compression of new writes and the txg interval change on the running
    // pool (the level is recorded in the labels); out-of-range values are refused.
    let (code, st) = c.call("GET", "/api/v1/settings", None);
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["compression_level"], 1, "{st}");
    let mut want = st.clone();
    want["compression_level"] = 3.into();
    want["txg_interval_ms"] = 2000.into();
    let (code, got) = c.call("PUT", "/api/v1/settings", Some(&want.to_string()));
    assert_eq!(code, 200, "{got}");
    assert_eq!(c.call("GET", "/api/v1/settings", None).1, want);
    let mut bad = want.clone();
    bad["txg_interval_ms"] = 5.into();
    assert_eq!(
        c.call("PUT", "/api/v1/settings", Some(&bad.to_string())).0,
        400
    );
    assert_eq!(c.call("GET", "/api/v1/settings", None).1, want);
    // Fault drills: the simulated drives are listed; bad requests are 4xx.
    let (code, sims) = c.call("GET", "/api/v1/sim/drives", None);
    assert_eq!(code, 200, "{sims}");
    assert_eq!(sims.as_array().unwrap().len(), 4);
    assert_eq!(sims[1]["name"], "sim1");
    assert_eq!(sims[1]["in_pool"], true);
    let (code, err) = c.call(
        "POST",
        "/api/v1/sim/drives/nvme7/fault",
        Some(r#"{"action":"remove"}"#),
    );
    assert_eq!(code, 404, "{err}");
    let (code, err) = c.call(
        "POST",
        "/api/v1/sim/drives/nvme1/fault",
        Some(r#"{"action":"reinsert"}"#),
    );
    assert_eq!(code, 409, "{err}");
    let (code, err) = c.call(
        "POST",
        "/api/v1/pool/replace",
        Some(r#"{"old":"nvme1","new":"nvme2"}"#),
    );
    assert_eq!(code, 409, "{err}");
    let (_, devs) = c.call("GET", "/api/v1/devices", None);
    assert_eq!(devs[0]["model"], "Ingot Simulated NVMe");
    assert!(devs[0]["smart"]["temperature_celsius"].as_i64().is_some());

    // A scrub runs to completion and covers what was just written.
    let (code, job) = c.call("POST", "/api/v1/jobs/scrub", None);
    assert!((200..300).contains(&code), "{code} {job}");
    let id = job["id"].as_str().unwrap().to_string();
    let done = loop {
        let (_, jobs) = c.call("GET", "/api/v1/jobs", None);
        let j = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id.as_str())
            .unwrap()
            .clone();
        if j["state"] != "running" && j["state"] != "paused" {
            break j;
        }
    };
    assert_eq!(done["state"], "completed", "{done}");
    // The just-written file (compressed) is covered, not only the empty pool's 24 KiB.
    assert!(done["bytes_done"].as_u64().unwrap() > 200_000, "{done}");

    // Lock needs the export unmounted; a wrong passphrase changes nothing.
    assert_eq!(c.call("POST", "/api/v1/encryption/lock", None).0, 409);
    assert_eq!(c.call("POST", "/api/v1/export/unmount", None).0, 200);
    let (_, enc) = c.call("POST", "/api/v1/encryption/lock", None);
    assert_eq!(enc["locked"], true);
    assert_eq!(c.call("POST", "/api/v1/export/mount", None).0, 423);
    let (code, err) = c.call(
        "POST",
        "/api/v1/encryption/unlock",
        Some(r#"{"passphrase":"bad"}"#),
    );
    assert_eq!(code, 400, "{err}");
    let (_, enc) = c.call(
        "POST",
        "/api/v1/encryption/unlock",
        Some(r#"{"passphrase":"console pass"}"#),
    );
    assert_eq!(enc["locked"], false);
    assert_eq!(c.call("POST", "/api/v1/export/mount", None).0, 200);
    sh(&up.mnt, "sha256sum -c --quiet ../sum");

    let (_, events) = c.call("GET", "/api/v1/events?limit=50", None);
    let msgs: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(msgs.iter().any(|m| m.contains("pool locked")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("found no errors")),
        "{msgs:?}"
    );
    up.stop();
}

/// Every route of the real appliance's API (the list the OpenAPI document is checked
/// against): without a session only health, login and first-time setup answer, and with
/// one no GET is a server error and a malformed body is a 4xx JSON error, never a 500.
#[test]
fn every_route_needs_auth_and_rejects_malformed_bodies() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "routes pass");
    let admin = t.path().join("admin");
    std::fs::write(&admin, "admin secret\n").unwrap();
    let up = Up::start(
        &data,
        &pass,
        &["--admin-password-file", admin.to_str().unwrap()],
    );
    let mut c = Client {
        dir: t.path(),
        url: up.console.clone(),
        csrf: String::new(),
    };
    let open = [
        "/api/v1/health",
        "/api/v1/auth/status",
        "/api/v1/auth/setup",
        "/api/v1/auth/login",
        "/api/openapi.json",
    ];
    let concrete = |p: &str| p.replace("{id}", "nvme0");
    for (method, path) in ingot_console::ROUTES {
        if open.contains(path) || *path == "/api/v1/events/stream" {
            continue;
        }
        let (code, body) = c.call(&method.to_uppercase(), &concrete(path), None);
        assert_eq!(code, 401, "{method} {path} without a session: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
    }
    let (code, login) = c.call(
        "POST",
        "/api/v1/auth/login",
        Some(r#"{"password":"admin secret"}"#),
    );
    assert_eq!(code, 200, "{login}");
    c.csrf = login["csrf_token"].as_str().unwrap().to_string();
    for (method, path) in ingot_console::ROUTES {
        if *method != "get" || *path == "/api/v1/events/stream" || *path == "/metrics" {
            continue;
        }
        let (code, body) = c.call("GET", &concrete(path), None);
        assert_eq!(code, 200, "GET {path}: {body}");
    }
    let (code, _) = c.call("GET", "/api/v1/devices/nvme9", None);
    assert_eq!(code, 404);
    // Routes that take a JSON body: a malformed one, a wrong type and an unknown field
    // are 4xx with a JSON error, and change nothing.
    let with_body = [
        ("POST", "/api/v1/auth/password"),
        ("POST", "/api/v1/tokens"),
        ("POST", "/api/v1/pool/replace"),
        ("POST", "/api/v1/encryption/unlock"),
        ("POST", "/api/v1/encryption/passphrase"),
        ("PUT", "/api/v1/settings"),
        ("POST", "/api/v1/sim/drives"),
        ("POST", "/api/v1/sim/drives/nvme0/fault"),
    ];
    for (method, path) in with_body {
        for bad in [r#"{"x":"#, r#"{"compression_level":"high"}"#, r#"[1,2,3]"#] {
            let (code, body) = c.call(method, path, Some(bad));
            assert!(
                (400..500).contains(&code),
                "{method} {path} with {bad}: {code} {body}"
            );
            assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
        }
    }
    let (code, pool) = c.call("GET", "/api/v1/pool", None);
    assert_eq!(code, 200);
    assert_eq!(pool["state"], "ONLINE", "{pool}");
    up.stop();
}
