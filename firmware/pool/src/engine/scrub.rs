//! Online scrub: a background task that walks every block of one committed txg (the
//! space map, every tree node and every data extent, following the clear block pointers
//! from the root), reads every column and copy of each through [`crate::raid::Vdev::scrub`]
//! and rewrites bad ones through [`crate::raid::Vdev::repair`].
//!
//! - Keyless: it checks crc32c over the stored (encrypted) bytes, so it runs on a locked
//!   pool and repairs there exactly as on an unlocked one (the rebuilt ciphertext is
//!   bit-identical); only a read-only pool just counts what it finds.
//! - Online: the pool keeps serving reads and writes. The walked txg's blocks are held
//!   against reuse (a reader registration, like foreground reads take), so a block freed
//!   and reallocated meanwhile is never misreported. With the key loaded the scrub moves
//!   to the newest committed tree every few txgs, continuing from its key bookmark, so
//!   the space freed meanwhile is not held for the whole scrub (a locked or read-only
//!   pool frees nothing, and keeps its one txg).
//! - Controllable: [`ScrubHandle`] pauses, resumes and cancels it; progress (bytes
//!   scanned of the txg's allocated bytes, rate over a sliding window, ETA, errors found
//!   and repaired) is published on a `tokio::sync::watch` channel.
//! - Throttled: an optional bytes/s cap; without one it yields between blocks.
//!
//! - Resumable: with the key loaded and the pool writable, the position (every extent with
//!   a tree key below a bookmark is done) is saved under a pool-private tree key when the
//!   scrub pauses and every few seconds, and committed with the txgs. After export/import
//!   or a crash, [`Pool::start_scrub`] resumes from it (extents written since the
//!   interrupted scrub started were written verified and are behind the bookmark only if
//!   their keys are). A locked pool cannot write the tree: its scrub or resilver saves a
//!   keyless position instead (the path of the next block in the walk of its unchanging
//!   tree, [`ScanPosition`]) in the labels, through label-only commits; the next job of
//!   the same kind on the same tree resumes from it, locked or unlocked (and with the key
//!   saves its key bookmark in the tree at once).
//!
//! The same walker runs the resilver ([`super::resilver`]): [`Mode`] says what is done
//! with each block (scrub: read every column and repair; resilver: read the block from
//! the other devices and write the target devices' columns, skipping subtrees born
//! before the txg the targets lack), and where the position is saved.

use super::error::PoolError;
use super::heal::DamagedBlock;
use super::label::{MAX_POSITION_PATH, ScanPosition};
use super::node::{ClearHeader, MAX_LEVEL};
use super::pool::{Inner, Pool};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sliding window of the reported rate.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Spacing of rate samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Most error messages kept in the progress report.
const MAX_ERRORS: usize = 64;
/// A scrub that knows keys moves to the newest tree once this many txgs committed since
/// it anchored, so a long scrub does not keep the space freed meanwhile from reuse.
const REANCHOR_TXGS: u64 = 4;
/// Longest single sleep of a throttled scrub.
const PACE_SLICE: Duration = Duration::from_millis(5);
/// How often a running scrub saves its position (committed with the next txg).
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Pool-private map key (object 0) of an interrupted resilver's saved position.
pub(crate) const RESILVER_POSITION_KEY: &[u8] = b"resilver-position";

/// How a scrub runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubOptions {
    /// Cap on scrub I/O in allocated bytes per second (`None`: as fast as the devices
    /// go, yielding to other tasks between blocks).
    pub max_bytes_per_sec: Option<u64>,
    /// Start from the beginning even if an interrupted scrub saved its position.
    pub restart: bool,
}

/// Where a scrub is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrubState {
    /// Walking the tree nodes to learn the total to scan.
    Counting,
    /// Scanning.
    Running,
    /// Paused by [`ScrubHandle::pause`].
    Paused,
    /// Stopped by [`ScrubHandle::cancel`], by dropping the handle, or by the pool closing.
    Cancelled,
    /// Every block was scanned.
    Finished,
}

/// A scrub's progress and findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrubProgress {
    /// State.
    pub state: ScrubState,
    /// The committed txg being scrubbed.
    pub txg: u64,
    /// Allocated bytes (parity and padding included) of every block of that txg.
    pub total_bytes: u64,
    /// Allocated bytes scanned so far.
    pub scanned_bytes: u64,
    /// Tree nodes scanned (the space map counts as a block, not a node).
    pub nodes: u64,
    /// Data extents scanned.
    pub extents: u64,
    /// Scan rate over the last seconds (bytes/s).
    pub rate_bytes_per_sec: f64,
    /// Estimated seconds to go (`None` until a rate is known).
    pub eta_secs: Option<f64>,
    /// Seconds since the scrub started (pauses included).
    pub elapsed_secs: f64,
    /// Column copies found bad (wrong bytes or failed reads).
    pub errors_found: u64,
    /// Column copies rewritten with the correct bytes.
    pub repaired: u64,
    /// Blocks no combination of redundancy could verify (also in `PoolStatus::damaged`).
    pub unrecoverable: u64,
    /// Whether bad columns are rewritten (false on a read-only pool: count only; a locked
    /// pool repairs too).
    pub repairing: bool,
    /// Set when this scrub resumed the saved position of an interrupted one (started at
    /// that txg); scanned bytes and the error counts include the interrupted run's, nodes
    /// and extents count this run only.
    pub resumed_from_txg: Option<u64>,
    /// Times the scrub moved to a newer committed tree (online, with the key loaded).
    #[serde(default)]
    pub moves: u64,
    /// What went wrong, first [`MAX_ERRORS`] messages.
    pub errors: Vec<String>,
}

