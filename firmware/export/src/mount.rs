//! Mount lifecycle: clear a stale mountpoint, mount with the session options, and unmount
//! (explicitly or on drop) with a final `fs.sync()`.

use crate::adapter::{Adapter, AdapterConfig};
use crate::config::MountOptions;
use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use ingot_fs::{Fs, FsError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Why mounting or unmounting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The mountpoint is not usable.
    #[error("mountpoint {path}: {detail}")]
    Mountpoint {
        /// The mountpoint.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The kernel mount (or the FUSE handshake) failed.
    #[error("mounting {path} failed: {source}")]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Unmounting failed.
    #[error("unmounting {path} failed: {source}")]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A private runtime could not be started.
    #[error("starting the request runtime failed: {0}")]
    Runtime(std::io::Error),
    /// The final sync failed.
    #[error("final sync after unmounting {path} failed: {source}")]
    Sync {
        /// The mountpoint.
        path: PathBuf,
        /// The error.
        source: FsError,
    },
}

/// A live FUSE mount. Dropping it unmounts (errors are logged); [`MountHandle::unmount`]
/// reports them. If files are still open the mount is detached lazily (it vanishes from the
/// namespace, open files keep working until closed). Both are blocking: call them outside
/// async tasks (or in `spawn_blocking`).
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    fs: Arc<Fs>,
    path: PathBuf,
    rt: tokio::runtime::Handle,
    /// A private runtime, when the caller had none.
    own_rt: Option<tokio::runtime::Runtime>,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Whether `path` is a dead FUSE mount (its server is gone: `ENOTCONN`).
fn is_stale(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

/// Detaches the mount at `path` lazily (`fusermount3 -u -z`, else `umount -l`).
fn detach_lazily(path: &Path) -> bool {
    let tries: [(&str, &[&str]); 3] = [
        ("fusermount3", &["-u", "-z"]),
        ("fusermount", &["-u", "-z"]),
        ("umount", &["-l"]),
    ];
    tries.iter().any(|(bin, args)| {
        Command::new(bin)
            .args(*args)
            .arg(path)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Detaches a dead FUSE mount at `path` (its server is gone: `ENOTCONN`), as left by a
/// crashed previous process. Returns whether there was one.
pub fn clear_stale_mount(path: &Path) -> Result<bool, ExportError> {
    if !is_stale(path) {
        return Ok(false);
    }
    tracing::warn!(mountpoint = %path.display(), "clearing a stale FUSE mount");
    if detach_lazily(path) && !is_stale(path) {
        return Ok(true);
    }
    Err(ExportError::Mountpoint {
        path: path.to_path_buf(),
        detail: "stale FUSE mount could not be detached".into(),
    })
}

/// Mounts `fs` at `mountpoint` and serves it until the returned handle is unmounted or dropped.
pub fn mount(
    fs: Arc<Fs>,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<MountHandle, ExportError> {
    clear_stale_mount(mountpoint)?;
    let md = std::fs::metadata(mountpoint).map_err(|e| ExportError::Mountpoint {
        path: mountpoint.to_path_buf(),
        detail: e.to_string(),
    })?;
    if !md.is_dir() {
        return Err(ExportError::Mountpoint {
            path: mountpoint.to_path_buf(),
            detail: "not a directory".into(),
        });
    }
    let (rt, own_rt) = match opts
        .runtime
        .clone()
        .or_else(|| tokio::runtime::Handle::try_current().ok())
    {
        Some(h) => (h, None),
        None => {
            let r = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(opts.reader_threads.clamp(2, 8))
                .thread_name("ingot-fuse")
                .enable_all()
                .build()
                .map_err(ExportError::Runtime)?;
            (r.handle().clone(), Some(r))
        }
    };
    let read_only = opts.read_only || fs.is_read_only();
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("ingot".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    cfg.acl = if opts.allow_other.unwrap_or_else(running_as_root) {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(opts.reader_threads.max(1));
    cfg.clone_fd = true;
    let adapter = Adapter::new(
        fs.clone(),
        rt.clone(),
        AdapterConfig {
            attr_ttl: opts.attr_ttl,
            entry_ttl: opts.entry_ttl,
            writeback_cache: opts.writeback_cache,
            direct_writes: opts.direct_writes,
            max_write: opts.max_write,
            max_background: opts.max_background,
        },
    );
    let canonical = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_path_buf());
    let session = fuser::Session::new(adapter, mountpoint, &cfg)
        .and_then(fuser::Session::spawn)
        .map_err(|source| ExportError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        })?;
    // The kernel's readahead up to max_readahead (= max_write, see the adapter's init).
    crate::bdi::set_readahead(&canonical, opts.max_write);
    tracing::info!(
        mountpoint = %mountpoint.display(),
        threads = opts.reader_threads,
        writeback = opts.writeback_cache,
        direct_writes = opts.direct_writes,
        read_only,
        "fs exported over FUSE"
    );
    Ok(MountHandle {
        session: Some(session),
        fs,
        path: mountpoint.to_path_buf(),
        rt,
        own_rt,
    })
}

impl MountHandle {
    /// The mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.path
    }

    /// The exported fs.
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// Unmounts, waits for the reader threads, then syncs the fs.
    pub fn unmount(mut self) -> Result<(), ExportError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ExportError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = self.path.clone();
        let mut detached = false;
        let unmounted = match session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // Files are still open: detach now; the reader threads keep serving the open
                // files and end when the kernel drops the connection after the last close.
                if detach_lazily(&path) {
                    detached = true;
                    tracing::warn!(
                        mountpoint = %path.display(),
                        "mount busy: detached lazily, open files are served until closed"
                    );
                    Ok(())
                } else {
                    Err(ExportError::Unmount {
                        path: path.clone(),
                        source: e,
                    })
                }
            }
            Err(source) => Err(ExportError::Unmount {
                path: path.clone(),
                source,
            }),
        };
        if unmounted.is_err() && is_stale(&path) {
            let _ = clear_stale_mount(&path);
        }
        let fs = self.fs.clone();
        let rt = self.rt.clone();
        // The kernel's references end with the session (it need not send a forget for each):
        // drop them, deleting unlinked inodes that are not open, unless a detached mount
        // still serves open files.
        let ended = unmounted.is_ok() && !detached;
        // Run the final sync on a plain thread: `block_on` must not run inside a runtime.
        let synced = std::thread::scope(|s| {
            s.spawn(move || {
                rt.block_on(async {
                    if ended {
                        fs.forget_all().await;
                    }
                    fs.sync().await
                })
            })
            .join()
        });
        if let Some(r) = self.own_rt.take() {
            if detached {
                // The detached mount's open files still need the runtime: keep it for the
                // life of the process (this only happens on a busy unmount).
                std::mem::forget(r);
            } else {
                r.shutdown_background();
            }
        }
        unmounted?;
        match synced {
            Ok(Ok(())) => {
                tracing::info!(mountpoint = %path.display(), "fs unmounted and synced");
                Ok(())
            }
            Ok(Err(source)) => Err(ExportError::Sync { path, source }),
            Err(_) => Err(ExportError::Sync {
                path,
                source: FsError::Io("final sync panicked".into()),
            }),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "unmount on drop failed");
        }
    }
}
