//! Admin command set of the simulated controller.
//!
//! Identify (CNS 00h/01h/02h), Set/Get Features (Number of Queues, Volatile Write
//! Cache, Interrupt Coalescing), Create/Delete I/O CQ and SQ (physically contiguous
//! only), Get Log Page (Error Information, SMART/Health), Abort and Asynchronous
//! Event Request. Field checks and status codes follow the NVMe base spec 1.4.

use super::engine::{Done, Engine, Outcome, PAGE, Status};
use super::health::ERROR_LOG_ENTRIES;
use crate::nvme::spec::{
    self, Command, IdentifyController, IdentifyNamespace, LbaFormat, admin, cns, feature, log, sc,
};

/// Command-specific status: Invalid Interrupt Vector.
const SC_INVALID_INTERRUPT_VECTOR: u8 = 0x08;
/// Command-specific status: Invalid Queue Deletion.
const SC_INVALID_QUEUE_DELETION: u8 = 0x0c;
/// Command-specific status: Feature Identifier Not Saveable.
const SC_FEATURE_NOT_SAVEABLE: u8 = 0x0d;
/// Generic status: Command Sequence Error.
const SC_COMMAND_SEQUENCE_ERROR: u8 = 0x0c;
/// The one namespace's ID.
pub(super) const NSID: u32 = 1;

impl Engine {
    /// Run one admin command.
    pub(super) fn admin(&mut self, cmd: &Command) -> Outcome {
        let done = match cmd.opcode() {
            admin::IDENTIFY => self.identify(cmd),
            admin::SET_FEATURES => self.set_features(cmd),
            admin::GET_FEATURES => self.get_features(cmd),
            admin::CREATE_IO_CQ => self.create_cq(cmd),
            admin::CREATE_IO_SQ => self.create_sq(cmd),
            admin::DELETE_IO_SQ => self.delete_sq(cmd),
            admin::DELETE_IO_CQ => self.delete_cq(cmd),
            admin::GET_LOG_PAGE => self.get_log_page(cmd),
            admin::ABORT => {
                let sqid = (cmd.cdw10 & 0xffff) as u16;
                let cid = (cmd.cdw10 >> 16) as u16;
                let aborted = self.abort_outstanding(sqid, cid);
                tracing::info!(device = %self.sh.id, sqid, cid, aborted, "sim: abort");
                // DW0 bit 0: 0 = the command was aborted, 1 = it was not.
                Done::ok(u32::from(!aborted))
            }
            admin::ASYNC_EVENT_REQUEST => return self.aer(),
            _ => Status::invalid(sc::INVALID_OPCODE).into(),
        };
        Outcome::Done(done)
    }

    fn identify_controller(&self) -> [u8; spec::IDENTIFY_SIZE] {
        let cfg = &self.sh.cfg;
        let id = IdentifyController {
            vid: 0,
            serial: cfg.serial.clone(),
            model: cfg.model.clone(),
            firmware: cfg.firmware.clone(),
            mdts: cfg.tuning.mdts,
            cntlid: 1,
            ver: super::controller::SIM_VERSION,
            acl: 3,
            elpe: (ERROR_LOG_ENTRIES - 1) as u8,
            nn: 1,
            oncs: (1 << 2) | (1 << 3),
            // Bit 0: present; bits 2:1 = 11b: Flush with NSID FFFFFFFFh supported.
            vwc: if cfg.tuning.volatile_write_cache {
                0b111
            } else {
                0
            },
        };
        let mut b = id.encode();
        b[259] = (super::engine::AER_LIMIT - 1) as u8; // AERL
        let nqn = format!("nqn.2026-01.io.ingot:sim:{}", cfg.serial);
        b[768..768 + nqn.len().min(256)].copy_from_slice(&nqn.as_bytes()[..nqn.len().min(256)]);
        b
    }

    fn identify_namespace(&self) -> [u8; spec::IDENTIFY_SIZE] {
        let cfg = &self.sh.cfg;
        let blocks = cfg.blocks();
        let ns = IdentifyNamespace {
            nsze: blocks,
            ncap: blocks,
            nuse: blocks,
            nsfeat: 0,
            lba_formats: vec![
                LbaFormat {
                    ms: 0,
                    lbads: 9,
                    rp: 0,
                },
                LbaFormat {
                    ms: 0,
                    lbads: 12,
                    rp: 0,
                },
            ],
            flbas_index: if cfg.lba_size == 4096 { 1 } else { 0 },
        };
        let mut b = ns.encode();
        // DLFEAT: deallocated blocks read as zeroes; Write Zeroes supports DEAC.
        b[33] = 0b1001;
        b
    }

