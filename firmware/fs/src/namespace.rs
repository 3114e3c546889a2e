//! Namespace operations of [`Fs`]: lookup, create/mknod/mkdir/symlink, link, unlink, rmdir,
//! rename, readdir and readlink. Each change is one atomic store batch.

use crate::cache::Node;
use crate::dirent::{
    FIRST_COOKIE, check_name, decode_entry, encode_entry, entry_key, parse_entry_key, resume_key,
};
use crate::error::{FsError, FsResult};
use crate::fs::{Ctx, Fh, Fs, LINK_MAX, SYMLINK_MAX};
use crate::inode::{FileKind, Inode, Timestamp};
use crate::superblock::{ORPHANS_ID, ROOT_ID};
use bytes::Bytes;
use ingot_pool::store::{Op, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// `renameat2` flag: fail if the target exists.
pub const RENAME_NOREPLACE: u32 = 1;
/// `renameat2` flag: swap source and target.
pub const RENAME_EXCHANGE: u32 = 2;
/// `renameat2` flag: leave a whiteout (not supported).
pub const RENAME_WHITEOUT: u32 = 4;

/// One directory entry returned by [`Fs::readdir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Its kind.
    pub kind: FileKind,
    /// Name bytes.
    pub name: Vec<u8>,
    /// Offset to pass to the next `readdir` to continue after this entry (stable cookie).
    pub offset: u64,
}

/// Exclusive guards on a set of nodes, taken in ascending inode order.
struct Locked<'a> {
    _guards: Vec<tokio::sync::RwLockWriteGuard<'a, ()>>,
}

async fn lock_all(nodes: &[Arc<Node>]) -> Locked<'_> {
    let mut order: Vec<&Arc<Node>> = nodes.iter().collect();
    order.sort_by_key(|n| n.ino);
    order.dedup_by_key(|n| n.ino);
    let mut guards = Vec::with_capacity(order.len());
    for n in order {
        guards.push(n.io.write().await);
    }
    Locked { _guards: guards }
}

fn orphan_key(ino: u64) -> Bytes {
    Bytes::copy_from_slice(&ino.to_be_bytes())
}

impl Fs {
    /// The entry `name` of directory `dir`, if any.
    pub(crate) async fn entry(&self, dir: u64, name: &[u8]) -> FsResult<Option<(u64, FileKind)>> {
        match self.store.kv_get(dir, &entry_key(name)).await {
            Ok(Some(v)) => Ok(Some(decode_entry(dir, &v)?)),
            Ok(None) => Ok(None),
            Err(StoreError::NotFound { .. }) => Err(FsError::NotFound(format!("directory {dir}"))),
            Err(e) => Err(e.into()),
        }
    }

    async fn dir_inode(&self, dir: u64) -> FsResult<Inode> {
        let d = self.inode(dir).await?;
        if d.kind() != FileKind::Dir {
            return Err(FsError::NotDir(dir));
        }
        Ok(d)
    }

    /// Looks `name` up in directory `parent`; the inode returned counts as one kernel
    /// reference (give it back with [`Fs::forget`]).
    ///
    /// Atomic with respect to the namespace changes of `parent`: the directory's lock is held
    /// (shared) from reading the entry to counting the reference, so a lookup racing a
    /// `rename` that replaces `name` sees the old inode or the new one, never neither, and the
    /// inode it returns cannot be deleted before the kernel forgets it.
    pub async fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Inode> {
        if name.len() > crate::dirent::NAME_MAX {
            return Err(FsError::NameTooLong(name.len()));
        }
        let pnode = self.cache.get(parent);
        let _g = pnode.io.read().await;
        let p = self.load(&pnode).await?;
        if p.kind() != FileKind::Dir {
            return Err(FsError::NotDir(parent));
        }
        if name == b"." {
            Self::add_ref(&pnode);
            return Ok(p);
        }
        let child = if name == b".." {
            p.parent
        } else {
            match self.entry(parent, name).await? {
                Some((ino, _)) => ino,
                None => {
                    return Err(FsError::NotFound(format!(
                        "{:?} in directory {parent}",
                        String::from_utf8_lossy(name)
                    )));
                }
            }
        };
        let cnode = self.cache.get(child);
        let i = self.load(&cnode).await?;
        Self::add_ref(&cnode);
        Ok(i)
    }

