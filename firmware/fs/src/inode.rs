//! Inodes: the attribute record each fs object carries, and its versioned binary encoding.
//!
//! Encoding v1 (little-endian), stored as the object's attribute record:
//! `version u8 = 1 | mode u32 | uid u32 | gid u32 | nlink u32 | rdev u64 | flags u32 |
//! size u64 | parent u64 | atime | mtime | ctime | crtime` where each time is
//! `secs i64 | nsecs u32`. Trailing bytes are ignored so later versions may append fields.
//! Decoding never panics: short or malformed records give [`FsError::Corrupt`].

use crate::error::{FsError, FsResult};
use std::time::{SystemTime, UNIX_EPOCH};

/// Inode flag (private to ingot): the inode has a `security.capability` xattr, which writes,
/// truncates and chowns remove (as the kernel's killpriv does on ext4).
pub const FL_HAS_CAPS: u32 = 1 << 31;

/// Current inode encoding version.
pub const INODE_VERSION: u8 = 1;
/// Length of a v1 record.
pub const INODE_V1_LEN: usize = 1 + 4 * 4 + 8 + 4 + 8 + 8 + 4 * 12;

/// A point in time with nanoseconds, as stored in inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds, `< 1_000_000_000`.
    pub nsecs: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// Converts from a `SystemTime`.
    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsecs: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    Timestamp {
                        secs: -secs,
                        nsecs: 0,
                    }
                } else {
                    Timestamp {
                        secs: -secs - 1,
                        nsecs: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    /// Converts to a `SystemTime`, saturating at what the platform can represent (a corrupt
    /// or extreme record never panics).
    pub fn to_system(self) -> SystemTime {
        use std::time::Duration;
        let nanos = Duration::from_nanos(u64::from(self.nsecs.min(999_999_999)));
        let t = if self.secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(self.secs.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(self.secs.unsigned_abs()))
        };
        match t.and_then(|t| t.checked_add(nanos)) {
            Some(t) => t,
            None if self.secs >= 0 => UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2),
            None => UNIX_EPOCH,
        }
    }
}

/// The kind of an inode, from the `S_IFMT` bits of its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
}

impl FileKind {
    /// The kind a mode's `S_IFMT` bits name, if any.
    pub fn from_mode(mode: u32) -> Option<Self> {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Some(FileKind::File),
            libc::S_IFDIR => Some(FileKind::Dir),
            libc::S_IFLNK => Some(FileKind::Symlink),
            libc::S_IFIFO => Some(FileKind::Fifo),
            libc::S_IFSOCK => Some(FileKind::Socket),
            libc::S_IFCHR => Some(FileKind::CharDev),
            libc::S_IFBLK => Some(FileKind::BlockDev),
            _ => None,
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }

    /// One-byte code stored in directory entries (the `DT_*` value).
    pub fn dtype(self) -> u8 {
        match self {
            FileKind::File => libc::DT_REG,
            FileKind::Dir => libc::DT_DIR,
            FileKind::Symlink => libc::DT_LNK,
            FileKind::Fifo => libc::DT_FIFO,
            FileKind::Socket => libc::DT_SOCK,
            FileKind::CharDev => libc::DT_CHR,
            FileKind::BlockDev => libc::DT_BLK,
        }
    }

    /// The kind of a `DT_*` code.
    pub fn from_dtype(d: u8) -> Option<Self> {
        match d {
            libc::DT_REG => Some(FileKind::File),
            libc::DT_DIR => Some(FileKind::Dir),
            libc::DT_LNK => Some(FileKind::Symlink),
            libc::DT_FIFO => Some(FileKind::Fifo),
            libc::DT_SOCK => Some(FileKind::Socket),
            libc::DT_CHR => Some(FileKind::CharDev),
            libc::DT_BLK => Some(FileKind::BlockDev),
            _ => None,
        }
    }
}

/// An inode's attributes. `ino` is the object id; it is not part of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number (the object id).
    pub ino: u64,
    /// Full mode: type bits and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Inode flags (`FS_*_FL`), kept for future use.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Parent directory (directories only; 0 otherwise).
    pub parent: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last data modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Creation.
    pub crtime: Timestamp,
}