    fn identify(&mut self, cmd: &Command) -> Done {
        let cnsv = cmd.cdw10 & 0xff;
        let data = match cnsv {
            cns::CONTROLLER => self.identify_controller(),
            cns::NAMESPACE => {
                if cmd.nsid != NSID {
                    return Status::invalid(sc::INVALID_NAMESPACE).into();
                }
                self.identify_namespace()
            }
            cns::ACTIVE_NAMESPACES => {
                if cmd.nsid >= 0xffff_fffe {
                    return Status::invalid(sc::INVALID_NAMESPACE).into();
                }
                let mut b = [0u8; spec::IDENTIFY_SIZE];
                if cmd.nsid < NSID {
                    b[0..4].copy_from_slice(&NSID.to_le_bytes());
                }
                b
            }
            _ => return Status::invalid(sc::INVALID_FIELD).into(),
        };
        match self.dma_to_host(cmd, &data) {
            Ok(()) => Done::ok(0),
            Err(s) => s.into(),
        }
    }

    fn set_features(&mut self, cmd: &Command) -> Done {
        let fid = (cmd.cdw10 & 0xff) as u8;
        if cmd.cdw10 & (1 << 31) != 0 {
            return Status::specific(SC_FEATURE_NOT_SAVEABLE).into();
        }
        match fid {
            feature::NUMBER_OF_QUEUES => {
                let nsqr = (cmd.cdw11 & 0xffff) as u16;
                let ncqr = (cmd.cdw11 >> 16) as u16;
                if nsqr == 0xffff || ncqr == 0xffff {
                    return Status::invalid(sc::INVALID_FIELD).into();
                }
                let io_queues_exist = self.sqs.iter().skip(1).any(Option::is_some)
                    || self.cqs.iter().skip(1).any(Option::is_some);
                if io_queues_exist {
                    return Status::invalid(SC_COMMAND_SEQUENCE_ERROR).into();
                }
                let max = self.sh.cfg.tuning.max_io_queues - 1;
                self.feat.nsqa = nsqr.min(max);
                self.feat.ncqa = ncqr.min(max);
                tracing::debug!(device = %self.sh.id, nsqa = self.feat.nsqa, ncqa = self.feat.ncqa, "sim: number of queues set");
                Done::ok(u32::from(self.feat.nsqa) | (u32::from(self.feat.ncqa) << 16))
            }
            feature::VOLATILE_WRITE_CACHE => {
                if !self.sh.cfg.tuning.volatile_write_cache {
                    return Status::invalid(sc::INVALID_FIELD).into();
                }
                let wce = cmd.cdw11 & 1 != 0;
                if self.feat.wce && !wce {
                    // Disabling the cache makes everything written so far durable.
                    if let Err(e) = self.sh.store.flush() {
                        tracing::error!(device = %self.sh.id, error = %e, "sim: flush failed");
                        return Status::transient(sc::INTERNAL_ERROR).into();
                    }
                }
                self.feat.wce = wce;
                Done::ok(0)
            }
            feature::INTERRUPT_COALESCING => {
                self.feat.coalescing = cmd.cdw11 & 0xffff;
                Done::ok(0)
            }
            _ => Status::invalid(sc::INVALID_FIELD).into(),
        }
    }

    fn get_features(&mut self, cmd: &Command) -> Done {
        let fid = (cmd.cdw10 & 0xff) as u8;
        let sel = (cmd.cdw10 >> 8) & 0b111;
        let default = Self::default_features(&self.sh);
        let vals = match sel {
            0 => self.feat,
            1 | 2 => default,
            3 => {
                // Capabilities: changeable (bit 2), not saveable, not namespace specific.
                return match fid {
                    feature::NUMBER_OF_QUEUES
                    | feature::VOLATILE_WRITE_CACHE
                    | feature::INTERRUPT_COALESCING => Done::ok(1 << 2),
                    _ => Status::invalid(sc::INVALID_FIELD).into(),
                };
            }
            _ => return Status::invalid(sc::INVALID_FIELD).into(),
        };
        match fid {
            feature::NUMBER_OF_QUEUES => {
                Done::ok(u32::from(vals.nsqa) | (u32::from(vals.ncqa) << 16))
            }
            feature::VOLATILE_WRITE_CACHE => {
                if !self.sh.cfg.tuning.volatile_write_cache {
                    return Status::invalid(sc::INVALID_FIELD).into();
                }
                Done::ok(u32::from(vals.wce))
            }
            feature::INTERRUPT_COALESCING => Done::ok(vals.coalescing),
            _ => Status::invalid(sc::INVALID_FIELD).into(),
        }
    }

    fn queue_size_ok(&self, qsize: u32) -> bool {
        qsize >= 2 && qsize <= self.sh.cap.mqes()
    }

