//! [`Fs`]: the POSIX filesystem on an [`ObjectStore`]: mount/mkfs, the inode cache, attributes,
//! open/release with unlinked-open orphans, statfs and sync. Namespace, file data and xattr
//! operations live in `namespace.rs`, `file.rs` and `xattr.rs`.

use crate::cache::{Node, NodeCache};
use crate::error::{FsError, FsResult};
use crate::inode::{FL_HAS_CAPS, FileKind, Inode, Timestamp};
use crate::superblock::{ORPHANS_ID, ROOT_ID, SUPERBLOCK_ID, Superblock};
use bytes::Bytes;
use ingot_pool::store::{ObjectStore, Op, StoreError};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Largest file size (16 TiB, as ext4 with 4 KiB blocks).
pub const MAX_FILE_SIZE: u64 = 1 << 44;
/// Most hard links to one inode (ext4's `EXT4_LINK_MAX`).
pub const LINK_MAX: u32 = 65_000;
/// Longest symlink target.
pub const SYMLINK_MAX: usize = 4095;

/// The credentials of the caller of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// Caller's (fs)uid.
    pub uid: u32,
    /// Caller's (fs)gid.
    pub gid: u32,
}

impl Ctx {
    /// The root user.
    pub const ROOT: Ctx = Ctx { uid: 0, gid: 0 };

    /// Whether the caller is privileged (uid 0).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Mount options of the fs layer.
#[derive(Debug, Clone, Default)]
pub struct FsOptions {
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
    /// Soft limit on cached idle inodes (0 = default of 200,000).
    pub cache_limit: usize,
}

/// A time to set in [`SetAttr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// The current time (`UTIME_NOW`).
    Now,
    /// This time.
    At(Timestamp),
}

/// Attribute changes for [`Fs::setattr`]; `None` leaves a field alone (`UTIME_OMIT`).
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    /// New permission bits (the type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate up or down).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// New change time (otherwise "now" if anything changed).
    pub ctime: Option<Timestamp>,
}

/// Filesystem space figures for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks of `frsize`.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size (the unit of the block counts).
    pub frsize: u32,
}

/// Removes the `security.capability` xattr of `i` (killpriv) in the same batch.
pub(crate) fn kill_caps(i: &mut Inode, ops: &mut Vec<Op>) {
    i.flags &= !FL_HAS_CAPS;
    ops.push(Op::KvDelete {
        id: i.ino,
        key: Bytes::from(crate::dirent::xattr_key(crate::xattr::XATTR_CAPS)),
    });
}

/// An open file handle, returned by [`Fs::open`].
pub type Fh = u64;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle {
    pub ino: u64,
    pub append: bool,
}

/// A POSIX filesystem on an object store. Cheap to share (`Arc<Fs>`); every method takes `&self`.
#[derive(Debug)]
pub struct Fs {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) cache: NodeCache,
    handles: Mutex<HashMap<Fh, Handle>>,
    next_fh: AtomicU64,
    /// Serialises directory moves between parents (the loop check needs a stable tree).
    pub(crate) rename_lock: tokio::sync::Mutex<()>,
    read_only: bool,
    /// Unlinked inodes whose deletion failed (at last close or mount); retried by
    /// [`Fs::retry_reclaims`]. They stay on the on-disk orphan list meanwhile, so a restart
    /// reclaims them too.
    reclaim: Mutex<BTreeSet<u64>>,
    /// Inodes that may be unlinked and that lost their last kernel reference and handle,
    /// waiting to be deleted by the reaper (see [`Fs::forget`]).
    reap_queue: Mutex<Vec<u64>>,
    /// Held by the task running the reaper: one at a time, so the queue is drained in
    /// batches (many deletions per store batch).
    reap_lock: tokio::sync::Mutex<()>,
    /// A `forget` is waiting [`REAP_DELAY`] to run the reaper.
    reap_armed: AtomicBool,
}

/// Most inodes deleted by one reaper batch.
const REAP_BATCH: usize = 256;
/// How long a queued deletion waits for others to share its batch: `rm -rf` queues one
/// about every 100 us, so the reaper deletes them some hundred to a batch.
const REAP_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