impl ScrubProgress {
    /// Percentage scanned (100 when there is nothing to scan and the scrub finished).
    pub fn percent(&self) -> f64 {
        if self.total_bytes == 0 {
            if self.state == ScrubState::Finished {
                100.0
            } else {
                0.0
            }
        } else {
            (self.scanned_bytes as f64 * 100.0 / self.total_bytes as f64).min(100.0)
        }
    }

    fn push_error(&mut self, e: String) {
        tracing::warn!(error = %e, "scrub");
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }
}

/// What the handle asks of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause,
    Cancel,
}

/// A job's progress record: the scrub's, or one that embeds it (the resilver's).
pub trait JobProgress: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The scan part.
    fn scan(&self) -> &ScrubProgress;
    /// The scan part, to update.
    fn scan_mut(&mut self) -> &mut ScrubProgress;
}

impl JobProgress for ScrubProgress {
    fn scan(&self) -> &ScrubProgress {
        self
    }
    fn scan_mut(&mut self) -> &mut ScrubProgress {
        self
    }
}

/// A running scrub. Dropping it cancels the scrub.
pub type ScrubHandle = JobHandle<ScrubProgress>;

/// A running scan job (scrub or resilver): progress, pause, resume, cancel, wait.
///
/// A scrub's handle owns the job (dropping it cancels the scrub); a resilver belongs to
/// the pool, and its handles are clones that only watch and steer it.
#[derive(Debug)]
pub struct JobHandle<P: JobProgress> {
    control: Arc<watch::Sender<Control>>,
    progress: watch::Receiver<P>,
    task: Option<tokio::task::JoinHandle<P>>,
}

impl<P: JobProgress> Clone for JobHandle<P> {
    /// Another handle on the same job, that does not own it.
    fn clone(&self) -> Self {
        JobHandle {
            control: self.control.clone(),
            progress: self.progress.clone(),
            task: None,
        }
    }
}

impl<P: JobProgress> JobHandle<P> {
    pub(crate) fn owning(
        control: watch::Sender<Control>,
        progress: watch::Receiver<P>,
        task: tokio::task::JoinHandle<P>,
    ) -> Self {
        JobHandle {
            control: Arc::new(control),
            progress,
            task: Some(task),
        }
    }

    /// A handle that watches the job but does not own it.
    pub(crate) fn detach(mut self) -> (Self, Option<tokio::task::JoinHandle<P>>) {
        let task = self.task.take();
        (self, task)
    }

    /// The latest progress.
    pub fn progress(&self) -> P {
        self.progress.borrow().clone()
    }

    /// A receiver of every progress update (for a progress line or an event stream).
    pub fn subscribe(&self) -> watch::Receiver<P> {
        self.progress.clone()
    }

    /// Whether the job ended (finished or cancelled).
    pub fn is_done(&self) -> bool {
        matches!(
            self.progress.borrow().scan().state,
            ScrubState::Finished | ScrubState::Cancelled
        )
    }

    /// Pause before the next block (the walked txg stays held against reuse meanwhile).
    pub fn pause(&self) {
        self.control.send_if_modified(|c| {
            let was = *c;
            if was == Control::Run {
                *c = Control::Pause;
            }
            was == Control::Run
        });
    }

    /// Resume a paused scrub.
    pub fn resume(&self) {
        self.control.send_if_modified(|c| {
            let was = *c;
            if was == Control::Pause {
                *c = Control::Run;
            }
            was == Control::Pause
        });
    }

    /// Stop before the next block.
    pub fn cancel(&self) {
        self.control.send_replace(Control::Cancel);
    }

    /// Wait until the job finishes or is cancelled; its final progress.
    pub async fn wait(mut self) -> Result<P, PoolError> {
        let Some(task) = self.task.take() else {
            let mut rx = self.progress.clone();
            let done = rx
                .wait_for(|p| {
                    matches!(p.scan().state, ScrubState::Finished | ScrubState::Cancelled)
                })
                .await
                .map(|p| p.clone());
            return Ok(done.unwrap_or_else(|_| self.progress()));
        };
        task.await
            .map_err(|e| PoolError::Internal(format!("job task failed: {e}")))
    }
}

impl<P: JobProgress> Drop for JobHandle<P> {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.control.send_replace(Control::Cancel);
        }
    }
}

/// What the walker does with each block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read every column and copy, repair bad ones.
    Scrub,
    /// Rebuild `columns` from the others: blocks (and subtrees) born before `min_birth`
    /// are already on them and are skipped.
    Resilver {
        /// Target columns, with the GUID of the device each held when the walk started.
        targets: Vec<(usize, u64)>,
        /// Oldest birth txg the targets lack.
        min_birth: u64,
    },
}

impl Mode {
    fn saved_key(&self) -> Vec<u8> {
        let name: &[u8] = match self {
            Mode::Scrub => b"scrub-position",
            Mode::Resilver { .. } => RESILVER_POSITION_KEY,
        };
        super::keys::kv(super::keys::META_OID, name)
    }

    fn name(&self) -> &'static str {
        match self {
            Mode::Scrub => "scrub",
            Mode::Resilver { .. } => "resilver",
        }
    }

    /// Whether a block born at `birth` (0: unknown) is walked.
    fn wants(&self, birth: u64) -> bool {
        match self {
            Mode::Scrub => true,
            Mode::Resilver { min_birth, .. } => birth == 0 || birth >= *min_birth,
        }
    }
}

/// Keeps the frees of txgs from `txg` on from being reused while the scrub runs.
pub(crate) struct Hold {
    inner: Arc<Inner>,
    txg: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut r = self.inner.readers.lock();
        if let Some(n) = r.get_mut(&self.txg) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.txg);
            }
        }
    }
}

