//! File data operations of [`Fs`]: read, write (with `O_APPEND`) and fallocate.
//!
//! Writes inside the current size take the inode's I/O lock shared, so they run in parallel;
//! they update mtime/ctime in the cache only (written with the next attribute change, at last
//! close, fsync or sync). Writes that extend the file, appends and anything touching set-id
//! bits take it exclusive and write data and attributes in one batch.

use crate::error::{FsError, FsResult};
use crate::fs::{Ctx, Fh, Fs, MAX_FILE_SIZE, kill_caps};
use crate::inode::{FL_HAS_CAPS, FileKind, Timestamp};
use bytes::Bytes;
use ingot_pool::store::Op;

/// `fallocate` mode: keep the file size.
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// `fallocate` mode: deallocate the range (needs `KEEP_SIZE`).
pub const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;

/// The store ops writing `parts`, contiguous pieces of one write at `offset` (empty
/// pieces skipped).
fn write_ops(ino: u64, offset: u64, parts: Vec<Bytes>) -> Vec<Op> {
    let mut ops = Vec::with_capacity(parts.len());
    let mut pos = offset;
    for data in parts {
        let n = data.len() as u64;
        if n > 0 {
            ops.push(Op::Write {
                id: ino,
                offset: pos,
                data,
            });
        }
        pos += n;
    }
    ops
}

/// Read buffers kept for reuse ([`ReadBuf`]): a 1 MiB read then costs neither a fresh
/// allocation (page-faulted and zeroed by the kernel) nor a zero fill.
static READ_BUFS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());
/// Buffers kept at most (one per request in flight is enough).
const READ_BUFS_KEPT: usize = 16;
/// Largest buffer kept (larger ones, from unusual request sizes, are freed).
const READ_BUF_MAX: usize = 4 << 20;

/// The data of a read ([`Fs::read_buf`]): derefs to the bytes; its memory goes back to a
/// small pool when dropped.
#[derive(Debug, Default)]
pub struct ReadBuf(Vec<u8>);

impl ReadBuf {
    /// A buffer of `n` bytes whose contents are unspecified (old data of earlier reads):
    /// the caller overwrites all of it.
    fn take(n: usize) -> Self {
        let mut v = READ_BUFS.lock().pop().unwrap_or_default();
        if v.len() < n {
            // Only the part never used before is zero-filled (once per buffer).
            v.resize(n, 0);
        }
        v.truncate(n);
        ReadBuf(v)
    }

    /// The bytes, as an owned vector (taken out of the pool).
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 || v.capacity() > READ_BUF_MAX {
            return;
        }
        let mut kept = READ_BUFS.lock();
        if kept.len() < READ_BUFS_KEPT {
            kept.push(v);
        }
    }
}

