//! `ingot pool scrub`: scrub a pool acting on the drives directly.
//!
//! In this mode the command is the scrub's process: it imports the pool, runs the scrub to
//! its end (Ctrl-C cancels it cleanly) and exports the pool. `--wait` on a terminal shows
//! a progress line; the result (scanned, errors found, repaired, unrecoverable) is printed
//! as text or JSON. An encrypted pool without `--passphrase-file` is scrubbed locked:
//! keyless, and bad columns are still rewritten (the verified ciphertext needs no key).

use crate::cli::PoolScrubArgs;
use crate::cmd::pool::select;
use crate::drives;
use crate::error::CliError;
use crate::passphrase;
use crate::size::human;
use ingot_pool::ImportOptions;
use ingot_pool::engine::scrub::{ScrubHandle, ScrubOptions, ScrubProgress, ScrubState};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Seconds as `H:MM:SS` or `M:SS`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The one-line progress shown while a scrub runs.
pub fn progress_line(p: &ScrubProgress) -> String {
    let state = match p.state {
        ScrubState::Counting => "counting",
        ScrubState::Running => "scanning",
        ScrubState::Paused => "paused",
        ScrubState::Cancelled => "cancelled",
        ScrubState::Finished => "finished",
    };
    format!(
        "scrub {state}: {:5.1}%  {} of {}  {}/s  ETA {}  errors {} repaired {}",
        p.percent(),
        human(p.scanned_bytes),
        human(p.total_bytes),
        human(p.rate_bytes_per_sec as u64),
        p.eta_secs.map_or_else(|| "-".to_string(), clock),
        p.errors_found,
        p.repaired
    )
}

/// The result printed when a scrub ends.
pub fn render_result(pool: &str, p: &ScrubProgress) -> String {
    let mut out = format!(
        "scrub of pool {pool} at txg {}: {}\n",
        p.txg,
        match p.state {
            ScrubState::Finished => "finished",
            ScrubState::Cancelled => "CANCELLED",
            _ => "stopped",
        }
    );
    out.push_str(&format!(
        "  scanned:       {} of {} in {} ({}/s), {} nodes, {} extents\n",
        human(p.scanned_bytes),
        human(p.total_bytes),
        clock(p.elapsed_secs),
        human(p.rate_bytes_per_sec as u64),
        p.nodes,
        p.extents
    ));
    if let Some(t) = p.resumed_from_txg {
        out.push_str(&format!(
            "  resumed:       the scrub started at txg {t} (counters include it)\n"
        ));
    }
    out.push_str(&format!("  errors found:  {}\n", p.errors_found));
    out.push_str(&format!(
        "  repaired:      {}{}\n",
        p.repaired,
        if p.repairing {
            ""
        } else {
            " (read-only pool: errors counted, not rewritten)"
        }
    ));
    out.push_str(&format!("  unrecoverable: {}\n", p.unrecoverable));
    for e in &p.errors {
        out.push_str(&format!("  error: {e}\n"));
    }
    out
}

#[derive(Serialize)]
struct JsonResult<'a> {
    pool: &'a str,
    #[serde(flatten)]
    progress: &'a ScrubProgress,
}

/// Run the scrub to its end (or Ctrl-C), drawing the progress line if asked.
async fn drive(h: ScrubHandle, show: bool) -> Result<ScrubProgress, CliError> {
    let mut rx = h.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut err = std::io::stderr();
    loop {
        let done =
            |p: &ScrubProgress| matches!(p.state, ScrubState::Finished | ScrubState::Cancelled);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                h.cancel();
                tracing::warn!("interrupted: cancelling the scrub");
            }
            _ = tick.tick() => {
                if show {
                    let p = h.progress();
                    let _ = write!(err, "\r\x1b[2K{}", progress_line(&p));
                    let _ = err.flush();
                }
            }
            _ = rx.wait_for(done) => break,
        }
    }
    let p = h.wait().await?;
    if show {
        let _ = writeln!(err, "\r\x1b[2K{}", progress_line(&p));
    }
    Ok(p)
}

