//! Little-endian encode/decode helpers that never panic on short or hostile input.

use super::error::PoolError;

/// A reader over untrusted bytes: every read is bounds-checked and returns an error.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Read `buf`, naming the structure `what` in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Take the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], PoolError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(PoolError::Corrupt {
                what: self.what,
                detail: format!(
                    "truncated: need {n} bytes at offset {}, have {}",
                    self.pos,
                    self.buf.len()
                ),
            }),
        }
    }

    /// A u8.
    pub fn u8(&mut self) -> Result<u8, PoolError> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, PoolError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, PoolError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, PoolError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A corruption error about this structure.
    pub fn bad(&self, detail: impl Into<String>) -> PoolError {
        PoolError::Corrupt {
            what: self.what,
            detail: detail.into(),
        }
    }
}

/// Round `n` up to a multiple of `to` (a power of two or any non-zero value).
pub fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}
