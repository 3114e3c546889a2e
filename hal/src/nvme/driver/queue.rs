//! Submission and completion rings in DMA memory: index wrap-around, the phase tag,
//! volatile access and doorbells with a fence before every doorbell write.

use crate::backing::DeviceBacking;
use crate::dma::DmaBuffer;
use crate::nvme::spec::{CQE_SIZE, Command, Completion, SQE_SIZE, reg};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

/// Submission ring indices. `head` is learned from completions (CQE SQ Head Pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqIndex {
    entries: u16,
    tail: u16,
    head: u16,
}

impl SqIndex {
    /// A ring of `entries` slots (usable capacity `entries - 1`).
    pub fn new(entries: u16) -> Self {
        SqIndex {
            entries,
            tail: 0,
            head: 0,
        }
    }
    /// Current tail (the doorbell value).
    pub fn tail(&self) -> u16 {
        self.tail
    }
    /// Whether another entry would overrun the device's head.
    pub fn is_full(&self) -> bool {
        (self.tail + 1) % self.entries == self.head
    }
    /// Claim the slot at the tail and advance it; `None` when full.
    pub fn push(&mut self) -> Option<u16> {
        if self.is_full() {
            return None;
        }
        let slot = self.tail;
        self.tail = (self.tail + 1) % self.entries;
        Some(slot)
    }
    /// Record the device's head from a completion; ignored if out of range (device bug).
    pub fn set_head(&mut self, head: u16) -> bool {
        if head < self.entries {
            self.head = head;
            true
        } else {
            false
        }
    }
}

/// Completion ring index and expected phase tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqIndex {
    entries: u16,
    head: u16,
    phase: bool,
}

impl CqIndex {
    /// A ring of `entries` slots; the first pass expects phase 1.
    pub fn new(entries: u16) -> Self {
        CqIndex {
            entries,
            head: 0,
            phase: true,
        }
    }
    /// Current head (the doorbell value).
    pub fn head(&self) -> u16 {
        self.head
    }
    /// The phase tag a new entry at `head` carries.
    pub fn phase(&self) -> bool {
        self.phase
    }
    /// Consume the entry at the head; the phase flips on wrap-around.
    pub fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }
}

/// One submission/completion queue pair in DMA memory with its doorbells.
#[derive(Debug)]
pub struct QueuePair {
    /// Queue identifier (0 = admin).
    pub qid: u16,
    entries: u16,
    sq_mem: DmaBuffer,
    cq_mem: DmaBuffer,
    sq: SqIndex,
    cq: CqIndex,
    sq_db: u64,
    cq_db: u64,
    backing: Arc<dyn DeviceBacking>,
}

impl QueuePair {
    /// Wrap ring memory (`sq_mem` >= entries * 64 B, `cq_mem` >= entries * 16 B, zeroed).
    pub fn new(
        backing: Arc<dyn DeviceBacking>,
        qid: u16,
        entries: u16,
        dstrd: u8,
        sq_mem: DmaBuffer,
        cq_mem: DmaBuffer,
    ) -> Self {
        assert!(entries >= 2 && sq_mem.len() >= usize::from(entries) * SQE_SIZE);
        assert!(cq_mem.len() >= usize::from(entries) * CQE_SIZE);
        QueuePair {
            qid,
            entries,
            sq_mem,
            cq_mem,
            sq: SqIndex::new(entries),
            cq: CqIndex::new(entries),
            sq_db: reg::sq_tail_doorbell(qid, dstrd),
            cq_db: reg::cq_head_doorbell(qid, dstrd),
            backing,
        }
    }

    /// Ring size in entries.
    pub fn entries(&self) -> u16 {
        self.entries
    }
    /// IOVA of the submission ring.
    pub fn sq_iova(&self) -> u64 {
        self.sq_mem.iova()
    }
    /// IOVA of the completion ring.
    pub fn cq_iova(&self) -> u64 {
        self.cq_mem.iova()
    }

    /// Forget all ring state after a controller reset: indices to 0, phase to 1, CQ zeroed
    /// (stale entries must not look new).
    pub fn reset(&mut self) {
        let cq_len = self.cq_mem.len();
        self.cq_mem.zero(0, cq_len);
        self.sq = SqIndex::new(self.entries);
        self.cq = CqIndex::new(self.entries);
    }

