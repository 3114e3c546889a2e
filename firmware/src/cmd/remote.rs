//! The administration commands acting on a running appliance through its console API:
//! `pool status`, `pool scrub`, `pool replace` and `pool clear` when `ingot up` holds the
//! pool. Job progress is polled from `/api/v1/jobs` and drawn as a bar with percentage,
//! rate and ETA.

use crate::client::Client;
use crate::cmd::scrub::clock;
use crate::error::CliError;
use crate::size::human;
use crate::table::Table;
use ingot_console::appliance::{
    DeviceState, Job, JobKind, JobState, PoolState, PoolStatus, ReplaceRequest,
};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How often a waiting command polls its job.
const POLL: Duration = Duration::from_millis(250);

fn json_text<T: Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(v).map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))
}

fn active(j: &Job) -> bool {
    matches!(j.state, JobState::Running | JobState::Paused)
}

fn kind_name(k: JobKind) -> &'static str {
    match k {
        JobKind::Scrub => "scrub",
        JobKind::Resilver => "resilver",
    }
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Running => "running",
        JobState::Paused => "paused",
        JobState::Completed => "completed",
        JobState::Cancelled => "cancelled",
        JobState::Failed => "failed",
    }
}

/// Percentage done of a job.
pub fn percent(j: &Job) -> f64 {
    if j.bytes_total == 0 {
        if active(j) { 0.0 } else { 100.0 }
    } else {
        (j.bytes_done as f64 * 100.0 / j.bytes_total as f64).min(100.0)
    }
}

/// One line with a bar, percentage, bytes, rate and ETA.
pub fn progress_line(j: &Job) -> String {
    const WIDTH: usize = 24;
    let pct = percent(j);
    let filled = ((pct / 100.0) * WIDTH as f64).round() as usize;
    let what = match (&j.kind, &j.device) {
        (JobKind::Resilver, Some(d)) => format!("resilver of {d}"),
        (k, _) => kind_name(*k).to_string(),
    };
    format!(
        "{what} {} [{}{}] {pct:5.1}%  {} of {}  {}/s  ETA {}  errors {} repaired {}",
        state_name(j.state),
        "#".repeat(filled.min(WIDTH)),
        "-".repeat(WIDTH - filled.min(WIDTH)),
        human(j.bytes_done),
        human(j.bytes_total),
        human(j.rate_bytes_per_sec),
        j.eta_secs
            .map_or_else(|| "-".to_string(), |s| clock(s as f64)),
        j.errors_found,
        j.errors_repaired
    )
}

/// `ingot pool status` through the API: what it prints as JSON.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// The pool (the console API's `PoolStatus`).
    #[serde(flatten)]
    pub pool: PoolStatus,
    /// Scrub and resilver jobs that are running or paused.
    pub jobs: Vec<Job>,
    /// Console URL of the appliance that answered.
    pub appliance: String,
}

