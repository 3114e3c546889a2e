//! The pool: create, import, transaction group commit, labels, keys, status, export.
//!
//! Commit protocol for txg `t` (see docs/FORMAT.md):
//! 1. freeze: under the writer lock, write the bookkeeping record into the live tree, take
//!    the root as the snapshot of `t`, open `t + 1` (writers continue in `t + 1`);
//! 2. free what `t` released; write every dirty node of the snapshot bottom-up, then the
//!    space map of `t`;
//! 3. flush every device;
//! 4. write the label with the uberblock of `t` to label pair `t % 2` of every device; flush;
//! 5. `t` is durable: fold its allocations/frees into the allocator, demote written nodes.
//!
//! A **locked** pool (encrypted, imported without the passphrase) is writable for
//! maintenance unless imported read-only: scrub and self-healing reads rewrite bad
//! columns with the verified ciphertext, resilvers run keylessly, devices are replaced.
//! It cannot write tree nodes (no key), so its commits are **label-only**: the labels of
//! the next generation keep the same uberblock and carry the membership (device GUIDs,
//! resilver marks) and the keyless resilver position (docs/FORMAT.md, section 7).

use super::alloc::Allocator;
use super::bptr::{BlockKind, BlockPtr};
use super::bytes::Reader;
use super::cache::NodeCache;
use super::config::{
    DeviceErrors, DeviceState, DeviceStatus, ImportOptions, PoolConfig, PoolHealth, PoolStatus,
    Tunables, VerifyReport,
};
use super::error::PoolError;
use super::io::{AllocCtx, BlockIo, IoStats};
use super::keys::{self, META_OID};
use super::label::{
    FLAG_TREE_POSITION_STALE, LABEL_AREA, LABEL_BYTES, LABEL_COPIES, Label, MAX_NAME,
    PoolCompression, PoolLayout, ScanPosition, Uberblock, copies_for_txg, label_offset,
};
use super::node::Child;
use super::tree::{self, Frees, Tree};
use crate::codec::Codec;
use crate::compress::Compression;
use crate::crypto::{KeyError, KeySlot, MasterKey, Passphrase, XtsCipher};
use crate::raid::{Layout, RaidError, Vdev};
use crate::store::FIRST_DYNAMIC_ID;
use ingot_hal::blockdev::{BlockDevice, WriteFlags};
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Smallest device accepted (labels + some data).
pub const MIN_DEVICE_BYTES: u64 = 4 << 20;

/// The writer side: the open txg.
#[derive(Debug)]
pub(crate) struct OpenTxg {
    pub tree: Tree,
    pub txg: u64,
    pub frees: Frees,
    pub dirty_bytes: u64,
    pub dirty: bool,
    pub counters: Counters,
}

/// Pool-wide counters kept in the bookkeeping record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub next_oid: u64,
    pub objects: u64,
    pub lbytes: u64,
    pub pbytes: u64,
}

impl Counters {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        for x in [self.next_oid, self.objects, self.lbytes, self.pbytes] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }
    fn decode(b: &[u8]) -> Result<Self, PoolError> {
        let mut r = Reader::new(b, "pool record");
        Ok(Counters {
            next_oid: r.u64()?,
            objects: r.u64()?,
            lbytes: r.u64()?,
            pbytes: r.u64()?,
        })
    }
}

/// Committer state: the last durable uberblock and the key slot to write.
#[derive(Debug)]
pub(crate) struct CommitState {
    pub uber: Uberblock,
    pub key_slot: Vec<u8>,
    pub force: bool,
    /// The last txg whose commit freed data extents: while frees of it (or earlier) are
    /// still deferred, a commit runs even with nothing dirty, so freed space is released
    /// after the freeing txg and the next are durable instead of waiting for other writes.
    pub release_through: u64,
    /// Generation of the last label written (or found at import).
    pub generation: u64,
    /// The keyless resilver position the last labels carry.
    pub scan_pos: Option<ScanPosition>,
}

/// What a label write carries besides the uberblock: its generation, flags and the
/// keyless resilver position.
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelMeta {
    pub generation: u64,
    pub flags: u32,
    pub scan_pos: Option<ScanPosition>,
}

/// Identity and layout of the imported pool.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub pool_guid: u64,
    pub layout: PoolLayout,
    pub compression: PoolCompression,
    pub encrypted: bool,
    pub record_size: u32,
    pub data_offset: u64,
    pub data_len: u64,
    pub created: u64,
}

/// Who is in each column now, as the labels record it (changes on replace and resilver).
#[derive(Debug, Clone)]
pub(crate) struct Members {
    /// Device GUID of every column.
    pub guids: Vec<u64>,
    /// Newest label txg written to (or, at import, found on) each column's device.
    pub label_txg: Vec<u64>,
    /// Per column: 0, or the txg from which the device lacks blocks (being resilvered).
    pub resilver_from: Vec<u64>,
}

/// Shared pool state.
#[derive(Debug)]
pub(crate) struct Inner {
    pub id: Identity,
    pub members: RwLock<Members>,
    pub io: BlockIo,
    pub alloc: Mutex<Allocator>,
    pub open: tokio::sync::Mutex<OpenTxg>,
    /// The root readers see and the open txg it belongs to.
    pub readable: RwLock<(Child, u64)>,
    /// Active readers, by the open txg of the root they read.
    pub readers: Mutex<std::collections::BTreeMap<u64, usize>>,
    pub commit: tokio::sync::Mutex<CommitState>,
    pub next_oid: AtomicU64,
    pub objects: AtomicU64,
    pub lbytes: AtomicU64,
    pub pbytes: AtomicU64,
    pub durable_txg: AtomicU64,
    pub read_only: bool,
    pub locked: bool,
    /// Set when the imported labels say a locked pool wrote them: the tree's
    /// `resilver-position` record may be out of date and is not resumed from (an unlocked
    /// writable import removes it in the first txg it commits).
    pub tree_position_stale: AtomicBool,
    pub closed: AtomicBool,
    pub suspended: Mutex<Option<String>>,
    pub tunables: Tunables,
    pub kick: tokio::sync::Notify,
    /// Compression of new writes, as the labels record it (changeable while running).
    pub compression: Mutex<PoolCompression>,
    /// Commit interval of the background committer, in milliseconds (changeable).
    pub txg_interval_ms: AtomicU64,
    /// Hot spares, the current/last resilver, and the device monitor task.
    pub devices: super::devices::DeviceCtl,
    /// Dirty records and the decoded-record cache (see `datapath.rs`).
    pub datapath: super::datapath::DataPath,
    /// Changes counted for the idle commit (`idle.rs`).
    pub idle: super::idle::IdleClock,
    /// This very `Inner`, for tasks the data path spawns (record sealing on the runtime's
    /// worker threads needs an owned handle).
    pub me: std::sync::Weak<Inner>,
}