    /// Whether the submission ring is full.
    pub fn sq_full(&self) -> bool {
        self.sq.is_full()
    }

    /// Write `cmd` into the next submission slot (no doorbell). False when the ring is full.
    pub fn push(&mut self, cmd: &Command) -> bool {
        let Some(slot) = self.sq.push() else {
            return false;
        };
        self.sq_mem
            .write_volatile(usize::from(slot) * SQE_SIZE, &cmd.to_bytes());
        true
    }

    /// Publish pushed entries: fence, then the SQ tail doorbell.
    pub fn ring_sq(&self) {
        fence(Ordering::SeqCst);
        self.backing.write32(self.sq_db, u32::from(self.sq.tail()));
    }

    /// Take the next completion if the device has posted one (phase tag matches).
    pub fn poll(&mut self) -> Option<Completion> {
        let off = usize::from(self.cq.head()) * CQE_SIZE;
        let dw3 = self.cq_mem.read_volatile_u32(off + 12);
        if ((dw3 >> 16) & 1 != 0) != self.cq.phase() {
            return None;
        }
        // Order the reads of the entry body after the phase tag.
        fence(Ordering::Acquire);
        let mut b = [0u8; CQE_SIZE];
        self.cq_mem.read_volatile(off, &mut b);
        let cqe = Completion::from_bytes(&b);
        self.cq.advance();
        if !self.sq.set_head(cqe.sq_head) {
            tracing::warn!(
                qid = self.qid,
                sq_head = cqe.sq_head,
                "completion with out-of-range SQ head ignored"
            );
        }
        Some(cqe)
    }

