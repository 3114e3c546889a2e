//! A namespace as a [`BlockDevice`]: byte ranges become NVMe commands split at the
//! transfer limit, user data is copied through the queue pair's bounce buffers, and
//! device outcomes become [`BlockError`]s.

use super::bringup::NamespaceInfo;
use super::cmd;
use super::controller::Inner;
use super::error::NvmeError;
use super::handle::QueueHandle;
use super::msg::{IoFailure, IoReply, IoRequest};
use super::split::{self, MAX_NLB};
use crate::blockdev::{
    BlockDevice, BlockError, DeviceIdentity, Geometry, HealthInfo, WriteFlags, check_range,
};
use crate::dma::DmaBuffer;
use crate::nvme::spec::{Command, DsmRange, SMART_LOG_SIZE, SmartLog, log};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// One namespace of a [`super::Controller`]. Cheap to clone; all clones share the queues.
#[derive(Debug, Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
    info: NamespaceInfo,
    location: String,
    /// Bytes per data command (a block multiple).
    chunk: usize,
}

impl Namespace {
    pub(crate) fn new(inner: Arc<Inner>, info: NamespaceInfo) -> Result<Namespace, NvmeError> {
        let chunk = split::chunk_bytes(inner.max_transfer, info.block_size);
        if chunk == 0 {
            return Err(NvmeError::Namespace {
                device: inner.device.clone(),
                nsid: info.nsid,
                reason: format!(
                    "block size {} exceeds the transfer limit {}",
                    info.block_size, inner.max_transfer
                ),
            });
        }
        Ok(Namespace {
            location: format!("{}/n{}", inner.device, info.nsid),
            inner,
            info,
            chunk,
        })
    }

    /// Namespace id.
    pub fn nsid(&self) -> u32 {
        self.info.nsid
    }

    /// Identify Namespace data and size.
    pub fn info(&self) -> &NamespaceInfo {
        &self.info
    }

    fn queue(&self) -> &QueueHandle {
        let n = self.inner.next_queue.fetch_add(1, Ordering::Relaxed);
        &self.inner.queues[n % self.inner.queues.len()]
    }

    fn lost(&self) -> BlockError {
        BlockError::DeviceLost {
            device: self.location.clone(),
            reason: self.inner.lost_reason(),
        }
    }

    fn host_error(&self, op: &'static str, what: impl std::fmt::Display) -> BlockError {
        BlockError::Io {
            device: self.location.clone(),
            op,
            source: std::io::Error::other(what.to_string()),
        }
    }

    fn failure(&self, op: &'static str, offset: u64, f: IoFailure) -> BlockError {
        match f {
            IoFailure::Status(status) => BlockError::Nvme {
                device: self.location.clone(),
                op,
                offset,
                status,
            },
            IoFailure::Timeout => BlockError::Timeout {
                device: self.location.clone(),
                op,
            },
            IoFailure::Lost(reason) => BlockError::DeviceLost {
                device: self.location.clone(),
                reason,
            },
        }
    }

    fn send(
        &self,
        q: &QueueHandle,
        cmd: Command,
        buf: Option<DmaBuffer>,
    ) -> Result<oneshot::Receiver<IoReply>, BlockError> {
        if self.inner.shared.is_lost() {
            return Err(self.lost());
        }
        let (reply, rx) = oneshot::channel();
        q.submit(IoRequest { cmd, buf, reply })
            .map_err(|_| self.lost())?;
        Ok(rx)
    }

    async fn wait(
        &self,
        op: &'static str,
        offset: u64,
        rx: oneshot::Receiver<IoReply>,
    ) -> Result<Option<DmaBuffer>, BlockError> {
        let r = rx.await.map_err(|_| self.lost())?;
        match r.outcome {
            Ok(_) => Ok(r.buf),
            Err(f) => Err(self.failure(op, offset, f)),
        }
    }

