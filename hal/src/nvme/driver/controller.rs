//! The public controller handle: bring-up, namespaces, admin log pages, statistics and
//! clean shutdown. Dropping the last handle (controller and namespaces) disables the
//! controller and stops the driver threads.

use super::bringup::{self, NamespaceInfo};
use super::config::DriverConfig;
use super::error::NvmeError;
use super::handle::{QueueHandle, SupervisorLink};
use super::msg::AdminMsg;
use super::namespace::Namespace;
use super::pool::BufPool;
use super::shared::{QueueStats, SHUT_DOWN, Shared};
use super::worker;
use super::{cmd, supervisor};
use crate::backing::DeviceBacking;
use crate::blockdev::DeviceKind;
use crate::nvme::spec::{
    Command, Completion, ERROR_LOG_ENTRY_SIZE, ErrorLogEntry, IdentifyController, SMART_LOG_SIZE,
    SmartLog, log,
};
use crossbeam_channel::{Sender, unbounded};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio::sync::oneshot;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// What the controller and its namespaces share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub device: String,
    pub kind: DeviceKind,
    pub shared: Arc<Shared>,
    pub identify: IdentifyController,
    pub namespaces: Vec<NamespaceInfo>,
    pub queues: Vec<QueueHandle>,
    pub max_transfer: usize,
    pub next_queue: AtomicUsize,
    admin_tx: Sender<AdminMsg>,
    admin_kick: Arc<EventFd>,
}

impl Inner {
    /// Why the device cannot be used, as the latched reason or a generic one.
    pub fn lost_reason(&self) -> String {
        self.shared
            .lost_reason()
            .unwrap_or_else(|| "NVMe driver stopped".into())
    }

    fn lost(&self) -> NvmeError {
        NvmeError::DeviceLost {
            device: self.device.clone(),
            reason: self.lost_reason(),
        }
    }

    /// Run an admin command on the supervisor; `data_len` bytes of returned data.
    pub async fn admin(
        &self,
        op: &'static str,
        cmd: Command,
        data_len: usize,
    ) -> Result<(Completion, Vec<u8>), NvmeError> {
        if self.shared.is_lost() {
            return Err(self.lost());
        }
        let (reply, rx) = oneshot::channel();
        self.admin_tx
            .send(AdminMsg::Command {
                op,
                cmd,
                data_len,
                reply,
            })
            .map_err(|_| self.lost())?;
        let _ = self.admin_kick.write(1);
        rx.await.map_err(|_| self.lost())?
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.admin_tx.send(AdminMsg::Exit);
        let _ = self.admin_kick.write(1);
    }
}

