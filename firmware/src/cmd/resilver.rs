//! `ingot pool replace` acting on the drives directly (no appliance holds the pool): the
//! command imports the pool, replaces the member by the new drive, runs the resilver to
//! its end (Ctrl-C stops it; the next import resumes it) and exports the pool.

use crate::cli::PoolReplaceArgs;
use crate::cmd::pool::select;
use crate::cmd::scrub::clock;
use crate::drives;
use crate::error::CliError;
use crate::passphrase;
use crate::size::human;
use ingot_pool::ImportOptions;
use ingot_pool::engine::{ResilverOptions, ResilverProgress, ScrubState};
use std::io::{IsTerminal, Write};
use std::time::Duration;

fn line(p: &ResilverProgress) -> String {
    format!(
        "resilver of column {}: {:5.1}%  {} of {}  {}/s  ETA {}",
        p.column,
        p.percent(),
        human(p.scanned_bytes),
        human(p.total_bytes),
        human(p.rate_bytes_per_sec as u64),
        p.eta_secs.map_or_else(|| "-".to_string(), clock)
    )
}

/// Replace a member and resilver, on the drives directly.
pub async fn replace_direct(a: &PoolReplaceArgs) -> Result<(), CliError> {
    let new_spec = crate::cmd::pool::parse_device(&a.new)?;
    // The new drive may sit in the same directory as the members: not a member.
    let specs: Vec<_> = select(&a.drives)?
        .into_iter()
        .filter(|s| s != &new_spec)
        .collect();
    let passphrase = match &a.passphrase_file {
        Some(f) => Some(passphrase::obtain(Some(f), "Pool passphrase", false)?),
        None => None,
    };
    let mut open = drives::open_all(&specs).await?;
    let new = match drives::open(&new_spec).await {
        Ok(d) => d,
        Err(e) => {
            drives::close_all(open).await;
            return Err(e);
        }
    };
    let new_dev = new.device.clone();
    let devs = open.iter().map(|d| d.device.clone()).collect();
    open.push(new);
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
        if st.name != a.name {
            pool.export().await?;
            return Err(CliError::Usage(format!(
                "these drives hold pool {:?}, not {:?}",
                st.name, a.name
            )));
        }
        let column = match a.old.parse::<usize>() {
            Ok(c) if c < st.devices.len() => Some(c),
            _ => st
                .devices
                .iter()
                .position(|m| {
                    m.guid == a.old
                        || m.identity.as_ref().is_some_and(|i| {
                            i.location == a.old || i.location.starts_with(&format!("sim:{}/", a.old))
                        })
                }),
        };
        let Some(column) = column else {
            pool.export().await?;
            return Err(CliError::Usage(format!(
                "{:?} is not a member of pool {}: give its column (0..{}), GUID or location",
                a.old,
                st.name,
                st.devices.len()
            )));
        };
        let h = pool
            .replace(column, new_dev, ResilverOptions::default())
            .await?;
        let show = a.wait && std::io::stderr().is_terminal() && !a.json;
        let mut rx = h.subscribe();
        let mut err = std::io::stderr();
        let done = |p: &ResilverProgress| {
            matches!(p.state, ScrubState::Finished | ScrubState::Cancelled)
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    h.cancel();
                    tracing::warn!("interrupted: stopping the resilver (the next import resumes it)");
                }
                _ = tick.tick() => {
                    if show {
                        let _ = write!(err, "\r\x1b[2K{}", line(&h.progress()));
                        let _ = err.flush();
                    }
                }
                _ = rx.wait_for(done) => break,
            }
        }
        let p = h.progress();
        if show {
            let _ = writeln!(err, "\r\x1b[2K{}", line(&p));
        }
        // The walk's end comes before the commit that marks the column ONLINE in the
        // labels: wait for that (bounded) so the export records a whole pool.
        if p.state == ScrubState::Finished {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while pool
                .status()
                .devices
                .get(column)
                .is_some_and(|d| d.state != ingot_pool::engine::DeviceState::Online)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let st = pool.status();
        pool.export().await?;
        if a.json {
            let text = serde_json::to_string_pretty(&p)
                .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
            println!("{text}");
        } else {
            println!(
                "resilver of column {column} of pool {}: {:?}, {} rebuilt, {} errors",
                st.name,
                p.state,
                human(p.scanned_bytes),
                p.errors_found
            );
        }
        if p.state == ScrubState::Finished {
            Ok(())
        } else {
            Err(CliError::Usage(
                "the resilver did not finish; the next import resumes it".into(),
            ))
        }
    }
    .await;
    drives::close_all(open).await;
    r
}
