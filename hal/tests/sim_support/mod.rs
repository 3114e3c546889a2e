//! A tiny hand-written NVMe host for the simulator tests: it drives the controller
//! through registers, SQ/CQ memory and doorbells only, using `spec.rs` encoders and
//! `DmaBuffer`s mapped through the simulated IOMMU. It does not use the driver.
//!
//! Waiting is event-driven (MSI-X eventfd) or a bounded poll of a register for a
//! condition; the 10 s bound only turns a hang into a test failure.

#![allow(dead_code)]

use ingot_hal::backing::DeviceBacking;
use ingot_hal::dma::{DmaBuffer, DmaMapper};
use ingot_hal::nvme::spec::{self, Command, Completion, admin, cc, csts, reg};
use ingot_hal::sim::{SimConfig, SimController};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// Upper bound on any wait, so a broken controller fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Poll `cond` until it holds; panic after [`WAIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Block until `efd` is readable (or [`WAIT`] passes); returns whether it fired.
pub fn wait_eventfd(efd: &EventFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: efd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    if n > 0 {
        let _ = efd.read();
        true
    } else {
        false
    }
}

/// One submission/completion queue pair in host memory.
pub struct QueuePair {
    pub qid: u16,
    pub size: u16,
    pub sq: DmaBuffer,
    pub cq: DmaBuffer,
    pub sq_tail: u16,
    pub cq_head: u16,
    pub phase: bool,
    pub next_cid: u16,
    pub vector: Option<Arc<EventFd>>,
}

impl QueuePair {
    pub fn new(mapper: &Arc<dyn DmaMapper>, qid: u16, size: u16) -> QueuePair {
        QueuePair {
            qid,
            size,
            sq: DmaBuffer::alloc(mapper.clone(), usize::from(size) * spec::SQE_SIZE).unwrap(),
            cq: DmaBuffer::alloc(mapper.clone(), usize::from(size) * spec::CQE_SIZE).unwrap(),
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            next_cid: 1,
            vector: None,
        }
    }

    /// Write `cmd` at the SQ tail with a fresh CID and ring the doorbell. Returns the CID.
    pub fn submit(&mut self, dev: &dyn DeviceBacking, mut cmd: Command) -> u16 {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        cmd.set_cid(cid);
        let off = usize::from(self.sq_tail) * spec::SQE_SIZE;
        self.sq.write_volatile(off, &cmd.to_bytes());
        self.sq_tail = (self.sq_tail + 1) % self.size;
        fence(Ordering::SeqCst);
        dev.write32(reg::sq_tail_doorbell(self.qid, 0), u32::from(self.sq_tail));
        cid
    }

    /// Take the next completion if its phase tag is current (no doorbell write).
    pub fn poll(&mut self) -> Option<Completion> {
        let off = usize::from(self.cq_head) * spec::CQE_SIZE;
        let dw3 = self.cq.read_volatile_u32(off + 12);
        if (dw3 >> 16) & 1 != u32::from(self.phase) {
            return None;
        }
        fence(Ordering::Acquire);
        let mut b = [0u8; spec::CQE_SIZE];
        self.cq.read_volatile(off, &mut b);
        self.cq_head += 1;
        if self.cq_head == self.size {
            self.cq_head = 0;
            self.phase = !self.phase;
        }
        Some(Completion::from_bytes(&b))
    }