/// Human-readable status of a pool held by an appliance.
pub fn render_status(v: &StatusView) -> String {
    let s = &v.pool;
    let mut out = String::new();
    let pct = if s.capacity_bytes > 0 {
        s.used_bytes as f64 * 100.0 / s.capacity_bytes as f64
    } else {
        0.0
    };
    out.push_str(&format!(
        "pool:        {} (held by the appliance at {})\n",
        s.name, v.appliance
    ));
    out.push_str(&format!("state:       {}", s.state.as_str()));
    if let Some(why) = &s.suspended {
        out.push_str(&format!(" (suspended: {why})"));
    }
    out.push('\n');
    if s.state != PoolState::Online {
        let bad: Vec<String> = s
            .members
            .iter()
            .filter(|m| m.state != DeviceState::Online)
            .map(|m| format!("{} is {}", m.device, m.state.as_str()))
            .collect();
        out.push_str(&format!(
            "status:      {}; redundancy is reduced until the pool is resilvered\n",
            bad.join(", ")
        ));
    }
    out.push_str(&format!(
        "layout:      {} over {} devices\n",
        s.layout,
        s.members.len()
    ));
    out.push_str(&format!(
        "encryption:  {}\n",
        super::pool::encryption_state(s.encrypted, s.locked)
    ));
    out.push_str(&format!(
        "capacity:    {} used of {} ({pct:.1}%), compression ratio {:.2}x\n",
        human(s.used_bytes),
        human(s.capacity_bytes),
        s.compression_ratio
    ));
    out.push_str(&format!(
        "txg:         {}{}\n",
        s.txg,
        if s.read_only { " (read-only)" } else { "" }
    ));
    if v.jobs.is_empty() {
        out.push_str("scan:        none running\n");
    }
    for j in &v.jobs {
        out.push_str(&format!("scan:        {}\n", progress_line(j)));
    }
    out.push_str(&format!(
        "checksum errors since import: {}\n\n",
        s.checksum_errors
    ));
    let mut t = Table::new(["SLOT", "DEVICE", "STATE", "READ", "WRITE", "CKSUM", "NOTE"]);
    for m in &s.members {
        t.row([
            m.slot.to_string(),
            m.device.clone(),
            m.state.as_str().to_string(),
            m.errors.read.to_string(),
            m.errors.write.to_string(),
            m.errors.checksum.to_string(),
            m.fault_reason.clone().unwrap_or_default(),
        ]);
    }
    for sp in &s.spares {
        t.row([
            "spare".into(),
            sp.clone(),
            "AVAIL".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            String::new(),
        ]);
    }
    out.push_str(&t.render());
    if !s.damaged.is_empty() {
        out.push_str(&format!(
            "\nunrecoverable blocks ({}; data there reads as an I/O error):\n",
            s.damaged.len()
        ));
        for d in &s.damaged {
            match (&d.path, d.object) {
                (Some(p), _) => out.push_str(&format!(
                    "  {p} offset {} (pool sector {})\n",
                    d.offset, d.addr
                )),
                (None, Some(o)) => out.push_str(&format!(
                    "  object {o} offset {} (pool sector {})\n",
                    d.offset, d.addr
                )),
                (None, None) => out.push_str(&format!(
                    "  pool sector {} (object unknown: metadata or found by a keyless scrub)\n",
                    d.addr
                )),
            }
        }
    }
    out
}

async fn status_view(c: &Client) -> Result<StatusView, CliError> {
    let pool: PoolStatus = c.get("/api/v1/pool").await?;
    let jobs: Vec<Job> = c.get("/api/v1/jobs").await?;
    Ok(StatusView {
        pool,
        jobs: jobs.into_iter().filter(active).collect(),
        appliance: c.info().url.clone(),
    })
}

/// `ingot pool status` on a running appliance.
pub async fn status(c: &Client, json: bool) -> Result<(), CliError> {
    let v = status_view(c).await?;
    if json {
        println!("{}", json_text(&v)?);
    } else {
        print!("{}", render_status(&v));
    }
    Ok(())
}

/// Poll job `id` until it ends; draw its progress on stderr if `show`.
pub async fn wait_job(c: &Client, id: &str, show: bool) -> Result<Job, CliError> {
    let mut err = std::io::stderr();
    loop {
        let jobs: Vec<Job> = c.get("/api/v1/jobs").await?;
        let Some(j) = jobs.into_iter().find(|j| j.id == id) else {
            return Err(CliError::Usage(format!(
                "job {id} is no longer listed by the appliance"
            )));
        };
        if show {
            let _ = write!(err, "\r\x1b[2K{}", progress_line(&j));
            let _ = err.flush();
        }
        if !active(&j) {
            if show {
                let _ = writeln!(err);
            }
            return Ok(j);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                if show {
                    let _ = writeln!(err);
                }
                return Err(CliError::Usage(format!(
                    "interrupted; job {id} keeps running in the appliance \
                     (cancel it with --cancel)"
                )));
            }
        }
    }
}

fn render_job(j: &Job) -> String {
    let what = match (&j.kind, &j.device) {
        (JobKind::Resilver, Some(d)) => format!("resilver of {d}"),
        (k, _) => kind_name(*k).to_string(),
    };
    format!(
        "{} ({what}): {}\n  processed:     {} of {} ({:.1}%)\n  errors found:  {}\n  repaired:      {}\n",
        j.id,
        state_name(j.state),
        human(j.bytes_done),
        human(j.bytes_total),
        percent(j),
        j.errors_found,
        j.errors_repaired
    )
}

