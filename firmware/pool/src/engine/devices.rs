//! Device management at runtime: replace, reattach, hot spares, the device monitor
//! (suspension beyond redundancy, spares taking over) and device events.
//!
//! The vdev keeps each column's [`DeviceState`] and faults or removes devices on I/O
//! errors; this module reacts to those changes (a task per pool, fed by the vdev's event
//! channel) and changes membership: a replaced column gets a new device GUID in the
//! labels and is resilvered in full, a reattached one (same GUID) only for the txgs it
//! missed. Hot spares are configuration held in memory (not persisted: the appliance
//! re-adds them at start-up).
//!
//! All of it works on a locked pool too (no key loaded): membership changes are then
//! persisted by label-only commits ([`super::pool::Inner::commit_locked`]).

use super::error::PoolError;
use super::label::{LABEL_BYTES, LABEL_COPIES, label_offset};
use super::pool::{Inner, Pool};
use super::resilver::{self, ResilverHandle, ResilverOptions, ResilverProgress};
use crate::raid::{DeviceEvent, DeviceState, VdevHealth};
use ingot_hal::blockdev::{BlockDevice, WriteFlags};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One hot spare.
#[derive(Debug)]
struct Spare {
    dev: Arc<dyn BlockDevice>,
    in_use_for: Option<u32>,
}

/// The pool's device-management state.
#[derive(Debug, Default)]
pub(crate) struct DeviceCtl {
    spares: Mutex<Vec<Spare>>,
    /// The current or last resilver.
    pub resilver: Mutex<Option<ResilverHandle>>,
    monitor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Serialises membership changes and resilver starts.
    pub ops: tokio::sync::Mutex<()>,
    /// A keyless (locked-pool) resilver's current position: the next label-only commit
    /// writes it, an import resumes from it.
    keyless_pos: Mutex<Option<super::label::ScanPosition>>,
    /// The same for a keyless scrub (the labels carry the resilver's when both run).
    keyless_scrub: Mutex<Option<super::label::ScanPosition>>,
}

impl DeviceCtl {
    /// The keyless position to persist in the labels: the resilver's, else the scrub's.
    pub fn keyless_position(&self) -> Option<super::label::ScanPosition> {
        self.keyless_pos
            .lock()
            .clone()
            .or_else(|| self.keyless_scrub.lock().clone())
    }

    /// The published keyless position of a scrub (`scrub`) or of a resilver.
    pub fn keyless_position_of(&self, scrub: bool) -> Option<super::label::ScanPosition> {
        if scrub {
            self.keyless_scrub.lock().clone()
        } else {
            self.keyless_pos.lock().clone()
        }
    }

    /// Publish (or clear) the keyless position of a scrub (`scrub`) or of a resilver.
    pub fn set_keyless_position(&self, scrub: bool, p: Option<super::label::ScanPosition>) {
        if scrub {
            *self.keyless_scrub.lock() = p;
        } else {
            *self.keyless_pos.lock() = p;
        }
    }

    /// Progress of the current or last resilver.
    pub fn resilver_progress(&self) -> Option<ResilverProgress> {
        self.resilver.lock().as_ref().map(|h| h.progress())
    }

    /// The spares for the status report.
    pub fn spare_status(&self) -> Vec<super::config::SpareStatus> {
        self.spares
            .lock()
            .iter()
            .map(|s| super::config::SpareStatus {
                identity: s.dev.identity(),
                in_use_for: s.in_use_for,
            })
            .collect()
    }

    /// Stop the monitor and the resilver (the pool is closing: `closed` is set, so the
    /// resilver keeps its saved position).
    pub fn shutdown(&self) {
        if let Some(m) = self.monitor.lock().take() {
            m.abort();
        }
        if let Some(h) = self.resilver.lock().as_ref() {
            h.cancel();
        }
    }
}

/// Start the task that reacts to device state changes.
pub(crate) fn start_monitor(inner: &Arc<Inner>) {
    let mut rx = inner.io.vdev.subscribe();
    let weak = Arc::downgrade(inner);
    let task = tokio::spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            on_event(&inner, &ev).await;
        }
    });
    *inner.devices.monitor.lock() = Some(task);
}

