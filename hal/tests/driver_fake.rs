//! Early driver tests against a tiny test-only register-level fake controller that runs
//! each command inline on the SQ doorbell write. It exists to exercise bring-up, I/O,
//! recovery and loss before the simulated controller is available; the fault matrix
//! proper runs against `ingot_hal::sim` in the other `driver_*` tests.

use ingot_hal::backing::{BackingError, DeviceBacking};
use ingot_hal::blockdev::{BlockDevice, BlockError, DeviceKind, WriteFlags};
use ingot_hal::dma::{DmaError, DmaMapper, PAGE_SIZE};
use ingot_hal::nvme::driver::{Controller, DriverConfig};
use ingot_hal::nvme::spec::{
    self, Cap, Command, Completion, IdentifyController, IdentifyNamespace, LbaFormat, SmartLog,
    admin, cc, csts, io, reg,
};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

#[derive(Debug, Default)]
struct Mapper {
    maps: Mutex<BTreeMap<u64, (usize, usize)>>,
    next: AtomicU64,
}

impl DmaMapper for Mapper {
    unsafe fn map(&self, vaddr: NonNull<u8>, len: usize) -> Result<u64, DmaError> {
        let iova = 0x1_0000_0000
            + self
                .next
                .fetch_add((len + PAGE_SIZE) as u64, Ordering::Relaxed);
        self.maps
            .lock()
            .insert(iova, (vaddr.as_ptr() as usize, len));
        Ok(iova)
    }
    fn unmap(&self, iova: u64, _len: usize) {
        self.maps.lock().remove(&iova);
    }
}

impl Mapper {
    /// Copy between device memory at `iova` and `data`; false if unmapped (rejected DMA).
    fn access(&self, iova: u64, data: &mut [u8], to_device_mem: bool) -> bool {
        let maps = self.maps.lock();
        let Some((&base, &(host, len))) = maps.range(..=iova).next_back() else {
            return false;
        };
        let off = (iova - base) as usize;
        if off + data.len() > len {
            return false;
        }
        let p = (host + off) as *mut u8;
        // SAFETY: the range is inside a live mapping registered by DmaBuffer (unmapped before
        // the memory is freed, under this same lock).
        unsafe {
            if to_device_mem {
                std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
            } else {
                std::ptr::copy_nonoverlapping(p, data.as_mut_ptr(), data.len());
            }
        }
        true
    }
}

#[derive(Debug)]
struct Sq {
    base: u64,
    entries: u16,
    head: u16,
    cqid: u16,
}

#[derive(Debug)]
struct Cq {
    base: u64,
    entries: u16,
    tail: u16,
    phase: bool,
    vector: Option<u16>,
}

#[derive(Debug, Default)]
struct Faults {
    /// Do not post completions for this many Read/Write commands.
    lose: u32,
    /// Complete this many Read/Write commands with (sct, sc, dnr).
    error: Option<(u8, u8, bool, u32)>,
}

#[derive(Debug)]
struct State {
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    sqs: HashMap<u16, Sq>,
    cqs: HashMap<u16, Cq>,
    storage: Vec<u8>,
    faults: Faults,
}

#[derive(Debug)]
struct Fake {
    mapper: Arc<Mapper>,
    state: Mutex<State>,
    vectors: Mutex<Vec<Arc<EventFd>>>,
    msix: u32,
    lbads: u8,
    mdts: u8,
    gone: AtomicBool,
    removal: Arc<EventFd>,
    /// Identify ONCS (bit 2 DSM, bit 3 Write Zeroes).
    oncs: std::sync::atomic::AtomicU16,
}

const BLOCKS: u64 = 2048;

impl Fake {
    fn new(lbads: u8, msix: u32, mdts: u8) -> Arc<Fake> {
        Arc::new(Fake {
            mapper: Arc::default(),
            state: Mutex::new(State {
                cc: 0,
                csts: 0,
                aqa: 0,
                asq: 0,
                acq: 0,
                sqs: HashMap::new(),
                cqs: HashMap::new(),
                storage: vec![0; (BLOCKS << lbads) as usize],
                faults: Faults::default(),
            }),
            vectors: Mutex::new(Vec::new()),
            msix,
            lbads,
            mdts,
            gone: AtomicBool::new(false),
            removal: Arc::new(EventFd::new(EFD_NONBLOCK).unwrap()),
            oncs: std::sync::atomic::AtomicU16::new(0b1100),
        })
    }