/// One block to scrub.
#[derive(Debug, Clone)]
struct Blk {
    addr: u64,
    sectors: u64,
    crc: u32,
    node: bool,
    depth: u32,
    /// Birth txg when known (0: unknown; extents learn theirs from the leaf's payload).
    birth: u64,
    /// With the key loaded: an extent's tree key, or a node's exclusive upper bound
    /// (`None`: unknown or unbounded).
    key: Option<Arc<[u8]>>,
    /// Where it is in the walk: root index (0 space map, 1 root node), then the index of
    /// each child in its node's physical pointers (the keyless position).
    path: Vec<u32>,
}

/// Register a hold on the last committed txg's blocks; its uberblock.
pub(crate) async fn hold_committed(inner: &Arc<Inner>) -> (super::label::Uberblock, Hold) {
    // Under the commit lock no commit can fold frees between taking the uberblock and
    // registering the hold.
    let cs = inner.commit.lock().await;
    let txg = cs.uber.txg + 1;
    *inner.readers.lock().entry(txg).or_insert(0) += 1;
    (
        cs.uber,
        Hold {
            inner: inner.clone(),
            txg,
        },
    )
}

/// A fresh progress record for a job over txg `txg`.
pub(crate) fn new_progress(txg: u64, repairing: bool) -> ScrubProgress {
    ScrubProgress {
        state: ScrubState::Counting,
        txg,
        total_bytes: 0,
        scanned_bytes: 0,
        nodes: 0,
        extents: 0,
        rate_bytes_per_sec: 0.0,
        eta_secs: None,
        elapsed_secs: 0.0,
        errors_found: 0,
        repaired: 0,
        unrecoverable: 0,
        repairing,
        resumed_from_txg: None,
        moves: 0,
        errors: Vec::new(),
    }
}

/// Start the walker of `mode` over the last committed txg (resuming a saved position
/// unless `opts.restart`), with `wrap` turning its scan progress into the job's record.
pub(crate) async fn start_job<P: JobProgress>(
    inner: Arc<Inner>,
    mode: Mode,
    opts: ScrubOptions,
    wrap: impl FnOnce(ScrubProgress) -> P,
) -> Result<JobHandle<P>, PoolError> {
    if inner.closed.load(Ordering::Acquire) {
        return Err(PoolError::ReadOnly("pool is exported".into()));
    }
    let (uber, hold) = hold_committed(&inner).await;
    let mut first = new_progress(uber.txg, inner.io.repair);
    let track = inner.io.unlocked;
    let mut bookmark = None;
    let mut skip = None;
    // A keyless position saved in the labels (by a locked pool) for this very tree and
    // job: newer than any tree record (those are dropped or ignored, see pool.rs).
    {
        let is_scrub = mode == Mode::Scrub;
        let saved = inner.devices.keyless_position_of(is_scrub);
        inner.devices.set_keyless_position(is_scrub, None);
        if let Some(p) = saved.filter(|p| {
            !opts.restart
                && p.txg == uber.txg
                && p.scrub == is_scrub
                && match &mode {
                    Mode::Scrub => true,
                    Mode::Resilver { targets, min_birth } => {
                        p.from_txg == *min_birth
                            && p.targets == super::resilver::targets_digest(targets)
                    }
                }
        }) {
            tracing::info!(pool = %inner.id.name, job = mode.name(), txg = p.txg, scanned = p.scanned, path = ?p.path, "resuming a keyless position");
            first.resumed_from_txg = Some(p.txg);
            first.scanned_bytes = p.scanned;
            first.errors_found = p.found;
            first.repaired = p.repaired;
            skip = Some(p.path);
        }
    }
    let stale_record =
        matches!(mode, Mode::Resilver { .. }) && inner.tree_position_stale.load(Ordering::Acquire);
    if track && !opts.restart && skip.is_none() && !stale_record {
        let root = inner.readable.read().0.clone();
        if let Some(v) = super::tree::get(&inner.io, &root, &mode.saved_key()).await?
            && let Some(sv) = Saved::decode(&v)
        {
            tracing::info!(pool = %inner.id.name, job = mode.name(), from_txg = sv.txg, scanned = sv.scanned, "resuming a saved position");
            first.resumed_from_txg = Some(sv.txg);
            first.scanned_bytes = sv.scanned;
            first.errors_found = sv.found;
            first.repaired = sv.repaired;
            first.unrecoverable = sv.unrecoverable;
            bookmark = Some(sv.bookmark);
        }
    }
    let (ptx, prx) = watch::channel(wrap(first));
    let (ctx, crx) = watch::channel(Control::Run);
    let sm = uber.space_map;
    let root = uber.root;
    let roots = [
        Blk {
            addr: sm.addr,
            sectors: sm.data_sectors(),
            crc: sm.crc,
            node: false,
            depth: 0,
            key: None,
            birth: sm.birth,
            path: vec![0],
        },
        Blk {
            addr: root.addr,
            sectors: root.data_sectors(),
            crc: root.crc,
            node: true,
            depth: 0,
            key: None,
            birth: root.birth,
            path: vec![1],
        },
    ];
    let keyless = !track && inner.io.repair;
    tracing::info!(pool = %inner.id.name, job = mode.name(), txg = uber.txg, "job started");
    let task = tokio::spawn(async move {
        Scrubber {
            inner,
            hold: Some(hold),
            need_reanchor: false,
            anchor_txg: uber.txg,
            first_anchor: uber.txg,
            caught_up: false,
            root,
            damaged: Vec::new(),
            track,
            bookmark,
            save_soon: skip.is_some() && track,
            skip,
            keyless,
            position_ok: true,
            opts,
            mode,
            control: crx,
            progress: ptx,
            started: Instant::now(),
            samples: VecDeque::new(),
        }
        .run(roots)
        .await
    });
    Ok(JobHandle::owning(ctx, prx, task))
}

