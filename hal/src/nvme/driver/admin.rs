//! The admin queue and the controller-wide procedures that use it: synchronous admin
//! command execution (one at a time, bounded by the command timeout), Abort, and
//! controller reset (pause queue owners, disable, re-enable, recreate I/O queues, resume).

use super::config::DriverConfig;
use super::error::NvmeError;
use super::handle::WorkerCtl;
use super::msg::Ctl;
use super::queue::QueuePair;
use super::shared::Shared;
use super::{cmd, regs, wait};
use crate::backing::DeviceBacking;
use crate::blockdev::NvmeStatus;
use crate::dma::DmaBuffer;
use crate::nvme::spec::{Cap, Command, Completion, aqa, reg};
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// How one I/O queue pair was created, to recreate it after a reset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IoQueueDesc {
    pub qid: u16,
    pub entries: u16,
    pub sq_iova: u64,
    pub cq_iova: u64,
    pub vector: Option<u16>,
}

/// Why a raw admin command did not produce a completion.
#[derive(Debug)]
pub(crate) enum ExecError {
    Timeout,
    Lost(String),
}

/// The admin queue and what a reset needs.
#[derive(Debug)]
pub(crate) struct Admin {
    pub device: String,
    pub backing: Arc<dyn DeviceBacking>,
    pub cap: Cap,
    pub cfg: DriverConfig,
    qp: QueuePair,
    next_cid: u16,
    irq: Option<Arc<EventFd>>,
    /// One page for Identify data and log pages.
    pub scratch: DmaBuffer,
    pub shared: Arc<Shared>,
    pub io_queues: Vec<IoQueueDesc>,
    pub workers: Vec<WorkerCtl>,
    pub acks: Option<Receiver<u16>>,
}

