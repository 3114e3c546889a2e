//! Controller bring-up per the NVMe base specification: disable, admin queue, MSI-X
//! (before enable, for QEMU), enable, Identify, namespaces, Number of Queues, I/O queues.

use super::admin::{Admin, IoQueueDesc};
use super::config::DriverConfig;
use super::error::NvmeError;
use super::queue::QueuePair;
use super::shared::Shared;
use super::{cmd, regs, split};
use crate::backing::DeviceBacking;
use crate::dma::{DmaBuffer, PAGE_SIZE};
use crate::nvme::spec::{
    CQE_SIZE, Cap, IDENTIFY_SIZE, IdentifyController, IdentifyNamespace, SQE_SIZE,
    parse_namespace_list, reg,
};
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// An active namespace as Identify Namespace describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceInfo {
    /// Namespace id.
    pub nsid: u32,
    /// Logical block size in bytes of the format in use.
    pub block_size: u32,
    /// Size in logical blocks (NSZE).
    pub blocks: u64,
    /// The parsed Identify Namespace data.
    pub identify: IdentifyNamespace,
}

/// Everything bring-up produced.
#[derive(Debug)]
pub(crate) struct Brought {
    pub admin: Admin,
    pub identify: IdentifyController,
    pub namespaces: Vec<NamespaceInfo>,
    /// I/O queue pairs with their interrupt eventfd, if any.
    pub io: Vec<(QueuePair, Option<Arc<EventFd>>)>,
    /// Bytes per command after MDTS and the configured cap (a page multiple).
    pub max_transfer: usize,
}

fn dma(
    backing: &Arc<dyn DeviceBacking>,
    len: usize,
    what: &'static str,
) -> Result<DmaBuffer, NvmeError> {
    DmaBuffer::alloc(backing.dma_mapper(), len).map_err(|source| NvmeError::Dma {
        device: backing.id().to_string(),
        what,
        source,
    })
}

/// Bring the controller up. On failure after enabling, the controller is disabled again.
pub(crate) fn bring_up(
    backing: Arc<dyn DeviceBacking>,
    cfg: DriverConfig,
    shared: Arc<Shared>,
) -> Result<Brought, NvmeError> {
    let device = backing.id().to_string();
    let cap = Cap(backing.read64(reg::CAP));
    let unsupported = |reason: String| NvmeError::Unsupported {
        device: device.clone(),
        reason,
    };
    if cap.0 == u64::MAX {
        return Err(NvmeError::DeviceLost {
            device,
            reason: "registers read all-ones (device absent)".into(),
        });
    }
    if !cap.css_nvm() {
        return Err(unsupported("CAP.CSS lacks the NVM command set".into()));
    }
    if cap.mps_min() > PAGE_SIZE as u64 || cap.mps_max() < PAGE_SIZE as u64 {
        return Err(unsupported(format!(
            "4 KiB pages not supported (MPSMIN {} MPSMAX {})",
            cap.mps_min(),
            cap.mps_max()
        )));
    }
    if cfg.io_queues == 0 || cfg.queue_depth == 0 {
        return Err(unsupported("configuration asks for no I/O queues".into()));
    }
    tracing::info!(device = %device, mqes = cap.mqes(), timeout_ms = cap.timeout_ms(), dstrd = cap.dstrd(), "NVMe bring-up: disabling controller");
    regs::disable(&*backing, cap)?;
    let r = bring_up_disabled(&backing, cfg, shared, cap);
    if r.is_err() {
        let _ = regs::disable(&*backing, cap);
    }
    r
}