impl Pool {
    /// Start an online scrub of the last committed txg as a background task.
    pub async fn start_scrub(&self, opts: ScrubOptions) -> Result<ScrubHandle, PoolError> {
        start_job(self.inner.clone(), Mode::Scrub, opts, |p| p).await
    }
}

struct Scrubber<P: JobProgress> {
    inner: Arc<Inner>,
    /// Keeps the blocks of the tree being walked from reuse.
    hold: Option<Hold>,
    /// Set when a pause let go of the hold: continue from the bookmark in a newer tree.
    need_reanchor: bool,
    /// The committed txg whose tree is being walked.
    anchor_txg: u64,
    /// The first txg walked (resilver: the catch-up pass covers what was born after it).
    first_anchor: u64,
    /// Resilver: whether the catch-up pass ran.
    caught_up: bool,
    /// Root of the scrubbed txg's tree.
    root: super::bptr::BlockPtr,
    /// Unrecoverable extents found (pool addresses), to name their objects at the end.
    damaged: Vec<u64>,
    /// Whether extent keys are known (key loaded): needed to save and resume a position.
    track: bool,
    /// Every extent with a key below this is done (this run or a saved one).
    bookmark: Option<Vec<u8>>,
    /// Resumed from a keyless position: blocks before this path (in the first tree
    /// walked) are done.
    skip: Option<Vec<u32>>,
    /// A resilver on a locked pool: publish the keyless position for the labels.
    keyless: bool,
    /// False once a target write failed: no position is published past it.
    position_ok: bool,
    /// Resumed by path with the key loaded: save the key bookmark as soon as there is one.
    save_soon: bool,
    opts: ScrubOptions,
    mode: Mode,
    control: watch::Receiver<Control>,
    progress: watch::Sender<P>,
    started: Instant,
    samples: VecDeque<(Instant, u64)>,
}

fn child_blocks<'a>(hdr: &'a ClearHeader, parent: &'a Blk) -> impl Iterator<Item = Blk> + 'a {
    hdr.ptrs.iter().enumerate().map(move |(i, p)| Blk {
        addr: p.addr,
        sectors: u64::from(p.sectors),
        crc: p.crc,
        node: p.kind == super::bptr::BlockKind::Node,
        depth: parent.depth + 1,
        key: None,
        birth: 0,
        path: {
            let mut v = parent.path.clone();
            v.push(i as u32);
            v
        },
    })
}

/// Whether block `b` comes before the keyless position `skip` in the walk (so it is done).
fn before(b: &Blk, skip: &[u32]) -> bool {
    // Paths compare lexicographically in walk order; a prefix of `skip` (a node on the
    // way down to it) is not done: it is walked again for the children after it.
    b.path.as_slice() < skip && !skip.starts_with(&b.path)
}

/// Birth txgs of a leaf's data extents, in the order of its clear header's pointers.
fn extent_births(node: &super::node::Node) -> Vec<u64> {
    match &node.body {
        super::node::Body::Internal(_) => Vec::new(),
        super::node::Body::Leaf(vals) => node
            .keys
            .iter()
            .zip(vals)
            .filter_map(|(k, v)| super::keys::extent_bp(k, v).map(|bp| bp.birth))
            .collect(),
    }
}

/// Decode a node's keys from its stored bytes (needs the key; `None` if it cannot).
fn decode_node(inner: &Inner, stored: &[u8], addr: u64) -> Option<super::node::Node> {
    let (hdr, clear_len) = ClearHeader::decode(stored).ok()?;
    let kind = crate::compress::CompressionKind::from_code(hdr.payload_comp).ok()?;
    let mut payload = stored.get(clear_len..)?.to_vec();
    let plain = inner
        .io
        .codec
        .open(
            &mut payload,
            addr + (clear_len / 4096) as u64,
            hdr.payload_crc,
            kind,
            hdr.payload_psize,
            hdr.payload_lsize,
        )
        .ok()?;
    super::node::Node::decode_payload(&plain, None).ok()
}

/// Where an interrupted scrub was, kept in the tree under a pool-private key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Saved {
    txg: u64,
    scanned: u64,
    found: u64,
    repaired: u64,
    unrecoverable: u64,
    /// Every extent with a key below this was scrubbed.
    bookmark: Vec<u8>,
}

const SAVED_VERSION: u8 = 1;

impl Saved {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![SAVED_VERSION];
        for x in [
            self.txg,
            self.scanned,
            self.found,
            self.repaired,
            self.unrecoverable,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&self.bookmark);
        v
    }

    fn decode(b: &[u8]) -> Option<Saved> {
        if b.first() != Some(&SAVED_VERSION) || b.len() < 41 {
            return None;
        }
        let u = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(1 + 8 * i..9 + 8 * i)?.try_into().ok()?,
            ))
        };
        Some(Saved {
            txg: u(0)?,
            scanned: u(1)?,
            found: u(2)?,
            repaired: u(3)?,
            unrecoverable: u(4)?,
            bookmark: b[41..].to_vec(),
        })
    }
}

impl<P: JobProgress> Scrubber<P> {
    fn set(&self, f: impl FnOnce(&mut ScrubProgress)) {
        self.progress.send_modify(|p| f(p.scan_mut()));
    }

    fn scan(&self) -> ScrubProgress {
        self.progress.borrow().scan().clone()
    }

    /// For a resilver: why it cannot go on (a target left the RESILVERING state).
    fn target_lost(&self) -> Option<String> {
        let Mode::Resilver { targets, .. } = &self.mode else {
            return None;
        };
        targets
            .iter()
            .find_map(|&(c, _)| match self.inner.io.vdev.state(c) {
                Some((super::config::DeviceState::Resilvering, _)) => None,
                Some((s, why)) => Some(format!(
                    "column {c} is {}{}",
                    s.name(),
                    why.map(|w| format!(": {w}")).unwrap_or_default()
                )),
                None => Some(format!("column {c} does not exist")),
            })
    }

    fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Wait while paused; false if the scrub must stop.
    async fn may_continue(&mut self) -> bool {
        loop {
            if self.closed() {
                return false;
            }
            let c = *self.control.borrow_and_update();
            match c {
                Control::Run => return true,
                Control::Cancel => {
                    self.forget().await;
                    return false;
                }
                Control::Pause => {
                    self.save().await;
                    // With a bookmark the scrub continues in a newer tree on resume, so
                    // a pause holds no space.
                    if self.track && self.bookmark.is_some() {
                        self.hold = None;
                        self.need_reanchor = true;
                    }
                    self.set(|p| {
                        p.state = ScrubState::Paused;
                        p.rate_bytes_per_sec = 0.0;
                        p.eta_secs = None;
                    });
                    tracing::info!(pool = %self.inner.id.name, job = self.mode.name(), "paused");
                    if self.control.changed().await.is_err() {
                        return false;
                    }
                    self.samples.clear();
                    self.set(|p| p.state = ScrubState::Running);
                }
            }
        }
    }

    async fn run(mut self, roots: [Blk; 2]) -> P {
        let total = self.count(&roots).await;
        self.set(|p| {
            p.total_bytes = total;
            p.state = ScrubState::Running;
        });
        let mut stack: Vec<Blk> = roots
            .iter()
            .rev()
            .filter(|b| self.skip.as_ref().is_none_or(|s| !before(b, s)))
            .cloned()
            .collect();
        let mut run_start = Instant::now();
        let mut run_bytes = 0u64;
        let mut last_save = Instant::now();
        let mut cancelled = false;
        loop {
            while let Some(b) = stack.pop() {
                let was_paused = *self.control.borrow() == Control::Pause;
                if !self.may_continue().await {
                    cancelled = true;
                    break;
                }
                if was_paused {
                    run_start = Instant::now();
                    run_bytes = 0;
                }
                if let Some(why) = self.target_lost() {
                    self.set(|p| p.push_error(format!("resilver stopped: {why}")));
                    cancelled = true;
                    break;
                }
                if self.need_reanchor {
                    // `b` belongs to the tree let go of; start from the newest root.
                    self.need_reanchor = false;
                    self.reanchor(&mut stack).await;
                    continue;
                }
                let mut bytes = self.inner.io.vdev.asize(b.sectors) * 4096;
                if b.node {
                    if self.scrub_block(b, &mut stack).await {
                        // Born before what the resilver targets lack: not counted in the total.
                        bytes = 0;
                    }
                } else {
                    // Data extents have no children: check a run of them concurrently.
                    let mut batch = vec![b];
                    // Throttled: one extent at a time, so the pacing (and moving to a newer
                    // tree) happens at a fine grain.
                    let in_flight = if self.opts.max_bytes_per_sec.is_some() {
                        1
                    } else {
                        MAX_IN_FLIGHT
                    };
                    while batch.len() < in_flight
                        && let Some(next) = stack.pop_if(|n| !n.node)
                    {
                        bytes += self.inner.io.vdev.asize(next.sectors) * 4096;
                        batch.push(next);
                    }
                    let blks = batch.clone();
                    // Spawned, so that verification (crc32c, parity) also uses several cores.
                    let tasks = batch.into_iter().map(|b| {
                        let inner = self.inner.clone();
                        let mode = self.mode.clone();
                        tokio::spawn(async move { check(&inner, b, &mode).await })
                    });
                    let last_key = blks.last().and_then(|b| b.key.clone());
                    for (c, b) in join_all(tasks).await.into_iter().zip(blks) {
                        let c =
                            c.unwrap_or_else(|e| Checked::failed(b, format!("task failed: {e}")));
                        self.absorb(c, &mut stack);
                    }
                    if self.track
                        && let Some(k) = last_key
                    {
                        let mut next = k.to_vec();
                        next.push(0);
                        self.bookmark = Some(next);
                        if self.save_soon {
                            // Resumed from a keyless position: the tree record takes over.
                            self.save_soon = false;
                            self.save().await;
                            last_save = Instant::now();
                        }
                    }
                }
                run_bytes += bytes;
                self.maybe_reanchor(&mut stack).await;
                if last_save.elapsed() >= SAVE_EVERY {
                    self.save().await;
                    last_save = Instant::now();
                }
                self.account(bytes);
                self.publish(&stack);
                match self.opts.max_bytes_per_sec {
                    Some(cap) if cap > 0 => {
                        let due =
                            run_start + Duration::from_secs_f64(run_bytes as f64 / cap as f64);
                        // In slices: a busy pool commits meanwhile, and the scrub moves on to
                        // newer trees rather than hold the space they free.
                        loop {
                            let now = Instant::now();
                            if due <= now {
                                break;
                            }
                            tokio::time::sleep((due - now).min(PACE_SLICE)).await;
                            self.maybe_reanchor(&mut stack).await;
                        }
                    }
                    _ => tokio::task::yield_now().await,
                }
            }
            if cancelled || !self.catch_up(&mut stack).await {
                break;
            }
        }
        if !self.damaged.is_empty() && self.inner.io.unlocked {
            self.attribute().await;
        }
        if !cancelled {
            self.forget().await;
            if let Mode::Resilver { targets, .. } = &self.mode
                && self.scan().unrecoverable == 0
            {
                // Before the progress says finished: waiters then see the devices online.
                super::resilver::finish(&self.inner, targets).await;
            }
        }
        let state = if cancelled {
            ScrubState::Cancelled
        } else {
            ScrubState::Finished
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        self.set(|p| {
            p.state = state;
            p.elapsed_secs = elapsed;
            p.eta_secs = None;
            if state == ScrubState::Finished {
                // A resumed scrub's saved count is approximate; finished covers it all.
                p.scanned_bytes = p.total_bytes;
                p.rate_bytes_per_sec = if elapsed > 0.0 {
                    p.scanned_bytes as f64 / elapsed
                } else {
                    0.0
                };
            }
        });
        let p = self.scan();
        tracing::info!(
            pool = %self.inner.id.name,
            job = self.mode.name(),
            txg = p.txg,
            state = ?p.state,
            scanned = p.scanned_bytes,
            found = p.errors_found,
            repaired = p.repaired,
            unrecoverable = p.unrecoverable,
            "job ended"
        );
        self.progress.borrow().clone()
    }

    /// Allocated bytes of every block under the roots (reads the nodes only).
    async fn count(&mut self, roots: &[Blk; 2]) -> u64 {
        let vdev = &self.inner.io.vdev;
        let mut total = 0u64;
        let mut stack: Vec<Blk> = roots.to_vec();
        while let Some(b) = stack.pop() {
            if self.closed() || *self.control.borrow() == Control::Cancel {
                break;
            }
            if !b.node {
                if self.mode.wants(b.birth) {
                    total += vdev.asize(b.sectors) * 4096;
                }
                continue;
            }
            if b.depth > u32::from(MAX_LEVEL) + 1 {
                continue;
            }
            // Unreadable nodes are reported by the scan proper.
            if let Ok(stored) = self.inner.io.verify_extent(b.addr, b.sectors, b.crc).await
                && let Ok((hdr, _)) = ClearHeader::decode(&stored)
            {
                if !self.mode.wants(hdr.birth) {
                    continue;
                }
                total += vdev.asize(b.sectors) * 4096;
                let mut kids: Vec<Blk> = child_blocks(&hdr, &b).collect();
                // A partial resilver with the key: extents learn their births.
                if self.mode != Mode::Scrub
                    && self.track
                    && hdr.level == 0
                    && let Some(node) = decode_node(&self.inner, &stored, b.addr)
                {
                    let births = extent_births(&node);
                    for (k, birth) in kids.iter_mut().filter(|k| !k.node).zip(births) {
                        k.birth = birth;
                    }
                }
                stack.extend(kids);
            } else {
                total += vdev.asize(b.sectors) * 4096;
            }
        }
        total
    }

    /// Check one block (a node) and absorb it; true if it was skipped as too old.
    async fn scrub_block(&mut self, b: Blk, stack: &mut Vec<Blk>) -> bool {
        let c = check(&self.inner, b, &self.mode).await;
        let old = c.old;
        self.absorb(c, stack);
        old
    }

    /// Account for one checked block; push a node's children.
    fn absorb(&mut self, c: Checked, stack: &mut Vec<Blk>) {
        let b = c.blk;
        let io = &self.inner.io;
        let out = match c.read {
            Ok(out) => out,
            Err(e) => {
                if !b.node {
                    self.damaged.push(b.addr);
                }
                if !e.starts_with("tree deeper") {
                    io.stats.damaged.record(DamagedBlock {
                        object: None,
                        offset: 0,
                        addr: b.addr,
                    });
                }
                let what = if b.node { "tree node" } else { "extent" };
                self.set(|p| {
                    p.unrecoverable += 1;
                    p.push_error(format!("{what} at pool sector {}: {e}", b.addr));
                });
                return;
            }
        };
        if let Some(Err(e)) = &c.rebuilt {
            self.set(|p| p.push_error(format!("resilver write at pool sector {}: {e}", b.addr)));
            // This block is not rebuilt: no saved position may claim it is.
            self.position_ok = false;
            if self.keyless {
                self.inner
                    .devices
                    .set_keyless_position(self.mode == Mode::Scrub, None);
            }
        }
        if c.old {
            // The targets hold this subtree already.
            return;
        }
        let bad = out.bad_columns.len() as u64;
        if bad > 0 {
            let repaired = if matches!(c.repair, Some(Ok(()))) {
                bad
            } else {
                0
            };
            self.set(|p| {
                p.errors_found += bad;
                p.repaired += repaired;
                if let Some(Err(e)) = c.repair {
                    p.push_error(format!("repair at pool sector {}: {e}", b.addr));
                }
            });
        }
        if b.node {
            match ClearHeader::decode(&out.data) {
                Ok((hdr, _)) => {
                    let mut kids: Vec<Blk> = child_blocks(&hdr, &b).collect();
                    if self.track {
                        self.key_children(&b, &out.data, &mut kids);
                    }
                    if let Some(skip) = &self.skip {
                        kids.retain(|k| !before(k, skip));
                    }
                    // Reversed: the stack pops them in key order (the bookmark needs it).
                    stack.extend(kids.into_iter().rev());
                    self.set(|p| p.nodes += 1);
                }
                Err(e) => {
                    self.set(|p| p.push_error(format!("tree node at pool sector {}: {e}", b.addr)))
                }
            }
        } else {
            self.set(|p| p.extents += 1);
        }
    }

    /// Give `kids` (a node's children, in key order) their keys, and drop those the
    /// bookmark says are done. Stops tracking if the node cannot be decoded.
    fn key_children(&mut self, b: &Blk, stored: &[u8], kids: &mut Vec<Blk>) {
        let Some(node) = decode_node(&self.inner, stored, b.addr) else {
            self.track = false;
            return;
        };
        match &node.body {
            super::node::Body::Internal(_) => {
                for (i, k) in kids.iter_mut().enumerate() {
                    k.key = match node.keys.get(i + 1) {
                        Some(hi) => Some(Arc::from(&hi[..])),
                        None => b.key.clone(),
                    };
                }
            }
            super::node::Body::Leaf(vals) => {
                let ext = node
                    .keys
                    .iter()
                    .zip(vals)
                    .filter(|(k, v)| super::keys::extent_bp(k, v).is_some())
                    .map(|(k, _)| k);
                for (kid, key) in kids.iter_mut().zip(ext) {
                    kid.key = Some(Arc::from(&key[..]));
                }
                for (kid, birth) in kids.iter_mut().zip(extent_births(&node)) {
                    kid.birth = birth;
                }
            }
        }
        let mode = &self.mode;
        kids.retain(|k| k.node || mode.wants(k.birth));
        let Some(bm) = &self.bookmark else { return };
        kids.retain(|k| match &k.key {
            // A node: keep unless every key in it (< its upper bound) is below the bookmark.
            Some(key) if k.node => key.as_ref() > bm.as_slice(),
            Some(key) => key.as_ref() >= bm.as_slice(),
            None => true,
        });
    }

    /// Resilver, once the walk is through: walk the newest tree again for blocks born after
    /// the first tree walked. They were written after the targets took writes, except
    /// records an in-flight write stored before that and linked into the tree later
    /// (copy-on-write keeps this pass to the subtrees born since). False when done.
    async fn catch_up(&mut self, stack: &mut Vec<Blk>) -> bool {
        // A locked pool writes no new blocks: there is nothing to catch up with.
        if self.caught_up || self.closed() || !self.inner.io.unlocked {
            return false;
        }
        let from = self.first_anchor + 1;
        let Mode::Resilver { min_birth, .. } = &mut self.mode else {
            return false;
        };
        self.caught_up = true;
        *min_birth = (*min_birth).max(from);
        if let Err(e) = self.inner.commit().await {
            self.set(|p| p.push_error(format!("resilver catch-up commit: {e}")));
            return false;
        }
        tracing::debug!(pool = %self.inner.id.name, from, "resilver catch-up pass");
        self.bookmark = None;
        self.reanchor(stack).await;
        self.set(|p| p.moves = p.moves.saturating_sub(1));
        true
    }

    /// [`Scrubber::reanchor`] once enough txgs committed since the last anchor.
    async fn maybe_reanchor(&mut self, stack: &mut Vec<Blk>) {
        if self.track
            && self.bookmark.is_some()
            && self.inner.durable_txg.load(Ordering::Acquire) >= self.anchor_txg + REANCHOR_TXGS
        {
            self.reanchor(stack).await;
        }
    }

    /// Move to the newest committed tree, continuing from the bookmark (the path down to
    /// it is read again), and let go of the old tree so the space it held can be reused.
    async fn reanchor(&mut self, stack: &mut Vec<Blk>) {
        let inner = self.inner.clone();
        let (uber, hold) = hold_committed(&inner).await;
        tracing::debug!(pool = %inner.id.name, from = self.anchor_txg, to = uber.txg, "scrub moves to a newer txg");
        self.hold = Some(hold);
        self.anchor_txg = uber.txg;
        // A keyless position names blocks of the old tree only.
        self.skip = None;
        self.set(|p| p.moves += 1);
        self.root = uber.root;
        stack.clear();
        stack.push(Blk {
            addr: uber.root.addr,
            sectors: uber.root.data_sectors(),
            crc: uber.root.crc,
            node: true,
            depth: 0,
            key: None,
            birth: uber.root.birth,
            path: vec![1],
        });
    }

    /// Publish the keyless position (a job on a locked pool): the next block, `stack`'s
    /// top. Label-only commits write it.
    fn publish(&self, stack: &[Blk]) {
        if !self.keyless || !self.position_ok {
            return;
        }
        let (from_txg, targets) = match &self.mode {
            Mode::Scrub => (0, 0),
            Mode::Resilver { targets, min_birth } => {
                (*min_birth, super::resilver::targets_digest(targets))
            }
        };
        let Some(next) = stack.last() else { return };
        if next.path.len() > MAX_POSITION_PATH {
            return;
        }
        let p = self.scan();
        let scrub = self.mode == Mode::Scrub;
        self.inner.devices.set_keyless_position(
            scrub,
            Some(ScanPosition {
                scrub,
                txg: self.anchor_txg,
                from_txg,
                targets,
                scanned: p.scanned_bytes,
                found: p.errors_found,
                repaired: p.repaired,
                path: next.path.clone(),
            }),
        );
    }

    /// Save the position in the open txg (committed with it), if the pool can be written;
    /// on a locked pool, write the published keyless position by a label-only commit.
    async fn save(&mut self) {
        let inner = self.inner.clone();
        if self.keyless {
            if let Err(e) = inner.commit().await {
                tracing::warn!(pool = %inner.id.name, job = self.mode.name(), error = %e, "cannot save the keyless position");
            }
            return;
        }
        if !self.track || !inner.io.repair || inner.writable().is_err() {
            return;
        }
        let bm = self.bookmark.clone().unwrap_or_default();
        let p = self.scan();
        let sv = Saved {
            txg: p.resumed_from_txg.unwrap_or(p.txg),
            scanned: p.scanned_bytes,
            found: p.errors_found,
            repaired: p.repaired,
            unrecoverable: p.unrecoverable,
            bookmark: bm,
        };
        let mut g = inner.open.lock().await;
        let o = &mut *g;
        match o
            .tree
            .insert(&inner.io, self.mode.saved_key(), sv.encode(), &mut o.frees)
            .await
        {
            Ok(_) => o.dirty = true,
            Err(e) => {
                tracing::warn!(pool = %inner.id.name, error = %e, "cannot save the scrub position")
            }
        }
    }

    /// Drop a saved position (the scrub finished or was cancelled).
    async fn forget(&mut self) {
        let inner = self.inner.clone();
        if self.keyless {
            inner
                .devices
                .set_keyless_position(self.mode == Mode::Scrub, None);
            return;
        }
        if !inner.io.unlocked || !inner.io.repair || inner.writable().is_err() {
            return;
        }
        let mut g = inner.open.lock().await;
        let o = &mut *g;
        match o
            .tree
            .remove(&inner.io, &self.mode.saved_key(), &mut o.frees)
            .await
        {
            Ok(Some(_)) => o.dirty = true,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pool = %inner.id.name, error = %e, "cannot drop the scrub position")
            }
        }
    }

    /// With the key loaded: find which object and offset each damaged extent belongs to
    /// (one pass over the scrubbed tree's records, in pages) and record that.
    async fn attribute(&mut self) {
        let inner = self.inner.clone();
        let root = super::node::Child::Disk(self.root);
        let rs = u64::from(inner.id.record_size);
        let mut start: Vec<u8> = Vec::new();
        loop {
            let page = match super::tree::scan(&inner.io, &root, &start, None, 4096).await {
                Ok(p) => p,
                Err(e) => {
                    self.set(|p| p.push_error(format!("naming damaged objects: {e}")));
                    return;
                }
            };
            let Some((last, _)) = page.last() else { return };
            let mut next = last.to_vec();
            next.push(0);
            for (k, v) in &page {
                if let Some(bp) = super::keys::extent_bp(k, v)
                    && self.damaged.contains(&bp.addr)
                    && let (Some(rec), Some(id)) = (
                        super::keys::extent_rec(k),
                        k.get(..8)
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_be_bytes),
                    )
                {
                    tracing::error!(pool = %inner.id.name, object = id, offset = rec * rs, addr = bp.addr, "scrub: unrecoverable data extent");
                    inner.io.stats.damaged.record(DamagedBlock {
                        object: Some(id),
                        offset: rec * rs,
                        addr: bp.addr,
                    });
                }
            }
            if page.len() < 4096 {
                return;
            }
            start = next;
        }
    }

    fn account(&mut self, bytes: u64) {
        let now = Instant::now();
        let elapsed = (now - self.started).as_secs_f64();
        let scanned = self.progress.borrow().scan().scanned_bytes + bytes;
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now - *t >= SAMPLE_EVERY)
        {
            self.samples.push_back((now, scanned));
        }
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now - *t > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let rate = match self.samples.front() {
            Some(&(t, s)) if now > t && scanned > s => {
                (scanned - s) as f64 / (now - t).as_secs_f64()
            }
            _ => 0.0,
        };
        self.set(|p| {
            p.scanned_bytes = scanned;
            p.elapsed_secs = elapsed;
            p.rate_bytes_per_sec = rate;
            p.eta_secs = (rate > 0.0).then(|| p.total_bytes.saturating_sub(scanned) as f64 / rate);
        });
    }
}