impl Admin {
    /// Wrap an admin queue pair whose registers (AQA/ASQ/ACQ) are already programmed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backing: Arc<dyn DeviceBacking>,
        cap: Cap,
        cfg: DriverConfig,
        qp: QueuePair,
        irq: Option<Arc<EventFd>>,
        scratch: DmaBuffer,
        shared: Arc<Shared>,
    ) -> Admin {
        Admin {
            device: backing.id().to_string(),
            backing,
            cap,
            cfg,
            qp,
            next_cid: 0,
            irq,
            scratch,
            shared,
            io_queues: Vec::new(),
            workers: Vec::new(),
            acks: None,
        }
    }

    /// Program AQA/ASQ/ACQ for the admin rings.
    pub fn program_admin_registers(&self) {
        let n = self.qp.entries();
        self.backing.write32(reg::AQA, aqa(n, n));
        self.backing.write64(reg::ASQ, self.qp.sq_iova());
        self.backing.write64(reg::ACQ, self.qp.cq_iova());
    }

    fn lost_error(&self, reason: String) -> NvmeError {
        NvmeError::DeviceLost {
            device: self.device.clone(),
            reason,
        }
    }

    /// Submit one admin command and wait for its completion (bounded by the command timeout).
    pub fn exec(&mut self, mut cmd: Command) -> Result<Completion, ExecError> {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        cmd.set_cid(cid);
        if !self.qp.push(&cmd) {
            // Stale commands fill the ring: only a reset clears that.
            return Err(ExecError::Timeout);
        }
        self.qp.ring_sq();
        let start = Instant::now();
        let deadline = start + self.cfg.command_timeout;
        let mut backoff = self.cfg.min_sleep;
        loop {
            let mut found = None;
            let mut consumed = false;
            while let Some(c) = self.qp.poll() {
                consumed = true;
                if c.cid == cid {
                    found = Some(c);
                } else {
                    tracing::debug!(device = %self.device, cid = c.cid, "stale admin completion ignored");
                }
            }
            if consumed {
                self.qp.ring_cq();
            }
            if let Some(c) = found {
                self.shared.bump(0, |q| &q.commands);
                if !c.is_success() {
                    self.shared.bump(0, |q| &q.errors);
                }
                return Ok(c);
            }
            let now = Instant::now();
            if now >= deadline {
                if let Err(why) = regs::check(&*self.backing) {
                    return Err(ExecError::Lost(why.into()));
                }
                self.shared.bump(0, |q| &q.timeouts);
                tracing::warn!(device = %self.device, opcode = cmd.opcode(), cid, "admin command timed out");
                return Err(ExecError::Timeout);
            }
            if now.duration_since(start) < self.cfg.spin {
                std::hint::spin_loop();
                continue;
            }
            let cap = if self.irq.is_some() {
                self.cfg.max_sleep
            } else {
                backoff
            };
            let t = cap.min(deadline - now);
            let ready = match &self.irq {
                Some(i) => {
                    let r = wait::wait(&[i], Some(t));
                    if r != 0 {
                        wait::drain(i);
                    }
                    r
                }
                None => wait::wait(&[], Some(t)),
            };
            if ready == 0 {
                backoff = (backoff * 2).min(self.cfg.max_sleep);
                if let Err(why) = regs::check(&*self.backing) {
                    return Err(ExecError::Lost(why.into()));
                }
            }
        }
    }

    /// Run an admin command once: a completion with success, or an error.
    pub fn exec_ok(&mut self, op: &'static str, cmd: Command) -> Result<Completion, NvmeError> {
        match self.exec(cmd) {
            Ok(c) if c.is_success() => Ok(c),
            Ok(c) => Err(NvmeError::Admin {
                device: self.device.clone(),
                op,
                status: NvmeStatus {
                    sct: c.sct(),
                    sc: c.sc(),
                    dnr: c.dnr(),
                },
            }),
            Err(ExecError::Timeout) => Err(NvmeError::AdminTimeout {
                device: self.device.clone(),
                op,
            }),
            Err(ExecError::Lost(r)) => {
                self.shared.mark_lost(&r);
                Err(self.lost_error(r))
            }
        }
    }

    /// Run an admin command for a caller: data (if any) lands in the scratch page and
    /// `data_len` bytes are returned. A timeout resets the controller and retries (bounded).
    pub fn run(
        &mut self,
        op: &'static str,
        mut cmd: Command,
        data_len: usize,
    ) -> Result<(Completion, Vec<u8>), NvmeError> {
        let data_len = data_len.min(self.scratch.len());
        if data_len > 0 {
            cmd.prp1 = self.scratch.iova();
            cmd.prp2 = 0;
        }
        let mut attempt = 0;
        loop {
            if let Some(r) = self.shared.lost_reason() {
                return Err(self.lost_error(r));
            }
            if data_len > 0 {
                let n = self.scratch.len();
                self.scratch.zero(0, n);
            }
            match self.exec_ok(op, cmd) {
                Ok(c) => {
                    let mut out = vec![0u8; data_len];
                    self.scratch.read_at(0, &mut out);
                    return Ok((c, out));
                }
                Err(NvmeError::AdminTimeout { .. }) if attempt < self.cfg.max_retries => {
                    attempt += 1;
                    self.reset(&format!("admin {op} timed out"))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Abort command `cid` on `sqid` for a queue owner; a hung Abort resets the controller.
    pub fn abort(&mut self, sqid: u16, cid: u16) {
        if self.shared.is_lost() {
            return;
        }
        match self.exec(cmd::abort(sqid, cid)) {
            Ok(c) => tracing::info!(
                device = %self.device, sqid, cid,
                aborted = c.is_success() && c.result & 1 == 0,
                status = c.status >> 1,
                "Abort completed"
            ),
            Err(ExecError::Timeout) => {
                let _ = self.reset("Abort command timed out");
            }
            Err(ExecError::Lost(r)) => self.shared.mark_lost(&r),
        }
    }

    /// Reset the controller: pause every queue owner, disable, re-enable, recreate the
    /// I/O queues, resume (owners reissue what was in flight). On failure the device is lost.
    pub fn reset(&mut self, reason: &str) -> Result<(), NvmeError> {
        if let Some(r) = self.shared.lost_reason() {
            return Err(self.lost_error(r));
        }
        tracing::warn!(device = %self.device, reason, "resetting NVMe controller");
        if let Some(acks) = &self.acks {
            while acks.try_recv().is_ok() {}
        }
        for w in &self.workers {
            w.control(Ctl::Pause);
        }
        let mut result = Ok(());
        if let Some(acks) = &self.acks {
            let bound = Instant::now() + Duration::from_secs(10).max(self.cfg.command_timeout);
            for _ in 0..self.workers.len() {
                if acks
                    .recv_timeout(bound.saturating_duration_since(Instant::now()))
                    .is_err()
                {
                    result = Err(self.lost_error("a queue owner did not pause for reset".into()));
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.reinit();
        }
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.bump(0, |q| &q.resets);
        if let Err(e) = &result {
            self.shared
                .mark_lost(&format!("controller reset ({reason}) failed: {e}"));
        } else {
            tracing::info!(device = %self.device, queues = self.io_queues.len(), "NVMe controller reset complete");
        }
        for w in &self.workers {
            w.control(Ctl::Resume);
        }
        result
    }

    /// Disable, reprogram the admin queue, enable, and recreate every I/O queue.
    fn reinit(&mut self) -> Result<(), NvmeError> {
        regs::disable(&*self.backing, self.cap)?;
        self.qp.reset();
        self.program_admin_registers();
        regs::enable(&*self.backing, self.cap)?;
        let n = self.io_queues.len() as u16;
        if n > 0 {
            self.exec_ok(
                "set features (number of queues)",
                cmd::set_number_of_queues(n, n),
            )?;
        }
        for q in self.io_queues.clone() {
            self.create_io_queue(q)?;
        }
        Ok(())
    }

    /// Create the completion then the submission queue of `q`.
    pub fn create_io_queue(&mut self, q: IoQueueDesc) -> Result<(), NvmeError> {
        self.exec_ok(
            "create I/O completion queue",
            cmd::create_io_cq(q.qid, q.entries, q.cq_iova, q.vector),
        )?;
        self.exec_ok(
            "create I/O submission queue",
            cmd::create_io_sq(q.qid, q.entries, q.sq_iova, q.qid),
        )?;
        Ok(())
    }
}