    fn create_cq(&mut self, cmd: &Command) -> Done {
        let qid = (cmd.cdw10 & 0xffff) as u16;
        let qsize = (cmd.cdw10 >> 16) + 1;
        let pc = cmd.cdw11 & 1 != 0;
        let ien = cmd.cdw11 & 2 != 0;
        let iv = (cmd.cdw11 >> 16) as u16;
        let q = usize::from(qid);
        if qid == 0 || qid > self.feat.ncqa + 1 || q >= self.cqs.len() || self.cqs[q].is_some() {
            return Status::specific(sc::CS_INVALID_QID).into();
        }
        if !self.queue_size_ok(qsize) {
            return Status::specific(sc::CS_INVALID_QUEUE_SIZE).into();
        }
        if !pc {
            return Status::invalid(sc::INVALID_FIELD).into();
        }
        if u32::from(iv) >= self.sh.cfg.tuning.msix_vectors {
            return Status::specific(SC_INVALID_INTERRUPT_VECTOR).into();
        }
        if cmd.prp1 == 0 || !cmd.prp1.is_multiple_of(PAGE as u64) {
            return Status::invalid(sc::INVALID_PRP_OFFSET).into();
        }
        self.sh.doorbells[2 * q + 1].store(0, std::sync::atomic::Ordering::Release);
        self.cqs[q] = Some(Engine::new_cq(cmd.prp1, qsize as u16, ien, iv));
        tracing::debug!(device = %self.sh.id, qid, qsize, ien, iv, "sim: I/O CQ created");
        Done::ok(0)
    }

    fn create_sq(&mut self, cmd: &Command) -> Done {
        let qid = (cmd.cdw10 & 0xffff) as u16;
        let qsize = (cmd.cdw10 >> 16) + 1;
        let pc = cmd.cdw11 & 1 != 0;
        let cqid = (cmd.cdw11 >> 16) as u16;
        let q = usize::from(qid);
        if qid == 0 || qid > self.feat.nsqa + 1 || q >= self.sqs.len() || self.sqs[q].is_some() {
            return Status::specific(sc::CS_INVALID_QID).into();
        }
        if cqid == 0 || self.cqs.get(usize::from(cqid)).is_none_or(Option::is_none) {
            return Status::specific(sc::CS_INVALID_CQ).into();
        }
        if !self.queue_size_ok(qsize) {
            return Status::specific(sc::CS_INVALID_QUEUE_SIZE).into();
        }
        if !pc {
            return Status::invalid(sc::INVALID_FIELD).into();
        }
        if cmd.prp1 == 0 || !cmd.prp1.is_multiple_of(PAGE as u64) {
            return Status::invalid(sc::INVALID_PRP_OFFSET).into();
        }
        self.sh.doorbells[2 * q].store(0, std::sync::atomic::Ordering::Release);
        self.sqs[q] = Some(Engine::new_sq(cmd.prp1, qsize as u16, cqid));
        tracing::debug!(device = %self.sh.id, qid, qsize, cqid, "sim: I/O SQ created");
        Done::ok(0)
    }

    fn delete_sq(&mut self, cmd: &Command) -> Done {
        let qid = (cmd.cdw10 & 0xffff) as u16;
        let q = usize::from(qid);
        if qid == 0 || self.sqs.get(q).is_none_or(Option::is_none) {
            return Status::specific(sc::CS_INVALID_QID).into();
        }
        self.abort_sq(qid);
        self.sqs[q] = None;
        tracing::debug!(device = %self.sh.id, qid, "sim: I/O SQ deleted");
        Done::ok(0)
    }

    fn delete_cq(&mut self, cmd: &Command) -> Done {
        let qid = (cmd.cdw10 & 0xffff) as u16;
        let q = usize::from(qid);
        if qid == 0 || self.cqs.get(q).is_none_or(Option::is_none) {
            return Status::specific(sc::CS_INVALID_QID).into();
        }
        if self.sqs.iter().flatten().any(|sq| sq.cqid == qid) {
            return Status::specific(SC_INVALID_QUEUE_DELETION).into();
        }
        self.cqs[q] = None;
        tracing::debug!(device = %self.sh.id, qid, "sim: I/O CQ deleted");
        Done::ok(0)
    }

    fn get_log_page(&mut self, cmd: &Command) -> Done {
        let lid = (cmd.cdw10 & 0xff) as u8;
        let numd = (u64::from(cmd.cdw11 & 0xffff) << 16 | u64::from(cmd.cdw10 >> 16)) + 1;
        let len = numd * 4;
        let offset = u64::from(cmd.cdw12) | (u64::from(cmd.cdw13) << 32);
        if !offset.is_multiple_of(4) {
            return Status::invalid(sc::INVALID_FIELD).into();
        }
        let page = match lid {
            log::ERROR_INFORMATION => self.sh.health.error_log_page(),
            log::SMART_HEALTH => {
                if cmd.nsid != 0 && cmd.nsid != 0xffff_ffff {
                    // No per-namespace SMART data (Identify LPA bit 0 clear).
                    return Status::invalid(sc::INVALID_FIELD).into();
                }
                self.sh.health.smart().encode().to_vec()
            }
            _ => return Status::specific(sc::CS_INVALID_LOG_PAGE).into(),
        };
        if offset >= page.len() as u64 || len > self.sh.cfg.max_transfer() {
            return Status::invalid(sc::INVALID_FIELD).into();
        }
        // Bytes past the end of the log read as zeroes.
        match self.dma_to_host_padded(cmd, &page[offset as usize..], len) {
            Ok(()) => Done::ok(0),
            Err(s) => s.into(),
        }
    }
}
