//! A block device on a plain file or a host block-device node (development and sparse-file drives).
//!
//! I/O is positional (`pread`/`pwrite` through [`FileExt`]) and runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]) so a slow disk never stalls the async runtime; the cost is one
//! buffer copy per read and write, which is small next to the syscall for a development backend.
//! Durability follows the host: a write lands in the page cache (a volatile write cache, as far as
//! the pool is concerned), `flush` is `fdatasync`, and a FUA write is a write followed by `fdatasync`.

use super::{
    BlockDevice, BlockError, DeviceIdentity, DeviceKind, Geometry, HealthInfo, WriteFlags,
    check_range,
};
use async_trait::async_trait;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest transfer advertised in [`Geometry::max_transfer`] (the file itself has no limit).
const MAX_TRANSFER: u32 = 1 << 20;

/// Chunk size of the zero-writing fallback of [`BlockDevice::write_zeroes`].
const ZERO_CHUNK: usize = 1 << 20;

/// A block device backed by a file (sparse when created by [`FileBlockDevice::create`]) or a host
/// block-device node such as `/dev/loop0`.
#[derive(Debug)]
pub struct FileBlockDevice {
    path: PathBuf,
    location: String,
    file: Arc<File>,
    geom: Geometry,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// An `InvalidInput` error about `path`, for bad arguments to `open`/`create`.
fn invalid(location: &str, op: &'static str, msg: String) -> BlockError {
    BlockError::Io {
        device: location.to_string(),
        op,
        source: io::Error::new(io::ErrorKind::InvalidInput, msg),
    }
}

fn io_err<'a>(location: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> BlockError + 'a {
    move |source| BlockError::Io {
        device: location.to_string(),
        op,
        source,
    }
}

/// Block sizes this backend accepts: powers of two from 512 to 64 KiB.
fn check_block_size(location: &str, op: &'static str, block_size: u32) -> Result<(), BlockError> {
    if block_size.is_power_of_two() && (512..=65536).contains(&block_size) {
        Ok(())
    } else {
        Err(invalid(
            location,
            op,
            format!("block size {block_size} is not a power of two between 512 and 65536"),
        ))
    }
}

impl FileBlockDevice {
    /// Open an existing file or block-device node read-write.
    ///
    /// The capacity is the file's length (for a block-device node, its size), rounded down to
    /// whole blocks; a trailing partial block is ignored with a warning.
    pub fn open(path: impl AsRef<Path>, block_size: u32) -> Result<Self, BlockError> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        check_block_size(&location, "open", block_size)?;
        // Look before opening read-write, so a directory or a FIFO gets a clear error.
        let ft = std::fs::metadata(&path)
            .map_err(io_err(&location, "open"))?
            .file_type();
        if !ft.is_file() && !ft.is_block_device() {
            return Err(invalid(
                &location,
                "open",
                "not a regular file or block device".into(),
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&location, "open"))?;
        let meta = file.metadata().map_err(io_err(&location, "stat"))?;
        let ft = meta.file_type();
        let size = if ft.is_block_device() {
            // A block device's metadata length is 0; its size is where the end is.
            file.seek(SeekFrom::End(0))
                .map_err(io_err(&location, "seek to end"))?
        } else if ft.is_file() {
            meta.len()
        } else {
            return Err(invalid(
                &location,
                "open",
                "not a regular file or block device".into(),
            ));
        };
        let blocks = size / u64::from(block_size);
        if !size.is_multiple_of(u64::from(block_size)) {
            tracing::warn!(
                device = %location,
                size,
                block_size,
                "size is not a multiple of the block size; ignoring the trailing partial block"
            );
        }
        Ok(Self::from_parts(path, location, file, block_size, blocks))
    }

    /// Create a new sparse file of `size` bytes (a multiple of `block_size`) and open it.
    ///
    /// Fails if `path` already exists, so an existing file or device is never clobbered.
    pub fn create(path: impl AsRef<Path>, size: u64, block_size: u32) -> Result<Self, BlockError> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        check_block_size(&location, "create", block_size)?;
        if size == 0 || !size.is_multiple_of(u64::from(block_size)) {
            return Err(invalid(
                &location,
                "create",
                format!("size {size} is not a positive multiple of the block size {block_size}"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&location, "create"))?;
        file.set_len(size)
            .map_err(io_err(&location, "set length"))?;
        tracing::info!(device = %location, size, block_size, "created sparse file device");
        Ok(Self::from_parts(
            path,
            location,
            file,
            block_size,
            size / u64::from(block_size),
        ))
    }

    fn from_parts(
        path: PathBuf,
        location: String,
        file: File,
        block_size: u32,
        blocks: u64,
    ) -> Self {
        FileBlockDevice {
            path,
            location,
            file: Arc::new(file),
            geom: Geometry {
                block_size,
                blocks,
                max_transfer: MAX_TRANSFER,
                volatile_write_cache: true,
            },
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }

    /// The path this device was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the blocking pool with the file, mapping errors to [`BlockError::Io`].
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T, BlockError>
    where
        T: Send + 'static,
        F: FnOnce(&File) -> io::Result<T> + Send + 'static,
    {
        let file = Arc::clone(&self.file);
        match tokio::task::spawn_blocking(move || f(&file)).await {
            Ok(r) => r.map_err(io_err(&self.location, op)),
            Err(join) => Err(BlockError::Io {
                device: self.location.clone(),
                op,
                source: io::Error::other(format!("blocking task failed: {join}")),
            }),
        }
    }

    /// Zero a range, preferring `fallocate(ZERO_RANGE)` and falling back to writing zeroes.
    async fn zero_range(&self, op: &'static str, offset: u64, len: u64) -> Result<(), BlockError> {
        if len == 0 {
            return Ok(());
        }
        self.blocking(op, move |f| {
            match fallocate(
                f,
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ) {
                Ok(()) => Ok(()),
                Err(e) if fallocate_unsupported(&e) => write_zero_chunks(f, offset, len),
                Err(e) => Err(e),
            }
        })
        .await
    }
}

/// Whether an `fallocate` error means "this mode is not available here" (fall back), rather
/// than a real I/O failure.
fn fallocate_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::ENODEV)
    )
}