/// A running NVMe controller driven from userspace through a [`DeviceBacking`].
#[derive(Debug, Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Bring the controller up (see the module docs for the sequence) and start one owner
    /// thread per I/O queue pair plus the admin supervisor.
    pub async fn init(
        backing: Arc<dyn DeviceBacking>,
        cfg: DriverConfig,
    ) -> Result<Controller, NvmeError> {
        let device = backing.id().to_string();
        let kind = backing.kind();
        let shared = Arc::new(Shared::new(device.clone(), 1 + usize::from(cfg.io_queues)));
        let removal = backing.removal_request();
        let mapper = backing.dma_mapper();
        let (b2, c2, s2) = (backing.clone(), cfg.clone(), shared.clone());
        let brought = tokio::task::spawn_blocking(move || bringup::bring_up(b2, c2, s2))
            .await
            .map_err(|e| NvmeError::Thread {
                device: device.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let thread_err = |source| NvmeError::Thread {
            device: device.clone(),
            source,
        };
        let mut admin = brought.admin;
        let (admin_tx, admin_rx) = unbounded();
        let admin_kick = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(thread_err)?);
        let (acks_tx, acks_rx) = unbounded();
        let link = SupervisorLink {
            tx: admin_tx.clone(),
            kick: admin_kick.clone(),
            acks: acks_tx,
        };
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for (qp, irq) in brought.io {
            let depth = usize::from(qp.entries() - 1);
            let pool = BufPool::new(mapper.clone(), brought.max_transfer, depth);
            let (h, t) = worker::spawn(
                qp,
                irq,
                backing.clone(),
                cfg.clone(),
                shared.clone(),
                link.clone(),
                pool,
            )
            .map_err(thread_err)?;
            queues.push(h);
            threads.push(t);
        }
        admin.workers = queues.iter().map(QueueHandle::ctl_link).collect();
        admin.acks = Some(acks_rx);
        let mut wakers = vec![admin_kick.clone()];
        wakers.extend(queues.iter().map(QueueHandle::kick));
        shared.set_wakers(wakers);
        let sup_kick = admin_kick.clone();
        std::thread::Builder::new()
            .name("nvme-admin".into())
            .spawn(move || supervisor::serve(admin, admin_rx, sup_kick, removal, threads))
            .map_err(thread_err)?;
        Ok(Controller {
            inner: Arc::new(Inner {
                device,
                kind,
                shared,
                identify: brought.identify,
                namespaces: brought.namespaces,
                queues,
                max_transfer: brought.max_transfer,
                next_queue: AtomicUsize::new(0),
                admin_tx,
                admin_kick,
            }),
        })
    }

    /// The backing's id (PCI address or `sim:NAME`).
    pub fn id(&self) -> &str {
        &self.inner.device
    }

    /// Identify Controller data.
    pub fn identify(&self) -> &IdentifyController {
        &self.inner.identify
    }

    /// Active namespaces with a usable LBA format.
    pub fn namespaces(&self) -> Vec<NamespaceInfo> {
        self.inner.namespaces.clone()
    }

    /// Number of I/O queue pairs in use.
    pub fn io_queue_count(&self) -> usize {
        self.inner.queues.len()
    }

    /// Largest transfer per command in bytes (MDTS and configuration applied).
    pub fn max_transfer(&self) -> usize {
        self.inner.max_transfer
    }

    /// A block-device handle on namespace `nsid`.
    pub fn namespace(&self, nsid: u32) -> Result<Namespace, NvmeError> {
        let info = self
            .inner
            .namespaces
            .iter()
            .find(|n| n.nsid == nsid)
            .cloned()
            .ok_or_else(|| NvmeError::Namespace {
                device: self.inner.device.clone(),
                nsid,
                reason: "not an active namespace with a usable LBA format".into(),
            })?;
        Namespace::new(self.inner.clone(), info)
    }

    /// SMART / Health Information (controller-wide).
    pub async fn smart_log(&self) -> Result<SmartLog, NvmeError> {
        let (_, data) = self
            .inner
            .admin(
                "get log page (SMART)",
                cmd::get_log_page(log::SMART_HEALTH, 0xffff_ffff, SMART_LOG_SIZE, 0),
                SMART_LOG_SIZE,
            )
            .await?;
        Ok(SmartLog::parse(&data))
    }

    /// The non-empty Error Information log entries (at most 64).
    pub async fn error_log(&self) -> Result<Vec<ErrorLogEntry>, NvmeError> {
        let entries = (usize::from(self.inner.identify.elpe) + 1).min(64);
        let len = entries * ERROR_LOG_ENTRY_SIZE;
        let (_, data) = self
            .inner
            .admin(
                "get log page (error information)",
                cmd::get_log_page(log::ERROR_INFORMATION, 0, len, 0),
                len,
            )
            .await?;
        Ok(ErrorLogEntry::parse_log(&data))
    }

    /// Per-queue counters; index 0 is the admin queue.
    pub fn stats(&self) -> Vec<QueueStats> {
        let mut s = self.inner.shared.stats();
        s.truncate(1 + self.inner.queues.len());
        s
    }

    /// Why the device is unusable, if it is (lost, removed or shut down).
    pub fn lost_reason(&self) -> Option<String> {
        self.inner.shared.lost_reason()
    }

    /// Clean shutdown: drain in-flight commands, delete the I/O queues, CC.SHN normal and
    /// wait for CSTS.SHST complete (bounded). Later commands fail with `DeviceLost`.
    /// Shutting down again is a no-op.
    pub async fn shutdown(&self) -> Result<(), NvmeError> {
        match self.inner.shared.lost_reason() {
            Some(r) if r == SHUT_DOWN => return Ok(()),
            Some(_) => return Err(self.inner.lost()),
            None => {}
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .admin_tx
            .send(AdminMsg::Shutdown { reply })
            .map_err(|_| self.inner.lost())?;
        let _ = self.inner.admin_kick.write(1);
        rx.await.map_err(|_| self.inner.lost())?
    }
}
