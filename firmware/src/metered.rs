//! A block device that counts what passes through it: operations, bytes and latency
//! histograms for the console's statistics and `/metrics`. The device under it can be
//! swapped (a pulled simulated drive reinserted under a new driver instance), so the pool
//! keeps one stable handle per drive.

use async_trait::async_trait;
use ingot_console::appliance::{IoCounters, LatencyHistogram};
use ingot_hal::blockdev::{
    BlockDevice, BlockError, DeviceIdentity, Geometry, HealthInfo, WriteFlags,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

/// Wraps a device and counts its I/O.
#[derive(Debug)]
pub struct MeteredDevice {
    inner: Mutex<Arc<dyn BlockDevice>>,
    counters: Mutex<IoCounters>,
}

impl MeteredDevice {
    /// Count the I/O of `inner`.
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        MeteredDevice {
            inner: Mutex::new(inner),
            counters: Mutex::new(IoCounters {
                read_latency: LatencyHistogram::with_default_bounds(),
                write_latency: LatencyHistogram::with_default_bounds(),
                ..IoCounters::default()
            }),
        }
    }

    /// Put `inner` in place of the device under this one (same drive, new driver
    /// instance); I/O already under way finishes on the old one.
    pub fn swap(&self, inner: Arc<dyn BlockDevice>) {
        *self.inner.lock() = inner;
    }

    fn dev(&self) -> Arc<dyn BlockDevice> {
        self.inner.lock().clone()
    }

    /// The counters so far (cumulative).
    pub fn counters(&self) -> IoCounters {
        self.counters.lock().clone()
    }

    fn done<T>(&self, write: bool, bytes: u64, t0: Instant, r: &Result<T, BlockError>) {
        if r.is_err() {
            return;
        }
        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut c = self.counters.lock();
        if write {
            c.write_ops += 1;
            c.write_bytes += bytes;
            c.write_latency.observe(us);
        } else {
            c.read_ops += 1;
            c.read_bytes += bytes;
            c.read_latency.observe(us);
        }
    }
}

/// Add `b` into `a` (histograms with the same bounds).
pub fn add_counters(a: &mut IoCounters, b: &IoCounters) {
    a.read_ops += b.read_ops;
    a.write_ops += b.write_ops;
    a.read_bytes += b.read_bytes;
    a.write_bytes += b.write_bytes;
    a.checksum_errors_repaired += b.checksum_errors_repaired;
    for (x, y) in [
        (&mut a.read_latency, &b.read_latency),
        (&mut a.write_latency, &b.write_latency),
    ] {
        if x.bounds_us.is_empty() {
            *x = y.clone();
        } else if x.bounds_us == y.bounds_us {
            for (cx, cy) in x.counts.iter_mut().zip(&y.counts) {
                *cx += cy;
            }
            x.sum_us += y.sum_us;
        }
    }
}

#[async_trait]
impl BlockDevice for MeteredDevice {
    fn geometry(&self) -> Geometry {
        self.dev().geometry()
    }

    fn identity(&self) -> DeviceIdentity {
        self.dev().identity()
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let t0 = Instant::now();
        let len = buf.len() as u64;
        let r = self.dev().read(offset, buf).await;
        self.done(false, len, t0, &r);
        r
    }

    async fn write(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError> {
        let t0 = Instant::now();
        let r = self.dev().write(offset, buf, flags).await;
        self.done(true, buf.len() as u64, t0, &r);
        r
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.dev().flush().await
    }

    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.dev().deallocate(offset, len).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.dev().write_zeroes(offset, len).await
    }

    async fn health(&self) -> Result<HealthInfo, BlockError> {
        self.dev().health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingot_hal::blockdev::MemBlockDevice;

    #[tokio::test]
    async fn counts_ops_and_bytes() {
        let m = MeteredDevice::new(Arc::new(MemBlockDevice::new("m", 512, 64)));
        m.write(0, &[1u8; 1024], WriteFlags::NONE).await.unwrap();
        let mut b = [0u8; 512];
        m.read(512, &mut b).await.unwrap();
        assert!(m.read(1, &mut b).await.is_err());
        let c = m.counters();
        assert_eq!(
            (c.write_ops, c.write_bytes, c.read_ops, c.read_bytes),
            (1, 1024, 1, 512)
        );
        assert_eq!(c.read_latency.count(), 1);
        let mut sum = IoCounters::default();
        add_counters(&mut sum, &c);
        add_counters(&mut sum, &c);
        assert_eq!(
            (sum.read_ops, sum.write_bytes, sum.write_latency.count()),
            (2, 2048, 2)
        );
    }
}