impl Inner {
    /// A batch changed something (the idle commit's clock, `idle.rs`).
    pub(crate) fn note_change(&self) {
        self.idle.note_change();
    }

    /// Bytes of file data that `sectors` of the vdev's raw address space hold: parity and
    /// padding taken out at the rate of a full record (ZFS's deflate ratio), so capacity,
    /// used and available speak of data, as `df` users expect.
    pub(crate) fn usable_bytes(&self, sectors: u64) -> u64 {
        let d = u64::from(self.id.record_size / 4096).max(1);
        let a = self.io.vdev.asize(d).max(d);
        u64::try_from(u128::from(sectors) * u128::from(d) / u128::from(a)).unwrap_or(u64::MAX)
            * 4096
    }
}

/// An imported (or freshly created) pool. Implements [`crate::store::ObjectStore`].
#[derive(Debug)]
pub struct Pool {
    pub(crate) inner: Arc<Inner>,
    committer: Option<tokio::task::JoinHandle<()>>,
    /// The idle-record sealer (`idle.rs`).
    sealer: Option<tokio::task::JoinHandle<()>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn random_u64() -> Result<u64, PoolError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| PoolError::Key(format!("OS random source: {e}")))?;
    Ok(u64::from_le_bytes(b).max(1))
}

fn codec_layout(l: PoolLayout) -> Layout {
    match l {
        PoolLayout::Stripe => Layout::Stripe,
        PoolLayout::Mirror => Layout::Mirror,
        PoolLayout::Raid10 => Layout::Raid10,
        PoolLayout::Raidz1 => Layout::Raidz1,
        PoolLayout::Raidz2 => Layout::Raidz2,
    }
}

fn codec_compression(c: PoolCompression) -> Compression {
    match c {
        PoolCompression::Off => Compression::Off,
        PoolCompression::Zstd { level } => Compression::Zstd {
            level: i32::from(level),
        },
        PoolCompression::Default => Compression::Zstd { level: 1 },
    }
}

fn key_err(pool: &str, e: KeyError) -> PoolError {
    match e {
        KeyError::WrongPassphrase => PoolError::WrongPassphrase {
            pool: pool.to_string(),
        },
        other => PoolError::Key(other.to_string()),
    }
}

async fn read_label_copies(dev: &dyn BlockDevice) -> Vec<Result<Label, PoolError>> {
    let cap = dev.geometry().capacity();
    let mut out = Vec::with_capacity(LABEL_COPIES);
    for i in 0..LABEL_COPIES {
        if cap < MIN_DEVICE_BYTES {
            out.push(Err(PoolError::NotAPool {
                detail: format!("{}: device too small", dev.identity().location),
            }));
            continue;
        }
        let mut buf = vec![0u8; LABEL_BYTES as usize];
        let r = match dev.read(label_offset(i, cap), &mut buf).await {
            Ok(()) => Label::decode(&buf),
            Err(e) => Err(PoolError::Io(e.to_string())),
        };
        out.push(r);
    }
    out
}

impl Pool {
    /// Read every label copy of a device (diagnostics): one result per copy.
    pub async fn read_labels(device: &dyn BlockDevice) -> Vec<Result<Label, PoolError>> {
        read_label_copies(device).await
    }

