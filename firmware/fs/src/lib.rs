//! Ingot's POSIX filesystem on the pool's object store.
//!
//! Every inode is one pool object: its attribute record is the encoded [`Inode`], its bytes
//! are the file data (holes stay holes), and its ordered map holds directory entries and
//! xattrs (see [`dirent`]). Fixed objects hold the superblock and the orphan list
//! ([`superblock`]). Each namespace change is one atomic store batch, so a crash leaves either
//! the old or the new state; unlinked-but-open inodes are reclaimed at the next mount.
//!
//! Inode lifetimes follow FUSE's: every inode an operation hands out as a directory entry
//! (`lookup`, `create`, `mknod`, `mkdir`, `symlink`, `link`, `lookup_inode`) counts one kernel
//! reference, given back with [`Fs::forget`] ([`Fs::forget_all`] when the connection ends). An
//! unlinked inode stays, on the orphan list, until it has no open handle and no reference.
//!
//! Errors carry the errno ext4 gives ([`FsError::errno`]). Permission checks are left to the
//! kernel (`default_permissions`); the fs applies set-id inheritance and clearing.

#![forbid(unsafe_code)]

mod cache;
pub mod dirent;
pub mod error;
mod file;
mod fs;
pub mod inode;
pub mod memstore;
mod namespace;
pub mod superblock;
mod xattr;

pub use error::{FsError, FsResult};
pub use file::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, ReadBuf};
pub use fs::{
    Ctx, Fh, Fs, FsOptions, LINK_MAX, MAX_FILE_SIZE, SYMLINK_MAX, SetAttr, StatFs, TimeSet,
};
pub use inode::{FileKind, Inode, Timestamp};
pub use namespace::{DirEntry, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT};
pub use xattr::{XATTR_CAPS, XATTR_CREATE, XATTR_NAME_MAX, XATTR_REPLACE};