    /// Creates a new inode named `name` in `parent`; `data` is written to it (symlink target).
    async fn make_node(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &[u8],
        mut mode: u32,
        rdev: u64,
        data: Option<Bytes>,
    ) -> FsResult<Inode> {
        self.check_rw()?;
        check_name(name)?;
        let kind = FileKind::from_mode(mode)
            .ok_or_else(|| FsError::Invalid(format!("mode {mode:#o} has no valid file type")))?;
        let pnode = self.cache.get(parent);
        let _g = pnode.io.write().await;
        let mut p = self.load(&pnode).await?;
        if p.kind() != FileKind::Dir {
            return Err(FsError::NotDir(parent));
        }
        if p.nlink == 0 {
            return Err(FsError::NotFound(format!("directory {parent} was removed")));
        }
        if self.entry(parent, name).await?.is_some() {
            return Err(FsError::Exists(String::from_utf8_lossy(name).into_owned()));
        }
        // Group inheritance as ext4 (inode_init_owner).
        let mut gid = ctx.gid;
        if p.mode & libc::S_ISGID != 0 {
            gid = p.gid;
            if kind == FileKind::Dir {
                mode |= libc::S_ISGID;
            }
        } else if kind != FileKind::Dir
            && mode & (libc::S_ISGID | libc::S_IXGRP) == (libc::S_ISGID | libc::S_IXGRP)
            && !ctx.is_root()
            && gid != ctx.gid
        {
            mode &= !libc::S_ISGID;
        }
        let id = self.store.alloc_object_id().await?;
        let now = Timestamp::now();
        let size = data.as_ref().map_or(0, |d| d.len() as u64);
        let child = Inode {
            ino: id,
            mode,
            uid: ctx.uid,
            gid,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            rdev: if matches!(kind, FileKind::CharDev | FileKind::BlockDev) {
                rdev
            } else {
                0
            },
            flags: 0,
            size,
            parent: if kind == FileKind::Dir { parent } else { 0 },
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        };
        let mut ops = vec![Op::Create { id }];
        if let Some(d) = data {
            ops.push(Op::Write {
                id,
                offset: 0,
                data: d,
            });
        }
        ops.push(Op::KvPut {
            id: parent,
            key: Bytes::from(entry_key(name)),
            value: Bytes::from(encode_entry(id, kind)),
        });
        if kind == FileKind::Dir {
            p.nlink = p.nlink.saturating_add(1);
        }
        p.mtime = now;
        p.ctime = now;
        self.commit(ops, &[&child, &p], &[]).await?;
        Self::add_ref(&self.cache.get(id));
        Ok(child)
    }

