//! Resilver: rebuild the columns of RESILVERING devices from the others, walking the
//! committed tree like the scrub does (the same walker, [`super::scrub`], in
//! [`Mode::Resilver`]).
//!
//! - Allocated data only: the walk follows block pointers, so a 10%-full pool rebuilds
//!   about 10% of a full one.
//! - Partial: a device that missed txgs (it came back, or its label is older than the
//!   pool's) lacks only blocks born after its last label; a subtree whose node was born
//!   before that is skipped whole (copy-on-write: an old node has only old descendants),
//!   and with the key loaded so are old data extents under new leaves.
//! - Keyless I/O: blocks are read from the readable devices (reconstructing from
//!   redundancy), verified against their crc32c and the target columns written with the
//!   same stored bytes (ciphertext, tweaked by pool address): bit-identical.
//! - Online: new writes already go to the target devices (their state is RESILVERING),
//!   so blocks written after the walk's tree need no rebuild.
//! - Restart-safe: the labels mark each column being resilvered and from which txg
//!   ([`super::label::Label::resilver_from`]), and the walk's position is saved in the
//!   tree (key bookmark, like the scrub's) or, on a locked pool, in the labels (a keyless
//!   path in the tree, [`super::label::ScanPosition`], written by label-only commits);
//!   import resumes it, locked or not.
//! - Keyless: on a locked pool the whole resilver (replace included) runs without keys.
//! - When the walk completes every target is ONLINE, its mark cleared in the labels
//!   (a commit), and a device event emitted. Columns that became RESILVERING meanwhile
//!   are picked up by the next resilver, started at once.

use super::error::PoolError;
use super::pool::Inner;
use super::scrub::{JobHandle, JobProgress, Mode, ScrubOptions, ScrubProgress, ScrubState};
use crate::raid::DeviceState;
use ingot_hal::blockdev::DeviceIdentity;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a resilver runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResilverOptions {
    /// Cap on resilver I/O in allocated bytes per second (`None`: as fast as the devices
    /// go, yielding to other tasks between blocks).
    pub max_bytes_per_sec: Option<u64>,
}

/// A resilver's progress: the scan fields of [`ScrubProgress`] (reachable directly
/// through `Deref`, and flattened into the JSON) plus what is being rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResilverProgress {
    /// The (first) column being rebuilt.
    pub column: usize,
    /// Every column this resilver rebuilds.
    pub columns: Vec<usize>,
    /// GUID (hex) of the device being rebuilt in `column`.
    pub device_guid: String,
    /// Who that device is.
    pub device: Option<DeviceIdentity>,
    /// Oldest birth txg rebuilt (1: everything; more: a partial resilver).
    pub from_txg: u64,
    /// Bytes scanned, rate, ETA, errors... (allocated bytes of the blocks rebuilt).
    #[serde(flatten)]
    pub scan: ScrubProgress,
}

impl std::ops::Deref for ResilverProgress {
    type Target = ScrubProgress;
    fn deref(&self) -> &ScrubProgress {
        &self.scan
    }
}

impl JobProgress for ResilverProgress {
    fn scan(&self) -> &ScrubProgress {
        &self.scan
    }
    fn scan_mut(&mut self) -> &mut ScrubProgress {
        &mut self.scan
    }
}

/// A running (or the last) resilver: progress, pause, resume, cancel, wait. The job
/// belongs to the pool: dropping a handle does not stop it. A cancelled resilver leaves
/// its devices RESILVERING (the pool stays degraded) until `Pool::clear_errors`, another
/// resilver or an import restarts it.
pub type ResilverHandle = JobHandle<ResilverProgress>;

/// A launched walk: its watching handle and its task.
struct Launched {
    handle: ResilverHandle,
    task: tokio::task::JoinHandle<ResilverProgress>,
}

/// Start a resilver of every RESILVERING column unless one runs; the current job.
/// `None` when nothing needs a resilver or the pool cannot write.
pub(crate) async fn ensure(
    inner: &Arc<Inner>,
    opts: ResilverOptions,
) -> Result<Option<ResilverHandle>, PoolError> {
    let _op = inner.devices.ops.lock().await;
    match launch(inner, opts).await? {
        Started::Running(h) => Ok(Some(h)),
        Started::Nothing => Ok(None),
        Started::New(job) => {
            let handle = job.handle.clone();
            tokio::spawn(supervise(Arc::downgrade(inner), job, opts));
            Ok(Some(handle))
        }
    }
}

enum Started {
    Running(ResilverHandle),
    Nothing,
    New(Launched),
}

