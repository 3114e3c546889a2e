//! Prometheus text exposition (format 0.0.4) at `/metrics`, hand-written:
//! per-device and pool I/O counters and latency histograms, checksum errors
//! repaired, capacity, compression ratio, device health and job progress.
//!
//! `/metrics` requires auth like the API: configure Prometheus with an API
//! token created in the console (`authorization: { credentials_file: ... }`).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::Ctx;
use crate::appliance::{Device, IoCounters, IoStats, Job, JobState, LatencyHistogram, PoolStatus};
use crate::error::ApiResult;

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Formats a label set.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A text exposition under construction.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Writes the HELP and TYPE lines of a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
    /// Writes one sample.
    pub fn sample(&mut self, name: &str, l: &[(&str, &str)], v: f64) {
        let _ = writeln!(self.out, "{name}{} {}", labels(l), fmt_f64(v));
    }
    /// Writes the series of a histogram (bounds in microseconds, exposed in seconds).
    pub fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: &LatencyHistogram) {
        let mut cum = 0u64;
        for (i, b) in h.bounds_us.iter().enumerate() {
            cum += h.counts.get(i).copied().unwrap_or(0);
            let le = fmt_f64(*b as f64 / 1e6);
            let mut ll = l.to_vec();
            ll.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &ll, cum as f64);
        }
        let total = h.count();
        let mut ll = l.to_vec();
        ll.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &ll, total as f64);
        self.sample(&format!("{name}_sum"), l, h.sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), l, total as f64);
    }
    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn io_families(e: &mut Exposition, scope: &str, series: &[(Vec<(&str, &str)>, &IoCounters)]) {
    type Get = fn(&IoCounters) -> u64;
    let counters: [(&str, &str, Get); 5] = [
        ("read_ops_total", "Read operations completed", |c| {
            c.read_ops
        }),
        ("write_ops_total", "Write operations completed", |c| {
            c.write_ops
        }),
        ("read_bytes_total", "Bytes read", |c| c.read_bytes),
        ("write_bytes_total", "Bytes written", |c| c.write_bytes),
        (
            "checksum_errors_repaired_total",
            "Checksum errors detected and repaired",
            |c| c.checksum_errors_repaired,
        ),
    ];
    for (suffix, help, get) in counters {
        let name = format!("ingot_{scope}_{suffix}");
        e.family(&name, "counter", &format!("{help} ({scope})."));
        for (l, c) in series {
            e.sample(&name, l, get(c) as f64);
        }
    }
    fn read_latency(c: &IoCounters) -> &LatencyHistogram {
        &c.read_latency
    }
    fn write_latency(c: &IoCounters) -> &LatencyHistogram {
        &c.write_latency
    }
    type GetHist = fn(&IoCounters) -> &LatencyHistogram;
    let hists: [(&str, GetHist); 2] = [("read", read_latency), ("write", write_latency)];
    for (op, get) in hists {
        let name = format!("ingot_{scope}_{op}_latency_seconds");
        e.family(&name, "histogram", &format!("{op} latency ({scope})."));
        for (l, c) in series {
            e.histogram(&name, l, get(c));
        }
    }
}