    fn dma_read(&self, iova: u64, len: usize) -> Option<Vec<u8>> {
        let mut v = vec![0; len];
        self.mapper.access(iova, &mut v, false).then_some(v)
    }

    /// The PRP segments of a `len`-byte transfer, or None on an unmapped list.
    fn prp_segments(&self, c: &Command, len: usize) -> Option<Vec<(u64, usize)>> {
        let ps = PAGE_SIZE as u64;
        let first = ((ps - c.prp1 % ps) as usize).min(len);
        let mut segs = vec![(c.prp1, first)];
        let mut left = len - first;
        if left == 0 {
            return Some(segs);
        }
        if left <= PAGE_SIZE {
            segs.push((c.prp2, left));
            return Some(segs);
        }
        let mut list = c.prp2;
        let mut i = 0;
        loop {
            let e = u64::from_le_bytes(self.dma_read(list + 8 * i, 8)?.try_into().ok()?);
            if i == 511 && left > PAGE_SIZE {
                list = e;
                i = 0;
                continue;
            }
            let n = left.min(PAGE_SIZE);
            segs.push((e, n));
            left -= n;
            i += 1;
            if left == 0 {
                return Some(segs);
            }
        }
    }

    fn transfer(&self, c: &Command, data: &mut [u8], to_host: bool) -> bool {
        let Some(segs) = self.prp_segments(c, data.len()) else {
            return false;
        };
        let mut at = 0;
        for (iova, n) in segs {
            if !self.mapper.access(iova, &mut data[at..at + n], to_host) {
                return false;
            }
            at += n;
        }
        true
    }

    fn identify_ctrl(&self) -> IdentifyController {
        IdentifyController {
            vid: 0x1b36,
            serial: "FAKE1".into(),
            model: "fake".into(),
            firmware: "0.1".into(),
            mdts: self.mdts,
            cntlid: 1,
            ver: 0x10400,
            acl: 3,
            elpe: 3,
            nn: 1,
            oncs: self.oncs.load(Ordering::SeqCst),
            vwc: 1,
        }
    }

