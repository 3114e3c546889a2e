//! The async adapter: a [`fuser::Filesystem`] whose callbacks run the async [`Fs`] call of each
//! request on the reader thread until it first has to wait, then move it (with its `Reply*`)
//! into a tokio task, so requests that hit the caches are answered without a thread hand-off
//! and many slow ones are in flight at once. A callback never blocks and never panics; a
//! request that fails replies with the fs error's errno (one that panicked drops its reply,
//! which fuser answers with `EIO`).
//!
//! Inode lifetimes follow the kernel's: every entry the adapter returns (lookup, create,
//! mknod, mkdir, symlink, link, readdirplus) is one reference in the fs, given back by
//! `forget`, so an unlinked inode stays usable until the kernel lets go of it.

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use ingot_fs::superblock::ROOT_ID;
use ingot_fs::{Ctx, FileKind, Fs, FsError, Inode, SetAttr, TimeSet, Timestamp};
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

/// Block size reported in `st_blksize`: programs size their I/O buffers by it.
const BLKSIZE: u32 = 1 << 20;
/// Directory entries fetched from the fs at a time while filling a `readdir` reply.
const READDIR_BATCH: usize = 64;
/// Entries fetched at a time while filling a `readdirplus` reply (each needs its attributes).
const READDIRPLUS_BATCH: usize = 16;

/// Settings the adapter needs from the mount options.
#[derive(Debug, Clone)]
pub(crate) struct AdapterConfig {
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    pub writeback_cache: bool,
    pub direct_writes: bool,
    pub max_write: u32,
    pub max_background: u16,
}

/// The `fuser::Filesystem` serving an [`Fs`].
#[derive(Debug)]
pub(crate) struct Adapter {
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    cfg: AdapterConfig,
    /// Whether writable opens get `FOPEN_DIRECT_IO`: asked for, no writeback cache, and the
    /// kernel keeps shared mappings of such files working (`FUSE_DIRECT_IO_ALLOW_MMAP`,
    /// Linux 6.6+). Settled by `init`.
    direct_writes: bool,
}

/// The fs inode of a FUSE node id (FUSE's root is 1).
fn fs_ino(ino: INodeNo) -> u64 {
    if ino.0 == 1 { ROOT_ID } else { ino.0 }
}

/// The FUSE node id of an fs inode.
fn fuse_ino(ino: u64) -> INodeNo {
    if ino == ROOT_ID {
        INodeNo(1)
    } else {
        INodeNo(ino)
    }
}

