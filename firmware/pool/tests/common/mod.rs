//! Test devices: a block device with a volatile write cache and a shared power switch.
//!
//! Writes go to a cache; `flush` makes them durable. When the shared power budget runs out
//! every device fails all further I/O; `crash` then decides the fate of each unflushed write
//! (kept, lost, or torn at 512-byte granularity) with a seeded RNG, and `reboot` returns a
//! fresh device over the durable image.

#![allow(dead_code)]

use async_trait::async_trait;
use ingot_hal::blockdev::{
    BlockDevice, BlockError, DeviceIdentity, DeviceKind, Geometry, HealthInfo, WriteFlags,
    check_range,
};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The power shared by a set of devices.
#[derive(Debug, Default)]
pub struct Power {
    /// Set once the power is cut.
    pub cut: AtomicBool,
    /// Writes+flushes left before the cut; negative = unlimited.
    pub budget: AtomicI64,
}

impl Power {
    pub fn new() -> Arc<Power> {
        Arc::new(Power {
            cut: AtomicBool::new(false),
            budget: AtomicI64::new(-1),
        })
    }
    /// Cut the power after `n` more write/flush operations.
    pub fn cut_after(&self, n: i64) {
        self.budget.store(n, Ordering::SeqCst);
    }
    fn tick(&self) -> bool {
        if self.cut.load(Ordering::SeqCst) {
            return false;
        }
        let b = self.budget.load(Ordering::SeqCst);
        if b < 0 {
            return true;
        }
        if b == 0 {
            self.cut.store(true, Ordering::SeqCst);
            return false;
        }
        self.budget.store(b - 1, Ordering::SeqCst);
        true
    }
}

#[derive(Debug)]
struct State {
    durable: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
}

/// A device with a volatile write cache.
#[derive(Debug)]
pub struct CrashDisk {
    name: String,
    geom: Geometry,
    state: Mutex<State>,
    power: Arc<Power>,
}

impl CrashDisk {
    pub fn new(name: &str, bytes: u64, power: Arc<Power>) -> Arc<CrashDisk> {
        Self::from_image(name, vec![0u8; bytes as usize], power)
    }

    pub fn from_image(name: &str, image: Vec<u8>, power: Arc<Power>) -> Arc<CrashDisk> {
        Arc::new(CrashDisk {
            name: name.to_string(),
            geom: Geometry {
                block_size: 512,
                blocks: image.len() as u64 / 512,
                max_transfer: 1 << 20,
                volatile_write_cache: true,
            },
            state: Mutex::new(State {
                durable: image,
                pending: Vec::new(),
            }),
            power,
        })
    }

    /// Decide the fate of unflushed writes: each is kept, lost or torn (512-byte sectors
    /// applied at random).
    pub fn crash(&self, rng: &mut ChaCha8Rng) {
        let mut s = self.state.lock();
        let pending = std::mem::take(&mut s.pending);
        for (off, data) in pending {
            match rng.random_range(0..3) {
                0 => s.durable[off as usize..off as usize + data.len()].copy_from_slice(&data),
                1 => {}
                _ => {
                    for (i, chunk) in data.chunks(512).enumerate() {
                        if rng.random_bool(0.5) {
                            let o = off as usize + i * 512;
                            s.durable[o..o + chunk.len()].copy_from_slice(chunk);
                        }
                    }
                }
            }
        }
    }

    /// The durable image.
    pub fn image(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    /// Mutate the durable image directly (tests that damage media).
    pub fn with_image<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        f(&mut self.state.lock().durable)
    }

    /// A fresh device over the durable image, on new power.
    pub fn reboot(&self, power: Arc<Power>) -> Arc<CrashDisk> {
        CrashDisk::from_image(&self.name, self.image(), power)
    }

    fn lost(&self) -> BlockError {
        BlockError::DeviceLost {
            device: self.name.clone(),
            reason: "power cut".into(),
        }
    }
}