impl Fs {
    /// Reads up to `size` bytes at `offset` from regular file `ino`; short at end of file.
    pub async fn read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        Ok(self.read_buf(ino, offset, size).await?.into_vec())
    }

    /// [`Fs::read`] into a reused buffer (the FUSE read path: no allocation or zero fill
    /// per request).
    pub async fn read_buf(&self, ino: u64, offset: u64, size: u32) -> FsResult<ReadBuf> {
        let node = self.cache.get(ino);
        let _g = node.io.read().await;
        let i = self.load(&node).await?;
        match i.kind() {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir(ino)),
            _ => return Err(FsError::Invalid(format!("read of non-regular inode {ino}"))),
        }
        if offset >= i.size {
            return Ok(ReadBuf::default());
        }
        let n = (i.size - offset).min(u64::from(size)) as usize;
        let mut buf = ReadBuf::take(n);
        // The store writes every byte of `buf[..got]` (holes as zeroes).
        let got = self.store.read(ino, offset, &mut buf.0).await?.min(n);
        // Bytes past the object's data but inside the inode size read as zeroes.
        buf.0[got..].fill(0);
        Ok(buf)
    }

    /// Writes `data` at `offset` (or at the end for a handle opened with `O_APPEND`) and
    /// returns the bytes written. A write by a non-root caller clears suid (and sgid when
    /// group-executable), and any write drops `security.capability`, as ext4 does.
    pub async fn write(
        &self,
        ctx: Ctx,
        ino: u64,
        fh: Fh,
        offset: u64,
        data: Bytes,
    ) -> FsResult<u32> {
        self.write_parts(ctx, ino, fh, offset, vec![data]).await
    }

    /// Copies `data`, the bytes of a write at `offset`, into buffers of their own cut at
    /// the store's record boundaries (one buffer when the store has no records), for
    /// [`Fs::write_parts`]: the store keeps each whole record's buffer as it is (in its
    /// record cache too) without a copy, and a record kept pins no other's bytes. For
    /// callers that must copy a borrowed write anyway (the FUSE adapter).
    pub fn write_buffers(&self, offset: u64, data: &[u8]) -> Vec<Bytes> {
        let rs = match self.store.record_size() {
            Some(rs) if rs > 0 && data.len() > rs as usize => u64::from(rs),
            _ => return vec![Bytes::copy_from_slice(data)],
        };
        let mut parts = Vec::with_capacity(data.len() / rs as usize + 2);
        let mut rest = data;
        let mut pos = offset;
        while !rest.is_empty() {
            let n = ((rs - pos % rs) as usize).min(rest.len());
            let (part, tail) = rest.split_at(n);
            parts.push(Bytes::copy_from_slice(part));
            rest = tail;
            pos += n as u64;
        }
        parts
    }

    /// [`Fs::write`] of one write given in pieces: `parts` are contiguous, the first at
    /// `offset` (as [`Fs::write_buffers`] cuts them); written in one store batch (one op
    /// per piece), so atomically as a single buffer would be.
    pub async fn write_parts(
        &self,
        ctx: Ctx,
        ino: u64,
        fh: Fh,
        offset: u64,
        parts: Vec<Bytes>,
    ) -> FsResult<u32> {
        self.check_rw()?;
        let h = self.handle(fh)?;
        if h.ino != ino {
            return Err(FsError::BadHandle(fh));
        }
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let written =
            u32::try_from(len).map_err(|_| FsError::Invalid("write over 4 GiB".into()))?;
        let node = self.cache.get(ino);
        if !h.append {
            let end = offset
                .checked_add(len)
                .ok_or(FsError::FileTooBig(u64::MAX))?;
            let g = node.io.read().await;
            let i = self.load(&node).await?;
            if i.kind() != FileKind::File {
                return Err(FsError::Invalid(format!(
                    "write to non-regular inode {ino}"
                )));
            }
            let setid = (i.mode & (libc::S_ISUID | libc::S_ISGID) != 0 && !ctx.is_root())
                || i.flags & FL_HAS_CAPS != 0;
            if len == 0 {
                return Ok(0);
            }
            if end <= i.size && !setid {
                self.store.apply(write_ops(ino, offset, parts)).await?;
                let now = Timestamp::now();
                let mut st = node.state.lock();
                if let Some(c) = st.inode.as_mut() {
                    c.mtime = now;
                    c.ctime = now;
                    st.dirty = true;
                }
                drop(st);
                drop(g);
                return Ok(written);
            }
        }
        let _g = node.io.write().await;
        let mut i = self.load(&node).await?;
        if i.kind() != FileKind::File {
            return Err(FsError::Invalid(format!(
                "write to non-regular inode {ino}"
            )));
        }
        if len == 0 {
            return Ok(0);
        }
        let offset = if h.append { i.size } else { offset };
        let end = offset
            .checked_add(len)
            .ok_or(FsError::FileTooBig(u64::MAX))?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig(end));
        }
        let now = Timestamp::now();
        i.size = i.size.max(end);
        i.mtime = now;
        i.ctime = now;
        if !ctx.is_root() {
            i.mode &= !libc::S_ISUID;
            if i.mode & libc::S_IXGRP != 0 {
                i.mode &= !libc::S_ISGID;
            }
        }
        let mut ops = write_ops(ino, offset, parts);
        if i.flags & FL_HAS_CAPS != 0 {
            kill_caps(&mut i, &mut ops);
        }
        self.commit(ops, &[&i], &[]).await?;
        Ok(written)
    }

    /// `fallocate(2)`: mode 0 (extend the size), `KEEP_SIZE`, or `PUNCH_HOLE | KEEP_SIZE`.
    /// Other modes give `EOPNOTSUPP`. Space is not reserved (the pool is copy-on-write).
    pub async fn fallocate(&self, ino: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        self.check_rw()?;
        if len == 0 {
            return Err(FsError::Invalid("fallocate of length 0".into()));
        }
        let punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        if mode != 0 && mode != FALLOC_FL_KEEP_SIZE && mode != punch {
            return Err(FsError::NotSupported(format!("fallocate mode {mode:#x}")));
        }
        let end = offset
            .checked_add(len)
            .ok_or(FsError::FileTooBig(u64::MAX))?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig(end));
        }
        let node = self.cache.get(ino);
        let _g = node.io.write().await;
        let mut i = self.load(&node).await?;
        match i.kind() {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir(ino)),
            _ => return Err(FsError::NoDevice(ino)),
        }
        let now = Timestamp::now();
        let mut ops = Vec::new();
        if mode == punch {
            if offset < i.size {
                let l = end.min(i.size) - offset;
                ops.push(Op::PunchHole {
                    id: ino,
                    offset,
                    len: l,
                });
            }
            i.mtime = now;
            i.ctime = now;
        } else if mode == 0 && end > i.size {
            ops.push(Op::Truncate { id: ino, size: end });
            i.size = end;
            i.mtime = now;
            i.ctime = now;
        } else {
            return Ok(());
        }
        self.commit(ops, &[&i], &[]).await
    }
}