    /// Execute one command; `None` means post no completion.
    fn execute(&self, st: &mut State, qid: u16, c: &Command) -> Option<(u32, u16)> {
        let ok = Some((0, 0));
        let err = |sct: u8, sc: u8| Some((0, Completion::status_field(sct, sc, true)));
        let bs = 1usize << self.lbads;
        if qid == 0 {
            return match c.opcode() {
                admin::IDENTIFY => {
                    let data: Vec<u8> = match c.cdw10 {
                        1 => self.identify_ctrl().encode().to_vec(),
                        2 => {
                            let mut v = vec![0u8; 4096];
                            v[0] = 1;
                            v
                        }
                        0 if c.nsid == 1 => IdentifyNamespace {
                            nsze: BLOCKS,
                            ncap: BLOCKS,
                            nuse: 0,
                            nsfeat: 0,
                            lba_formats: vec![LbaFormat {
                                ms: 0,
                                lbads: self.lbads,
                                rp: 0,
                            }],
                            flbas_index: 0,
                        }
                        .encode()
                        .to_vec(),
                        _ => return err(0, spec::sc::INVALID_FIELD),
                    };
                    let mut data = data;
                    if self.transfer(c, &mut data, true) {
                        ok
                    } else {
                        err(0, spec::sc::DATA_TRANSFER_ERROR)
                    }
                }
                admin::SET_FEATURES => {
                    let n = (c.cdw11 & 0xffff).min(3);
                    Some((n | (n << 16), 0))
                }
                admin::CREATE_IO_CQ => {
                    let q = (c.cdw10 & 0xffff) as u16;
                    st.cqs.insert(
                        q,
                        Cq {
                            base: c.prp1,
                            entries: (c.cdw10 >> 16) as u16 + 1,
                            tail: 0,
                            phase: true,
                            vector: (c.cdw11 & 2 != 0).then_some((c.cdw11 >> 16) as u16),
                        },
                    );
                    ok
                }
                admin::CREATE_IO_SQ => {
                    let q = (c.cdw10 & 0xffff) as u16;
                    st.sqs.insert(
                        q,
                        Sq {
                            base: c.prp1,
                            entries: (c.cdw10 >> 16) as u16 + 1,
                            head: 0,
                            cqid: (c.cdw11 >> 16) as u16,
                        },
                    );
                    ok
                }
                admin::DELETE_IO_SQ => {
                    st.sqs.remove(&((c.cdw10 & 0xffff) as u16));
                    ok
                }
                admin::DELETE_IO_CQ => {
                    st.cqs.remove(&((c.cdw10 & 0xffff) as u16));
                    ok
                }
                admin::GET_LOG_PAGE => {
                    let len = (((c.cdw10 >> 16) as usize) + 1) * 4;
                    let mut data = vec![0u8; len];
                    if c.cdw10 & 0xff == u32::from(spec::log::SMART_HEALTH) {
                        let s = SmartLog {
                            temperature_kelvin: 310,
                            available_spare: 100,
                            ..SmartLog::default()
                        }
                        .encode();
                        data.copy_from_slice(&s[..len.min(512)]);
                    }
                    self.transfer(c, &mut data, true);
                    ok
                }
                admin::ABORT => Some((1, 0)),
                _ => err(0, spec::sc::INVALID_OPCODE),
            };
        }
        if matches!(c.opcode(), io::READ | io::WRITE) {
            if st.faults.lose > 0 {
                st.faults.lose -= 1;
                return None;
            }
            if let Some((sct, sc, dnr, n)) = st.faults.error {
                st.faults.error = (n > 1).then_some((sct, sc, dnr, n - 1));
                return Some((0, Completion::status_field(sct, sc, dnr)));
            }
        }
        let range = |slba: u64, nlb: u64| -> Option<std::ops::Range<usize>> {
            (slba + nlb <= BLOCKS).then(|| slba as usize * bs..(slba + nlb) as usize * bs)
        };
        match c.opcode() {
            io::READ | io::WRITE => {
                let Some(r) = range(c.slba(), u64::from(c.nlb())) else {
                    return err(0, spec::sc::LBA_OUT_OF_RANGE);
                };
                let mut data = st.storage[r.clone()].to_vec();
                let read = c.opcode() == io::READ;
                if !self.transfer(c, &mut data, read) {
                    return err(0, spec::sc::DATA_TRANSFER_ERROR);
                }
                if !read {
                    st.storage[r].copy_from_slice(&data);
                }
                ok
            }
            io::FLUSH => ok,
            io::WRITE_ZEROES => {
                let Some(r) = range(c.slba(), u64::from(c.nlb())) else {
                    return err(0, spec::sc::LBA_OUT_OF_RANGE);
                };
                st.storage[r].fill(0);
                ok
            }
            io::DATASET_MANAGEMENT => {
                let n = (c.cdw10 & 0xff) as usize + 1;
                let Some(b) = self.dma_read(c.prp1, n * 16) else {
                    return err(0, spec::sc::DATA_TRANSFER_ERROR);
                };
                for ch in b.chunks(16) {
                    let d = spec::DsmRange::parse(ch);
                    if let Some(r) = range(d.slba, u64::from(d.nlb)) {
                        st.storage[r].fill(0);
                    }
                }
                ok
            }
            _ => err(0, spec::sc::INVALID_OPCODE),
        }
    }