fn print_job(j: &Job, json: bool) -> Result<(), CliError> {
    if json {
        println!("{}", json_text(j)?);
    } else {
        print!("{}", render_job(j));
    }
    Ok(())
}

/// What `pool scrub` should do to the appliance's scrub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrubAction {
    /// Start one.
    Start,
    /// Pause the running one.
    Pause,
    /// Resume the paused one.
    Resume,
    /// Cancel it.
    Cancel,
}

/// `ingot pool scrub` on a running appliance.
pub async fn scrub(
    c: &Client,
    action: ScrubAction,
    wait: bool,
    json: bool,
) -> Result<(), CliError> {
    let job: Job = if action == ScrubAction::Start {
        c.post::<Job, ()>("/api/v1/jobs/scrub", None).await?
    } else {
        let jobs: Vec<Job> = c.get("/api/v1/jobs").await?;
        let Some(cur) = jobs
            .into_iter()
            .find(|j| j.kind == JobKind::Scrub && active(j))
        else {
            return Err(CliError::Usage(format!(
                "no scrub is running on pool {}",
                c.info().pool
            )));
        };
        let verb = match action {
            ScrubAction::Pause => "pause",
            ScrubAction::Resume => "resume",
            _ => "cancel",
        };
        c.post::<Job, ()>(&format!("/api/v1/jobs/{}/{verb}", cur.id), None)
            .await?
    };
    let job = if wait && active(&job) && action != ScrubAction::Pause {
        let show = std::io::stderr().is_terminal() && !json;
        wait_job(c, &job.id, show).await?
    } else {
        job
    };
    print_job(&job, json)?;
    if job.state == JobState::Failed {
        return Err(CliError::Usage(format!(
            "{} found damage it could not repair: see `ingot pool status`",
            job.id
        )));
    }
    Ok(())
}

/// `ingot pool replace` on a running appliance.
pub async fn replace(
    c: &Client,
    old: &str,
    new: &str,
    wait: bool,
    json: bool,
) -> Result<(), CliError> {
    let req = ReplaceRequest {
        old: old.to_string(),
        new: new.to_string(),
    };
    let job: Job = c.post("/api/v1/pool/replace", Some(&req)).await?;
    if !json && !wait {
        println!(
            "replacing {old} by {new} in pool {}: {} started",
            c.info().pool,
            job.id
        );
    }
    let job = if wait && active(&job) {
        let show = std::io::stderr().is_terminal() && !json;
        wait_job(c, &job.id, show).await?
    } else {
        job
    };
    print_job(&job, json)?;
    match job.state {
        JobState::Failed | JobState::Cancelled => Err(CliError::Usage(format!(
            "{} ended {}",
            job.id,
            state_name(job.state)
        ))),
        _ => Ok(()),
    }
}

/// `ingot pool clear` on a running appliance.
pub async fn clear(c: &Client, json: bool) -> Result<(), CliError> {
    let _: PoolStatus = c.post::<PoolStatus, ()>("/api/v1/pool/clear", None).await?;
    let v = status_view(c).await?;
    if json {
        println!("{}", json_text(&v)?);
    } else {
        println!("error counters of pool {} cleared", v.pool.name);
        print!("{}", render_status(&v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(done: u64, state: JobState) -> Job {
        Job {
            id: "resilver-1".into(),
            kind: JobKind::Resilver,
            state,
            device: Some("nvme4".into()),
            bytes_done: done,
            bytes_total: 4 << 20,
            rate_bytes_per_sec: 2 << 20,
            eta_secs: Some(2),
            errors_found: 0,
            errors_repaired: 0,
            started_ms: 0,
            finished_ms: None,
        }
    }

    #[test]
    fn progress_line_has_bar_percent_rate_and_eta() {
        let l = progress_line(&job(1 << 20, JobState::Running));
        assert!(
            l.starts_with("resilver of nvme4 running [######------"),
            "{l}"
        );
        assert!(l.contains(" 25.0%"), "{l}");
        assert!(l.contains("2.0 MiB/s") || l.contains("/s"), "{l}");
        assert!(l.contains("ETA 0:02"), "{l}");
        let done = progress_line(&job(4 << 20, JobState::Completed));
        assert!(done.contains("[########################] 100.0%"), "{done}");
    }
}