    /// Create a pool on `devices` (everything on them is overwritten).
    pub async fn create(
        devices: Vec<Arc<dyn BlockDevice>>,
        cfg: PoolConfig,
    ) -> Result<Pool, PoolError> {
        if cfg.name.is_empty() || cfg.name.len() > MAX_NAME {
            return Err(PoolError::Config(format!(
                "pool name must be 1..={MAX_NAME} bytes"
            )));
        }
        if !cfg.record_size.is_power_of_two() || !(4096..=1 << 20).contains(&cfg.record_size) {
            return Err(PoolError::Config(format!(
                "record size {} must be a power of two in 4 KiB..=1 MiB",
                cfg.record_size
            )));
        }
        if devices.is_empty() || devices.len() > super::label::MAX_DEVICES {
            return Err(PoolError::Config(format!(
                "{} devices given; 1..={} supported",
                devices.len(),
                super::label::MAX_DEVICES
            )));
        }
        let mut min_cap = u64::MAX;
        for d in &devices {
            let g = d.geometry();
            if g.capacity() < MIN_DEVICE_BYTES || 4096 % g.block_size != 0 {
                return Err(PoolError::BadDevice {
                    device: d.identity().location,
                    detail: format!(
                        "{} bytes with {}-byte blocks (need >= {MIN_DEVICE_BYTES} bytes and blocks dividing 4096)",
                        g.capacity(),
                        g.block_size
                    ),
                });
            }
            min_cap = min_cap.min(g.capacity() / 4096 * 4096);
        }
        let data_offset = LABEL_AREA;
        let data_len = min_cap - 2 * LABEL_AREA;
        let (key_slot, cipher) = match &cfg.passphrase {
            Some(p) => {
                let master = MasterKey::generate().map_err(|e| key_err(&cfg.name, e))?;
                let slot = KeySlot::create(&master, &Passphrase::new(p.as_bytes()), cfg.kdf)
                    .map_err(|e| key_err(&cfg.name, e))?;
                (slot.encode().to_vec(), Some(XtsCipher::new(&master)))
            }
            None => (Vec::new(), None),
        };
        let mut device_guids = Vec::with_capacity(devices.len());
        for _ in &devices {
            device_guids.push(random_u64()?);
        }
        let members = Members {
            label_txg: vec![1; devices.len()],
            resilver_from: vec![0; devices.len()],
            guids: device_guids,
        };
        let id = Identity {
            name: cfg.name.clone(),
            pool_guid: random_u64()?,
            layout: cfg.layout,
            compression: cfg.compression,
            encrypted: cfg.passphrase.is_some(),
            record_size: cfg.record_size,
            data_offset,
            data_len,
            created: now(),
        };
        let devs: Vec<Option<Arc<dyn BlockDevice>>> = devices.into_iter().map(Some).collect();
        let vdev = Vdev::new(
            codec_layout(cfg.layout),
            devs.clone(),
            data_offset,
            data_len,
        )
        .map_err(|e| PoolError::Config(e.to_string()))?;
        if vdev.capacity_sectors() < 256 {
            return Err(PoolError::Config(
                "devices too small for this layout".into(),
            ));
        }
        let capacity = vdev.capacity_sectors();
        let io = BlockIo {
            vdev,
            codec: Codec::new(codec_compression(cfg.compression), cipher),
            cache: NodeCache::new(cfg.tunables.cache_bytes),
            unlocked: true,
            repair: true,
            stats: IoStats::default(),
        };
        // Txg 1: an empty tree with the bookkeeping record, and its space map.
        let alloc = Mutex::new(Allocator::new(capacity));
        let counters = Counters {
            next_oid: FIRST_DYNAMIC_ID,
            ..Counters::default()
        };
        let mut tree = Tree::empty();
        let mut frees = Frees::default();
        tree.insert(&io, keys::inode(META_OID), counters.encode(), &mut frees)
            .await?;
        let mut ctx = AllocCtx::new(&alloc, 1, true);
        let (root, _) = tree::write_tree(&io, &tree.root, &mut ctx).await?;
        let sm = alloc.lock().space_map(1)?;
        let space_map = io
            .write_data(&sm.encode(), BlockKind::SpaceMap, &mut ctx)
            .await?;
        io.flush().await?;
        let uber = Uberblock {
            txg: 1,
            timestamp: now(),
            root,
            space_map,
        };
        // Txg 1 goes to all four copies (overwriting any labels of a previous pool).
        let meta = LabelMeta {
            generation: 1,
            ..LabelMeta::default()
        };
        for (i, d) in devs.iter().enumerate() {
            let Some(d) = d else { continue };
            let label = make_label(&id, id.compression, &members, i, &uber, &key_slot, &meta);
            let bytes = label.encode()?;
            let cap = d.geometry().capacity();
            for copy in 0..LABEL_COPIES {
                d.write(label_offset(copy, cap), &bytes, WriteFlags::NONE)
                    .await
                    .map_err(|e| PoolError::Io(e.to_string()))?;
            }
        }
        io.flush().await?;
        alloc.lock().finish(1)?;
        tree::demote(&io, &mut tree.root);
        tracing::info!(pool = %id.name, guid = format_args!("{:#018x}", id.pool_guid), devices = devs.len(), "pool created");
        Ok(Pool::start(
            id,
            members,
            io,
            alloc.into_inner(),
            tree,
            uber,
            key_slot,
            counters,
            false,
            false,
            meta,
            cfg.tunables,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        id: Identity,
        members: Members,
        io: BlockIo,
        alloc: Allocator,
        tree: Tree,
        uber: Uberblock,
        key_slot: Vec<u8>,
        counters: Counters,
        read_only: bool,
        locked: bool,
        meta: LabelMeta,
        tunables: Tunables,
    ) -> Pool {
        let id_compression = id.compression;
        let txg_interval_ms = u64::try_from(tunables.txg_interval.as_millis()).unwrap_or(u64::MAX);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            id,
            members: RwLock::new(members),
            io,
            alloc: Mutex::new(alloc),
            readable: RwLock::new((tree.root.clone(), uber.txg + 1)),
            readers: Mutex::new(std::collections::BTreeMap::new()),
            open: tokio::sync::Mutex::new(OpenTxg {
                tree,
                txg: uber.txg + 1,
                frees: Frees::default(),
                dirty_bytes: 0,
                dirty: false,
                counters,
            }),
            commit: tokio::sync::Mutex::new(CommitState {
                uber,
                key_slot,
                force: false,
                // Frees deferred in the imported space map are released by the next commit.
                release_through: uber.txg,
                generation: meta.generation,
                scan_pos: meta.scan_pos.clone(),
            }),
            next_oid: AtomicU64::new(counters.next_oid),
            objects: AtomicU64::new(counters.objects),
            lbytes: AtomicU64::new(counters.lbytes),
            pbytes: AtomicU64::new(counters.pbytes),
            durable_txg: AtomicU64::new(uber.txg),
            read_only,
            locked,
            tree_position_stale: AtomicBool::new(meta.flags & FLAG_TREE_POSITION_STALE != 0),
            closed: AtomicBool::new(false),
            suspended: Mutex::new(None),
            datapath: super::datapath::DataPath::new(&tunables),
            tunables,
            kick: tokio::sync::Notify::new(),
            compression: Mutex::new(id_compression),
            txg_interval_ms: AtomicU64::new(txg_interval_ms),
            devices: super::devices::DeviceCtl::default(),
            idle: super::idle::IdleClock::default(),
        });
        // A keyless resilver position of this very tree is resumed by the next resilver.
        if let Some(p) = meta.scan_pos.filter(|p| p.txg == uber.txg) {
            inner.devices.set_keyless_position(p.scrub, Some(p));
        }
        if !read_only {
            super::devices::start_monitor(&inner);
        }
        let committer = if read_only {
            None
        } else {
            let weak = Arc::downgrade(&inner);
            // Holds a strong reference only while waiting; `Pool::drop` aborts the task.
            Some(tokio::spawn(async move {
                loop {
                    let Some(i) = weak.upgrade() else { return };
                    if i.closed.load(Ordering::Acquire) {
                        return;
                    }
                    let interval =
                        std::time::Duration::from_millis(i.txg_interval_ms.load(Ordering::Relaxed));
                    // The timer, a kick (dirty limit, tight space, interval change), or
                    // changes that stopped for `idle_commit` (`idle.rs`).
                    let _ = tokio::time::timeout(interval, async {
                        tokio::select! {
                            _ = i.kick.notified() => {}
                            _ = i.idle.wait_quiet(i.tunables.idle_commit) => {}
                        }
                    })
                    .await;
                    if i.closed.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = i.commit().await {
                        tracing::error!(pool = %i.id.name, error = %e, "background txg commit failed");
                    }
                }
            }))
        };
        let sealer = super::idle::start_sealer(&inner);
        Pool {
            inner,
            committer,
            sealer,
        }
    }