/// Extents scrubbed concurrently (device queue depth for the scrub).
const MAX_IN_FLIGHT: usize = 8;

/// What checking one block found.
struct Checked {
    blk: Blk,
    /// The verified read, or why it failed.
    read: Result<crate::raid::ReadOutcome, String>,
    /// The rewrite of bad columns, when there were some and the pool repairs.
    repair: Option<Result<(), String>>,
    /// Resilver: the writes of the target columns.
    rebuilt: Option<Result<u64, String>>,
    /// Resilver: a node born before what the targets lack (neither it nor anything under
    /// it is rewritten).
    old: bool,
}

impl Checked {
    fn failed(blk: Blk, e: String) -> Checked {
        Checked {
            blk,
            read: Err(e),
            repair: None,
            rebuilt: None,
            old: false,
        }
    }
}

/// Count the bad columns of a verified read and rewrite them (unless the pool only counts).
async fn heal(
    inner: &Inner,
    b: &Blk,
    out: &crate::raid::ReadOutcome,
) -> Option<Result<(), String>> {
    if out.bad_columns.is_empty() {
        return None;
    }
    let io = &inner.io;
    io.stats
        .checksum_errors
        .fetch_add(out.bad_columns.len() as u64, Ordering::Relaxed);
    tracing::warn!(
        pool = %inner.id.name,
        addr = b.addr,
        bad = ?out.bad_columns,
        heal = io.repair,
        "scan: bad columns"
    );
    if !io.repair {
        return None;
    }
    Some(io.vdev.repair(b.addr, out).await.map_err(|e| e.to_string()))
}