impl Fs {
    /// Mounts the fs of `store`, making a new one first if the store holds none (no superblock
    /// object). Reclaims orphans left by a crash.
    pub async fn mount(store: Arc<dyn ObjectStore>, opts: FsOptions) -> FsResult<Fs> {
        let sb = match store.get_attr(SUPERBLOCK_ID).await {
            Ok(Some(b)) => Superblock::decode(&b)?,
            Ok(None) => {
                return Err(FsError::Corrupt {
                    id: SUPERBLOCK_ID,
                    detail: "superblock object without a record".into(),
                });
            }
            Err(StoreError::NotFound { .. }) => {
                if opts.read_only {
                    return Err(FsError::ReadOnly(
                        "no filesystem on a read-only store".into(),
                    ));
                }
                Self::mkfs(store.as_ref()).await?
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(
            version = sb.version,
            read_only = opts.read_only,
            "fs mounted"
        );
        let fs = Fs {
            store,
            cache: NodeCache::new(if opts.cache_limit == 0 {
                200_000
            } else {
                opts.cache_limit
            }),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            rename_lock: tokio::sync::Mutex::new(()),
            read_only: opts.read_only,
            reclaim: Mutex::new(BTreeSet::new()),
            reap_queue: Mutex::new(Vec::new()),
            reap_lock: tokio::sync::Mutex::new(()),
            reap_armed: AtomicBool::new(false),
        };
        if !fs.read_only {
            fs.reclaim_orphans().await?;
        }
        Ok(fs)
    }

    /// Writes a fresh fs (superblock, empty root directory, empty orphan list) in one batch.
    async fn mkfs(store: &dyn ObjectStore) -> FsResult<Superblock> {
        let now = Timestamp::now();
        let sb = Superblock::new(now.secs);
        let root = Inode {
            ino: ROOT_ID,
            mode: libc::S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            nlink: 2,
            rdev: 0,
            flags: 0,
            size: 0,
            parent: ROOT_ID,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        };
        store
            .apply(vec![
                Op::Create { id: SUPERBLOCK_ID },
                Op::SetAttr {
                    id: SUPERBLOCK_ID,
                    attr: Bytes::from(sb.encode()),
                },
                Op::Create { id: ROOT_ID },
                Op::SetAttr {
                    id: ROOT_ID,
                    attr: Bytes::from(root.encode()),
                },
                Op::Create { id: ORPHANS_ID },
            ])
            .await?;
        tracing::info!("made a new fs");
        Ok(sb)
    }

    /// Deletes every inode on the orphan list (nothing is open at mount).
    async fn reclaim_orphans(&self) -> FsResult<()> {
        let mut after: Option<Bytes> = None;
        let mut n = 0u64;
        loop {
            let recs = self
                .store
                .kv_scan(ORPHANS_ID, after.as_deref(), 256)
                .await?;
            let Some(last) = recs.last() else { break };
            after = Some(last.0.clone());
            for (k, _) in recs {
                let Ok(raw) = <[u8; 8]>::try_from(k.as_ref()) else {
                    tracing::warn!(key = ?k, "dropping a malformed orphan record");
                    self.store
                        .apply(vec![Op::KvDelete {
                            id: ORPHANS_ID,
                            key: k,
                        }])
                        .await?;
                    continue;
                };
                let ino = u64::from_be_bytes(raw);
                let mut ops = vec![Op::KvDelete {
                    id: ORPHANS_ID,
                    key: k,
                }];
                match self.store.get_attr(ino).await {
                    Ok(_) => ops.push(Op::Delete { id: ino }),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                match self.store.apply(ops).await {
                    Ok(()) => n += 1,
                    Err(e) => {
                        // Stays on the orphan list; retried by `retry_reclaims` and at the
                        // next mount. Not a reason to refuse the mount.
                        tracing::warn!(ino, error = %e, "reclaiming an orphan failed; will retry");
                        self.reclaim.lock().insert(ino);
                    }
                }
            }
        }
        if n > 0 {
            tracing::info!(
                orphans = n,
                "reclaimed unlinked inodes left open at the last stop"
            );
        }
        Ok(())
    }

    /// The root directory's inode number.
    pub fn root(&self) -> u64 {
        ROOT_ID
    }

    /// Whether the fs refuses changes.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The store below.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn check_rw(&self) -> FsResult<()> {
        if self.read_only {
            Err(FsError::ReadOnly("mounted read-only".into()))
        } else {
            Ok(())
        }
    }

    /// The cached attributes of `node`, loading them from the store if needed.
    pub(crate) async fn load(&self, node: &Node) -> FsResult<Inode> {
        {
            let st = node.state.lock();
            if st.gone {
                return Err(FsError::NotFound(format!("inode {}", node.ino)));
            }
            if let Some(i) = &st.inode {
                return Ok(i.clone());
            }
        }
        let rec = match self.store.get_attr(node.ino).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(StoreError::NotFound { .. }) => {
                return Err(FsError::NotFound(format!("inode {}", node.ino)));
            }
            Err(e) => return Err(e.into()),
        };
        let inode = Inode::decode(node.ino, &rec)?;
        let mut st = node.state.lock();
        if st.gone {
            return Err(FsError::NotFound(format!("inode {}", node.ino)));
        }
        Ok(st.inode.get_or_insert(inode).clone())
    }

    /// The attributes of inode `ino`.
    pub(crate) async fn inode(&self, ino: u64) -> FsResult<Inode> {
        if ino == SUPERBLOCK_ID || ino == ORPHANS_ID || ino == 0 {
            return Err(FsError::NotFound(format!("inode {ino}")));
        }
        let node = self.cache.get(ino);
        self.load(&node).await
    }

    /// Applies `ops` plus a `SetAttr` for each of `updated`, then installs those attributes in
    /// the cache and forgets `deleted`. The caller holds the exclusive locks of all of them.
    pub(crate) async fn commit(
        &self,
        mut ops: Vec<Op>,
        updated: &[&Inode],
        deleted: &[u64],
    ) -> FsResult<()> {
        for i in updated {
            ops.push(Op::SetAttr {
                id: i.ino,
                attr: Bytes::from(i.encode()),
            });
        }
        self.store.apply(ops).await?;
        for i in updated {
            let node = self.cache.get(i.ino);
            let mut st = node.state.lock();
            st.inode = Some((*i).clone());
            st.dirty = false;
        }
        for &d in deleted {
            let node = self.cache.get(d);
            {
                let mut st = node.state.lock();
                st.gone = true;
                st.inode = None;
                st.dirty = false;
            }
            self.cache.remove(d);
        }
        Ok(())
    }

    /// Writes the unwritten attribute changes of `node` (caller holds its exclusive lock).
    async fn flush_dirty_locked(&self, node: &Node) -> FsResult<()> {
        let inode = {
            let st = node.state.lock();
            if !st.dirty || st.gone {
                return Ok(());
            }
            st.inode.clone()
        };
        if let Some(i) = inode {
            self.commit(Vec::new(), &[&i], &[]).await?;
        }
        Ok(())
    }

    /// The attributes of `ino` (`getattr`).
    pub async fn getattr(&self, ino: u64) -> FsResult<Inode> {
        self.inode(ino).await
    }

    /// Changes attributes (`chmod`, `chown`, `truncate`, `utimensat`). `ctx` is the caller.
    /// Changes other than the size of an inode that is open are written at its last close
    /// (or with its next change, fsync or sync), not at once.
    pub async fn setattr(&self, ctx: Ctx, ino: u64, set: SetAttr) -> FsResult<Inode> {
        self.check_rw()?;
        let node = self.cache.get(ino);
        let _g = node.io.write().await;
        let mut i = self.load(&node).await?;
        let now = Timestamp::now();
        let mut ops = Vec::new();
        let kind = i.kind();
        if set.uid.is_some() || set.gid.is_some() {
            if let Some(u) = set.uid {
                i.uid = u;
            }
            if let Some(g) = set.gid {
                i.gid = g;
            }
            // chown clears set-id bits of non-directories (sgid only when group-executable).
            if kind != FileKind::Dir {
                i.mode &= !libc::S_ISUID;
                if i.mode & libc::S_IXGRP != 0 {
                    i.mode &= !libc::S_ISGID;
                }
            }
        }
        if (set.uid.is_some() || set.gid.is_some() || set.size.is_some())
            && i.flags & FL_HAS_CAPS != 0
        {
            kill_caps(&mut i, &mut ops);
        }
        if let Some(m) = set.mode {
            i.mode = (i.mode & libc::S_IFMT) | (m & 0o7777);
        }
        if let Some(size) = set.size {
            match kind {
                FileKind::File => {}
                FileKind::Dir => return Err(FsError::IsDir(ino)),
                _ => {
                    return Err(FsError::Invalid(format!(
                        "truncate of non-regular inode {ino}"
                    )));
                }
            }
            if size > MAX_FILE_SIZE {
                return Err(FsError::FileTooBig(size));
            }
            ops.push(Op::Truncate { id: ino, size });
            i.size = size;
            if !ctx.is_root() {
                i.mode &= !libc::S_ISUID;
                if i.mode & libc::S_IXGRP != 0 {
                    i.mode &= !libc::S_ISGID;
                }
            }
            if set.mtime.is_none() {
                i.mtime = now;
            }
        }
        let resolve = |t: TimeSet| match t {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        };
        if let Some(t) = set.atime {
            i.atime = resolve(t);
        }
        if let Some(t) = set.mtime {
            i.mtime = resolve(t);
        }
        i.ctime = set.ctime.unwrap_or(now);
        if ops.is_empty() && set.size.is_none() {
            // A change of attributes only (mode, owner, times) of an open inode stays in the
            // cache, written with its next change or at its last close, fsync or sync, as
            // the timestamps of writes are: `tar` sets times, owner and mode of each file
            // it extracts through the open descriptor, and these are then one store batch
            // at close instead of one each.
            let mut st = node.state.lock();
            if st.open > 0 && !st.gone {
                st.inode = Some(i.clone());
                st.dirty = true;
                return Ok(i);
            }
        }
        self.commit(ops, &[&i], &[]).await?;
        Ok(i)
    }

    /// Opens inode `ino` with `open(2)` `flags`; the inode lives until the last handle is
    /// released even if unlinked. `O_TRUNC` truncates a regular file.
    pub async fn open(&self, ctx: Ctx, ino: u64, flags: i32) -> FsResult<Fh> {
        let node = self.cache.get(ino);
        let i = {
            let _g = node.io.read().await;
            let i = self.load(&node).await?;
            node.state.lock().open += 1;
            i
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(
            fh,
            Handle {
                ino,
                append: flags & libc::O_APPEND != 0,
            },
        );
        if flags & libc::O_TRUNC != 0 && i.kind() == FileKind::File && i.size != 0 {
            let r = self
                .setattr(
                    ctx,
                    ino,
                    SetAttr {
                        size: Some(0),
                        ..Default::default()
                    },
                )
                .await;
            if let Err(e) = r {
                self.release(fh).await?;
                return Err(e);
            }
        }
        Ok(fh)
    }

    pub(crate) fn handle(&self, fh: Fh) -> FsResult<Handle> {
        self.handles
            .lock()
            .get(&fh)
            .copied()
            .ok_or(FsError::BadHandle(fh))
    }

    /// Closes a handle. The last close of an unlinked inode the kernel no longer references
    /// deletes it; unwritten timestamps are written.
    pub async fn release(&self, fh: Fh) -> FsResult<()> {
        let h = self
            .handles
            .lock()
            .remove(&fh)
            .ok_or(FsError::BadHandle(fh))?;
        let node = self.cache.get(h.ino);
        let last = {
            let mut st = node.state.lock();
            st.open = st.open.saturating_sub(1);
            st.open == 0
        };
        if !last {
            return Ok(());
        }
        let g = node.io.write().await;
        let (idle, dirty) = {
            let st = node.state.lock();
            if st.gone {
                return Ok(());
            }
            (st.open == 0 && st.lookups == 0, st.dirty)
        };
        if idle && self.delete_if_unlinked(&node).await? {
            tracing::debug!(ino = h.ino, "deleted unlinked inode at last close");
        } else if dirty {
            self.flush_dirty_locked(&node).await?;
        }
        drop(g);
        self.retry_reclaims().await;
        Ok(())
    }

    /// Counts one more kernel reference to `node` (caller holds a lock that keeps it from
    /// being deleted: its own, or that of a directory naming it).
    pub(crate) fn add_ref(node: &Node) {
        node.state.lock().lookups += 1;
    }

    /// The attributes of `ino`, counted as one kernel reference as [`Fs::lookup`] does: for
    /// the entries of a `readdirplus` reply. Give it back with [`Fs::forget`].
    pub async fn lookup_inode(&self, ino: u64) -> FsResult<Inode> {
        if ino == SUPERBLOCK_ID || ino == ORPHANS_ID || ino == 0 {
            return Err(FsError::NotFound(format!("inode {ino}")));
        }
        let node = self.cache.get(ino);
        let _g = node.io.read().await;
        let i = self.load(&node).await?;
        Self::add_ref(&node);
        Ok(i)
    }

    /// Gives back `n` kernel references to `ino` (FUSE `forget`). An unlinked inode is deleted
    /// once the kernel holds no reference and no handle is open: until then the kernel may
    /// still open it or ask for its attributes (a path resolved before the unlink), as on a
    /// local filesystem.
    ///
    /// The deletion is queued, and after [`REAP_DELAY`] the reaper deletes the queued inodes,
    /// many to a store batch, off the path of any reply and beside the unlinks that go on
    /// meanwhile. Each deletion removes the orphan record in the same batch, so a crash before
    /// or after it leaves either the orphan record (reclaimed at the next mount) or nothing.
    /// The call that queues onto an idle queue waits the delay and runs the reaper (under
    /// FUSE a `forget` has no reply, and the wait moves it off the thread reading requests);
    /// the others return at once. Errors are logged and the deletion retried, as at last
    /// close.
    pub async fn forget(&self, ino: u64, n: u64) {
        let Some(node) = self.cache.peek(ino) else {
            return; // deleted already, or never referenced
        };
        let queue = {
            let mut st = node.state.lock();
            st.lookups = st.lookups.saturating_sub(n);
            // Attributes not cached: the reaper loads them to find out. An unlink whose
            // commit has not installed the new link count yet queues the inode itself once
            // it has (see `Fs::reap_if_idle`).
            st.lookups == 0
                && st.open == 0
                && !st.gone
                && st.inode.as_ref().is_none_or(|i| i.nlink == 0)
        };
        if queue {
            self.reap_queue.lock().push(ino);
            if !self.reap_armed.swap(true, Ordering::AcqRel) {
                // Let more deletions join the batch. Whatever is queued after the flag drops
                // arms it again. (A blocking
                // thread waits: the runtime may have no timer, and the fs must not need one.)
                let _ = tokio::task::spawn_blocking(|| std::thread::sleep(REAP_DELAY)).await;
                self.reap_armed.store(false, Ordering::Release);
                self.run_reaper().await;
            }
        }
    }

    /// Queues `node` for the reaper if it is unlinked and neither open nor referenced, and
    /// runs the reaper: called after a commit that dropped its last link, since a `forget`
    /// that came in while that commit ran saw the old link count and left it.
    pub(crate) async fn reap_if_idle(&self, node: &Node) {
        let queue = {
            let st = node.state.lock();
            !st.in_use() && !st.gone && st.inode.as_ref().is_some_and(|i| i.nlink == 0)
        };
        if queue {
            self.reap_queue.lock().push(node.ino);
            self.run_reaper().await;
        }
    }

    /// Runs the reaper unless another task is running it (that one drains the queue before
    /// it stops, including what was queued meanwhile).
    async fn run_reaper(&self) {
        loop {
            let Ok(guard) = self.reap_lock.try_lock() else {
                return;
            };
            self.reap_queued().await;
            drop(guard);
            // Something queued after the last drain but before the lock was released found
            // the reaper busy: take it.
            if self.reap_queue.lock().is_empty() {
                return;
            }
        }
    }

    /// Deletes every queued inode that is still unlinked, unopened and unreferenced, up to
    /// [`REAP_BATCH`] of them per store batch. Caller holds `reap_lock`.
    async fn reap_queued(&self) {
        loop {
            let mut inos = {
                let mut q = self.reap_queue.lock();
                let n = q.len().min(REAP_BATCH);
                q.drain(..n).collect::<Vec<u64>>()
            };
            if inos.is_empty() {
                return;
            }
            inos.sort_unstable();
            inos.dedup();
            if self.read_only {
                continue;
            }
            // Lock in ascending inode order, as every multi-inode operation does.
            let nodes: Vec<Arc<Node>> = inos.iter().map(|&i| self.cache.get(i)).collect();
            let mut guards = Vec::with_capacity(nodes.len());
            let mut ops = Vec::new();
            let mut deleted = Vec::new();
            for node in &nodes {
                let g = node.io.write().await;
                {
                    let st = node.state.lock();
                    if st.gone || st.in_use() {
                        continue; // deleted meanwhile, or in use again (its last close deletes it)
                    }
                }
                match self.load(node).await {
                    Ok(i) if i.nlink == 0 => {}
                    Ok(_) | Err(FsError::NotFound(_)) => continue,
                    Err(e) => {
                        tracing::warn!(ino = node.ino, error = %e, "reading an unlinked inode failed; will retry");
                        self.reclaim.lock().insert(node.ino);
                        continue;
                    }
                }
                ops.push(Op::Delete { id: node.ino });
                ops.push(Op::KvDelete {
                    id: ORPHANS_ID,
                    key: Bytes::copy_from_slice(&node.ino.to_be_bytes()),
                });
                deleted.push(node.ino);
                guards.push(g);
            }
            if deleted.is_empty() {
                continue;
            }
            match self.commit(ops, &[], &deleted).await {
                Ok(()) => {
                    tracing::debug!(inodes = deleted.len(), "deleted unlinked inodes");
                }
                Err(e) => {
                    // The kernel ignores errors of forget: never drop this one silently. The
                    // inodes stay on the orphan list and their deletion is retried.
                    tracing::warn!(inodes = deleted.len(), error = %e, "deleting unlinked inodes failed; will retry");
                    self.reclaim.lock().extend(deleted);
                }
            }
            drop(guards);
        }
    }

    /// Waits for a running reaper and deletes what is queued.
    async fn drain_reaper(&self) {
        let _g = self.reap_lock.lock().await;
        self.reap_queued().await;
    }

    /// Gives back every kernel reference (the FUSE connection ended: unmount), deleting the
    /// unlinked inodes that are not open.
    pub async fn forget_all(&self) {
        for node in self.cache.referenced_nodes() {
            let idle = {
                let mut st = node.state.lock();
                st.lookups = 0;
                st.open == 0 && !st.gone && st.inode.as_ref().is_none_or(|i| i.nlink == 0)
            };
            if idle {
                self.reap_queue.lock().push(node.ino);
            }
        }
        self.drain_reaper().await;
    }

    /// Deletes `node`'s inode if its link count is zero (caller holds its exclusive lock and
    /// has checked it is neither open nor referenced). On failure the inode stays on the
    /// orphan list and is queued for [`Fs::retry_reclaims`].
    async fn delete_if_unlinked(&self, node: &Node) -> FsResult<bool> {
        let i = match self.load(node).await {
            Ok(i) => i,
            Err(FsError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if i.nlink != 0 || self.read_only {
            return Ok(false);
        }
        if let Err(e) = self.delete_unlinked(node.ino).await {
            // The kernel ignores errors of release and forget: never drop this one silently.
            // The inode stays on the orphan list and its deletion is retried.
            tracing::warn!(ino = node.ino, error = %e, "deleting an unlinked inode failed; will retry");
            self.reclaim.lock().insert(node.ino);
            return Err(e);
        }
        Ok(true)
    }

    /// Deletes unlinked inode `ino` and its orphan record (caller holds its exclusive lock).
    async fn delete_unlinked(&self, ino: u64) -> FsResult<()> {
        self.commit(
            vec![
                Op::Delete { id: ino },
                Op::KvDelete {
                    id: ORPHANS_ID,
                    key: Bytes::copy_from_slice(&ino.to_be_bytes()),
                },
            ],
            &[],
            &[ino],
        )
        .await
    }

    /// Number of unlinked inodes whose deletion failed and waits for a retry.
    pub fn pending_reclaims(&self) -> usize {
        self.reclaim.lock().len()
    }

    /// Retries deleting the unlinked inodes whose deletion failed earlier (at last close or
    /// at mount). Called after each release and by [`Fs::sync`]; failures are logged and kept.
    pub async fn retry_reclaims(&self) {
        if self.read_only {
            return;
        }
        let pending: Vec<u64> = self.reclaim.lock().iter().copied().collect();
        for ino in pending {
            match self.reclaim_one(ino).await {
                Ok(()) => {
                    self.reclaim.lock().remove(&ino);
                    tracing::info!(ino, "deleted an unlinked inode on retry");
                }
                Err(e) => {
                    tracing::warn!(ino, error = %e, "deleting an unlinked inode failed again; will retry");
                }
            }
        }
    }

    async fn reclaim_one(&self, ino: u64) -> FsResult<()> {
        let node = self.cache.get(ino);
        let _g = node.io.write().await;
        {
            let st = node.state.lock();
            if st.open > 0 || st.lookups > 0 {
                return Ok(()); // open or referenced: its last close or forget deletes it
            }
        }
        match self.load(&node).await {
            Ok(i) if i.nlink == 0 => self.delete_unlinked(ino).await,
            Ok(_) => {
                // Linked again: only the orphan record goes.
                self.store
                    .apply(vec![Op::KvDelete {
                        id: ORPHANS_ID,
                        key: Bytes::copy_from_slice(&ino.to_be_bytes()),
                    }])
                    .await?;
                Ok(())
            }
            Err(FsError::NotFound(_)) => {
                self.store
                    .apply(vec![Op::KvDelete {
                        id: ORPHANS_ID,
                        key: Bytes::copy_from_slice(&ino.to_be_bytes()),
                    }])
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Flushes the inode's timestamps and makes everything durable (`fsync`/`fdatasync`).
    pub async fn fsync(&self, ino: u64, _datasync: bool) -> FsResult<()> {
        let node = self.cache.get(ino);
        {
            let _g = node.io.write().await;
            self.flush_dirty_locked(&node).await?;
        }
        self.store.sync().await?;
        Ok(())
    }

    /// Writes every unwritten timestamp and makes everything durable (`syncfs`, unmount).
    pub async fn sync(&self) -> FsResult<()> {
        self.drain_reaper().await;
        self.retry_reclaims().await;
        for node in self.cache.dirty_nodes() {
            let _g = node.io.write().await;
            self.flush_dirty_locked(&node).await?;
        }
        self.store.sync().await?;
        Ok(())
    }

    /// Space figures (`statfs`), from the store's stats.
    pub fn statfs(&self) -> StatFs {
        let s = self.store.stats();
        let bs = 4096u64;
        let blocks = s.capacity_bytes / bs;
        let bfree = s.capacity_bytes.saturating_sub(s.used_bytes) / bs;
        let bavail = (s.available_bytes / bs).min(bfree);
        StatFs {
            blocks,
            bfree,
            bavail,
            files: s.objects + bavail,
            ffree: bavail,
            bsize: bs as u32,
            namelen: crate::dirent::NAME_MAX as u32,
            frsize: bs as u32,
        }
    }
}