/// `fallocate(2)` on `file`.
fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let l = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
    // SAFETY: fallocate takes a file descriptor and plain integers; the descriptor is valid for
    // the whole call because `file` is borrowed, and no memory is passed to the kernel.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, l) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Write zeroes over `offset..offset+len` in bounded chunks.
fn write_zero_chunks(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let zeroes = vec![0u8; ZERO_CHUNK.min(usize::try_from(len).unwrap_or(ZERO_CHUNK))];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeroes.len() as u64) as usize;
        file.write_all_at(&zeroes[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

#[async_trait]
impl BlockDevice for FileBlockDevice {
    fn geometry(&self) -> Geometry {
        self.geom
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            kind: DeviceKind::File,
            location: self.location.clone(),
            model: "Ingot file device".into(),
            serial: self.location.clone(),
            firmware: env!("CARGO_PKG_VERSION").into(),
        }
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.location, &self.geom, offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        let data = self
            .blocking("read", move |f| {
                let mut v = vec![0u8; len];
                f.read_exact_at(&mut v, offset)?;
                Ok(v)
            })
            .await?;
        buf.copy_from_slice(&data);
        self.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn write(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError> {
        check_range(&self.location, &self.geom, offset, buf.len() as u64)?;
        let data = buf.to_vec();
        let len = data.len() as u64;
        let op = if flags.fua { "write (FUA)" } else { "write" };
        self.blocking(op, move |f| {
            f.write_all_at(&data, offset)?;
            if flags.fua {
                f.sync_data()?;
            }
            Ok(())
        })
        .await?;
        self.bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.blocking("flush", |f| f.sync_data()).await
    }

    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        check_range(&self.location, &self.geom, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // Punching a hole reads back as zeroes afterwards, as a deallocated NVMe block does on a
        // device that reports DLFEAT "reads return zeroes"; where holes are unsupported the range
        // is zeroed instead so reads stay the same.
        let punched = self
            .blocking("deallocate", move |f| {
                match fallocate(
                    f,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset,
                    len,
                ) {
                    Ok(()) => Ok(true),
                    Err(e) if fallocate_unsupported(&e) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if punched {
            Ok(())
        } else {
            self.zero_range("deallocate", offset, len).await
        }
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        check_range(&self.location, &self.geom, offset, len)?;
        self.zero_range("write zeroes", offset, len).await
    }

    async fn health(&self) -> Result<HealthInfo, BlockError> {
        // NVMe counts data units of 1000 512-byte units, rounded up.
        let units = |bytes: u64| u128::from(bytes.div_ceil(512_000));
        Ok(HealthInfo {
            data_units_read: units(self.bytes_read.load(Ordering::Relaxed)),
            data_units_written: units(self.bytes_written.load(Ordering::Relaxed)),
            ..HealthInfo::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_block_size_and_size_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let e = FileBlockDevice::create(&p, 4096, 1000).unwrap_err();
        assert!(e.to_string().contains("block size 1000"), "{e}");
        let e = FileBlockDevice::create(&p, 4000, 512).unwrap_err();
        assert!(e.to_string().contains("size 4000"), "{e}");
        assert!(!p.exists());
    }

    #[test]
    fn create_refuses_existing_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        FileBlockDevice::create(&p, 8192, 4096).unwrap();
        let e = FileBlockDevice::create(&p, 8192, 4096).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    }

    #[test]
    fn open_missing_names_path() {
        let e = FileBlockDevice::open("/nonexistent/ingot-dev", 4096).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/nonexistent/ingot-dev") && s.contains("open"),
            "{s}"
        );
    }

    #[test]
    fn zero_chunks_cover_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z");
        std::fs::write(&p, vec![0xffu8; 3 * ZERO_CHUNK]).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        write_zero_chunks(&f, 512, (2 * ZERO_CHUNK + 1024) as u64).unwrap();
        let v = std::fs::read(&p).unwrap();
        assert!(v[..512].iter().all(|&b| b == 0xff));
        assert!(v[512..512 + 2 * ZERO_CHUNK + 1024].iter().all(|&b| b == 0));
        assert!(v[512 + 2 * ZERO_CHUNK + 1024..].iter().all(|&b| b == 0xff));
    }
}