    fn ring(&self, st: &mut State, qid: u16, tail: u16) {
        loop {
            let Some(sq) = st.sqs.get_mut(&qid) else {
                return;
            };
            if sq.head == tail % sq.entries {
                return;
            }
            let addr = sq.base + u64::from(sq.head) * 64;
            sq.head = (sq.head + 1) % sq.entries;
            let (head, cqid) = (sq.head, sq.cqid);
            let Some(bytes) = self.dma_read(addr, 64) else {
                return;
            };
            let c = Command::from_bytes(&bytes.try_into().unwrap());
            let Some((result, status)) = self.execute(st, qid, &c) else {
                continue;
            };
            let Some(cq) = st.cqs.get_mut(&cqid) else {
                return;
            };
            let cqe = Completion {
                result,
                dw1: 0,
                sq_head: head,
                sq_id: qid,
                cid: c.cid(),
                status: status | u16::from(cq.phase),
            };
            let mut b = cqe.to_bytes();
            self.mapper
                .access(cq.base + u64::from(cq.tail) * 16, &mut b, true);
            cq.tail += 1;
            if cq.tail == cq.entries {
                cq.tail = 0;
                cq.phase = !cq.phase;
            }
            if let Some(v) = cq
                .vector
                .and_then(|v| self.vectors.lock().get(usize::from(v)).cloned())
            {
                let _ = v.write(1);
            }
        }
    }
}

impl DeviceBacking for Fake {
    fn id(&self) -> &str {
        "fake:0"
    }
    fn kind(&self) -> DeviceKind {
        DeviceKind::NvmeSim
    }
    fn read32(&self, offset: u64) -> u32 {
        if self.gone.load(Ordering::SeqCst) {
            return u32::MAX;
        }
        let st = self.state.lock();
        let cap = Cap::build(255, 2, 0, 0, 0).0;
        match offset {
            reg::CAP => cap as u32,
            o if o == reg::CAP + 4 => (cap >> 32) as u32,
            reg::CC => st.cc,
            reg::CSTS => st.csts,
            _ => 0,
        }
    }
    fn write32(&self, offset: u64, value: u32) {
        if self.gone.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.state.lock();
        match offset {
            reg::CC => {
                let was = st.cc & cc::EN != 0;
                st.cc = value;
                if value & cc::SHN_MASK != 0 {
                    st.csts |= csts::SHST_COMPLETE;
                }
                if !was && value & cc::EN != 0 {
                    let n = (st.aqa & 0xfff) as u16 + 1;
                    let (asq, acq) = (st.asq, st.acq);
                    st.sqs.insert(
                        0,
                        Sq {
                            base: asq,
                            entries: n,
                            head: 0,
                            cqid: 0,
                        },
                    );
                    st.cqs.insert(
                        0,
                        Cq {
                            base: acq,
                            entries: n,
                            tail: 0,
                            phase: true,
                            vector: Some(0),
                        },
                    );
                    st.csts = csts::RDY;
                } else if was && value & cc::EN == 0 {
                    st.sqs.clear();
                    st.cqs.clear();
                    st.csts = 0;
                }
            }
            reg::AQA => st.aqa = value,
            reg::ASQ => st.asq = (st.asq & !0xffff_ffff) | u64::from(value),
            o if o == reg::ASQ + 4 => st.asq = (st.asq & 0xffff_ffff) | (u64::from(value) << 32),
            reg::ACQ => st.acq = (st.acq & !0xffff_ffff) | u64::from(value),
            o if o == reg::ACQ + 4 => st.acq = (st.acq & 0xffff_ffff) | (u64::from(value) << 32),
            o if o >= reg::DOORBELL_BASE => {
                let idx = (o - reg::DOORBELL_BASE) / 4;
                if idx.is_multiple_of(2) {
                    self.ring(&mut st, (idx / 2) as u16, value as u16);
                }
            }
            _ => {}
        }
    }
    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        self.mapper.clone()
    }
    fn msix_count(&self) -> u32 {
        self.msix
    }
    fn enable_msix(&self, count: u32) -> Result<Vec<Arc<EventFd>>, BackingError> {
        let v: Vec<_> = (0..count)
            .map(|_| Arc::new(EventFd::new(EFD_NONBLOCK).unwrap()))
            .collect();
        *self.vectors.lock() = v.clone();
        Ok(v)
    }
    fn removal_request(&self) -> Option<Arc<EventFd>> {
        Some(self.removal.clone())
    }
}

fn cfg() -> DriverConfig {
    DriverConfig {
        io_queues: 2,
        queue_depth: 16,
        command_timeout: Duration::from_millis(200),
        ..DriverConfig::default()
    }
}

async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("hang guard")
}