fn bring_up_disabled(
    backing: &Arc<dyn DeviceBacking>,
    cfg: DriverConfig,
    shared: Arc<Shared>,
    cap: Cap,
) -> Result<Brought, NvmeError> {
    let device = backing.id().to_string();
    let max_entries = cap.mqes().min(4096) as u16;
    let admin_entries = cfg.admin_queue_entries.clamp(2, 4096).min(max_entries);
    let sq = dma(backing, usize::from(admin_entries) * SQE_SIZE, "admin SQ")?;
    let cq = dma(backing, usize::from(admin_entries) * CQE_SIZE, "admin CQ")?;
    let qp = QueuePair::new(backing.clone(), 0, admin_entries, cap.dstrd(), sq, cq);

    // MSI-X must be routed before CC.EN=1 (QEMU arms the admin vector at enable).
    let wanted = if cfg.use_interrupts {
        backing.msix_count().min(u32::from(cfg.io_queues) + 1)
    } else {
        0
    };
    let vectors = if wanted > 0 {
        match backing.enable_msix(wanted) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "MSI-X unavailable; completions will be polled");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let scratch = dma(backing, IDENTIFY_SIZE, "admin data page")?;
    let mut admin = Admin::new(
        backing.clone(),
        cap,
        cfg.clone(),
        qp,
        vectors.first().cloned(),
        scratch,
        shared,
    );
    admin.program_admin_registers();
    regs::enable(&**backing, cap)?;
    tracing::info!(device = %device, admin_entries, vectors = vectors.len(), "NVMe controller enabled");

    let (_, data) = admin.run(
        "identify controller",
        cmd::identify_controller(0),
        IDENTIFY_SIZE,
    )?;
    let identify = IdentifyController::parse(&data);
    tracing::info!(device = %device, model = %identify.model, serial = %identify.serial, firmware = %identify.firmware, mdts = identify.mdts, nn = identify.nn, "identified controller");

    let (_, data) = admin.run(
        "identify active namespaces",
        cmd::identify_active_namespaces(0),
        IDENTIFY_SIZE,
    )?;
    let mut nsids = parse_namespace_list(&data);
    if nsids.is_empty() && identify.nn > 0 {
        nsids = (1..=identify.nn.min(1024)).collect();
    }
    let mut namespaces = Vec::new();
    for nsid in nsids {
        let (_, data) = admin.run(
            "identify namespace",
            cmd::identify_namespace(nsid, 0),
            IDENTIFY_SIZE,
        )?;
        let ns = IdentifyNamespace::parse(&data);
        match ns.block_size() {
            Some(bs) if ns.nsze > 0 && ns.current_format().is_some_and(|f| f.ms == 0) => {
                tracing::info!(device = %device, nsid, block_size = bs, blocks = ns.nsze, "namespace");
                namespaces.push(NamespaceInfo {
                    nsid,
                    block_size: bs,
                    blocks: ns.nsze,
                    identify: ns,
                });
            }
            _ => {
                tracing::warn!(device = %device, nsid, format = ?ns.current_format(), nsze = ns.nsze, "namespace skipped: inactive, metadata or unusable LBA format");
            }
        }
    }

    let max_transfer = split::max_transfer(cfg.max_transfer, cap.mps_min(), identify.mdts);

    let (c, _) = admin.run(
        "set features (number of queues)",
        cmd::set_number_of_queues(cfg.io_queues, cfg.io_queues),
        0,
    )?;
    let nsqa = (c.result & 0xffff) + 1;
    let ncqa = (c.result >> 16) + 1;
    let n = u32::from(cfg.io_queues).min(nsqa).min(ncqa) as u16;
    let entries = (u32::from(cfg.queue_depth) + 1).min(u32::from(max_entries)) as u16;
    let mut io = Vec::new();
    for qid in 1..=n {
        let sq = dma(backing, usize::from(entries) * SQE_SIZE, "I/O SQ")?;
        let cq = dma(backing, usize::from(entries) * CQE_SIZE, "I/O CQ")?;
        let vector = (usize::from(qid) < vectors.len()).then_some(qid);
        let desc = IoQueueDesc {
            qid,
            entries,
            sq_iova: sq.iova(),
            cq_iova: cq.iova(),
            vector,
        };
        admin.create_io_queue(desc)?;
        admin.io_queues.push(desc);
        let irq = vector.and_then(|v| vectors.get(usize::from(v)).cloned());
        io.push((
            QueuePair::new(backing.clone(), qid, entries, cap.dstrd(), sq, cq),
            irq,
        ));
    }
    tracing::info!(device = %device, queues = n, granted_sq = nsqa, granted_cq = ncqa, depth = entries - 1, max_transfer, "NVMe bring-up complete");
    Ok(Brought {
        admin,
        identify,
        namespaces,
        io,
        max_transfer,
    })
}