    /// Import a pool from its devices (any order; missing devices allowed up to the
    /// layout's redundancy).
    pub async fn import(
        devices: Vec<Arc<dyn BlockDevice>>,
        opts: ImportOptions,
    ) -> Result<Pool, PoolError> {
        if devices.is_empty() {
            return Err(PoolError::NotAPool {
                detail: "no devices given".into(),
            });
        }
        // 1. Every label copy of every device.
        let mut per_dev: Vec<(Arc<dyn BlockDevice>, Vec<Label>)> = Vec::new();
        for d in devices {
            let labels: Vec<Label> = read_label_copies(d.as_ref())
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            if labels.is_empty() {
                return Err(PoolError::NotAPool {
                    detail: format!("{}: no valid Ingot label", d.identity().location),
                });
            }
            per_dev.push((d, labels));
        }
        // 2. The pool: the one most of the given devices belong to (by their newest
        //    label), ties to the newest txg; its newest label gives the configuration.
        let mut votes: std::collections::HashMap<u64, (usize, u64)> =
            std::collections::HashMap::new();
        for (_, ls) in &per_dev {
            if let Some(best) = ls.iter().max_by_key(|l| l.order()) {
                let v = votes.entry(best.pool_guid).or_insert((0, 0));
                v.0 += 1;
                v.1 = v.1.max(best.uber.txg);
            }
        }
        let chosen_guid = votes
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(g, _)| *g)
            .ok_or_else(|| PoolError::NotAPool {
                detail: "no labels".into(),
            })?;
        let newest = per_dev
            .iter()
            .flat_map(|(_, ls)| ls.iter())
            .filter(|l| l.pool_guid == chosen_guid)
            .max_by_key(|l| l.order())
            .cloned()
            .ok_or_else(|| PoolError::NotAPool {
                detail: "no labels".into(),
            })?;
        let pool_guid = newest.pool_guid;
        let n = newest.device_guids.len();
        let mut slots: Vec<Option<Arc<dyn BlockDevice>>> = vec![None; n];
        let mut states = vec![(DeviceState::Missing, 0u64); n];
        let mut found_guids = vec![0u64; n];
        let mut ubers: Vec<(Uberblock, Label)> = Vec::new();
        for (d, labels) in &per_dev {
            let loc = d.identity().location;
            let mine: Vec<&Label> = labels.iter().filter(|l| l.pool_guid == pool_guid).collect();
            let Some(best) = mine.iter().max_by_key(|l| l.order()) else {
                return Err(PoolError::ForeignDevice {
                    device: loc,
                    found_pool: labels[0].pool_guid,
                    expected_pool: pool_guid,
                });
            };
            let Some(idx) = newest
                .device_guids
                .iter()
                .position(|g| *g == best.device_guid)
            else {
                return Err(PoolError::DeviceConflict {
                    device: loc,
                    detail: format!(
                        "device GUID {:#018x} is not a member of pool {pool_guid:#018x} (replaced or removed?)",
                        best.device_guid
                    ),
                });
            };
            if slots[idx].is_some() {
                return Err(PoolError::DeviceConflict {
                    device: loc,
                    detail: format!("a second device claims column {idx} (duplicate or clone)"),
                });
            }
            slots[idx] = Some(d.clone());
            states[idx] = (DeviceState::Online, best.uber.txg);
            found_guids[idx] = best.device_guid;
            for l in mine {
                ubers.push((l.uber, (*l).clone()));
            }
        }
        let present = slots.iter().filter(|s| s.is_some()).count();
        let vdev = Vdev::new(
            codec_layout(newest.layout),
            slots.clone(),
            newest.data_offset,
            newest.data_len,
        )
        .map_err(|e| match e {
            RaidError::TooManyMissing { tolerated, .. } => PoolError::TooFewDevices {
                present,
                needed: n - tolerated.min(n),
                detail: format!(
                    "missing {}",
                    (0..n)
                        .filter(|i| slots[*i].is_none())
                        .map(|i| format!("column {i} ({:#018x})", newest.device_guids[i]))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            other => PoolError::Config(other.to_string()),
        })?;
        let needed = n - vdev.redundancy().min(n - 1);
        if present < needed {
            let missing: Vec<String> = (0..n)
                .filter(|i| slots[*i].is_none())
                .map(|i| format!("column {i} ({:#018x})", newest.device_guids[i]))
                .collect();
            return Err(PoolError::TooFewDevices {
                present,
                needed,
                detail: format!("missing {}", missing.join(", ")),
            });
        }
        // 3. Candidate txgs, newest first (by txg, then label generation: label-only commits
        //    of a locked pool keep the uberblock); take the first whose root and space map
        //    verify.
        ubers.sort_by_key(|u| std::cmp::Reverse(u.1.order()));
        ubers.dedup_by(|a, b| a.0 == b.0);
        let probe = BlockIo {
            vdev,
            codec: Codec::new(codec_compression(newest.compression), None),
            cache: NodeCache::new(opts.tunables.cache_bytes),
            unlocked: false,
            repair: false,
            stats: IoStats::default(),
        };
        let mut chosen: Option<(Uberblock, Label)> = None;
        let mut tried = Vec::new();
        for (u, l) in &ubers {
            let root_ok = probe.read_node_raw(&u.root).await;
            let sm_ok = probe
                .verify_extent(
                    u.space_map.addr,
                    u.space_map.data_sectors(),
                    u.space_map.crc,
                )
                .await;
            match (root_ok, sm_ok) {
                (Ok(_), Ok(_)) => {
                    chosen = Some((*u, l.clone()));
                    break;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(txg = u.txg, error = %e, "txg does not verify; trying an older one");
                    tried.push(format!("txg {}: {e}", u.txg));
                }
            }
        }
        let Some((uber, label)) = chosen else {
            return Err(PoolError::NoValidTxg {
                detail: tried.join("; "),
            });
        };
        let BlockIo { vdev, .. } = probe;
        // Device states: a device that missed commits, or whose resilver was interrupted,
        // is resilvered (for the txgs it lacks) when the pool can be written; otherwise it
        // stays STALE and reads repair it through redundancy.
        // A locked pool is writable too (keylessly: repairs, resilvers, label-only commits).
        let writable = !opts.read_only;
        let mut resilver_from = label.resilver_from.clone();
        resilver_from.resize(n, 0);
        for (k, st) in states.iter().enumerate() {
            if st.0 != DeviceState::Online || found_guids[k] != label.device_guids[k] {
                continue;
            }
            let stale = st.1 + 1 < uber.txg;
            if !stale && resilver_from[k] == 0 {
                continue;
            }
            if writable {
                let from = match resilver_from[k] {
                    0 => st.1 + 1,
                    r => r.min(st.1 + 1),
                };
                resilver_from[k] = from;
                vdev.set_state(
                    k,
                    DeviceState::Resilvering,
                    None,
                    &format!("missed txgs from {from} (label txg {})", st.1),
                );
            } else {
                vdev.set_state(
                    k,
                    DeviceState::Stale,
                    None,
                    &format!("label txg {} older than pool txg {}", st.1, uber.txg),
                );
                tracing::warn!(
                    column = k,
                    label_txg = st.1,
                    pool_txg = uber.txg,
                    "device is stale (missed commits); reads repair it through redundancy"
                );
            }
        }
        // 4. Keys.
        let (cipher, locked) = if label.encrypted {
            match &opts.passphrase {
                Some(p) => {
                    let slot =
                        KeySlot::decode(&label.key_slot).map_err(|e| key_err(&label.name, e))?;
                    let master = slot
                        .unwrap(&Passphrase::new(p.as_bytes()))
                        .map_err(|e| key_err(&label.name, e))?;
                    (Some(XtsCipher::new(&master)), false)
                }
                None => (None, true),
            }
        } else {
            (None, false)
        };
        let id = Identity {
            name: label.name.clone(),
            pool_guid,
            layout: label.layout,
            compression: label.compression,
            encrypted: label.encrypted,
            record_size: label.record_size,
            data_offset: label.data_offset,
            data_len: label.data_len,
            created: label.created,
        };
        let members = Members {
            guids: label.device_guids.clone(),
            label_txg: states.iter().map(|s| s.1).collect(),
            resilver_from,
        };
        let io = BlockIo {
            vdev,
            codec: Codec::new(codec_compression(label.compression), cipher),
            cache: NodeCache::new(opts.tunables.cache_bytes),
            unlocked: !locked,
            repair: !opts.read_only,
            stats: IoStats::default(),
        };
        let capacity = io.vdev.capacity_sectors();
        let tree = Tree {
            root: Child::Disk(uber.root),
        };
        let (alloc, counters) = if locked {
            (Allocator::new(capacity), Counters::default())
        } else {
            let sm_bytes = io.read_data(&uber.space_map).await?;
            let sm = super::alloc::SpaceMap::decode(&sm_bytes)?;
            if sm.txg != uber.txg {
                return Err(PoolError::Corrupt {
                    what: "space map",
                    detail: format!("belongs to txg {} not {}", sm.txg, uber.txg),
                });
            }
            let alloc = Allocator::from_space_map(
                capacity,
                &sm,
                (uber.space_map.addr, u64::from(uber.space_map.asize)),
            )?;
            let rec = tree::get(&io, &tree.root, &keys::inode(META_OID))
                .await?
                .ok_or_else(|| PoolError::Corrupt {
                    what: "tree",
                    detail: "pool bookkeeping record missing".into(),
                })?;
            (alloc, Counters::decode(&rec)?)
        };
        let read_only = opts.read_only;
        let meta = LabelMeta {
            generation: label.generation,
            flags: label.flags,
            scan_pos: label.scan_position.clone(),
        };
        let stale_record = !read_only && !locked && label.flags & FLAG_TREE_POSITION_STALE != 0;
        tracing::info!(pool = %id.name, txg = uber.txg, generation = label.generation, present, locked, read_only, "pool imported");
        let pool = Pool::start(
            id,
            members,
            io,
            alloc,
            tree,
            uber,
            label.key_slot.clone(),
            counters,
            read_only,
            locked,
            meta,
            opts.tunables,
        );
        if stale_record {
            // A locked pool resilvered since the tree's resilver record was written: drop
            // it in the first txg this import commits (the labels of that txg clear the flag).
            pool.inner.drop_tree_position().await?;
        }
        if !read_only {
            super::devices::resume_resilver(&pool.inner).await;
        }
        Ok(pool)
    }

    /// Status report.
    pub fn status(&self) -> PoolStatus {
        let i = &self.inner;
        let m = i.members.read().clone();
        let a = i.alloc.lock();
        let devices: Vec<DeviceStatus> = (0..m.guids.len())
            .map(|k| {
                let (state, fault_reason) =
                    i.io.vdev.state(k).unwrap_or((DeviceState::Missing, None));
                DeviceStatus {
                    index: k as u32,
                    guid: format!("{:016x}", m.guids[k]),
                    identity: i.io.vdev.device(k).map(|d| d.identity()),
                    state,
                    fault_reason,
                    label_txg: m.label_txg[k],
                    errors: i
                        .io
                        .vdev
                        .error_counts()
                        .get(k)
                        .map(|c| DeviceErrors {
                            read: c.read,
                            write: c.write,
                            checksum: c.checksum,
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        let suspended = i.suspension();
        let health = if suspended.is_some() {
            PoolHealth::Suspended
        } else if devices.iter().all(|d| d.state == DeviceState::Online) {
            PoolHealth::Online
        } else {
            PoolHealth::Degraded
        };
        let l = i.lbytes.load(Ordering::Relaxed);
        let p = i.pbytes.load(Ordering::Relaxed);
        PoolStatus {
            name: i.id.name.clone(),
            guid: format!("{:016x}", i.id.pool_guid),
            layout: i.id.layout,
            compression: *i.compression.lock(),
            record_size: i.id.record_size,
            devices,
            capacity_bytes: i.usable_bytes(a.capacity()),
            used_bytes: if i.locked {
                0
            } else {
                i.usable_bytes(a.used())
            },
            available_bytes: if i.locked {
                0
            } else {
                i.usable_bytes(a.available())
            },
            compression_ratio: if p == 0 { 1.0 } else { l as f64 / p as f64 },
            txg: i.durable_txg.load(Ordering::Acquire),
            encrypted: i.id.encrypted,
            locked: i.locked,
            read_only: i.read_only,
            suspended,
            checksum_errors: i.io.stats.checksum_errors.load(Ordering::Relaxed),
            damaged: i.io.stats.damaged.list(),
            damaged_note: i.locked.then(|| {
                "pool is locked: damaged blocks are reported by pool address only (naming their objects needs the key; unlock and scrub)".to_string()
            }),
            health,
            resilver: i.devices.resilver_progress(),
            spares: i.devices.spare_status(),
            datapath: i.datapath.stats(),
        }
    }

    /// Commit the open txg now (if it has changes) and wait until it is durable.
    pub async fn sync_now(&self) -> Result<u64, PoolError> {
        self.inner.commit().await
    }

    /// Change the compression of new writes (extents already stored keep theirs: each
    /// records its own kind). Recorded in the labels before this returns.
    pub async fn set_compression(&self, compression: PoolCompression) -> Result<(), PoolError> {
        let i = &self.inner;
        i.writable()?;
        if let PoolCompression::Zstd { level } = compression
            && !(1..=19).contains(&level)
        {
            return Err(PoolError::Config(format!(
                "zstd level {level} is out of range 1..=19"
            )));
        }
        i.io.codec.set_compression(codec_compression(compression));
        *i.compression.lock() = compression;
        i.commit.lock().await.force = true;
        i.commit().await?;
        tracing::info!(pool = %i.id.name, compression = ?compression, "compression changed");
        Ok(())
    }

    /// Change the interval of timer commits (from the next one on).
    pub fn set_txg_interval(&self, interval: std::time::Duration) -> Result<(), PoolError> {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        if !(10..=3_600_000).contains(&ms) {
            return Err(PoolError::Config(format!(
                "txg interval of {ms} ms is out of range 10 ms..=1 h"
            )));
        }
        self.inner.txg_interval_ms.store(ms, Ordering::Relaxed);
        self.inner.kick.notify_one();
        tracing::info!(pool = %self.inner.id.name, ms, "txg interval changed");
        Ok(())
    }

    /// Device writes that went out merged with others into one command by the vdev's
    /// write queues (`raid/vdev/queue.rs`), since import.
    pub fn merged_writes(&self) -> u64 {
        self.inner.io.vdev.merged_writes()
    }

    /// The interval of timer commits.
    pub fn txg_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inner.txg_interval_ms.load(Ordering::Relaxed))
    }

    /// Re-wrap the master key under a new passphrase (no data is re-encrypted). The new
    /// slot is written to both label pairs (two commits) before this returns.
    pub async fn change_passphrase(&self, old: &str, new: &str) -> Result<(), PoolError> {
        let i = &self.inner;
        if !i.id.encrypted {
            return Err(PoolError::Config(format!(
                "pool {} is not encrypted",
                i.id.name
            )));
        }
        i.writable()?;
        {
            let mut cs = i.commit.lock().await;
            let slot = KeySlot::decode(&cs.key_slot).map_err(|e| key_err(&i.id.name, e))?;
            let params = slot.params();
            let newslot = slot
                .change_passphrase(
                    &Passphrase::new(old.as_bytes()),
                    &Passphrase::new(new.as_bytes()),
                    params,
                )
                .map_err(|e| key_err(&i.id.name, e))?;
            cs.key_slot = newslot.encode().to_vec();
            cs.force = true;
        }
        i.commit().await?;
        i.commit.lock().await.force = true;
        i.commit().await?;
        tracing::info!(pool = %i.id.name, "passphrase changed");
        Ok(())
    }

    /// Final commit, then close: the pool refuses further operations.
    pub async fn export(mut self) -> Result<(), PoolError> {
        let r = if self.inner.read_only {
            Ok(0)
        } else if self.inner.locked {
            // Persist membership and the keyless position (label-only). Closed first, so
            // no job's label-only commit can follow this one.
            self.inner.closed.store(true, Ordering::Release);
            self.inner.write_locked_labels(true, true).await
        } else {
            self.inner.commit().await
        };
        self.inner.closed.store(true, Ordering::Release);
        self.inner.devices.shutdown();
        self.inner.kick.notify_one();
        for h in [self.committer.take(), self.sealer.take()]
            .into_iter()
            .flatten()
        {
            h.abort();
        }
        tracing::info!(pool = %self.inner.id.name, "pool exported");
        r.map(|_| ())
    }

    /// Walk the durable tree without keys: verify every node's and every data extent's
    /// stored bytes against the checksums in their parents (reads reconstruct and, unless
    /// read-only, heal bad copies on the way).
    pub async fn verify_all(&self) -> Result<VerifyReport, PoolError> {
        self.walk(false).await
    }

    /// Scrub: [`Pool::verify_all`] reading every column and copy of every block (parity
    /// included), rewriting bad ones from redundancy unless the pool is read-only. Needs no
    /// keys. `VerifyReport::bad_columns` counts what was found.
    pub async fn scrub(&self) -> Result<VerifyReport, PoolError> {
        self.walk(true).await
    }

    async fn check_extent(
        &self,
        scrub: bool,
        addr: u64,
        sectors: u64,
        crc: u32,
    ) -> Result<Vec<u8>, PoolError> {
        if scrub {
            self.inner.io.scrub_extent(addr, sectors, crc).await
        } else {
            self.inner.io.verify_extent(addr, sectors, crc).await
        }
    }

    async fn walk(&self, scrub: bool) -> Result<VerifyReport, PoolError> {
        let i = &self.inner;
        let cs = i.commit.lock().await;
        let bad_before = i.io.stats.checksum_errors.load(Ordering::Relaxed);
        let mut rep = VerifyReport {
            txg: cs.uber.txg,
            ..VerifyReport::default()
        };
        let sm = cs.uber.space_map;
        match self
            .check_extent(scrub, sm.addr, sm.data_sectors(), sm.crc)
            .await
        {
            Ok(b) => rep.bytes += b.len() as u64,
            Err(e) => rep.errors.push(format!("space map: {e}")),
        }
        let mut stack = vec![(cs.uber.root, 0u32)];
        while let Some((bp, depth)) = stack.pop() {
            if depth > u32::from(super::node::MAX_LEVEL) + 1 {
                rep.errors
                    .push(format!("tree deeper than allowed at sector {}", bp.addr));
                continue;
            }
            match i.io.read_node_checked(&bp, scrub).await {
                Ok((stored, hdr, _)) => {
                    rep.nodes += 1;
                    rep.bytes += stored.len() as u64;
                    for p in hdr.ptrs {
                        if p.kind == BlockKind::Node {
                            stack.push((
                                BlockPtr {
                                    addr: p.addr,
                                    birth: 0,
                                    lsize: 0,
                                    psize: p.sectors.saturating_mul(4096),
                                    asize: p.sectors,
                                    crc: p.crc,
                                    comp: 0,
                                    kind: BlockKind::Node,
                                },
                                depth + 1,
                            ));
                            continue;
                        }
                        match self
                            .check_extent(scrub, p.addr, u64::from(p.sectors), p.crc)
                            .await
                        {
                            Ok(b) => {
                                rep.extents += 1;
                                rep.bytes += b.len() as u64;
                            }
                            Err(e) => rep.errors.push(format!("extent at sector {}: {e}", p.addr)),
                        }
                    }
                }
                Err(e) => rep.errors.push(format!("node at sector {}: {e}", bp.addr)),
            }
        }
        rep.bad_columns = i.io.stats.checksum_errors.load(Ordering::Relaxed) - bad_before;
        Ok(rep)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.devices.shutdown();
        for h in [self.committer.take(), self.sealer.take()]
            .into_iter()
            .flatten()
        {
            h.abort();
        }
    }
}

fn make_label(
    id: &Identity,
    compression: PoolCompression,
    members: &Members,
    index: usize,
    uber: &Uberblock,
    key_slot: &[u8],
    meta: &LabelMeta,
) -> Label {
    Label {
        pool_guid: id.pool_guid,
        device_guid: members.guids[index],
        device_index: index as u32,
        device_guids: members.guids.clone(),
        layout: id.layout,
        compression,
        encrypted: id.encrypted,
        record_size: id.record_size,
        data_offset: id.data_offset,
        data_len: id.data_len,
        name: id.name.clone(),
        created: id.created,
        uber: *uber,
        key_slot: key_slot.to_vec(),
        resilver_from: members.resilver_from.clone(),
        generation: meta.generation,
        flags: meta.flags,
        scan_position: meta.scan_pos.clone(),
    }
}

impl Inner {
    /// Fail unless the pool accepts writes.
    pub(crate) fn writable(&self) -> Result<(), PoolError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PoolError::ReadOnly("pool is exported".into()));
        }
        if self.locked {
            return Err(PoolError::Locked {
                pool: self.id.name.clone(),
            });
        }
        if self.read_only {
            return Err(PoolError::ReadOnly("imported read-only".into()));
        }
        if let Some(s) = self.suspension() {
            return Err(PoolError::ReadOnly(format!("suspended: {s}")));
        }
        Ok(())
    }

    /// Fail unless the pool may write its devices for maintenance (repairs, resilver,
    /// replace, label-only commits): a locked pool may, a read-only, exported or
    /// suspended one may not.
    pub(crate) fn maintainable(&self) -> Result<(), PoolError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PoolError::ReadOnly("pool is exported".into()));
        }
        if self.read_only {
            return Err(PoolError::ReadOnly("imported read-only".into()));
        }
        if let Some(s) = self.suspension() {
            return Err(PoolError::ReadOnly(format!("suspended: {s}")));
        }
        Ok(())
    }

    /// Remove the tree's `resilver-position` record in the open txg (it is out of date).
    async fn drop_tree_position(&self) -> Result<(), PoolError> {
        let key = super::keys::kv(META_OID, super::scrub::RESILVER_POSITION_KEY);
        let mut g = self.open.lock().await;
        let o = &mut *g;
        if o.tree.remove(&self.io, &key, &mut o.frees).await?.is_some() {
            tracing::info!(pool = %self.id.name, "dropping the resilver record a locked pool outdated");
        }
        // The next commit runs (and its labels clear the flag) even if nothing was removed.
        o.dirty = true;
        Ok(())
    }

    /// Commit of a locked pool: label-only. With `force`, or when the keyless resilver
    /// position changed since the last labels, write labels of the next generation that
    /// keep the durable uberblock (same tree root and space map: nothing below the labels
    /// is written) and carry the current membership and position. The devices are
    /// flushed first, so whatever the labels claim rebuilt is durable before they are.
    pub(crate) async fn commit_locked(&self, force: bool) -> Result<u64, PoolError> {
        self.write_locked_labels(force, false).await
    }

    /// [`Inner::commit_locked`]; `exporting`: the final one of export, which runs after
    /// the pool is closed (no other label write may follow it).
    async fn write_locked_labels(&self, force: bool, exporting: bool) -> Result<u64, PoolError> {
        let mut cs = self.commit.lock().await;
        if self.read_only || (!exporting && self.closed.load(Ordering::Acquire)) {
            return Ok(cs.uber.txg);
        }
        if let Some(s) = self.suspension() {
            return Err(PoolError::ReadOnly(format!("suspended: {s}")));
        }
        let pos = self.devices.keyless_position();
        if !(force || cs.force || pos != cs.scan_pos) {
            return Ok(cs.uber.txg);
        }
        let meta = LabelMeta {
            generation: cs.generation + 1,
            flags: FLAG_TREE_POSITION_STALE,
            scan_pos: pos,
        };
        let r = async {
            self.io.flush().await?;
            self.write_labels(&cs.uber, &cs.key_slot, &meta).await
        }
        .await;
        match r {
            Ok(()) => {
                cs.force = false;
                cs.generation = meta.generation;
                cs.scan_pos = meta.scan_pos;
                tracing::debug!(pool = %self.id.name, txg = cs.uber.txg, generation = cs.generation, "label-only commit");
                Ok(cs.uber.txg)
            }
            Err(e) => {
                self.suspend(&e);
                Err(e)
            }
        }
    }

    /// Commit the open txg if it has changes; returns the durable txg. On a locked pool:
    /// a label-only commit ([`Inner::commit_locked`]) when membership or the keyless
    /// resilver position changed.
    pub(crate) async fn commit(&self) -> Result<u64, PoolError> {
        if self.locked {
            return self.commit_locked(false).await;
        }
        let mut cs = self.commit.lock().await;
        if self.read_only {
            return Ok(cs.uber.txg);
        }
        if let Some(s) = self.suspension() {
            return Err(PoolError::ReadOnly(format!("suspended: {s}")));
        }
        let t_start = std::time::Instant::now();
        let cmds_start = self.io.vdev.write_commands();
        let dirty_records0 = self.datapath.view.read().len();
        // Seal the txg's dirty records while writers go on; the flush below links them.
        self.pre_flush().await;
        let t_pre = t_start.elapsed();
        let cmds_pre = self.io.vdev.write_commands() - cmds_start;
        let (snap, txg, frees) = {
            let mut o = self.open.lock().await;
            // Every change counted so far is in what this freezes (or there is none).
            self.idle.committed_through(self.idle.changes());
            if !o.dirty && !cs.force && !self.alloc.lock().has_deferred_through(cs.release_through)
            {
                return Ok(cs.uber.txg);
            }
            // Freeze: dirty records of this txg go into the tree first (datapath hook).
            if let Err(e) = self.flush_dirty(&mut o).await {
                self.suspend(&e);
                return Err(e);
            }
            let mut frees = std::mem::take(&mut o.frees);
            let mut c = o.counters;
            c.next_oid = self.next_oid.load(Ordering::Acquire);
            o.counters = c;
            if let Err(e) = o
                .tree
                .insert(&self.io, keys::inode(META_OID), c.encode(), &mut frees)
                .await
            {
                self.suspend(&e);
                return Err(e);
            }
            let snap = o.tree.root.clone();
            let txg = o.txg;
            o.txg += 1;
            o.dirty = false;
            o.dirty_bytes = 0;
            (snap, txg, frees)
        };
        cs.force = false;
        let freed_data = !frees.bps.is_empty();
        let t_freeze = t_start.elapsed();
        let cmds_freeze = self.io.vdev.write_commands() - cmds_start;
        match self.sync_txg(&mut cs, snap, txg, frees).await {
            Ok(()) => {
                // What the commit cost: time to the end of the pre-flush, of the freeze
                // and in all; device write commands in each part (merged ones count once).
                tracing::debug!(
                    pool = %self.id.name,
                    txg,
                    dirty_records = dirty_records0,
                    pre_ms = t_pre.as_secs_f64() * 1e3,
                    freeze_ms = t_freeze.as_secs_f64() * 1e3,
                    total_ms = t_start.elapsed().as_secs_f64() * 1e3,
                    cmds_pre,
                    cmds_freeze,
                    cmds_total = self.io.vdev.write_commands() - cmds_start,
                    "txg commit cost"
                );
                if freed_data {
                    cs.release_through = txg;
                }
                let (pending, tight) = {
                    let a = self.alloc.lock();
                    (a.has_deferred_through(cs.release_through), a.is_tight())
                };
                if freed_data && pending && tight {
                    // Space is short and the data this txg freed waits for one more durable
                    // txg: commit again at once rather than after the txg interval.
                    self.kick.notify_one();
                }
                Ok(txg)
            }
            Err(e) => {
                self.suspend(&e);
                Err(e)
            }
        }
    }

    /// Why the pool is suspended, if it is: a failed commit, or (checked now, before the
    /// device monitor gets to it) more devices unavailable than the layout tolerates.
    pub(crate) fn suspension(&self) -> Option<String> {
        let mut s = self.suspended.lock();
        if s.is_none() && self.io.vdev.health() == crate::raid::VdevHealth::Failed {
            let why = format!(
                "devices unavailable beyond the layout's redundancy: {}",
                super::devices::unavailable(self)
            );
            tracing::error!(pool = %self.id.name, reason = %why, "pool suspended");
            *s = Some(why);
        }
        s.clone()
    }

    fn suspend(&self, e: &PoolError) {
        tracing::error!(pool = %self.id.name, error = %e, "commit failed: pool suspended (read-only until re-import)");
        let mut why = e.to_string();
        if self.io.vdev.health() == crate::raid::VdevHealth::Failed {
            why = format!(
                "devices unavailable beyond the layout's redundancy: {}; {why}",
                super::devices::unavailable(self)
            );
        }
        let mut s = self.suspended.lock();
        if s.is_none() {
            *s = Some(why);
        }
    }

    async fn sync_txg(
        &self,
        cs: &mut CommitState,
        snap: Child,
        txg: u64,
        frees: Frees,
    ) -> Result<(), PoolError> {
        {
            let mut a = self.alloc.lock();
            for s in &frees.slots {
                if let Some(bp) = s.get() {
                    a.free(bp.addr, u64::from(bp.asize), txg);
                }
            }
            for bp in &frees.bps {
                a.free(bp.addr, u64::from(bp.asize), txg);
            }
            let old = cs.uber.space_map;
            a.free(old.addr, u64::from(old.asize), txg);
        }
        let mut ctx = AllocCtx::new(&self.alloc, txg, true);
        let t0 = std::time::Instant::now();
        let c0 = self.io.vdev.write_commands();
        let (root, nodes) = tree::write_tree(&self.io, &snap, &mut ctx).await?;
        tracing::debug!(
            pool = %self.id.name,
            txg,
            nodes,
            sectors = ctx.taken.iter().map(|t| t.1).sum::<u64>(),
            cmds = self.io.vdev.write_commands() - c0,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "tree written"
        );
        let sm = self.alloc.lock().space_map(txg)?;
        let sm_bytes = sm.encode();
        if sm_bytes.len() > crate::compress::MAX_EXTENT_BYTES {
            return Err(PoolError::Internal(format!(
                "space map of {} bytes exceeds one extent (pool too fragmented for this format version)",
                sm_bytes.len()
            )));
        }
        let space_map = self
            .io
            .write_data(&sm_bytes, BlockKind::SpaceMap, &mut ctx)
            .await?;
        self.io.flush().await?;
        let uber = Uberblock {
            txg,
            timestamp: now(),
            root,
            space_map,
        };
        // A full commit: the tree (with its resilver record) is authoritative again.
        let meta = LabelMeta {
            generation: cs.generation + 1,
            flags: 0,
            scan_pos: None,
        };
        self.write_labels(&uber, &cs.key_slot, &meta).await?;
        cs.uber = uber;
        cs.generation = meta.generation;
        cs.scan_pos = None;
        self.tree_position_stale.store(false, Ordering::Release);
        {
            // Frees of txgs a reader may still walk stay deferred. Taking the readable lock
            // for writing excludes a reader between reading the root and registering.
            let rg = self.readable.write();
            let hold_from = self
                .readers
                .lock()
                .keys()
                .next()
                .copied()
                .unwrap_or(u64::MAX)
                .min(rg.1);
            self.alloc.lock().finish_held(txg, hold_from)?;
        }
        self.durable_txg.store(txg, Ordering::Release);
        {
            let mut o = self.open.lock().await;
            tree::demote(&self.io, &mut o.tree.root);
            *self.readable.write() = (o.tree.root.clone(), o.txg);
        }
        tracing::debug!(pool = %self.id.name, txg, "txg committed");
        Ok(())
    }

    /// Write the labels of generation `meta.generation` (with the uberblock `uber`) to the
    /// label pair of that generation on every device writes go to (faulted, removed and
    /// missing devices keep the label txg of what they hold), then flush. A device whose
    /// label write fails is faulted.
    async fn write_labels(
        &self,
        uber: &Uberblock,
        key_slot: &[u8],
        meta: &LabelMeta,
    ) -> Result<(), PoolError> {
        let copies = copies_for_txg(meta.generation);
        let members = self.members.read().clone();
        let n = members.guids.len();
        let compression = *self.compression.lock();
        let mut jobs = Vec::new();
        let mut written = Vec::new();
        for i in 0..n {
            let Some(d) = self.io.vdev.writable_device(i) else {
                continue;
            };
            written.push(i);
            let bytes =
                make_label(&self.id, compression, &members, i, uber, key_slot, meta).encode()?;
            // Each device: its two copies of the pair, then a flush; the devices all at
            // once (the pair alternation, not the order across devices, is what survives
            // a torn label write).
            jobs.push(async move {
                let cap = d.geometry().capacity();
                let r = async {
                    for c in copies {
                        d.write(label_offset(c, cap), &bytes, WriteFlags::NONE)
                            .await?;
                    }
                    d.flush().await
                }
                .await;
                (d, r)
            });
        }
        let mut ok = 0usize;
        let mut errs = Vec::new();
        for (i, r) in written
            .into_iter()
            .zip(futures::future::join_all(jobs).await)
        {
            match r {
                (_, Ok(())) => {
                    ok += 1;
                    self.members.write().label_txg[i] = uber.txg;
                }
                (d, Err(e)) => {
                    self.io.vdev.note_error(i, &d, &e, true);
                    errs.push(format!("column {i}: {e}"));
                }
            }
        }
        let needed = n - self.io.vdev.redundancy().min(n - 1);
        if ok < needed {
            return Err(PoolError::Io(format!(
                "label write for txg {} reached {ok} of {needed} needed devices: {}",
                uber.txg,
                errs.join("; ")
            )));
        }
        Ok(())
    }
}