    /// A bounce buffer with PRPs for `len` bytes set in `cmd`.
    fn buffer(
        &self,
        q: &QueueHandle,
        op: &'static str,
        len: usize,
        cmd: &mut Command,
    ) -> Result<DmaBuffer, BlockError> {
        // A lost device fails at once and says so: once the kernel has torn down its
        // IOMMU container, mapping a buffer would fail with a less telling host error.
        if self.inner.shared.is_lost() {
            return Err(self.lost());
        }
        let mut b = q.pool.get().map_err(|e| self.host_or_lost(op, e))?;
        q.pool
            .set_prps(&mut b, len, cmd)
            .map_err(|e| self.host_or_lost(op, e))?;
        Ok(b)
    }

    /// A host-side failure, unless the device was lost meanwhile (then that is the error).
    fn host_or_lost(&self, op: &'static str, what: impl std::fmt::Display) -> BlockError {
        if self.inner.shared.is_lost() {
            self.lost()
        } else {
            self.host_error(op, what)
        }
    }

    /// Move `data` to or from `[offset, offset+len)` in commands of at most `self.chunk`
    /// bytes, with at most the queue depth of them (and so of bounce buffers) in flight.
    async fn transfer(&self, offset: u64, mut data: Data<'_>) -> Result<(), BlockError> {
        let (op, len) = match &data {
            Data::Read(b) => ("read", b.len()),
            Data::Write(b, _) => ("write", b.len()),
            Data::Zero(n) => ("write zeroes", *n),
        };
        let nsid = self.info.nsid;
        let bs = u64::from(self.info.block_size);
        let q = self.queue();
        let mut pending: VecDeque<(usize, usize, oneshot::Receiver<IoReply>)> = VecDeque::new();
        let mut chunks = split::split(len, self.chunk);
        loop {
            let next = if pending.len() < q.depth {
                chunks.next()
            } else {
                None
            };
            let Some((done, n)) = next else {
                // Window full or nothing left to submit: retire the oldest command.
                let Some((at, n, rx)) = pending.pop_front() else {
                    return Ok(());
                };
                if let Some(b) = self.wait(op, offset + at as u64, rx).await? {
                    if let Data::Read(out) = &mut data {
                        b.read_at(0, &mut out[at..at + n]);
                    }
                    q.pool.put(b);
                }
                continue;
            };
            let slba = (offset + done as u64) / bs;
            let nlb = (n as u64 / bs) as u32;
            let mut c = match &data {
                Data::Read(_) => cmd::read(nsid, slba, nlb),
                Data::Write(_, flags) => cmd::write(nsid, slba, nlb, flags.fua),
                Data::Zero(_) => cmd::write(nsid, slba, nlb, false),
            };
            let mut b = self.buffer(q, op, n, &mut c)?;
            match &data {
                Data::Read(_) => {}
                Data::Write(src, _) => b.write_at(0, &src[done..done + n]),
                Data::Zero(_) => b.zero(0, n),
            }
            pending.push_back((done, n, self.send(q, c, Some(b))?));
        }
    }
}