    /// Wait for the next completion (interrupt-driven when a vector is set), then ring
    /// the CQ head doorbell.
    pub fn wait(&mut self, dev: &dyn DeviceBacking) -> Completion {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(c) = self.poll() {
                dev.write32(reg::cq_head_doorbell(self.qid, 0), u32::from(self.cq_head));
                return c;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for a completion on queue {}",
                self.qid
            );
            match &self.vector {
                Some(v) => {
                    wait_eventfd(v, left.min(Duration::from_millis(100)));
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Submit and wait for that command's completion (asserting it is the next one).
    pub fn run(&mut self, dev: &dyn DeviceBacking, cmd: Command) -> Completion {
        let cid = self.submit(dev, cmd);
        let c = self.wait(dev);
        assert_eq!(c.cid, cid, "completion for an unexpected command: {c:?}");
        assert_eq!(c.sq_id, self.qid);
        c
    }
}

/// A host bound to one simulated controller.
pub struct Host {
    pub ctrl: Arc<SimController>,
    pub mapper: Arc<dyn DmaMapper>,
    pub admin: QueuePair,
    pub io: Option<QueuePair>,
    pub vectors: Vec<Arc<EventFd>>,
}

/// Status as (SCT, SC).
pub fn st(c: &Completion) -> (u8, u8) {
    (c.sct(), c.sc())
}

/// An admin/IO command with CDW10/11.
pub fn cmd(opcode: u8, nsid: u32, cdw10: u32, cdw11: u32) -> Command {
    Command {
        cdw10,
        cdw11,
        ..Command::new(opcode, nsid)
    }
}

impl Host {
    /// A RAM-backed controller, enabled, with its admin queue ready.
    pub fn ram(cfg: SimConfig) -> Host {
        let ctrl = Arc::new(SimController::new_ram(cfg).unwrap());
        Host::attach(ctrl)
    }

    /// Bring up the admin queue of `ctrl` (MSI-X first, then AQA/ASQ/ACQ, then CC.EN).
    pub fn attach(ctrl: Arc<SimController>) -> Host {
        let mapper = ctrl.dma_mapper();
        let vectors = ctrl.enable_msix(ctrl.msix_count()).unwrap();
        let mut adminq = QueuePair::new(&mapper, 0, 16);
        adminq.vector = Some(vectors[0].clone());
        let mut host = Host {
            ctrl,
            mapper,
            admin: adminq,
            io: None,
            vectors,
        };
        host.enable();
        host
    }

    pub fn dev(&self) -> &dyn DeviceBacking {
        &*self.ctrl
    }

    /// Program the admin queue registers and set CC.EN, waiting for CSTS.RDY.
    pub fn enable(&mut self) {
        let dev = &*self.ctrl;
        let cap = spec::Cap(dev.read64(reg::CAP));
        assert_eq!(cap.dstrd(), 0);
        dev.write32(reg::AQA, spec::aqa(self.admin.size, self.admin.size));
        dev.write64(reg::ASQ, self.admin.sq.iova());
        dev.write64(reg::ACQ, self.admin.cq.iova());
        dev.write32(reg::CC, cc::standard());
        wait_for("CSTS.RDY=1", || dev.read32(reg::CSTS) & csts::RDY != 0);
    }

    /// CC.EN=0, wait for RDY=0, and forget host queue state.
    pub fn disable(&mut self) {
        let dev = &*self.ctrl;
        dev.write32(reg::CC, 0);
        wait_for("CSTS.RDY=0", || dev.read32(reg::CSTS) & csts::RDY == 0);
        self.io = None;
        let mut adminq = QueuePair::new(&self.mapper, 0, 16);
        adminq.vector = Some(self.vectors[0].clone());
        self.admin = adminq;
    }

    pub fn admin_cmd(&mut self, c: Command) -> Completion {
        let dev: &dyn DeviceBacking = &*self.ctrl;
        self.admin.run(dev, c)
    }

    /// An admin command transferring into a fresh 4 KiB buffer; returns (completion, bytes).
    pub fn admin_read(&mut self, mut c: Command, len: usize) -> (Completion, Vec<u8>) {
        let buf = DmaBuffer::alloc(self.mapper.clone(), len).unwrap();
        c.prp1 = buf.iova();
        if len > 4096 {
            c.prp2 = buf.iova() + 4096;
        }
        let comp = self.admin_cmd(c);
        (comp, buf.as_slice()[..len].to_vec())
    }

    /// Create I/O queue pair `qid` of `size` entries on MSI-X vector `qid`.
    pub fn create_io_queues(&mut self, qid: u16, size: u16) {
        let mut q = QueuePair::new(&self.mapper, qid, size);
        let mut c = cmd(
            admin::CREATE_IO_CQ,
            0,
            (u32::from(size - 1) << 16) | u32::from(qid),
            (u32::from(qid) << 16) | 0b11,
        );
        c.prp1 = q.cq.iova();
        let r = self.admin_cmd(c);
        assert!(r.is_success(), "create CQ: {r:?}");
        let mut c = cmd(
            admin::CREATE_IO_SQ,
            0,
            (u32::from(size - 1) << 16) | u32::from(qid),
            (u32::from(qid) << 16) | 1,
        );
        c.prp1 = q.sq.iova();
        let r = self.admin_cmd(c);
        assert!(r.is_success(), "create SQ: {r:?}");
        q.vector = Some(self.vectors[usize::from(qid)].clone());
        self.io = Some(q);
    }

    pub fn io(&mut self) -> &mut QueuePair {
        self.io.as_mut().expect("no I/O queue")
    }

    /// Run an I/O command on the I/O queue and return its completion.
    pub fn io_cmd(&mut self, c: Command) -> Completion {
        let dev: &dyn DeviceBacking = &*self.ctrl;
        let q = self.io.as_mut().expect("no I/O queue");
        q.run(dev, c)
    }

    /// Read or write `nlb` blocks at `slba` through `buf` (PRP1 = buf+offset, PRP2 / list built here).
    pub fn rw(
        &mut self,
        opcode: u8,
        slba: u64,
        nlb: u32,
        buf: &DmaBuffer,
        offset: usize,
    ) -> Completion {
        let bs = self.ctrl.config().lba_size as usize;
        let len = nlb as usize * bs;
        let (prp1, prp2, _list) = build_prps(&self.mapper, buf, offset, len);
        let mut c = Command::new(opcode, 1);
        c.prp1 = prp1;
        c.prp2 = prp2;
        c.cdw10 = slba as u32;
        c.cdw11 = (slba >> 32) as u32;
        c.cdw12 = nlb - 1;
        self.io_cmd(c)
    }

    /// Normal shutdown through CC.SHN, waiting for SHST=complete.
    pub fn shutdown(&self) {
        let dev = &*self.ctrl;
        let v = dev.read32(reg::CC);
        dev.write32(reg::CC, (v & !cc::SHN_MASK) | cc::SHN_NORMAL);
        wait_for("CSTS.SHST=complete", || {
            dev.read32(reg::CSTS) & csts::SHST_MASK == csts::SHST_COMPLETE
        });
    }
}

/// PRP1/PRP2 for `len` bytes of `buf` from `offset`; builds a PRP list (returned, keep it
/// alive until the command completes) when more than two pages are touched.
pub fn build_prps(
    mapper: &Arc<dyn DmaMapper>,
    buf: &DmaBuffer,
    offset: usize,
    len: usize,
) -> (u64, u64, Option<DmaBuffer>) {
    const P: usize = 4096;
    let prp1 = buf.iova() + offset as u64;
    let first = len.min(P - offset % P);
    let rest = len - first;
    if rest == 0 {
        return (prp1, 0, None);
    }
    let next_page = buf.iova() + (offset + first) as u64;
    if rest <= P {
        return (prp1, next_page, None);
    }
    let pages = rest.div_ceil(P);
    let mut list = DmaBuffer::alloc(mapper.clone(), pages * 8).unwrap();
    for i in 0..pages {
        list.write_at(8 * i, &(next_page + (i * P) as u64).to_le_bytes());
    }
    let iova = list.iova();
    (prp1, iova, Some(list))
}

/// Deterministic test data.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}