/// The errno of an fs error.
pub(crate) fn errno(e: &FsError) -> Errno {
    match e {
        FsError::Corrupt { .. } | FsError::Io(_) => {
            tracing::error!(error = %e, "fs request failed");
        }
        _ => tracing::debug!(error = %e, "fs request failed"),
    }
    Errno::from_i32(e.errno())
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

/// FUSE attributes of an inode.
pub(crate) fn attr(i: &Inode) -> FileAttr {
    FileAttr {
        ino: fuse_ino(i.ino),
        size: i.size,
        blocks: i.blocks(),
        atime: i.atime.to_system(),
        mtime: i.mtime.to_system(),
        ctime: i.ctime.to_system(),
        crtime: i.crtime.to_system(),
        kind: kind(i.kind()),
        perm: (i.mode & 0o7777) as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev as u32,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// Attributes of a negative lookup reply (node id 0).
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(Timestamp::from_system(s)),
    }
}

fn name(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

impl Adapter {
    /// How the kernel treats an open file: its page cache is kept across opens (every change
    /// goes through this mount), and with direct writes a writable open bypasses it, so a
    /// write is copied once, from the writer's buffer into the request, and allocates no
    /// page-cache pages. Reads through that descriptor are then served by the pool's record
    /// cache; shared mappings still use the page cache, which the kernel writes back before,
    /// and invalidates around, each direct request on the same range. Read-only opens stay
    /// cached (read-ahead, page-cache hits).
    fn fopen_flags(&self, flags: i32) -> FopenFlags {
        if self.direct_writes && flags & libc::O_ACCMODE != libc::O_RDONLY {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    pub(crate) fn new(fs: Arc<Fs>, rt: tokio::runtime::Handle, cfg: AdapterConfig) -> Self {
        Adapter {
            fs,
            rt,
            cfg,
            direct_writes: false,
        }
    }

    /// Runs one request: first on the calling reader thread, up to the request's first wait
    /// (a cache hit - getattr, lookup, a cached read - completes and replies right there,
    /// with no hand-off to a worker thread and no wake-up); if it has to wait (store I/O, a
    /// lock), the rest runs as a tokio task.
    ///
    /// The inline poll uses a no-op waker: whatever the future registered it with is
    /// registered again with the task's waker when the runtime polls the spawned task, which
    /// it does at once. It runs inside the runtime's context (for timers and spawns). A panic
    /// is caught and logged; the request's reply, dropped with the future, answers `EIO`.
    fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<Fs>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut fut = Box::pin(f(self.fs.clone()));
        let _rt = self.rt.enter();
        let mut cx = Context::from_waker(Waker::noop());
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(())) => {}
            Ok(Poll::Pending) => {
                self.rt.spawn(fut);
            }
            Err(_) => tracing::error!("a FUSE request panicked; it is answered with EIO"),
        }
    }

    fn reply_entry(ttl: Duration, r: Result<Inode, FsError>, reply: ReplyEntry) {
        match r {
            Ok(i) => reply.entry(&ttl, &attr(&i), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn reply_empty(r: Result<(), FsError>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

fn reply_xattr(r: Result<Vec<u8>, FsError>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => match u32::try_from(v.len()) {
            Ok(n) => reply.size(n),
            Err(_) => reply.error(Errno::from_i32(libc::E2BIG)),
        },
        Ok(v) if v.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut wanted = InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_ASYNC_DIO
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        let want_direct = self.cfg.direct_writes && !self.cfg.writeback_cache;
        if self.cfg.writeback_cache {
            wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        if want_direct {
            wanted |= InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
        }
        let caps = config.capabilities();
        if let Err(missing) = config.add_capabilities(wanted & caps) {
            tracing::warn!(?missing, "kernel refused FUSE capabilities");
        }
        if self.cfg.writeback_cache && !caps.contains(InitFlags::FUSE_WRITEBACK_CACHE) {
            tracing::warn!("kernel lacks FUSE_WRITEBACK_CACHE; running write-through");
        }
        self.direct_writes = want_direct && caps.contains(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        if want_direct && !self.direct_writes {
            tracing::info!(
                "kernel lacks FUSE_DIRECT_IO_ALLOW_MMAP; writes go through the page cache"
            );
        }
        let mw = match config.set_max_write(self.cfg.max_write) {
            Ok(_) => self.cfg.max_write,
            Err(max) => {
                let _ = config.set_max_write(max);
                max
            }
        };
        if let Err(max) = config.set_max_readahead(self.cfg.max_write) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(self.cfg.max_background);
        let _ = config.set_congestion_threshold(self.cfg.max_background.saturating_mul(3) / 4);
        tracing::info!(
            abi = %config.kernel_abi(),
            max_write = mw,
            writeback = self.cfg.writeback_cache,
            direct_writes = self.direct_writes,
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let (p, n, ttl) = (fs_ino(parent), name(n), self.cfg.entry_ttl);
        self.spawn(move |fs| async move {
            match fs.lookup(p, &n).await {
                // A negative entry (node id 0) lets the kernel cache the miss for `ttl`; every
                // change goes through this mount, so the kernel invalidates it on create.
                Err(FsError::NotFound(_)) if !ttl.is_zero() => {
                    reply.entry(&ttl, &negative_attr(), Generation(0))
                }
                r => Self::reply_entry(ttl, r, reply),
            }
        });
    }

    // `batch_forget` (fuser's default) calls this for each inode (fuser 0.18 does not export
    // the `ForgetOne` type needed to override it).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let ino = fs_ino(ino);
        self.spawn(move |fs| async move { fs.forget(ino, nlookup).await });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (ino, ttl) = (fs_ino(ino), self.cfg.attr_ttl);
        self.spawn(move |fs| async move {
            match fs.getattr(ino).await {
                Ok(i) => reply.attr(&ttl, &attr(&i)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (c, ino, ttl) = (ctx(req), fs_ino(ino), self.cfg.attr_ttl);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(Timestamp::from_system),
        };
        self.spawn(move |fs| async move {
            match fs.setattr(c, ino, set).await {
                Ok(i) => reply.attr(&ttl, &attr(&i)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let ino = fs_ino(ino);
        self.spawn(move |fs| async move {
            match fs.readlink(ino).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (c, p, n, ttl) = (ctx(req), fs_ino(parent), name(n), self.cfg.entry_ttl);
        let mode = mode & !(umask & 0o777);
        self.spawn(move |fs| async move {
            Self::reply_entry(ttl, fs.mknod(c, p, &n, mode, u64::from(rdev)).await, reply)
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (c, p, n, ttl) = (ctx(req), fs_ino(parent), name(n), self.cfg.entry_ttl);
        let mode = mode & !(umask & 0o777);
        self.spawn(move |fs| async move {
            Self::reply_entry(ttl, fs.mkdir(c, p, &n, mode).await, reply)
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (p, n) = (fs_ino(parent), name(n));
        self.spawn(move |fs| async move { Self::reply_empty(fs.unlink(p, &n).await, reply) });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (p, n) = (fs_ino(parent), name(n));
        self.spawn(move |fs| async move { Self::reply_empty(fs.rmdir(p, &n).await, reply) });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (c, p, n, ttl) = (
            ctx(req),
            fs_ino(parent),
            name(link_name),
            self.cfg.entry_ttl,
        );
        let t = target.as_os_str().as_bytes().to_vec();
        self.spawn(move |fs| async move {
            Self::reply_entry(ttl, fs.symlink(c, p, &n, &t).await, reply)
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (p, n, np, nn) = (fs_ino(parent), name(n), fs_ino(newparent), name(newname));
        let flags = flags.bits();
        self.spawn(move |fs| async move {
            Self::reply_empty(fs.rename(p, &n, np, &nn, flags).await, reply)
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (ino, np, nn, ttl) = (
            fs_ino(ino),
            fs_ino(newparent),
            name(newname),
            self.cfg.entry_ttl,
        );
        self.spawn(
            move |fs| async move { Self::reply_entry(ttl, fs.link(ino, np, &nn).await, reply) },
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (c, ino) = (ctx(req), fs_ino(ino));
        let mut flags = flags.0;
        if self.cfg.writeback_cache {
            // With the writeback cache the kernel positions appends itself.
            flags &= !libc::O_APPEND;
        }
        let fopen = self.fopen_flags(flags);
        self.spawn(move |fs| async move {
            match fs.open(c, ino, flags).await {
                Ok(fh) => reply.opened(FileHandle(fh), fopen),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let ino = fs_ino(ino);
        self.spawn(move |fs| async move {
            match fs.read_buf(ino, offset, size).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (c, ino) = (ctx(req), fs_ino(ino));
        // fuser lends the bytes: copy them, cut at the store's record boundaries, so the
        // store keeps each whole record's buffer without another copy.
        let parts = self.fs.write_buffers(offset, data);
        self.spawn(move |fs| async move {
            match fs.write_parts(c, ino, fh.0, offset, parts).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Data is in the store already; timestamps are written at release.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| async move { Self::reply_empty(fs.release(fh.0).await, reply) });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let ino = fs_ino(ino);
        self.spawn(
            move |fs| async move { Self::reply_empty(fs.fsync(ino, datasync).await, reply) },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let ino = fs_ino(ino);
        self.spawn(move |fs| async move {
            // Fill the kernel's buffer batch by batch: only the last batch is partly wasted.
            let mut off = offset;
            loop {
                let ents = match fs.readdir(ino, off, READDIR_BATCH).await {
                    Ok(e) => e,
                    Err(e) => return reply.error(errno(&e)),
                };
                let n = ents.len();
                for e in ents {
                    off = e.offset;
                    let name = OsStr::from_bytes(&e.name);
                    if reply.add(fuse_ino(e.ino), e.offset, kind(e.kind), name) {
                        return reply.ok();
                    }
                }
                if n < READDIR_BATCH {
                    return reply.ok();
                }
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (ino, ttl) = (fs_ino(ino), self.cfg.entry_ttl);
        self.spawn(move |fs| async move {
            // The entries added so far carry kernel references: an error after some went in
            // ends the reply short (the kernel asks again from there and then gets the error)
            // rather than dropping them.
            let mut added = false;
            let mut off = offset;
            loop {
                let ents = match fs.readdir(ino, off, READDIRPLUS_BATCH).await {
                    Ok(e) => e,
                    Err(_) if added => return reply.ok(),
                    Err(e) => return reply.error(errno(&e)),
                };
                let n = ents.len();
                for e in ents {
                    off = e.offset;
                    // The kernel takes a reference to every entry but "." and "..".
                    let dots = e.name == b"." || e.name == b"..";
                    let got = if dots {
                        fs.getattr(e.ino).await
                    } else {
                        fs.lookup_inode(e.ino).await
                    };
                    let i = match got {
                        Ok(i) => i,
                        Err(FsError::NotFound(_)) => continue, // removed meanwhile
                        Err(_) if added => return reply.ok(),
                        Err(err) => return reply.error(errno(&err)),
                    };
                    let name = OsStr::from_bytes(&e.name);
                    if reply.add(
                        fuse_ino(e.ino),
                        e.offset,
                        name,
                        &ttl,
                        &attr(&i),
                        Generation(0),
                    ) {
                        // Full: this entry did not go out, so neither did its reference.
                        if !dots {
                            fs.forget(e.ino, 1).await;
                        }
                        return reply.ok();
                    }
                    added = true;
                }
                if n < READDIRPLUS_BATCH {
                    return reply.ok();
                }
            }
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let ino = fs_ino(ino);
        self.spawn(
            move |fs| async move { Self::reply_empty(fs.fsync(ino, datasync).await, reply) },
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        let (c, ino, n, v) = (ctx(req), fs_ino(ino), name(n), value.to_vec());
        self.spawn(move |fs| async move {
            Self::reply_empty(fs.setxattr(c, ino, &n, &v, flags).await, reply)
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let (c, ino, n) = (ctx(req), fs_ino(ino), name(n));
        self.spawn(move |fs| async move {
            reply_xattr(
                fs.getxattr(c, ino, &n).await.map(|b| b.to_vec()),
                size,
                reply,
            )
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let (c, ino) = (ctx(req), fs_ino(ino));
        self.spawn(move |fs| async move { reply_xattr(fs.listxattr(c, ino).await, size, reply) });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (c, ino, n) = (ctx(req), fs_ino(ino), name(n));
        self.spawn(
            move |fs| async move { Self::reply_empty(fs.removexattr(c, ino, &n).await, reply) },
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions); only existence here.
        let ino = fs_ino(ino);
        self.spawn(
            move |fs| async move { Self::reply_empty(fs.getattr(ino).await.map(|_| ()), reply) },
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (c, p, n, ttl) = (ctx(req), fs_ino(parent), name(n), self.cfg.entry_ttl);
        let mode = mode & !(umask & 0o777);
        let mut flags = flags;
        if self.cfg.writeback_cache {
            flags &= !libc::O_APPEND;
        }
        let fopen = self.fopen_flags(flags);
        self.spawn(move |fs| async move {
            match fs.create(c, p, &n, mode, flags).await {
                Ok((i, fh)) => reply.created(&ttl, &attr(&i), Generation(0), FileHandle(fh), fopen),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let ino = fs_ino(ino);
        self.spawn(move |fs| async move {
            Self::reply_empty(fs.fallocate(ino, offset, length, mode).await, reply)
        });
    }
}