/// What a data transfer moves.
enum Data<'a> {
    /// Into the caller's buffer.
    Read(&'a mut [u8]),
    /// From the caller's buffer.
    Write(&'a [u8], WriteFlags),
    /// Zeroes, this many bytes (Write Zeroes fallback).
    Zero(usize),
}

#[async_trait]
impl BlockDevice for Namespace {
    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: self.info.block_size,
            blocks: self.info.blocks,
            max_transfer: self.chunk as u32,
            volatile_write_cache: self.inner.identify.vwc & 1 != 0,
        }
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            kind: self.inner.kind,
            location: self.location.clone(),
            model: self.inner.identify.model.clone(),
            serial: self.inner.identify.serial.clone(),
            firmware: self.inner.identify.firmware.clone(),
        }
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.location, &self.geometry(), offset, buf.len() as u64)?;
        self.transfer(offset, Data::Read(buf)).await
    }

    async fn write(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError> {
        check_range(&self.location, &self.geometry(), offset, buf.len() as u64)?;
        self.transfer(offset, Data::Write(buf, flags)).await
    }

    async fn flush(&self) -> Result<(), BlockError> {
        let rx = self.send(self.queue(), cmd::flush(self.info.nsid), None)?;
        self.wait("flush", 0, rx).await.map(|_| ())
    }

    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        check_range(&self.location, &self.geometry(), offset, len)?;
        if !self.inner.identify.supports_dsm() {
            return Err(BlockError::Unsupported {
                device: self.location.clone(),
                op: "deallocate",
            });
        }
        let bs = u64::from(self.info.block_size);
        let (mut slba, mut left) = (offset / bs, len / bs);
        let q = self.queue();
        while left > 0 {
            // Up to 256 ranges of up to 2^32-1 blocks each per command.
            let mut ranges = Vec::new();
            while left > 0 && ranges.len() < 256 {
                let nlb = left.min(u64::from(u32::MAX));
                ranges.push(DsmRange {
                    attributes: 0,
                    nlb: nlb as u32,
                    slba,
                });
                slba += nlb;
                left -= nlb;
            }
            let bytes: Vec<u8> = ranges.iter().flat_map(|r| r.to_bytes()).collect();
            let mut c = cmd::dsm_deallocate(self.info.nsid, ranges.len() as u32, 0);
            let mut b = self.buffer(q, "deallocate", bytes.len(), &mut c)?;
            b.write_at(0, &bytes);
            let rx = self.send(q, c, Some(b))?;
            if let Some(b) = self.wait("deallocate", ranges[0].slba * bs, rx).await? {
                q.pool.put(b);
            }
        }
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        check_range(&self.location, &self.geometry(), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let bs = u64::from(self.info.block_size);
        if !self.inner.identify.supports_write_zeroes() {
            // No Write Zeroes: write zeroed bounce buffers instead.
            let len = usize::try_from(len).map_err(|e| self.host_error("write zeroes", e))?;
            return self.transfer(offset, Data::Zero(len)).await;
        }
        let q = self.queue();
        let mut pending = Vec::new();
        let (mut slba, mut left) = (offset / bs, len / bs);
        while left > 0 {
            let nlb = left.min(MAX_NLB);
            let c = cmd::write_zeroes(self.info.nsid, slba, nlb as u32);
            pending.push((slba * bs, self.send(q, c, None)?));
            slba += nlb;
            left -= nlb;
        }
        for (at, rx) in pending {
            self.wait("write zeroes", at, rx).await?;
        }
        Ok(())
    }

    async fn health(&self) -> Result<HealthInfo, BlockError> {
        let (_, data) = self
            .inner
            .admin(
                "get log page (SMART)",
                cmd::get_log_page(log::SMART_HEALTH, 0xffff_ffff, SMART_LOG_SIZE, 0),
                SMART_LOG_SIZE,
            )
            .await
            .map_err(|e| match e {
                NvmeError::DeviceLost { reason, .. } => BlockError::DeviceLost {
                    device: self.location.clone(),
                    reason,
                },
                NvmeError::AdminTimeout { op, .. } => BlockError::Timeout {
                    device: self.location.clone(),
                    op,
                },
                NvmeError::Admin { op, status, .. } => BlockError::Nvme {
                    device: self.location.clone(),
                    op,
                    offset: 0,
                    status,
                },
                other => self.host_error("health", other),
            })?;
        let s = SmartLog::parse(&data);
        Ok(HealthInfo {
            critical_warning: s.critical_warning,
            temperature_kelvin: (s.temperature_kelvin != 0).then_some(s.temperature_kelvin),
            available_spare_pct: Some(s.available_spare),
            percentage_used: Some(s.percentage_used),
            data_units_read: s.data_units_read,
            data_units_written: s.data_units_written,
            power_on_hours: s.power_on_hours,
            media_errors: s.media_errors,
            error_log_entries: s.error_log_entries,
        })
    }
}