/// Renders the full exposition.
pub fn render(stats: &IoStats, pool: &PoolStatus, devices: &[Device], jobs: &[Job]) -> String {
    let mut e = Exposition::default();
    let p = [("pool", pool.name.as_str())];
    io_families(&mut e, "pool", &[(p.to_vec(), &stats.pool)]);
    let dev_series: Vec<(Vec<(&str, &str)>, &IoCounters)> = stats
        .devices
        .iter()
        .map(|d| (vec![("device", d.device.as_str())], &d.counters))
        .collect();
    io_families(&mut e, "device", &dev_series);

    let c = &stats.cache;
    for (name, kind, help, v) in [
        (
            "ingot_arc_hits_total",
            "counter",
            "Record cache lookups answered from memory.",
            c.hits,
        ),
        (
            "ingot_arc_misses_total",
            "counter",
            "Record cache lookups that read the devices.",
            c.misses,
        ),
        (
            "ingot_arc_evictions_total",
            "counter",
            "Records evicted from the record cache.",
            c.evictions,
        ),
        (
            "ingot_arc_bytes",
            "gauge",
            "Memory the record cache holds.",
            c.bytes,
        ),
        (
            "ingot_arc_limit_bytes",
            "gauge",
            "The record cache's memory limit.",
            c.limit_bytes,
        ),
        (
            "ingot_arc_prefetch_hits_total",
            "counter",
            "Lookups that found a read-ahead record.",
            c.prefetch_hits,
        ),
        (
            "ingot_dirty_bytes",
            "gauge",
            "Memory held by written, not yet committed records.",
            c.dirty_bytes,
        ),
        (
            "ingot_early_writes_total",
            "counter",
            "Records sealed and written before their commit.",
            c.early_writes,
        ),
        (
            "ingot_early_writes_wasted_total",
            "counter",
            "Early writes given back because the record changed before the commit.",
            c.early_wasted,
        ),
    ] {
        e.family(name, kind, help);
        e.sample(name, &p, v as f64);
    }

    e.family(
        "ingot_pool_capacity_bytes",
        "gauge",
        "Usable pool capacity.",
    );
    e.sample("ingot_pool_capacity_bytes", &p, pool.capacity_bytes as f64);
    e.family("ingot_pool_used_bytes", "gauge", "Allocated pool bytes.");
    e.sample("ingot_pool_used_bytes", &p, pool.used_bytes as f64);
    e.family(
        "ingot_pool_compression_ratio",
        "gauge",
        "Logical bytes per stored byte.",
    );
    e.sample("ingot_pool_compression_ratio", &p, pool.compression_ratio);
    e.family(
        "ingot_pool_txg",
        "gauge",
        "Last committed transaction group.",
    );
    e.sample("ingot_pool_txg", &p, pool.txg as f64);
    e.family(
        "ingot_pool_healthy",
        "gauge",
        "1 if the pool is ONLINE, else 0.",
    );
    e.sample(
        "ingot_pool_healthy",
        &p,
        f64::from(u8::from(pool.state == crate::appliance::PoolState::Online)),
    );
    e.family("ingot_pool_locked", "gauge", "1 if the pool is locked.");
    e.sample("ingot_pool_locked", &p, f64::from(u8::from(pool.locked)));

    e.family(
        "ingot_device_state",
        "gauge",
        "1 for the device's current state.",
    );
    for d in devices {
        e.sample(
            "ingot_device_state",
            &[("device", &d.id), ("state", d.state.as_str())],
            1.0,
        );
    }
    e.family(
        "ingot_device_temperature_celsius",
        "gauge",
        "Composite temperature.",
    );
    for d in devices {
        if let Some(s) = &d.smart {
            e.sample(
                "ingot_device_temperature_celsius",
                &[("device", &d.id)],
                f64::from(s.temperature_celsius),
            );
        }
    }
    e.family(
        "ingot_device_media_errors_total",
        "counter",
        "SMART media errors.",
    );
    for d in devices {
        if let Some(s) = &d.smart {
            e.sample(
                "ingot_device_media_errors_total",
                &[("device", &d.id)],
                s.media_errors as f64,
            );
        }
    }
    e.family(
        "ingot_device_errors_total",
        "counter",
        "Pool error counters by kind.",
    );
    for d in devices {
        for (kind, v) in [
            ("read", d.errors.read),
            ("write", d.errors.write),
            ("checksum", d.errors.checksum),
        ] {
            e.sample(
                "ingot_device_errors_total",
                &[("device", &d.id), ("kind", kind)],
                v as f64,
            );
        }
    }
    e.family(
        "ingot_job_progress_ratio",
        "gauge",
        "Progress of active jobs, 0..1.",
    );
    let active: Vec<&Job> = jobs
        .iter()
        .filter(|j| matches!(j.state, JobState::Running | JobState::Paused))
        .collect();
    for j in &active {
        let ratio = if j.bytes_total == 0 {
            0.0
        } else {
            j.bytes_done as f64 / j.bytes_total as f64
        };
        let kind = match j.kind {
            crate::appliance::JobKind::Scrub => "scrub",
            crate::appliance::JobKind::Resilver => "resilver",
        };
        e.sample(
            "ingot_job_progress_ratio",
            &[("job", &j.id), ("kind", kind)],
            ratio,
        );
    }
    e.family(
        "ingot_job_rate_bytes_per_second",
        "gauge",
        "Rate of active jobs.",
    );
    for j in &active {
        e.sample(
            "ingot_job_rate_bytes_per_second",
            &[("job", &j.id)],
            j.rate_bytes_per_sec as f64,
        );
    }
    e.finish()
}

/// Prometheus metrics (text format 0.0.4). Requires auth (bearer token).
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4",
        description = "Prometheus text exposition"), (status = 401)))]
pub async fn metrics(State(ctx): State<Ctx>) -> ApiResult<Response> {
    let stats = ctx.app.stats().await?;
    let pool = ctx.app.pool().await?;
    let devices = ctx.app.devices().await?;
    let jobs = ctx.app.jobs().await?;
    let body = render(&stats, &pool, &devices, &jobs);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