impl Inode {
    /// The inode's kind. A record with unknown type bits never decodes, so this cannot fail
    /// for a decoded inode; a hand-built one with bad bits reads as a regular file.
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode).unwrap_or(FileKind::File)
    }

    /// Permission bits (incl. suid/sgid/sticky).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// 512-byte blocks reported to `stat` (size rounded up to 4 KiB; holes are not tracked).
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(4096) * 8
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(INODE_V1_LEN);
        b.push(INODE_VERSION);
        b.extend_from_slice(&self.mode.to_le_bytes());
        b.extend_from_slice(&self.uid.to_le_bytes());
        b.extend_from_slice(&self.gid.to_le_bytes());
        b.extend_from_slice(&self.nlink.to_le_bytes());
        b.extend_from_slice(&self.rdev.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.size.to_le_bytes());
        b.extend_from_slice(&self.parent.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            b.extend_from_slice(&t.secs.to_le_bytes());
            b.extend_from_slice(&t.nsecs.to_le_bytes());
        }
        b
    }

    /// Decodes a record of object `ino`.
    pub fn decode(ino: u64, bytes: &[u8]) -> FsResult<Self> {
        let corrupt = |detail: String| FsError::Corrupt { id: ino, detail };
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(corrupt("empty inode record".into()));
        };
        if version != INODE_VERSION {
            return Err(corrupt(format!(
                "inode record version {version}, expected {INODE_VERSION}"
            )));
        }
        if bytes.len() < INODE_V1_LEN {
            return Err(corrupt(format!(
                "inode record of {} bytes, expected at least {INODE_V1_LEN}",
                bytes.len()
            )));
        }
        let mut r = Reader { b: rest };
        let mode = r.u32();
        let uid = r.u32();
        let gid = r.u32();
        let nlink = r.u32();
        let rdev = r.u64();
        let flags = r.u32();
        let size = r.u64();
        let parent = r.u64();
        let mut times = [Timestamp::default(); 4];
        for t in &mut times {
            let secs = r.u64() as i64;
            let nsecs = r.u32();
            if nsecs >= 1_000_000_000 {
                return Err(corrupt(format!(
                    "timestamp nanoseconds {nsecs} out of range"
                )));
            }
            *t = Timestamp { secs, nsecs };
        }
        if FileKind::from_mode(mode).is_none() {
            return Err(corrupt(format!("unknown file type in mode {mode:#o}")));
        }
        Ok(Inode {
            ino,
            mode,
            uid,
            gid,
            nlink,
            rdev,
            flags,
            size,
            parent,
            atime: times[0],
            mtime: times[1],
            ctime: times[2],
            crtime: times[3],
        })
    }
}

/// A bounds-checked little-endian reader over a slice already known to be long enough.
struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some((head, tail)) = self.b.split_at_checked(N) {
            out.copy_from_slice(head);
            self.b = tail;
        }
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Inode {
        Inode {
            ino: 99,
            mode: libc::S_IFREG | 0o4755,
            uid: 1000,
            gid: 100,
            nlink: 3,
            rdev: 0x0803,
            flags: 0,
            size: 1 << 40,
            parent: 0,
            atime: Timestamp { secs: -5, nsecs: 1 },
            mtime: Timestamp {
                secs: 1_700_000_000,
                nsecs: 999_999_999,
            },
            ctime: Timestamp { secs: 0, nsecs: 0 },
            crtime: Timestamp { secs: 42, nsecs: 7 },
        }
    }

    #[test]
    fn roundtrip() {
        let i = sample();
        let b = i.encode();
        assert_eq!(b.len(), INODE_V1_LEN);
        assert_eq!(Inode::decode(99, &b).unwrap(), i);
        let mut longer = b.clone();
        longer.extend_from_slice(b"future");
        assert_eq!(Inode::decode(99, &longer).unwrap(), i);
    }

    #[test]
    fn bad_bytes_never_panic() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(Inode::decode(1, &b[..n]).is_err(), "truncated to {n}");
        }
        let mut v = b.clone();
        v[0] = 2;
        assert!(matches!(Inode::decode(1, &v), Err(FsError::Corrupt { .. })));
        let mut m = b.clone();
        m[1..5].copy_from_slice(&0o777u32.to_le_bytes());
        assert!(Inode::decode(1, &m).is_err());
        let mut t = b;
        let off = 1 + 4 * 4 + 8 + 4 + 8 + 8 + 8;
        t[off..off + 4].copy_from_slice(&2_000_000_000u32.to_le_bytes());
        assert!(Inode::decode(1, &t).is_err());
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        for secs in [i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1] {
            let _ = Timestamp {
                secs,
                nsecs: 999_999_999,
            }
            .to_system();
        }
    }

    #[test]
    fn timestamps_convert_both_ways() {
        for ts in [
            Timestamp { secs: 0, nsecs: 0 },
            Timestamp {
                secs: 1_600_000_000,
                nsecs: 123,
            },
            Timestamp {
                secs: -1,
                nsecs: 500,
            },
            Timestamp {
                secs: -100,
                nsecs: 0,
            },
        ] {
            assert_eq!(Timestamp::from_system(ts.to_system()), ts);
        }
    }
}
