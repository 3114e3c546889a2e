//! The simulated namespace's backing store: sparse RAM or a sparse file.
//!
//! RAM keeps 64 KiB chunks in a map, so unwritten and deallocated space costs
//! nothing and reads as zeroes. A file store uses `pread`/`pwrite`; flush is
//! `fdatasync` and deallocation punches a hole with `fallocate`.

use super::iommu::DmaSpans;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

const CHUNK: u64 = 64 * 1024;

/// Where the namespace's bytes live.
#[derive(Debug)]
pub(super) enum Store {
    /// Sparse RAM: chunk index -> chunk bytes.
    Ram {
        chunks: RwLock<HashMap<u64, Box<[u8]>>>,
    },
    /// A sparse file of exactly the namespace size.
    File {
        /// The open data file.
        file: File,
        /// Its path, for errors.
        path: PathBuf,
    },
}

impl Store {
    /// An empty RAM store.
    pub(super) fn ram() -> Store {
        Store::Ram {
            chunks: RwLock::new(HashMap::new()),
        }
    }

    /// Read `buf.len()` bytes at `off` (range already checked by the caller).
    pub(super) fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Store::Ram { chunks } => {
                let chunks = chunks.read();
                for_each_chunk(off, buf.len(), |idx, in_chunk, pos, n| {
                    let dst = &mut buf[pos..pos + n];
                    match chunks.get(&idx) {
                        Some(c) => dst.copy_from_slice(&c[in_chunk..in_chunk + n]),
                        None => dst.fill(0),
                    }
                });
                Ok(())
            }
            Store::File { file, .. } => file.read_exact_at(buf, off),
        }
    }

    /// Write `data` at `off`.
    pub(super) fn write(&self, off: u64, data: &[u8]) -> io::Result<()> {
        match self {
            Store::Ram { chunks } => {
                let mut chunks = chunks.write();
                for_each_chunk(off, data.len(), |idx, in_chunk, pos, n| {
                    let c = chunks
                        .entry(idx)
                        .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
                    c[in_chunk..in_chunk + n].copy_from_slice(&data[pos..pos + n]);
                });
                Ok(())
            }
            Store::File { file, .. } => file.write_all_at(data, off),
        }
    }

    /// Write the bytes of a device transfer at `off`, straight from host memory (one
    /// `pwritev` for a file; no intermediate buffer).
    pub(super) fn write_from(&self, off: u64, src: &DmaSpans<'_>) -> io::Result<()> {
        match self {
            Store::Ram { chunks } => {
                let mut chunks = chunks.write();
                for_each_chunk(off, src.len(), |idx, in_chunk, pos, n| {
                    let c = chunks
                        .entry(idx)
                        .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
                    src.copy_out(pos, &mut c[in_chunk..in_chunk + n]);
                });
                Ok(())
            }
            Store::File { file, .. } => src.write_to(file, off),
        }
    }

    /// Read `dst.len()` bytes at `off` straight into the host memory of a device transfer.
    pub(super) fn read_into(&self, off: u64, dst: &DmaSpans<'_>) -> io::Result<()> {
        match self {
            Store::Ram { chunks } => {
                let chunks = chunks.read();
                for_each_chunk(off, dst.len(), |idx, in_chunk, pos, n| {
                    match chunks.get(&idx) {
                        Some(c) => dst.copy_in(pos, &c[in_chunk..in_chunk + n]),
                        None => dst.zero(pos, n),
                    }
                });
                Ok(())
            }
            Store::File { file, .. } => dst.read_from(file, off),
        }
    }

    /// Make completed writes durable.
    pub(super) fn flush(&self) -> io::Result<()> {
        match self {
            Store::Ram { .. } => Ok(()),
            Store::File { file, .. } => file.sync_data(),
        }
    }

    /// Deallocate `len` bytes at `off`; the range reads back as zeroes.
    pub(super) fn deallocate(&self, off: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match self {
            Store::Ram { chunks } => {
                let mut chunks = chunks.write();
                let mut pos = off;
                let end = off + len;
                while pos < end {
                    let idx = pos / CHUNK;
                    let in_chunk = (pos % CHUNK) as usize;
                    let n = ((CHUNK - pos % CHUNK).min(end - pos)) as usize;
                    if n == CHUNK as usize {
                        chunks.remove(&idx);
                    } else if let Some(c) = chunks.get_mut(&idx) {
                        c[in_chunk..in_chunk + n].fill(0);
                    }
                    pos += n as u64;
                }
                Ok(())
            }
            Store::File { file, .. } => {
                let (Ok(o), Ok(l)) = (libc::off_t::try_from(off), libc::off_t::try_from(len))
                else {
                    return Err(io::Error::other("range does not fit off_t"));
                };
                // SAFETY: fallocate on a file descriptor we own (kept open by `file`) with
                // plain integer arguments; the kernel validates them and reports errors.
                let rc = unsafe {
                    libc::fallocate(
                        file.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        o,
                        l,
                    )
                };
                if rc == 0 {
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                    return Err(err);
                }
                // The filesystem cannot punch holes: write zeroes instead.
                let zeroes = vec![0u8; CHUNK as usize];
                let mut pos = off;
                while pos < off + len {
                    let n = CHUNK.min(off + len - pos) as usize;
                    file.write_all_at(&zeroes[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            }
        }
    }

    /// Flip one bit in every `sector`-sized block of `off..off+len` (silent corruption),
    /// choosing the bit from `seed` and the block number. Returns the blocks changed.
    pub(super) fn corrupt(&self, off: u64, len: u64, sector: u32, seed: u64) -> io::Result<u64> {
        let sector = u64::from(sector);
        let mut buf = vec![0u8; sector as usize];
        let mut n = 0;
        let mut pos = off;
        while pos + sector <= off + len {
            self.read(pos, &mut buf)?;
            let mix = (pos / sector)
                .wrapping_add(seed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let byte = (mix >> 8) % sector;
            let bit = (mix >> 3) & 7;
            buf[byte as usize] ^= 1 << bit;
            self.write(pos, &buf)?;
            pos += sector;
            n += 1;
        }
        Ok(n)
    }

    /// A short description for logs.
    pub(super) fn describe(&self) -> String {
        match self {
            Store::Ram { .. } => "ram".to_string(),
            Store::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Walk `off..off+len` chunk by chunk: (chunk index, offset in chunk, offset in buffer, bytes).
fn for_each_chunk(off: u64, len: usize, mut f: impl FnMut(u64, usize, usize, usize)) {
    let mut pos = 0usize;
    while pos < len {
        let abs = off + pos as u64;
        let in_chunk = (abs % CHUNK) as usize;
        let n = (CHUNK as usize - in_chunk).min(len - pos);
        f(abs / CHUNK, in_chunk, pos, n);
        pos += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &Store) {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        s.write(1000, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        s.read(1000, &mut back).unwrap();
        assert_eq!(back, data);
        s.deallocate(4096, 131072).unwrap();
        s.read(1000, &mut back).unwrap();
        assert!(back[3096..3096 + 131072].iter().all(|&b| b == 0));
        assert_eq!(back[..3096], data[..3096]);
        assert_eq!(back[3096 + 131072..], data[3096 + 131072..]);
        let mut before = vec![0u8; 1024];
        s.read(200_192, &mut before).unwrap();
        assert_eq!(s.corrupt(200_192, 1024, 512, 7).unwrap(), 2);
        let mut after = vec![0u8; 1024];
        s.read(200_192, &mut after).unwrap();
        for half in 0..2 {
            let diff: u32 = before[half * 512..(half + 1) * 512]
                .iter()
                .zip(&after[half * 512..(half + 1) * 512])
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1);
        }
        s.flush().unwrap();
    }

    #[test]
    fn ram_store() {
        exercise(&Store::ram());
    }

    #[test]
    fn file_store() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(1 << 20).unwrap();
        let s = Store::File {
            file: f.reopen().unwrap(),
            path: f.path().to_path_buf(),
        };
        exercise(&s);
    }
}
