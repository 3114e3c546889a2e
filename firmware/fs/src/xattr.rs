//! Extended attributes of [`Fs`], kept in the inode object's map under the `X` tag.
//!
//! Namespaces as ext4: `user.*` on regular files and directories; `trusted.*` for root only
//! (hidden from others); `security.*` readable by all, writable by root; anything else
//! (`system.*` ACLs included) is `EOPNOTSUPP`.

use crate::dirent::{TAG_XATTR, xattr_key};
use crate::error::{FsError, FsResult};
use crate::fs::{Ctx, Fs};
use crate::inode::{FL_HAS_CAPS, FileKind, Timestamp};
use bytes::Bytes;
use ingot_pool::store::{MAX_VALUE_LEN, Op};

/// `setxattr` flag: fail if the attribute exists.
pub const XATTR_CREATE: i32 = 1;
/// `setxattr` flag: fail if the attribute does not exist.
pub const XATTR_REPLACE: i32 = 2;
/// The file-capabilities xattr, removed on write, truncate and chown.
pub const XATTR_CAPS: &[u8] = b"security.capability";
/// Longest xattr name.
pub const XATTR_NAME_MAX: usize = 255;

#[derive(PartialEq)]
enum Access {
    Read,
    Write,
}

fn check(ctx: Ctx, kind: FileKind, name: &[u8], access: Access) -> FsResult<()> {
    let lossy = || String::from_utf8_lossy(name).into_owned();
    if name.is_empty() {
        return Err(FsError::Invalid("empty xattr name".into()));
    }
    if name.len() > XATTR_NAME_MAX {
        return Err(FsError::Range {
            needed: name.len(),
            given: XATTR_NAME_MAX,
        });
    }
    if name.starts_with(b"user.") {
        if !matches!(kind, FileKind::File | FileKind::Dir) {
            return Err(match access {
                Access::Write => {
                    FsError::NotPermitted(format!("user xattr {} on a special file", lossy()))
                }
                Access::Read => FsError::NoData(lossy()),
            });
        }
        Ok(())
    } else if name.starts_with(b"trusted.") {
        if ctx.is_root() {
            Ok(())
        } else {
            Err(match access {
                Access::Write => FsError::NotPermitted(format!("trusted xattr {}", lossy())),
                Access::Read => FsError::NoData(lossy()),
            })
        }
    } else if name.starts_with(b"security.") {
        if access == Access::Write && !ctx.is_root() {
            Err(FsError::NotPermitted(format!("security xattr {}", lossy())))
        } else {
            Ok(())
        }
    } else {
        Err(FsError::NotSupported(format!(
            "xattr namespace of {}",
            lossy()
        )))
    }
}

impl Fs {
    /// The value of xattr `name`.
    pub async fn getxattr(&self, ctx: Ctx, ino: u64, name: &[u8]) -> FsResult<Bytes> {
        let i = self.inode(ino).await?;
        check(ctx, i.kind(), name, Access::Read)?;
        self.store
            .kv_get(ino, &xattr_key(name))
            .await?
            .ok_or_else(|| FsError::NoData(String::from_utf8_lossy(name).into_owned()))
    }

    /// The names of the xattrs of `ino` the caller may see, each NUL-terminated.
    pub async fn listxattr(&self, ctx: Ctx, ino: u64) -> FsResult<Vec<u8>> {
        self.inode(ino).await?;
        let mut out = Vec::new();
        let mut after = vec![TAG_XATTR];
        loop {
            let recs = self.store.kv_scan(ino, Some(&after), 256).await?;
            let n = recs.len();
            for (k, _) in recs {
                let Some((&TAG_XATTR, name)) = k.split_first() else {
                    return Ok(out);
                };
                if !name.starts_with(b"trusted.") || ctx.is_root() {
                    out.extend_from_slice(name);
                    out.push(0);
                }
                after = k.to_vec();
            }
            if n < 256 {
                return Ok(out);
            }
        }
    }

    /// Sets xattr `name` ([`XATTR_CREATE`] / [`XATTR_REPLACE`] flags).
    pub async fn setxattr(
        &self,
        ctx: Ctx,
        ino: u64,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        self.check_rw()?;
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 || flags == XATTR_CREATE | XATTR_REPLACE {
            return Err(FsError::Invalid(format!("setxattr flags {flags:#x}")));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(FsError::Range {
                needed: value.len(),
                given: MAX_VALUE_LEN,
            });
        }
        let node = self.cache.get(ino);
        let _g = node.io.write().await;
        let mut i = self.load(&node).await?;
        check(ctx, i.kind(), name, Access::Write)?;
        let key = xattr_key(name);
        let exists = self.store.kv_get(ino, &key).await?.is_some();
        if exists && flags & XATTR_CREATE != 0 {
            return Err(FsError::Exists(String::from_utf8_lossy(name).into_owned()));
        }
        if !exists && flags & XATTR_REPLACE != 0 {
            return Err(FsError::NoData(String::from_utf8_lossy(name).into_owned()));
        }
        i.ctime = Timestamp::now();
        if name == XATTR_CAPS {
            i.flags |= FL_HAS_CAPS;
        }
        let ops = vec![Op::KvPut {
            id: ino,
            key: Bytes::from(key),
            value: Bytes::copy_from_slice(value),
        }];
        self.commit(ops, &[&i], &[]).await
    }

    /// Removes xattr `name` (`ENODATA` if absent).
    pub async fn removexattr(&self, ctx: Ctx, ino: u64, name: &[u8]) -> FsResult<()> {
        self.check_rw()?;
        let node = self.cache.get(ino);
        let _g = node.io.write().await;
        let mut i = self.load(&node).await?;
        check(ctx, i.kind(), name, Access::Write)?;
        let key = xattr_key(name);
        if self.store.kv_get(ino, &key).await?.is_none() {
            return Err(FsError::NoData(String::from_utf8_lossy(name).into_owned()));
        }
        i.ctime = Timestamp::now();
        self.commit(
            vec![Op::KvDelete {
                id: ino,
                key: Bytes::from(key),
            }],
            &[&i],
            &[],
        )
        .await
    }
}
