//! Options of a FUSE export.

use std::time::Duration;

/// How to mount an fs over FUSE.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// `fsname` shown in `/proc/mounts` (the subtype is always `ingot`).
    pub fsname: String,
    /// Threads reading `/dev/fuse`, each on its own cloned fd.
    pub reader_threads: usize,
    /// Let the kernel cache writes (`FUSE_WRITEBACK_CACHE`); the kernel then handles `O_APPEND`.
    pub writeback_cache: bool,
    /// Writable opens bypass the kernel page cache (`FOPEN_DIRECT_IO`): one copy per write
    /// instead of two, no page-cache pages allocated for written data; reads through such a
    /// descriptor come from the pool's record cache. Shared mappings keep working (the kernel
    /// needs `FUSE_DIRECT_IO_ALLOW_MMAP`, Linux 6.6+; older kernels get cached writes). No
    /// effect with the writeback cache. `false` = write-through the page cache.
    pub direct_writes: bool,
    /// How long the kernel may cache attributes.
    pub attr_ttl: Duration,
    /// How long the kernel may cache name lookups.
    pub entry_ttl: Duration,
    /// `allow_other`; `None` = only when running as root.
    pub allow_other: Option<bool>,
    /// Mount read-only.
    pub read_only: bool,
    /// Largest write request (bytes); also the read-ahead. Capped by the kernel.
    pub max_write: u32,
    /// Most background requests (read-ahead, async writes) the kernel keeps in flight.
    pub max_background: u16,
    /// The tokio runtime that runs requests; `None` = the current one if any, else a private
    /// runtime owned by the mount.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fsname: "ingot".into(),
            reader_threads: 4,
            writeback_cache: false,
            direct_writes: true,
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            allow_other: None,
            read_only: false,
            max_write: 1 << 20,
            max_background: 64,
            runtime: None,
        }
    }
}