#[async_trait]
impl BlockDevice for CrashDisk {
    fn geometry(&self) -> Geometry {
        self.geom
    }
    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            kind: DeviceKind::Memory,
            location: self.name.clone(),
            model: "crash test disk".into(),
            serial: self.name.clone(),
            firmware: "1".into(),
        }
    }
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.name, &self.geom, offset, buf.len() as u64)?;
        if self.power.cut.load(Ordering::SeqCst) {
            return Err(self.lost());
        }
        let s = self.state.lock();
        let o = offset as usize;
        buf.copy_from_slice(&s.durable[o..o + buf.len()]);
        for (po, pd) in &s.pending {
            let (ps, pe) = (*po as usize, *po as usize + pd.len());
            let (a, b) = (ps.max(o), pe.min(o + buf.len()));
            if a < b {
                buf[a - o..b - o].copy_from_slice(&pd[a - ps..b - ps]);
            }
        }
        Ok(())
    }
    async fn write(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError> {
        check_range(&self.name, &self.geom, offset, buf.len() as u64)?;
        if !self.power.tick() {
            return Err(self.lost());
        }
        let mut s = self.state.lock();
        if flags.fua {
            let o = offset as usize;
            s.durable[o..o + buf.len()].copy_from_slice(buf);
        } else {
            s.pending.push((offset, buf.to_vec()));
        }
        Ok(())
    }
    async fn flush(&self) -> Result<(), BlockError> {
        if !self.power.tick() {
            return Err(self.lost());
        }
        let mut s = self.state.lock();
        let pending = std::mem::take(&mut s.pending);
        for (off, data) in pending {
            s.durable[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
    async fn deallocate(&self, _offset: u64, _len: u64) -> Result<(), BlockError> {
        Ok(())
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.write(offset, &vec![0u8; len as usize], WriteFlags::NONE)
            .await
    }
    async fn health(&self) -> Result<HealthInfo, BlockError> {
        Ok(HealthInfo::default())
    }
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub mod rig;

pub mod model {
    //! A reference model of the object store and a random workload generator.
    use bytes::Bytes;
    use ingot_pool::store::{ObjectStore, Op, StoreError};
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeMap;
    use std::hash::{DefaultHasher, Hash, Hasher};

    #[derive(Clone, Default, Hash, PartialEq, Eq, Debug)]
    pub struct Obj {
        pub data: Vec<u8>,
        pub attr: Option<Vec<u8>>,
        pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
    }

    pub type Model = BTreeMap<u64, Obj>;

    pub fn digest(m: &Model) -> u64 {
        let mut h = DefaultHasher::new();
        m.hash(&mut h);
        h.finish()
    }

    pub fn apply(m: &mut Model, op: &Op) {
        match op {
            Op::Create { id } => {
                m.insert(*id, Obj::default());
            }
            Op::Delete { id } => {
                m.remove(id);
            }
            Op::Write { id, offset, data } => {
                let o = m.get_mut(id).expect("exists");
                let end = *offset as usize + data.len();
                if o.data.len() < end {
                    o.data.resize(end, 0);
                }
                o.data[*offset as usize..end].copy_from_slice(data);
            }
            Op::Truncate { id, size } => {
                m.get_mut(id)
                    .expect("exists")
                    .data
                    .resize(*size as usize, 0);
            }
            Op::PunchHole { id, offset, len } => {
                let o = m.get_mut(id).expect("exists");
                let a = (*offset as usize).min(o.data.len());
                let b = (*offset as usize + *len as usize).min(o.data.len());
                o.data[a..b].fill(0);
            }
            Op::SetAttr { id, attr } => {
                m.get_mut(id).expect("exists").attr = Some(attr.to_vec());
            }
            Op::KvPut { id, key, value } => {
                m.get_mut(id)
                    .expect("exists")
                    .kv
                    .insert(key.to_vec(), value.to_vec());
            }
            Op::KvDelete { id, key } => {
                m.get_mut(id).expect("exists").kv.remove(&key[..]);
            }
        }
    }

    fn data(rng: &mut ChaCha8Rng, len: usize) -> Bytes {
        // Half compressible, half random.
        let mut v = vec![0u8; len];
        if rng.random_bool(0.5) {
            rng.fill(&mut v[..]);
        } else {
            let b: u8 = rng.random();
            for (i, x) in v.iter_mut().enumerate() {
                *x = b.wrapping_add((i / 64) as u8);
            }
        }
        Bytes::from(v)
    }

    /// A random valid batch against `m` (ids in `64..64+ids`).
    pub fn batch(rng: &mut ChaCha8Rng, m: &Model, ids: u64, max_write: usize) -> Vec<Op> {
        let mut shadow = m.clone();
        let n = rng.random_range(1..=4);
        let mut ops = Vec::new();
        for _ in 0..n {
            let id = 64 + rng.random_range(0..ids);
            let op = if !shadow.contains_key(&id) {
                Op::Create { id }
            } else {
                let size = shadow[&id].data.len() as u64;
                match rng.random_range(0..100) {
                    0..=39 => {
                        let offset = rng.random_range(0..=size + 20_000).min(400_000);
                        let len = rng.random_range(1..=max_write);
                        Op::Write {
                            id,
                            offset,
                            data: data(rng, len),
                        }
                    }
                    40..=49 => Op::Truncate {
                        id,
                        size: rng.random_range(0..=size + 10_000),
                    },
                    50..=56 => Op::PunchHole {
                        id,
                        offset: rng.random_range(0..=size),
                        len: rng.random_range(0..=size + 1),
                    },
                    57..=64 => {
                        let len = rng.random_range(0..200);
                        Op::SetAttr {
                            id,
                            attr: data(rng, len),
                        }
                    }
                    65..=84 => {
                        let k = format!("key-{}", rng.random_range(0..40u32));
                        let len = rng.random_range(0..300);
                        Op::KvPut {
                            id,
                            key: Bytes::from(k),
                            value: data(rng, len),
                        }
                    }
                    85..=94 => Op::KvDelete {
                        id,
                        key: Bytes::from(format!("key-{}", rng.random_range(0..40u32))),
                    },
                    _ => Op::Delete { id },
                }
            };
            apply(&mut shadow, &op);
            ops.push(op);
        }
        ops
    }

    /// Read the whole state of ids `64..64+ids` back from a store.
    pub async fn read_back(s: &dyn ObjectStore, ids: u64) -> Result<Model, StoreError> {
        let mut m = Model::new();
        for id in 64..64 + ids {
            let size = match s.size(id).await {
                Ok(sz) => sz,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut data = vec![0u8; size as usize];
            let mut pos = 0;
            while pos < data.len() {
                let n = s.read(id, pos as u64, &mut data[pos..]).await?;
                assert!(n > 0, "short read at {pos} of {size}");
                pos += n;
            }
            let attr = s.get_attr(id).await?.map(|b| b.to_vec());
            let mut kv = BTreeMap::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let chunk = s.kv_scan(id, after.as_deref(), 7).await?;
                if chunk.is_empty() {
                    break;
                }
                after = Some(chunk.last().expect("non-empty").0.to_vec());
                for (k, v) in chunk {
                    kv.insert(k.to_vec(), v.to_vec());
                }
            }
            m.insert(id, Obj { data, attr, kv });
        }
        Ok(m)
    }
}