/// Under the ops lock: the running job, or a new walk over every RESILVERING column.
async fn launch(inner: &Arc<Inner>, opts: ResilverOptions) -> Result<Started, PoolError> {
    if let Some(h) = inner.devices.resilver.lock().clone()
        && !h.is_done()
    {
        return Ok(Started::Running(h));
    }
    if inner.maintainable().is_err() {
        return Ok(Started::Nothing);
    }
    let vdev = &inner.io.vdev;
    let members = inner.members.read().clone();
    let columns: Vec<usize> = (0..members.guids.len())
        .filter(|&c| {
            vdev.state(c)
                .is_some_and(|s| s.0 == DeviceState::Resilvering)
        })
        .collect();
    let Some(&column) = columns.first() else {
        return Ok(Started::Nothing);
    };
    let from_txg = columns
        .iter()
        .map(|&c| members.resilver_from[c].max(1))
        .min()
        .unwrap_or(1);
    let targets: Vec<(usize, u64)> = columns.iter().map(|&c| (c, members.guids[c])).collect();
    let mode = Mode::Resilver {
        targets,
        min_birth: from_txg,
    };
    let device = vdev.device(column).map(|d| d.identity());
    let device_guid = format!("{:016x}", members.guids[column]);
    let sopts = ScrubOptions {
        max_bytes_per_sec: opts.max_bytes_per_sec,
        restart: false,
    };
    tracing::info!(pool = %inner.id.name, ?columns, from_txg, "resilver starting");
    let handle = super::scrub::start_job(inner.clone(), mode, sopts, |scan| ResilverProgress {
        column,
        columns: columns.clone(),
        device_guid,
        device,
        from_txg,
        scan,
    })
    .await?;
    let (handle, task) = handle.detach();
    let task = task.ok_or_else(|| PoolError::Internal("resilver job has no task".into()))?;
    *inner.devices.resilver.lock() = Some(handle.clone());
    Ok(Started::New(Launched { handle, task }))
}

/// Wait for each walk; start the next for columns that became RESILVERING meanwhile.
async fn supervise(weak: std::sync::Weak<Inner>, mut job: Launched, opts: ResilverOptions) {
    loop {
        let done = (&mut job.task).await;
        let Some(inner) = weak.upgrade() else { return };
        match done {
            // The walker brought its targets online before it said finished.
            Ok(p) if p.scan.state == ScrubState::Finished && p.scan.unrecoverable == 0 => {}
            Ok(p) => {
                tracing::warn!(pool = %inner.id.name, state = ?p.scan.state, unrecoverable = p.scan.unrecoverable, errors = ?p.scan.errors, "resilver did not complete; devices stay RESILVERING");
                return;
            }
            Err(e) => {
                tracing::error!(pool = %inner.id.name, error = %e, "resilver task failed");
                return;
            }
        }
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let _op = inner.devices.ops.lock().await;
        match launch(&inner, opts).await {
            Ok(Started::New(next)) => job = next,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(pool = %inner.id.name, error = %e, "cannot start the next resilver");
                return;
            }
        }
    }
}

/// Digest of a resilver's targets (columns and device GUIDs): a saved keyless position is
/// resumed only by a resilver of the same targets.
pub(crate) fn targets_digest(targets: &[(usize, u64)]) -> u64 {
    targets.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &(c, g)| {
        (h ^ g ^ ((c as u64) << 56)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The walk completed: the targets still holding the same device are ONLINE, their
/// marks cleared and the labels rewritten.
pub(crate) async fn finish(inner: &Arc<Inner>, targets: &[(usize, u64)]) {
    let mut done = Vec::new();
    {
        let mut m = inner.members.write();
        for &(c, guid) in targets {
            let same = m.guids.get(c) == Some(&guid);
            let resilvering = inner
                .io
                .vdev
                .state(c)
                .is_some_and(|s| s.0 == DeviceState::Resilvering);
            if same && resilvering {
                m.resilver_from[c] = 0;
                done.push(c);
            }
        }
    }
    for &c in &done {
        inner
            .io
            .vdev
            .set_state(c, DeviceState::Online, None, "resilver complete");
        // The replaced device, if it served reads meanwhile, is detached now.
        if let Some(old) = inner.io.vdev.set_outgoing(c, None) {
            tracing::info!(pool = %inner.id.name, column = c, device = %old.identity().location, "replaced device detached");
        }
    }
    if done.is_empty() {
        return;
    }
    inner.commit.lock().await.force = true;
    match inner.commit().await {
        Ok(txg) => {
            tracing::info!(pool = %inner.id.name, columns = ?done, txg, "resilver complete; labels updated")
        }
        Err(e) => {
            tracing::error!(pool = %inner.id.name, error = %e, "resilver complete but the label update failed")
        }
    }
}