    /// Release consumed completion slots: fence, then the CQ head doorbell.
    pub fn ring_cq(&self) {
        fence(Ordering::SeqCst);
        self.backing.write32(self.cq_db, u32::from(self.cq.head()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sq_full_and_wrap() {
        let mut sq = SqIndex::new(4);
        assert_eq!(sq.push(), Some(0));
        assert_eq!(sq.push(), Some(1));
        assert_eq!(sq.push(), Some(2));
        assert_eq!(sq.push(), None, "one slot stays empty");
        assert!(sq.set_head(2));
        assert_eq!(sq.push(), Some(3));
        assert_eq!(sq.push(), Some(0), "tail wraps");
        assert_eq!(sq.push(), None);
        assert!(!sq.set_head(4), "out-of-range head rejected");
    }

    proptest! {
        /// Phase flips exactly once per pass over the ring.
        #[test]
        fn cq_phase(entries in 2u16..300, steps in 0usize..5000) {
            let mut cq = CqIndex::new(entries);
            for _ in 0..steps { cq.advance(); }
            prop_assert_eq!(usize::from(cq.head()), steps % usize::from(entries));
            let passes = steps / usize::from(entries);
            prop_assert_eq!(cq.phase(), passes % 2 == 0);
        }

        /// With the device consuming everything, the SQ accepts entries-1 at a time forever.
        #[test]
        fn sq_model(entries in 2u16..64, rounds in 1usize..50) {
            let mut sq = SqIndex::new(entries);
            let mut expect = 0u16;
            for _ in 0..rounds {
                for _ in 0..entries - 1 {
                    prop_assert_eq!(sq.push(), Some(expect));
                    expect = (expect + 1) % entries;
                }
                prop_assert_eq!(sq.push(), None);
                sq.set_head(sq.tail());
            }
        }
    }
}

#[cfg(test)]
mod ring_tests {
    use super::*;
    use crate::blockdev::DeviceKind;
    use crate::dma::{DmaError, DmaMapper};
    use parking_lot::Mutex;
    use std::ptr::NonNull;
    use vmm_sys_util::eventfd::EventFd;

    /// IOVA = host address; no device behind it.
    #[derive(Debug)]
    struct Identity;
    impl DmaMapper for Identity {
        unsafe fn map(&self, vaddr: NonNull<u8>, _len: usize) -> Result<u64, DmaError> {
            Ok(vaddr.as_ptr() as u64)
        }
        fn unmap(&self, _iova: u64, _len: usize) {}
    }

    /// Records register writes.
    #[derive(Debug, Default)]
    struct Regs(Mutex<Vec<(u64, u32)>>);
    impl DeviceBacking for Regs {
        fn id(&self) -> &str {
            "regs"
        }
        fn kind(&self) -> DeviceKind {
            DeviceKind::NvmeSim
        }
        fn read32(&self, _offset: u64) -> u32 {
            0
        }
        fn write32(&self, offset: u64, value: u32) {
            self.0.lock().push((offset, value));
        }
        fn dma_mapper(&self) -> Arc<dyn crate::dma::DmaMapper> {
            Arc::new(Identity)
        }
        fn msix_count(&self) -> u32 {
            0
        }
        fn enable_msix(
            &self,
            _count: u32,
        ) -> Result<Vec<Arc<EventFd>>, crate::backing::BackingError> {
            Ok(Vec::new())
        }
        fn removal_request(&self) -> Option<Arc<EventFd>> {
            None
        }
    }

    /// Drive a 4-entry queue pair through three passes, playing the device by hand.
    #[test]
    fn push_poll_doorbells_and_phase() {
        let regs = Arc::new(Regs::default());
        let m: Arc<dyn DmaMapper> = Arc::new(Identity);
        let sq = DmaBuffer::alloc(m.clone(), 4 * SQE_SIZE).unwrap();
        let cq = DmaBuffer::alloc(m.clone(), 4 * CQE_SIZE).unwrap();
        let (sq_addr, cq_addr) = (sq.host_ptr().as_ptr(), cq.host_ptr().as_ptr());
        let mut qp = QueuePair::new(regs.clone(), 3, 4, 0, sq, cq);
        let mut device_phase = true;
        let mut cq_tail = 0u16;
        let mut sq_slot = 0usize;
        for cid in 0..12u16 {
            let c = Command::new(crate::nvme::spec::io::READ, 1);
            let mut c2 = c;
            c2.set_cid(cid);
            assert!(qp.push(&c2));
            qp.ring_sq();
            // The device sees the SQE at the expected slot.
            let mut raw = [0u8; SQE_SIZE];
            // SAFETY: test memory owned by `qp`, in range (slot < 4).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    sq_addr.add(sq_slot * SQE_SIZE),
                    raw.as_mut_ptr(),
                    SQE_SIZE,
                )
            };
            assert_eq!(Command::from_bytes(&raw).cid(), cid);
            sq_slot = (sq_slot + 1) % 4;
            assert!(qp.poll().is_none(), "nothing posted yet");
            let cqe = Completion {
                cid,
                sq_head: sq_slot as u16,
                sq_id: 3,
                status: u16::from(device_phase),
                ..Completion::default()
            };
            // SAFETY: as above, CQ slot < 4.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    cqe.to_bytes().as_ptr(),
                    cq_addr.add(usize::from(cq_tail) * CQE_SIZE),
                    CQE_SIZE,
                )
            };
            cq_tail += 1;
            if cq_tail == 4 {
                cq_tail = 0;
                device_phase = !device_phase;
            }
            let got = qp.poll().expect("posted completion");
            assert_eq!(got.cid, cid);
            assert!(
                qp.poll().is_none(),
                "stale entry with the old phase is not new"
            );
            qp.ring_cq();
        }
        let w = regs.0.lock();
        let sq_db = reg::sq_tail_doorbell(3, 0);
        let cq_db = reg::cq_head_doorbell(3, 0);
        let tails: Vec<u32> = w
            .iter()
            .filter(|(o, _)| *o == sq_db)
            .map(|(_, v)| *v)
            .collect();
        let heads: Vec<u32> = w
            .iter()
            .filter(|(o, _)| *o == cq_db)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(tails, (1..=12).map(|i| i % 4).collect::<Vec<_>>());
        assert_eq!(heads, (1..=12).map(|i| i % 4).collect::<Vec<_>>());
        qp.reset();
        assert!(qp.poll().is_none(), "reset clears stale completions");
    }
}
