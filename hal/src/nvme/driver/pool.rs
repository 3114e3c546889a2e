//! Per-queue-pair pool of bounce buffers: pinned, page-aligned `DmaBuffer`s that hold
//! one command's data followed by the PRP list pages it may need. Buffers are reused;
//! the pool hands out at most one per command in flight plus a few idle ones.

use super::prp;
use crate::dma::{DmaBuffer, DmaError, DmaMapper, PAGE_SIZE};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A pool of equally sized bounce buffers.
#[derive(Debug, Clone)]
pub(crate) struct BufPool {
    tx: Sender<DmaBuffer>,
    rx: Receiver<DmaBuffer>,
    mapper: Arc<dyn DmaMapper>,
    data_len: usize,
    list_pages: usize,
    closed: Arc<AtomicBool>,
}

impl BufPool {
    /// Buffers for transfers of up to `data_len` bytes (a page multiple), keeping at most `keep` idle.
    pub fn new(mapper: Arc<dyn DmaMapper>, data_len: usize, keep: usize) -> Self {
        let (tx, rx) = bounded(keep.max(1));
        BufPool {
            tx,
            rx,
            mapper,
            data_len,
            list_pages: prp::list_pages_needed(0, data_len),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A free buffer, allocating one if none is idle.
    pub fn get(&self) -> Result<DmaBuffer, DmaError> {
        match self.rx.try_recv() {
            Ok(b) => Ok(b),
            Err(_) => DmaBuffer::alloc(
                self.mapper.clone(),
                self.data_len + self.list_pages * PAGE_SIZE,
            ),
        }
    }

    /// Give a buffer back (dropped, i.e. unmapped and freed, if the pool is full or closed).
    pub fn put(&self, b: DmaBuffer) {
        if !self.closed.load(Ordering::Acquire) {
            let _ = self.tx.try_send(b);
        }
    }

    /// Unmap and free every idle buffer; later returns are freed too (device released).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        while self.rx.try_recv().is_ok() {}
    }

    /// IOVAs of the PRP list pages at the tail of `b`.
    pub fn list_iovas(&self, b: &DmaBuffer) -> Vec<u64> {
        (0..self.list_pages)
            .map(|i| b.iova() + (self.data_len + i * PAGE_SIZE) as u64)
            .collect()
    }

    /// Fill in PRP1/PRP2 of `cmd` for `len` bytes at the start of `b`, writing any PRP lists
    /// into `b`'s list pages.
    pub fn set_prps(
        &self,
        b: &mut DmaBuffer,
        len: usize,
        cmd: &mut crate::nvme::spec::Command,
    ) -> Result<(), prp::PrpError> {
        // Most commands fit PRP1/PRP2: no list pages to compute.
        let lists = if prp::list_pages_needed(b.iova(), len) == 0 {
            Vec::new()
        } else {
            self.list_iovas(b)
        };
        let layout = prp::build(b.iova(), len, &lists)?;
        cmd.prp1 = layout.prp1;
        cmd.prp2 = layout.prp2;
        for list in &layout.lists {
            let off = (list.iova - b.iova()) as usize;
            let mut bytes = Vec::with_capacity(list.entries.len() * 8);
            for e in &list.entries {
                bytes.extend_from_slice(&e.to_le_bytes());
            }
            b.write_at(off, &bytes);
        }
        Ok(())
    }
}