/// `ingot pool scrub`
pub async fn run(a: &crate::cli::PoolScrubArgs) -> Result<(), CliError> {
    let PoolScrubArgs {
        name,
        wait,
        json,
        passphrase_file,
        rate_limit,
        restart,
        pause,
        resume,
        cancel,
        appliance,
        drives: sel,
    } = a;
    if let Some(c) = crate::cmd::pool::appliance(name.as_deref(), appliance, Some(sel)) {
        use crate::cmd::remote::{ScrubAction, scrub};
        let action = if *pause {
            ScrubAction::Pause
        } else if *resume {
            ScrubAction::Resume
        } else if *cancel {
            ScrubAction::Cancel
        } else {
            ScrubAction::Start
        };
        return scrub(&c, action, *wait, *json).await;
    }
    if let Some(d) = &appliance.data {
        return Err(CliError::Usage(format!(
            "no running appliance uses {}",
            d.display()
        )));
    }
    if *pause || *resume || *cancel {
        return Err(CliError::Usage(
            "--pause, --resume and --cancel act on a running appliance's scrub; none holds \
             this pool (acting on the drives directly, the command runs the scrub to its end \
             and Ctrl-C cancels it)"
                .into(),
        ));
    }
    let specs = select(sel)?;
    let passphrase = match passphrase_file {
        Some(f) => Some(passphrase::obtain(Some(f), "Pool passphrase", false)?),
        None => None,
    };
    let open = drives::open_all(&specs).await?;
    let devs = open.iter().map(|d| d.device.clone()).collect();
    let r = async {
        let pool = crate::cmd::up::import_members(
            devs,
            &ImportOptions {
                passphrase,
                ..ImportOptions::default()
            },
        )
        .await?;
        let st = pool.status();
        if let Some(n) = name
            && n != &st.name
        {
            return Err(CliError::Usage(format!(
                "these drives hold pool {:?}, not {n:?}",
                st.name
            )));
        }
        let opts = ScrubOptions {
            max_bytes_per_sec: rate_limit.map(|b| b.0),
            restart: *restart,
        };
        let h = pool.start_scrub(opts).await?;
        let show = *wait && std::io::stderr().is_terminal() && !*json;
        let p = drive(h, show).await;
        let exported = pool.export().await;
        let p = p?;
        exported?;
        if *json {
            let text = serde_json::to_string_pretty(&JsonResult {
                pool: &st.name,
                progress: &p,
            })
            .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
            println!("{text}");
        } else {
            print!("{}", render_result(&st.name, &p));
        }
        Ok(())
    }
    .await;
    for d in open {
        if let Err(e) = d.close().await {
            tracing::warn!(error = %e, "drive shutdown failed");
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: ScrubState) -> ScrubProgress {
        ScrubProgress {
            state,
            txg: 7,
            total_bytes: 4 << 20,
            scanned_bytes: 1 << 20,
            nodes: 3,
            extents: 20,
            rate_bytes_per_sec: (2 << 20) as f64,
            eta_secs: Some(1.5),
            elapsed_secs: 0.5,
            errors_found: 4,
            repaired: 4,
            unrecoverable: 0,
            repairing: true,
            resumed_from_txg: None,
            moves: 0,
            errors: vec![],
        }
    }

    #[test]
    fn progress_line_shows_percent_rate_and_eta() {
        let l = progress_line(&sample(ScrubState::Running));
        assert!(l.contains(" 25.0%"), "{l}");
        assert!(l.contains("/s"), "{l}");
        assert!(l.contains("ETA 0:02"), "{l}");
        assert!(l.contains("repaired 4"), "{l}");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn result_names_counts() {
        let r = render_result("tank", &sample(ScrubState::Finished));
        assert!(r.contains("scrub of pool tank at txg 7: finished"), "{r}");
        assert!(r.contains("errors found:  4"), "{r}");
        assert!(r.contains("repaired:      4\n"), "{r}");
    }
}
