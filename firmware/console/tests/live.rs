//! Live data: the SSE stream delivers events and stats; /metrics is valid
//! Prometheus text.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn sse_stream_delivers_job_progress_state_changes_and_stats() {
    let s = start().await;
    let t = s.setup().await;
    let mut resp = s
        .with(&t, Method::GET, "/api/v1/events/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The subscription exists once the response head arrived; now act.
    let r = s
        .with(&t, Method::POST, "/api/v1/jobs/scrub")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    s.fake.advance_jobs(1 << 30, Duration::from_secs(1));
    s.fake.fault_device("nvme3").unwrap();
    let mut text = String::new();
    let want = |t: &str| {
        t.contains("event: stats")
            && t.contains("\"type\":\"job_progress\"")
            && t.contains("\"bytes_done\":1073741824")
            && t.contains("\"state\":\"FAULTED\"")
            && t.contains("\"state\":\"DEGRADED\"")
    };
    // Guard against a hang; the loop ends as soon as everything arrived.
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while !want(&text) {
            match resp.chunk().await.unwrap() {
                Some(c) => text.push_str(&String::from_utf8_lossy(&c)),
                None => break,
            }
        }
    })
    .await;
    assert!(got.is_ok() && want(&text), "stream so far:\n{text}");
    assert!(text.contains("event: event"));
    drop(resp);
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_open_streams() {
    let s = start().await;
    let t = s.setup().await;
    let mut resp = s
        .with(&t, Method::GET, "/api/v1/events/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.chunk().await.unwrap();
    // stop() waits for serve() to return, which needs the stream to end.
    s.stop().await;
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    assert!(rest.is_ok());
}

/// One parsed sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A strict-enough parser of the Prometheus text format for tests.
fn parse_exposition(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "duplicate TYPE {name}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect("closing brace");
                let mut out = Vec::new();
                let mut chars = l.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut val = String::new();
                    loop {
                        match chars.next().expect("unterminated label") {
                            '\\' => match chars.next().expect("escape") {
                                'n' => val.push('\n'),
                                c @ ('\\' | '"') => val.push(c),
                                c => panic!("bad escape \\{c} in {line}"),
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    out.push((key, val));
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (n.to_string(), out)
            }
            None => (series.to_string(), Vec::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        samples.push((name, labels, v));
    }
    (types, samples)
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let s = start().await;
    let t = s.setup().await;
    s.fake.simulate_io();
    s.fake.simulate_io();
    let r = s
        .with(&t, Method::POST, "/api/v1/jobs/scrub")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    s.fake.advance_jobs(1 << 30, Duration::from_secs(1));
    let r = s.with(&t, Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let (types, samples) = parse_exposition(&text);
    for (name, labels, v) in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| {
                name.strip_suffix(suf)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample {name} without TYPE");
        if types[family] == "counter" {
            assert!(*v >= 0.0);
        }
        if name.ends_with("_bucket") {
            assert!(labels.iter().any(|(k, _)| k == "le"));
        }
    }
    // Histogram buckets are cumulative and +Inf equals _count.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == "ingot_pool_read_latency_seconds_bucket" && l[0].1 == "tank")
        .map(|s| s.2)
        .collect();
    assert!(buckets.len() > 2 && buckets.windows(2).all(|w| w[0] <= w[1]));
    let count = samples
        .iter()
        .find(|(n, _, _)| n == "ingot_pool_read_latency_seconds_count")
        .unwrap()
        .2;
    assert_eq!(*buckets.last().unwrap(), count);
    assert!(count > 0.0);
    let get = |n: &str| samples.iter().find(|(m, _, _)| m == n).map(|s| s.2);
    assert!(get("ingot_pool_read_ops_total").unwrap() > 0.0);
    assert!(get("ingot_pool_compression_ratio").unwrap() >= 1.0);
    // The record cache (ARC) families, from the stats' cache section.
    let (hits, misses) = (
        get("ingot_arc_hits_total").unwrap(),
        get("ingot_arc_misses_total").unwrap(),
    );
    assert!(hits > 0.0 && misses > 0.0 && hits > misses);
    let (bytes, limit) = (
        get("ingot_arc_bytes").unwrap(),
        get("ingot_arc_limit_bytes").unwrap(),
    );
    assert!(bytes > 0.0 && bytes <= limit);
    assert_eq!(types["ingot_arc_hits_total"], "counter");
    assert_eq!(types["ingot_arc_bytes"], "gauge");
    let progress = get("ingot_job_progress_ratio").unwrap();
    assert!(progress > 0.0 && progress < 1.0);
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n == "ingot_device_write_bytes_total"
                && l[0] == ("device".into(), "nvme0".into()))
    );
    s.stop().await;
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(
        ingot_console::metrics::escape_label("a\"b\\c\nd"),
        "a\\\"b\\\\c\\nd"
    );
    let mut e = ingot_console::metrics::Exposition::default();
    e.family("x_total", "counter", "X.");
    e.sample("x_total", &[("dev", "we\"ird\n")], 3.0);
    let text = e.finish();
    let (_, samples) = parse_exposition(&text);
    assert_eq!(samples[0].1[0].1, "we\"ird\n");
    assert_eq!(samples[0].2, 3.0);
}