async fn roundtrip(lbads: u8, msix: u32, mdts: u8) {
    let fake = Fake::new(lbads, msix, mdts);
    let ctrl = guard(Controller::init(fake.clone(), cfg())).await.unwrap();
    assert_eq!(ctrl.identify().model, "fake");
    assert_eq!(ctrl.io_queue_count(), 2);
    let ns = ctrl.namespace(1).unwrap();
    let g = ns.geometry();
    assert_eq!(g.block_size, 1 << lbads);
    assert_eq!(g.blocks, BLOCKS);
    assert_eq!(ns.identity().location, "fake:0/n1");
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(lbads) * 100 + u64::from(msix));
    let bs = u64::from(g.block_size);
    let mut model = vec![0u8; (BLOCKS * bs) as usize];
    for i in 0..40 {
        let blocks = rng.random_range(1..=(BLOCKS / 8));
        let at = rng.random_range(0..BLOCKS - blocks) * bs;
        let mut data = vec![0u8; (blocks * bs) as usize];
        rng.fill(&mut data[..]);
        guard(ns.write(
            at,
            &data,
            if i % 3 == 0 {
                WriteFlags::FUA
            } else {
                WriteFlags::NONE
            },
        ))
        .await
        .unwrap();
        model[at as usize..at as usize + data.len()].copy_from_slice(&data);
    }
    guard(ns.write_zeroes(bs * 10, bs * 20)).await.unwrap();
    model[(bs * 10) as usize..(bs * 30) as usize].fill(0);
    guard(ns.deallocate(bs * 100, bs * 5)).await.unwrap();
    model[(bs * 100) as usize..(bs * 105) as usize].fill(0);
    guard(ns.flush()).await.unwrap();
    let mut back = vec![0u8; model.len()];
    guard(ns.read(0, &mut back)).await.unwrap();
    assert!(back == model, "read back differs");
    let h = guard(ns.health()).await.unwrap();
    assert_eq!(h.temperature_kelvin, Some(310));
    guard(ctrl.shutdown()).await.unwrap();
    let err = guard(ns.read(0, &mut back[..bs as usize]))
        .await
        .unwrap_err();
    assert!(matches!(err, BlockError::DeviceLost { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_roundtrip_4k_msix() {
    roundtrip(12, 3, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_roundtrip_512_polled_small_mdts() {
    roundtrip(9, 0, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_lost_completion_recovers_by_reset() {
    let fake = Fake::new(12, 3, 0);
    let ctrl = guard(Controller::init(fake.clone(), cfg())).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let data = vec![0x5au8; 8192];
    fake.state.lock().faults.lose = 1;
    guard(ns.write(4096, &data, WriteFlags::NONE))
        .await
        .unwrap();
    let mut back = vec![0u8; 8192];
    guard(ns.read(4096, &mut back)).await.unwrap();
    assert_eq!(back, data);
    let s = ctrl.stats();
    assert_eq!(s.iter().map(|q| q.timeouts).sum::<u64>(), 1, "{s:?}");
    assert_eq!(s[0].resets, 1, "{s:?}");
    // Lost every time: bounded reissues, then Timeout.
    fake.state.lock().faults.lose = 100;
    let err = guard(ns.read(0, &mut back)).await.unwrap_err();
    assert!(matches!(err, BlockError::Timeout { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_error_status_and_retry() {
    let fake = Fake::new(12, 0, 0);
    let ctrl = guard(Controller::init(fake.clone(), cfg())).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let mut buf = vec![0u8; 4096];
    fake.state.lock().faults.error = Some((2, spec::sc::MEDIA_UNRECOVERED_READ, true, 1));
    let err = guard(ns.read(0, &mut buf)).await.unwrap_err();
    match err {
        BlockError::Nvme { status, offset, .. } => {
            assert_eq!(
                (status.sct, status.sc, status.dnr, offset),
                (2, 0x81, true, 0)
            );
        }
        other => panic!("{other}"),
    }
    // Retryable (DNR clear) twice: the third attempt succeeds.
    fake.state.lock().faults.error = Some((0, spec::sc::INTERNAL_ERROR, false, 2));
    guard(ns.read(0, &mut buf)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_surprise_removal_and_request() {
    let fake = Fake::new(12, 3, 0);
    let ctrl = guard(Controller::init(fake.clone(), cfg())).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let mut buf = vec![0u8; 4096];
    fake.state.lock().faults.lose = 1;
    fake.gone.store(true, Ordering::SeqCst);
    let err = guard(ns.read(0, &mut buf)).await.unwrap_err();
    assert!(
        matches!(&err, BlockError::DeviceLost { reason, .. } if reason.contains("all-ones")),
        "{err}"
    );
    let err = guard(ns.read(0, &mut buf)).await.unwrap_err();
    assert!(matches!(err, BlockError::DeviceLost { .. }), "{err}");

    let fake = Fake::new(12, 3, 0);
    let ctrl = guard(Controller::init(fake.clone(), cfg())).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    fake.removal.write(1).unwrap();
    // The removal is asynchronous: the next commands fail once it is seen, and never hang.
    loop {
        match guard(ns.read(0, &mut buf)).await {
            Ok(()) => tokio::task::yield_now().await,
            Err(BlockError::DeviceLost { reason, .. }) => {
                assert!(reason.contains("hot-unplug"), "{reason}");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ctrl.lost_reason().is_some());
}

/// Seeded random workload from 8 concurrent tasks while completions are lost and
/// transient errors injected at random: every operation must succeed (recovery is
/// transparent) and every read must match the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_random_workload_with_random_faults() {
    let fake = Fake::new(9, 3, 2);
    let c = DriverConfig {
        io_queues: 2,
        queue_depth: 8,
        command_timeout: Duration::from_millis(100),
        max_retries: 8,
        ..DriverConfig::default()
    };
    let ctrl = guard(Controller::init(fake.clone(), c)).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let region = BLOCKS / 8 * 512;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let (ns, fake) = (ns.clone(), fake.clone());
        set.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(77 + t);
            let base = t * region;
            let mut model = vec![0u8; region as usize];
            for _ in 0..40 {
                match rng.random_range(0..10) {
                    0 => {
                        let mut st = fake.state.lock();
                        if st.faults.lose == 0 {
                            st.faults.lose = 1;
                        }
                    }
                    1 => {
                        let mut st = fake.state.lock();
                        if st.faults.error.is_none() {
                            st.faults.error = Some((0, spec::sc::INTERNAL_ERROR, false, 1));
                        }
                    }
                    _ => {}
                }
                let blocks = rng.random_range(1..=32u64);
                let at = rng.random_range(0..=region / 512 - blocks) * 512;
                let len = (blocks * 512) as usize;
                if rng.random_bool(0.5) {
                    let mut data = vec![0u8; len];
                    rng.fill(&mut data[..]);
                    ns.write(base + at, &data, WriteFlags::NONE).await.unwrap();
                    model[at as usize..at as usize + len].copy_from_slice(&data);
                } else {
                    let mut back = vec![0u8; len];
                    ns.read(base + at, &mut back).await.unwrap();
                    assert!(back == model[at as usize..at as usize + len], "task {t}");
                }
            }
        });
    }
    guard(async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let s = ctrl.stats();
    assert!(
        s[0].resets >= 1,
        "faults were injected and recovered: {s:?}"
    );
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_without_optional_commands() {
    // No Dataset Management, no Write Zeroes: deallocate is refused, write_zeroes writes
    // zeroed buffers (more than a queue depth of them, through the in-flight window).
    let fake = Fake::new(9, 3, 1);
    fake.oncs.store(0, Ordering::SeqCst);
    let ctrl = guard(Controller::init(fake.clone(), cfg())).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let data = vec![0xeeu8; (BLOCKS * 512) as usize];
    guard(ns.write(0, &data, WriteFlags::NONE)).await.unwrap();
    let e = guard(ns.deallocate(0, 512)).await.unwrap_err();
    assert!(
        matches!(
            e,
            BlockError::Unsupported {
                op: "deallocate",
                ..
            }
        ),
        "{e}"
    );
    guard(ns.write_zeroes(512 * 7, 512 * 1000)).await.unwrap();
    let mut back = vec![0u8; data.len()];
    guard(ns.read(0, &mut back)).await.unwrap();
    let mut want = data.clone();
    want[512 * 7..512 * 1007].fill(0);
    assert!(back == want);
    guard(ctrl.shutdown()).await.unwrap();
}