/// Describe every column that reads cannot use.
pub(crate) fn unavailable(inner: &Inner) -> String {
    let vdev = &inner.io.vdev;
    (0..vdev.device_count())
        .filter_map(|c| {
            let (s, why) = vdev.state(c)?;
            if s.readable() {
                return None;
            }
            let loc = vdev
                .device(c)
                .map(|d| d.identity().location)
                .unwrap_or_else(|| "no device".into());
            Some(format!(
                "column {c} ({loc}) {}{}",
                s.name(),
                why.map(|w| format!(": {w}")).unwrap_or_default()
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn on_event(inner: &Arc<Inner>, ev: &DeviceEvent) {
    if inner.suspension().is_some() {
        return;
    }
    if matches!(ev.to, DeviceState::Faulted | DeviceState::Removed) {
        use_spare(inner, ev.column).await;
    }
}

/// Replace column `column` by a free spare, if there is one.
async fn use_spare(inner: &Arc<Inner>, column: usize) {
    let spare = {
        let mut spares = inner.devices.spares.lock();
        let Some(s) = spares.iter_mut().find(|s| s.in_use_for.is_none()) else {
            return;
        };
        s.in_use_for = Some(column as u32);
        s.dev.clone()
    };
    tracing::warn!(pool = %inner.id.name, column, spare = %spare.identity().location, "hot spare takes over");
    if let Err(e) = replace(inner, column, spare.clone(), ResilverOptions::default()).await {
        tracing::error!(pool = %inner.id.name, column, error = %e, "hot spare could not take over");
        // A spare the slot already holds stays in use (its resilver resumes on the next
        // retry or import); only one that never got in is free again.
        if is_member(inner, &spare) {
            return;
        }
        let mut spares = inner.devices.spares.lock();
        if let Some(s) = spares.iter_mut().find(|s| Arc::ptr_eq(&s.dev, &spare)) {
            s.in_use_for = None;
        }
    }
}

/// Make the labels record the current membership now.
async fn commit_labels(inner: &Inner) -> Result<(), PoolError> {
    inner.commit.lock().await.force = true;
    inner.commit().await.map(|_| ())
}

/// Overwrite a detached device's labels (best effort), so it is not taken for a member.
async fn wipe_labels(dev: &dyn BlockDevice) {
    let cap = dev.geometry().capacity();
    let zero = vec![0u8; LABEL_BYTES as usize];
    for i in 0..LABEL_COPIES {
        if let Err(e) = dev
            .write(label_offset(i, cap), &zero, WriteFlags::NONE)
            .await
        {
            tracing::debug!(device = %dev.identity().location, error = %e, "label wipe of a replaced device failed");
            return;
        }
    }
    let _ = dev.flush().await;
}

fn is_member(inner: &Inner, dev: &Arc<dyn BlockDevice>) -> bool {
    (0..inner.io.vdev.device_count()).any(|c| {
        inner
            .io
            .vdev
            .device(c)
            .is_some_and(|d| Arc::ptr_eq(&d, dev))
    })
}

async fn replace(
    inner: &Arc<Inner>,
    column: usize,
    new: Arc<dyn BlockDevice>,
    opts: ResilverOptions,
) -> Result<ResilverHandle, PoolError> {
    inner.maintainable()?;
    let vdev = &inner.io.vdev;
    let n = vdev.device_count();
    if column >= n {
        return Err(PoolError::Config(format!(
            "column {column} does not exist (the pool has {n})"
        )));
    }
    vdev.check_device(new.as_ref())
        .map_err(|e| PoolError::BadDevice {
            device: new.identity().location,
            detail: e.to_string(),
        })?;
    {
        let _op = inner.devices.ops.lock().await;
        if is_member(inner, &new) {
            return Err(PoolError::DeviceConflict {
                device: new.identity().location,
                detail: "already a member of the pool".into(),
            });
        }
        // The other columns must hold every block.
        if vdev.health_if_down(&[column]) == VdevHealth::Failed {
            let down = unavailable(inner);
            return Err(PoolError::Config(format!(
                "cannot rebuild column {column}: the other devices do not hold every block ({})",
                if down.is_empty() {
                    "the layout has no redundancy".to_string()
                } else {
                    down
                }
            )));
        }
        let old = vdev.device(column);
        // A healthy old device keeps serving reads until the resilver is done.
        let old_healthy = vdev
            .state(column)
            .is_some_and(|(st, _)| st == DeviceState::Online);
        let guid = super::pool::random_u64()?;
        let old_loc = old
            .as_ref()
            .map(|d| d.identity().location)
            .unwrap_or_else(|| "no device".into());
        vdev.set_state(
            column,
            DeviceState::Resilvering,
            Some(Some(new.clone())),
            &format!("replacing {old_loc}"),
        );
        if old_healthy
            && let Some(old) = &old
            && !Arc::ptr_eq(old, &new)
        {
            vdev.set_outgoing(column, Some(old.clone()));
        }
        {
            let mut m = inner.members.write();
            m.guids[column] = guid;
            m.resilver_from[column] = 1;
            m.label_txg[column] = 0;
        }
        tracing::info!(pool = %inner.id.name, column, old = %old_loc, new = %new.identity().location, guid = format_args!("{guid:016x}"), "device replaced; resilvering");
        commit_labels(inner).await?;
        if let Some(old) = old
            && !Arc::ptr_eq(&old, &new)
        {
            wipe_labels(old.as_ref()).await;
        }
    }
    resilver::ensure(inner, opts)
        .await?
        .ok_or_else(|| PoolError::Internal("no resilver started after replace".into()))
}

async fn reattach(inner: &Arc<Inner>, dev: Arc<dyn BlockDevice>) -> Result<usize, PoolError> {
    inner.maintainable()?;
    let labels: Vec<super::label::Label> = Pool::read_labels(dev.as_ref())
        .await
        .into_iter()
        .filter_map(Result::ok)
        .filter(|l| l.pool_guid == inner.id.pool_guid)
        .collect();
    let Some(best) = labels.iter().max_by_key(|l| l.uber.txg) else {
        return Err(PoolError::ForeignDevice {
            device: dev.identity().location,
            found_pool: 0,
            expected_pool: inner.id.pool_guid,
        });
    };
    let column = {
        let _op = inner.devices.ops.lock().await;
        let column = inner
            .members
            .read()
            .guids
            .iter()
            .position(|g| *g == best.device_guid)
            .ok_or_else(|| PoolError::DeviceConflict {
                device: dev.identity().location,
                detail: format!(
                    "device GUID {:#018x} is not a member of the pool (replaced?)",
                    best.device_guid
                ),
            })?;
        let vdev = &inner.io.vdev;
        let state = vdev.state(column).map(|s| s.0);
        if !matches!(
            state,
            Some(
                DeviceState::Faulted
                    | DeviceState::Removed
                    | DeviceState::Missing
                    | DeviceState::Stale
            )
        ) {
            return Err(PoolError::DeviceConflict {
                device: dev.identity().location,
                detail: format!(
                    "column {column} is {}, not faulted, removed or missing",
                    state.map_or("unknown", |s| s.name())
                ),
            });
        }
        vdev.check_device(dev.as_ref())
            .map_err(|e| PoolError::BadDevice {
                device: dev.identity().location,
                detail: e.to_string(),
            })?;
        let from = {
            let mut m = inner.members.write();
            let have = best.uber.txg.max(m.label_txg[column]);
            let from = match m.resilver_from[column] {
                0 => have + 1,
                r => r.min(have + 1),
            };
            m.resilver_from[column] = from;
            from
        };
        vdev.set_state(
            column,
            DeviceState::Resilvering,
            Some(Some(dev.clone())),
            &format!("reattached; resilvering txgs from {from}"),
        );
        commit_labels(inner).await?;
        column
    };
    resilver::ensure(inner, ResilverOptions::default()).await?;
    Ok(column)
}

/// Resume (or start) the resilver of the columns import found RESILVERING.
pub(crate) async fn resume_resilver(inner: &Arc<Inner>) {
    if !inner.io.vdev.states().contains(&DeviceState::Resilvering) {
        return;
    }
    if let Err(e) = resilver::ensure(inner, ResilverOptions::default()).await {
        tracing::error!(pool = %inner.id.name, error = %e, "cannot resume the resilver");
    }
}

/// Retry every FAULTED device still present: it is resilvered for the txgs it missed.
pub(crate) fn retry_faulted(inner: &Arc<Inner>) {
    if inner.maintainable().is_err() {
        return;
    }
    let vdev = &inner.io.vdev;
    let mut any = false;
    for c in 0..vdev.device_count() {
        if vdev.state(c).is_some_and(|s| s.0 == DeviceState::Faulted) && vdev.device(c).is_some() {
            let from = {
                let mut m = inner.members.write();
                let from = match m.resilver_from[c] {
                    0 => m.label_txg[c] + 1,
                    r => r.min(m.label_txg[c] + 1),
                };
                m.resilver_from[c] = from;
                from
            };
            vdev.set_state(
                c,
                DeviceState::Resilvering,
                None,
                &format!("errors cleared; resilvering txgs from {from}"),
            );
            any = true;
        }
    }
    if !any {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let inner = inner.clone();
    rt.spawn(async move {
        if let Err(e) = commit_labels(&inner).await {
            tracing::warn!(pool = %inner.id.name, error = %e, "cannot record the retried devices");
        }
        resume_resilver(&inner).await;
    });
}

impl Pool {
    /// Replace the device of `column` by `new` (a blank or foreign device: everything on
    /// it is overwritten). The new device gets a new GUID and labels and is resilvered in
    /// full from the other columns. Its labels are wiped at once (so a restart does not
    /// take it for a member); if it was ONLINE it keeps serving reads of the column, and
    /// takes the column's new writes, until the resilver completes and it is detached (in
    /// memory only: after a restart the resilver goes on from redundancy). Refused when the other
    /// columns do not hold every block (stripe, or too many devices down). Works on a
    /// locked pool: the resilver runs keylessly and the labels are written label-only.
    pub async fn replace(
        &self,
        column: usize,
        new: Arc<dyn BlockDevice>,
        opts: ResilverOptions,
    ) -> Result<ResilverHandle, PoolError> {
        replace(&self.inner, column, new, opts).await
    }

    /// A faulted, removed or missing member comes back (its label's device GUID names
    /// the column): it is resilvered for the txgs it missed only. Returns the column.
    pub async fn reattach(&self, dev: Arc<dyn BlockDevice>) -> Result<usize, PoolError> {
        reattach(&self.inner, dev).await
    }

    /// Add a hot spare (configuration held in memory only: re-add it after import).
    /// When a device faults or is removed, the pool replaces it by a free spare. If a
    /// column is already down, the spare takes over at once.
    pub async fn add_spare(&self, dev: Arc<dyn BlockDevice>) -> Result<(), PoolError> {
        let inner = &self.inner;
        inner
            .io
            .vdev
            .check_device(dev.as_ref())
            .map_err(|e| PoolError::BadDevice {
                device: dev.identity().location,
                detail: e.to_string(),
            })?;
        {
            let mut spares = inner.devices.spares.lock();
            if is_member(inner, &dev) || spares.iter().any(|s| Arc::ptr_eq(&s.dev, &dev)) {
                return Err(PoolError::DeviceConflict {
                    device: dev.identity().location,
                    detail: "already a member or a spare of the pool".into(),
                });
            }
            spares.push(Spare {
                dev: dev.clone(),
                in_use_for: None,
            });
        }
        tracing::info!(pool = %inner.id.name, spare = %dev.identity().location, "hot spare added");
        let vdev = &inner.io.vdev;
        if vdev.health() != VdevHealth::Failed
            && let Some(c) = (0..vdev.device_count()).find(|&c| {
                vdev.state(c).is_some_and(|s| {
                    matches!(
                        s.0,
                        DeviceState::Faulted | DeviceState::Removed | DeviceState::Missing
                    )
                })
            })
        {
            use_spare(inner, c).await;
        }
        Ok(())
    }

    /// The current or last resilver (started by replace, reattach, a spare, clearing
    /// errors, or resumed at import).
    pub fn resilver_job(&self) -> Option<ResilverHandle> {
        self.inner.devices.resilver.lock().clone()
    }

    /// Receive every device state change (faulted, removed, resilvering, online...).
    pub fn subscribe_device_events(&self) -> tokio::sync::broadcast::Receiver<DeviceEvent> {
        self.inner.io.vdev.subscribe()
    }
}