/// The I/O part of one block, run for several extents at once. Scrub: read every column
/// and copy, verify, rewrite bad ones. Resilver: read the block from the readable
/// devices (reconstructing), heal what is bad there, and write the target columns.
async fn check(inner: &Inner, b: Blk, mode: &Mode) -> Checked {
    let io = &inner.io;
    if b.depth > u32::from(MAX_LEVEL) + 1 {
        return Checked::failed(b, "tree deeper than allowed".into());
    }
    let crc = b.crc;
    let verify = move |d: &[u8]| crc32c::crc32c(d) == crc;
    let read = match mode {
        Mode::Scrub => io.vdev.scrub(b.addr, b.sectors, &verify).await,
        Mode::Resilver { .. } => io.vdev.read(b.addr, b.sectors, &verify).await,
    };
    let out = match read {
        Ok(out) => out,
        Err(e) => return Checked::failed(b, e.to_string()),
    };
    let repair = heal(inner, &b, &out).await;
    let mut rebuilt = None;
    let mut old = false;
    if let Mode::Resilver { targets, min_birth } = mode {
        if b.node
            && let Ok((hdr, _)) = ClearHeader::decode(&out.data)
            && hdr.birth < *min_birth
        {
            old = true;
        } else {
            let mut written = 0u64;
            let mut result = Ok(());
            for &(c, _) in targets {
                match io.vdev.rebuild(b.addr, &out.data, c).await {
                    Ok(n) => written += n,
                    Err(e) => result = Err(e.to_string()),
                }
            }
            rebuilt = Some(result.map(|()| written));
        }
    }
    Checked {
        blk: b,
        read: Ok(out),
        repair,
        rebuilt,
        old,
    }
}