    /// Creates a file, device node, fifo or socket (`mknod`); `mode` includes the type bits
    /// (none means a regular file) and is already masked by the umask. Like every operation
    /// that returns a new entry, the inode counts as one kernel reference ([`Fs::forget`]).
    pub async fn mknod(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
    ) -> FsResult<Inode> {
        let mode = if mode & libc::S_IFMT == 0 {
            mode | libc::S_IFREG
        } else {
            mode
        };
        if mode & libc::S_IFMT == libc::S_IFDIR {
            return self.mkdir(ctx, parent, name, mode).await;
        }
        if mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(FsError::Invalid("mknod cannot make symlinks".into()));
        }
        self.make_node(ctx, parent, name, mode, rdev, None).await
    }

    /// Creates and opens a regular file (`open(O_CREAT|O_EXCL)` as FUSE `create`).
    pub async fn create(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> FsResult<(Inode, Fh)> {
        let mode = libc::S_IFREG | (mode & 0o7777);
        let i = self.make_node(ctx, parent, name, mode, 0, None).await?;
        match self.open(ctx, i.ino, flags & !libc::O_TRUNC).await {
            Ok(fh) => Ok((i, fh)),
            Err(e) => {
                // The caller gets an error, not the entry: give its reference back.
                self.forget(i.ino, 1).await;
                Err(e)
            }
        }
    }

    /// Creates a directory.
    pub async fn mkdir(&self, ctx: Ctx, parent: u64, name: &[u8], mode: u32) -> FsResult<Inode> {
        self.make_node(ctx, parent, name, libc::S_IFDIR | (mode & 0o7777), 0, None)
            .await
    }

    /// Creates a symbolic link `name` -> `target`.
    pub async fn symlink(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> FsResult<Inode> {
        if target.is_empty() {
            return Err(FsError::NotFound("empty symlink target".into()));
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong(target.len()));
        }
        let data = Bytes::copy_from_slice(target);
        self.make_node(ctx, parent, name, libc::S_IFLNK | 0o777, 0, Some(data))
            .await
    }

    /// The target of a symbolic link.
    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let i = self.inode(ino).await?;
        if i.kind() != FileKind::Symlink {
            return Err(FsError::Invalid(format!("inode {ino} is not a symlink")));
        }
        let len = usize::try_from(i.size)
            .unwrap_or(usize::MAX)
            .min(SYMLINK_MAX);
        let mut buf = vec![0u8; len];
        let n = self.store.read(ino, 0, &mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Adds hard link `newname` in `newparent` to inode `ino`.
    pub async fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Inode> {
        self.check_rw()?;
        check_name(newname)?;
        let nodes = [self.cache.get(ino), self.cache.get(newparent)];
        let _l = lock_all(&nodes).await;
        let mut i = self.load(&nodes[0]).await?;
        let mut p = self.load(&nodes[1]).await?;
        if p.kind() != FileKind::Dir {
            return Err(FsError::NotDir(newparent));
        }
        if p.nlink == 0 {
            return Err(FsError::NotFound(format!(
                "directory {newparent} was removed"
            )));
        }
        if i.kind() == FileKind::Dir {
            return Err(FsError::NotPermitted("hard link to a directory".into()));
        }
        if i.nlink == 0 {
            return Err(FsError::NotFound(format!("inode {ino} was unlinked")));
        }
        if i.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks(ino));
        }
        if self.entry(newparent, newname).await?.is_some() {
            return Err(FsError::Exists(
                String::from_utf8_lossy(newname).into_owned(),
            ));
        }
        let now = Timestamp::now();
        i.nlink += 1;
        i.ctime = now;
        p.mtime = now;
        p.ctime = now;
        let ops = vec![Op::KvPut {
            id: newparent,
            key: Bytes::from(entry_key(newname)),
            value: Bytes::from(encode_entry(ino, i.kind())),
        }];
        self.commit(ops, &[&i, &p], &[]).await?;
        Self::add_ref(&nodes[0]);
        Ok(i)
    }

    /// Whether directory `dir` has no entries.
    async fn dir_is_empty(&self, dir: u64) -> FsResult<bool> {
        let recs = self.store.kv_scan(dir, None, 1).await?;
        Ok(recs
            .first()
            .is_none_or(|(k, _)| parse_entry_key(k).is_none()))
    }

    /// Removes a non-directory entry.
    pub async fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false).await
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, true).await
    }

    async fn remove(&self, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        self.check_rw()?;
        if name.len() > crate::dirent::NAME_MAX {
            return Err(FsError::NameTooLong(name.len()));
        }
        if dir && name == b"." {
            return Err(FsError::Invalid("rmdir of \".\"".into()));
        }
        if dir && name == b".." {
            return Err(FsError::NotEmpty(parent));
        }
        loop {
            self.dir_inode(parent).await?;
            let Some((child, _)) = self.entry(parent, name).await? else {
                return Err(FsError::NotFound(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            };
            let nodes = [self.cache.get(parent), self.cache.get(child)];
            let locks = lock_all(&nodes).await;
            if self.entry(parent, name).await?.map(|e| e.0) != Some(child) {
                continue; // raced with a rename or unlink: look again
            }
            let mut p = self.load(&nodes[0]).await?;
            let mut c = self.load(&nodes[1]).await?;
            let now = Timestamp::now();
            let ops = vec![Op::KvDelete {
                id: parent,
                key: Bytes::from(entry_key(name)),
            }];
            p.mtime = now;
            p.ctime = now;
            if dir {
                if c.kind() != FileKind::Dir {
                    return Err(FsError::NotDir(child));
                }
                if !self.dir_is_empty(child).await? {
                    return Err(FsError::NotEmpty(child));
                }
                p.nlink = p.nlink.saturating_sub(1);
                c.nlink = 1; // drop_link takes it to zero
            } else if c.kind() == FileKind::Dir {
                return Err(FsError::IsDir(child));
            }
            let orphaned = self.drop_link(ops, &nodes[1], &mut c, &[&p], now).await?;
            drop(locks);
            if orphaned {
                self.reap_if_idle(&nodes[1]).await;
            }
            return Ok(());
        }
    }

    /// Commits `ops` with one link of `c` dropped: deletes it, or puts it on the orphan list
    /// if it is still open or the kernel still references it (its last close or forget then
    /// deletes it). Either way it is one store batch. Caller holds the locks of `c` and
    /// `others`; `true` if `c` went on the orphan list (the caller then calls
    /// [`Fs::reap_if_idle`] once it has dropped its locks).
    async fn drop_link(
        &self,
        mut ops: Vec<Op>,
        cnode: &Node,
        c: &mut Inode,
        others: &[&Inode],
        now: Timestamp,
    ) -> FsResult<bool> {
        c.nlink = c.nlink.saturating_sub(1);
        c.ctime = now;
        if c.nlink > 0 {
            let mut upd: Vec<&Inode> = others.to_vec();
            upd.push(c);
            self.commit(ops, &upd, &[]).await?;
            return Ok(false);
        }
        if cnode.state.lock().in_use() {
            ops.push(Op::KvPut {
                id: ORPHANS_ID,
                key: orphan_key(c.ino),
                value: Bytes::new(),
            });
            let mut upd: Vec<&Inode> = others.to_vec();
            upd.push(c);
            self.commit(ops, &upd, &[]).await?;
            Ok(true)
        } else {
            ops.push(Op::Delete { id: c.ino });
            self.commit(ops, others, &[c.ino]).await?;
            Ok(false)
        }
    }

    /// Whether `dir` is `anc` or lies below it (walks parent pointers up to the root).
    async fn is_within(&self, dir: u64, anc: u64) -> FsResult<bool> {
        let mut cur = dir;
        for _ in 0..1_000_000 {
            if cur == anc {
                return Ok(true);
            }
            if cur == ROOT_ID {
                return Ok(false);
            }
            cur = self.inode(cur).await?.parent;
        }
        Err(FsError::Corrupt {
            id: dir,
            detail: "directory parent chain does not end".into(),
        })
    }

    /// Renames `parent/name` to `newparent/newname` (`renameat2`, flags
    /// [`RENAME_NOREPLACE`] / [`RENAME_EXCHANGE`]). Atomic: one store batch.
    pub async fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        self.check_rw()?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(FsError::Invalid(format!("rename flags {flags:#x}")));
        }
        check_name(name)?;
        check_name(newname)?;
        loop {
            self.dir_inode(parent).await?;
            self.dir_inode(newparent).await?;
            let Some((src, skind)) = self.entry(parent, name).await? else {
                return Err(FsError::NotFound(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            };
            let dst = self.entry(newparent, newname).await?;
            let moves_dir = skind == FileKind::Dir
                || dst.is_some_and(|d| d.1 == FileKind::Dir && flags & RENAME_EXCHANGE != 0);
            let _tree = if moves_dir && parent != newparent {
                Some(self.rename_lock.lock().await)
            } else {
                None
            };
            let mut nodes = vec![
                self.cache.get(parent),
                self.cache.get(newparent),
                self.cache.get(src),
            ];
            if let Some((d, _)) = dst {
                nodes.push(self.cache.get(d));
            }
            let locks = lock_all(&nodes).await;
            if self.entry(parent, name).await? != Some((src, skind))
                || self.entry(newparent, newname).await? != dst
            {
                continue;
            }
            if dst.is_some_and(|d| d.0 == src) {
                return Ok(()); // same inode: nothing to do
            }
            let now = Timestamp::now();
            let mut inodes: HashMap<u64, Inode> = HashMap::new();
            for n in &nodes {
                let i = self.load(n).await?;
                inodes.insert(n.ino, i);
            }
            if inodes.get(&newparent).is_some_and(|p| p.nlink == 0) {
                return Err(FsError::NotFound(format!(
                    "directory {newparent} was removed"
                )));
            }
            let mut ops = Vec::new();
            let mut deleted = Vec::new();
            let mut orphaned: Option<Arc<Node>> = None;
            let okey = Bytes::from(entry_key(name));
            let nkey = Bytes::from(entry_key(newname));
            if flags & RENAME_EXCHANGE != 0 {
                let Some((d, dkind)) = dst else {
                    return Err(FsError::NotFound(
                        String::from_utf8_lossy(newname).into_owned(),
                    ));
                };
                if parent != newparent {
                    if skind == FileKind::Dir && self.is_within(newparent, src).await? {
                        return Err(FsError::Invalid("rename into own subdirectory".into()));
                    }
                    if dkind == FileKind::Dir && self.is_within(parent, d).await? {
                        return Err(FsError::Invalid("rename into own subdirectory".into()));
                    }
                }
                ops.push(Op::KvPut {
                    id: parent,
                    key: okey,
                    value: Bytes::from(encode_entry(d, dkind)),
                });
                ops.push(Op::KvPut {
                    id: newparent,
                    key: nkey,
                    value: Bytes::from(encode_entry(src, skind)),
                });
                if parent != newparent {
                    if skind == FileKind::Dir {
                        adjust(&mut inodes, src, |i| i.parent = newparent);
                        adjust(&mut inodes, parent, |i| i.nlink = i.nlink.saturating_sub(1));
                        adjust(&mut inodes, newparent, |i| {
                            i.nlink = i.nlink.saturating_add(1)
                        });
                    }
                    if dkind == FileKind::Dir {
                        adjust(&mut inodes, d, |i| i.parent = parent);
                        adjust(&mut inodes, newparent, |i| {
                            i.nlink = i.nlink.saturating_sub(1)
                        });
                        adjust(&mut inodes, parent, |i| i.nlink = i.nlink.saturating_add(1));
                    }
                }
                adjust(&mut inodes, d, |i| i.ctime = now);
            } else {
                if let Some((d, dkind)) = dst {
                    if flags & RENAME_NOREPLACE != 0 {
                        return Err(FsError::Exists(
                            String::from_utf8_lossy(newname).into_owned(),
                        ));
                    }
                    match (skind == FileKind::Dir, dkind == FileKind::Dir) {
                        (true, false) => return Err(FsError::NotDir(d)),
                        (false, true) => return Err(FsError::IsDir(d)),
                        (true, true) => {
                            if !self.dir_is_empty(d).await? {
                                return Err(FsError::NotEmpty(d));
                            }
                        }
                        (false, false) => {}
                    }
                }
                if skind == FileKind::Dir
                    && parent != newparent
                    && self.is_within(newparent, src).await?
                {
                    return Err(FsError::Invalid("rename into own subdirectory".into()));
                }
                ops.push(Op::KvDelete {
                    id: parent,
                    key: okey,
                });
                ops.push(Op::KvPut {
                    id: newparent,
                    key: nkey,
                    value: Bytes::from(encode_entry(src, skind)),
                });
                if skind == FileKind::Dir && parent != newparent {
                    adjust(&mut inodes, src, |i| i.parent = newparent);
                    adjust(&mut inodes, parent, |i| i.nlink = i.nlink.saturating_sub(1));
                    adjust(&mut inodes, newparent, |i| {
                        i.nlink = i.nlink.saturating_add(1)
                    });
                }
                if let Some((d, dkind)) = dst {
                    if dkind == FileKind::Dir {
                        adjust(&mut inodes, newparent, |i| {
                            i.nlink = i.nlink.saturating_sub(1)
                        });
                    }
                    let dnode = self.cache.get(d);
                    let in_use = dnode.state.lock().in_use();
                    let mut victim = inodes
                        .remove(&d)
                        .ok_or_else(|| FsError::Io("victim inode vanished".into()))?;
                    victim.nlink = if dkind == FileKind::Dir {
                        0
                    } else {
                        victim.nlink.saturating_sub(1)
                    };
                    victim.ctime = now;
                    if victim.nlink > 0 {
                        inodes.insert(d, victim);
                    } else if in_use {
                        ops.push(Op::KvPut {
                            id: ORPHANS_ID,
                            key: orphan_key(d),
                            value: Bytes::new(),
                        });
                        inodes.insert(d, victim);
                        orphaned = Some(dnode);
                    } else {
                        ops.push(Op::Delete { id: d });
                        deleted.push(d);
                    }
                }
            }
            adjust(&mut inodes, src, |i| i.ctime = now);
            for p in [parent, newparent] {
                adjust(&mut inodes, p, |i| {
                    i.mtime = now;
                    i.ctime = now;
                });
            }
            let upd: Vec<&Inode> = inodes.values().collect();
            self.commit(ops, &upd, &deleted).await?;
            drop(locks);
            if let Some(d) = orphaned {
                self.reap_if_idle(&d).await;
            }
            return Ok(());
        }
    }

    /// Lists directory `ino` from `offset` (0 = start; otherwise an entry's `offset`), at most
    /// `max` entries, "." and ".." first.
    pub async fn readdir(&self, ino: u64, offset: u64, max: usize) -> FsResult<Vec<DirEntry>> {
        let d = self.dir_inode(ino).await?;
        let mut out = Vec::new();
        if offset == 0 && out.len() < max {
            out.push(DirEntry {
                ino,
                kind: FileKind::Dir,
                name: b".".to_vec(),
                offset: 1,
            });
        }
        if offset <= 1 && out.len() < max {
            out.push(DirEntry {
                ino: d.parent,
                kind: FileKind::Dir,
                name: b"..".to_vec(),
                offset: 2,
            });
        }
        let mut after = resume_key(offset.max(FIRST_COOKIE - 1));
        while out.len() < max {
            let want = (max - out.len()).min(1024);
            let recs = match self.store.kv_scan(ino, Some(&after), want).await {
                Ok(r) => r,
                Err(StoreError::NotFound { .. }) => break, // removed while open: empty
                Err(e) => return Err(e.into()),
            };
            let n = recs.len();
            for (k, v) in recs {
                let Some((cookie, name)) = parse_entry_key(&k) else {
                    return Ok(out); // past the entries (xattr keys)
                };
                let (child, kind) = decode_entry(ino, &v)?;
                out.push(DirEntry {
                    ino: child,
                    kind,
                    name: name.to_vec(),
                    offset: cookie,
                });
                after = k.to_vec();
            }
            if n < want {
                break;
            }
        }
        Ok(out)
    }

    /// Like [`Fs::readdir`], with each entry's attributes (entries that vanish meanwhile are
    /// skipped).
    pub async fn readdirplus(
        &self,
        ino: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(DirEntry, Inode)>> {
        let entries = self.readdir(ino, offset, max).await?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            match self.inode(e.ino).await {
                Ok(i) => out.push((e, i)),
                Err(FsError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }
}

fn adjust(inodes: &mut HashMap<u64, Inode>, ino: u64, f: impl FnOnce(&mut Inode)) {
    if let Some(i) = inodes.get_mut(&ino) {
        f(i);
    }
}
