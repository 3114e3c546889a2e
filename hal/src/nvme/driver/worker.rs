//! The owner of one I/O queue pair: a dedicated thread that takes requests from a
//! channel, submits them, polls completions and runs per-command recovery (timeout ->
//! Abort -> controller reset -> reissue, bounded). Only this thread touches its rings,
//! so the hot path takes no locks. It spins briefly while commands are outstanding, then
//! sleeps on its MSI-X eventfd (or a polling backoff) and on a submission kick.

use super::cid::CidTable;
use super::config::DriverConfig;
use super::msg::{AdminMsg, Ctl, IoFailure, IoReply, IoRequest};
use super::pool::BufPool;
use super::queue::QueuePair;
use super::shared::Shared;
use super::{cmd, regs, wait};
use crate::backing::DeviceBacking;
use crate::blockdev::NvmeStatus;
use crate::dma::DmaBuffer;
use crate::nvme::spec::{Command, Completion, sc, sct};
use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// The submitting side of a queue pair, held by namespaces.
#[derive(Debug)]
pub(crate) struct QueueHandle {
    tx: Sender<IoRequest>,
    ctl: Sender<Ctl>,
    kick: Arc<EventFd>,
    sleeping: Arc<AtomicBool>,
    /// Bounce buffers of this queue pair.
    pub pool: BufPool,
}

impl QueueHandle {
    /// Hand a request to the owner, waking it only if it sleeps.
    pub fn submit(&self, req: IoRequest) -> Result<(), IoRequest> {
        self.tx.send(req).map_err(|e| e.0)?;
        // Pairs with the owner's store of `sleeping` then its emptiness check.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = self.kick.write(1);
        }
        Ok(())
    }

    /// The owner's wake-up eventfd.
    pub fn kick(&self) -> Arc<EventFd> {
        self.kick.clone()
    }

    /// A control-only link to the owner, for the supervisor.
    pub fn ctl_link(&self) -> WorkerCtl {
        WorkerCtl {
            ctl: self.ctl.clone(),
            kick: self.kick.clone(),
        }
    }
}

/// The supervisor's control link to one queue owner.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCtl {
    ctl: Sender<Ctl>,
    kick: Arc<EventFd>,
}

impl WorkerCtl {
    /// Send a control message and wake the owner.
    pub fn control(&self, c: Ctl) {
        let _ = self.ctl.send(c);
        let _ = self.kick.write(1);
    }
}

/// Links from a queue owner to the admin supervisor.
#[derive(Debug, Clone)]
pub(crate) struct SupervisorLink {
    pub tx: Sender<AdminMsg>,
    pub kick: Arc<EventFd>,
    pub acks: Sender<u16>,
}

impl SupervisorLink {
    fn send(&self, m: AdminMsg) {
        let _ = self.tx.send(m);
        let _ = self.kick.write(1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Issued,
    AbortSent,
    ResetWanted,
}

#[derive(Debug)]
struct Slot {
    cmd: Command,
    buf: Option<DmaBuffer>,
    reply: oneshot::Sender<IoReply>,
    attempts: u32,
    deadline: Instant,
    stage: Stage,
}

/// Statuses worth reissuing when DNR is clear: not the ones that say the command is malformed.
fn retryable(status: NvmeStatus) -> bool {
    if status.dnr || status.sct == sct::COMMAND_SPECIFIC {
        return false;
    }
    !(status.sct == sct::GENERIC
        && matches!(
            status.sc,
            sc::INVALID_OPCODE
                | sc::INVALID_FIELD
                | sc::INVALID_NAMESPACE
                | sc::INVALID_PRP_OFFSET
                | sc::LBA_OUT_OF_RANGE
                | sc::CAPACITY_EXCEEDED
        ))
}

struct Worker {
    qid: u16,
    device: String,
    backing: Arc<dyn DeviceBacking>,
    qp: Option<QueuePair>,
    irq: Option<Arc<EventFd>>,
    table: CidTable<Slot>,
    backlog: VecDeque<u16>,
    doorbell_due: bool,
    rx: Receiver<IoRequest>,
    ctl: Receiver<Ctl>,
    kick: Arc<EventFd>,
    sleeping: Arc<AtomicBool>,
    sup: SupervisorLink,
    shared: Arc<Shared>,
    cfg: DriverConfig,
    pool: BufPool,
    lost: Option<String>,
    closing: bool,
    drained_sent: bool,
    next_check: Instant,
    backoff: Duration,
}

/// Start the owner thread of `qp`; returns the submitting handle and the thread.
pub(crate) fn spawn(
    qp: QueuePair,
    irq: Option<Arc<EventFd>>,
    backing: Arc<dyn DeviceBacking>,
    cfg: DriverConfig,
    shared: Arc<Shared>,
    sup: SupervisorLink,
    pool: BufPool,
) -> std::io::Result<(QueueHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = unbounded();
    let (ctl_tx, ctl_rx) = unbounded();
    let kick = Arc::new(EventFd::new(EFD_NONBLOCK)?);
    let sleeping = Arc::new(AtomicBool::new(false));
    let qid = qp.qid;
    let depth = qp.entries() - 1;
    let w = Worker {
        qid,
        device: shared.device.clone(),
        backing,
        qp: Some(qp),
        irq,
        table: CidTable::new(depth),
        backlog: VecDeque::new(),
        doorbell_due: false,
        rx,
        ctl: ctl_rx,
        kick: kick.clone(),
        sleeping: sleeping.clone(),
        sup,
        shared,
        backoff: cfg.min_sleep,
        cfg,
        pool: pool.clone(),
        lost: None,
        closing: false,
        drained_sent: false,
        next_check: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("nvme-q{qid}"))
        .spawn(move || w.run())?;
    Ok((
        QueueHandle {
            tx,
            ctl: ctl_tx,
            kick,
            sleeping,
            pool,
        },
        thread,
    ))
}

impl Worker {
    fn run(mut self) {
        let mut busy_since = Instant::now();
        loop {
            while let Ok(c) = self.ctl.try_recv() {
                match c {
                    Ctl::Pause => {
                        if !self.pause() {
                            return self.exit();
                        }
                    }
                    Ctl::Resume => {}
                    Ctl::Quiesce => self.closing = true,
                    Ctl::Exit => return self.exit(),
                }
            }
            if self.lost.is_none() && self.shared.is_lost() {
                let why = self.shared.lost_reason().unwrap_or_default();
                self.enter_lost(why);
            }
            let mut progress = self.take_requests();
            progress |= self.reap();
            self.check_deadlines(Instant::now());
            if self.closing && !self.drained_sent && self.table.in_use() == 0 {
                self.drained_sent = true;
                self.sup.send(AdminMsg::Drained { qid: self.qid });
            }
            if progress {
                busy_since = Instant::now();
                self.backoff = self.cfg.min_sleep;
                continue;
            }
            if self.table.in_use() > 0 && busy_since.elapsed() < self.cfg.spin {
                std::hint::spin_loop();
                continue;
            }
            self.sleep();
        }
    }

    /// Move requests from the channel onto the ring while CIDs and slots last.
    fn take_requests(&mut self) -> bool {
        let mut n = 0;
        loop {
            if self.lost.is_some() || self.closing {
                match self.rx.try_recv() {
                    Ok(req) => {
                        let why = self
                            .lost
                            .clone()
                            .unwrap_or_else(|| "controller is shutting down".into());
                        reply(&self.pool, req.reply, Err(IoFailure::Lost(why)), None);
                        n += 1;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            if !self.table.has_free() || self.qp.as_ref().is_none_or(QueuePair::sq_full) {
                break;
            }
            match self.rx.try_recv() {
                Ok(req) => {
                    let slot = Slot {
                        cmd: req.cmd,
                        buf: req.buf,
                        reply: req.reply,
                        attempts: 0,
                        deadline: Instant::now(),
                        stage: Stage::Issued,
                    };
                    if let Ok(cid) = self.table.insert(slot) {
                        self.issue(cid);
                    }
                    n += 1;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.flush_backlog();
        self.ring();
        n > 0
    }

    /// Put command `cid` on the ring (or the backlog if the ring is full); doorbell later.
    fn issue(&mut self, cid: u16) {
        let timeout = self.cfg.command_timeout;
        let Some(slot) = self.table.get_mut(cid) else {
            return;
        };
        slot.cmd.set_cid(cid);
        slot.deadline = Instant::now() + timeout;
        if slot.deadline < self.next_check {
            self.next_check = slot.deadline;
        }
        let cmd = slot.cmd;
        let pushed = self.qp.as_mut().is_some_and(|qp| qp.push(&cmd));
        if pushed {
            self.doorbell_due = true;
        } else {
            self.backlog.push_back(cid);
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(&cid) = self.backlog.front() {
            let Some(qp) = self.qp.as_mut() else { return };
            let Some(slot) = self.table.get_mut(cid) else {
                self.backlog.pop_front();
                continue;
            };
            if !qp.push(&slot.cmd) {
                return;
            }
            self.backlog.pop_front();
            self.doorbell_due = true;
        }
    }

    fn ring(&mut self) {
        if self.doorbell_due {
            if let Some(qp) = &self.qp {
                qp.ring_sq();
            }
            self.doorbell_due = false;
        }
    }

    /// Consume posted completions, then one CQ head doorbell.
    fn reap(&mut self) -> bool {
        let mut n = 0;
        while let Some(cqe) = self.qp.as_mut().and_then(QueuePair::poll) {
            n += 1;
            self.complete(cqe);
        }
        if n > 0 {
            if let Some(qp) = &self.qp {
                qp.ring_cq();
            }
            self.flush_backlog();
            self.ring();
        }
        n > 0
    }

    fn complete(&mut self, cqe: Completion) {
        let max = self.cfg.max_retries;
        let Some(slot) = self.table.get_mut(cqe.cid) else {
            tracing::warn!(device = %self.device, qid = self.qid, cid = cqe.cid, "completion for a command not in flight ignored");
            return;
        };
        self.shared.bump(self.qid, |c| &c.commands);
        if cqe.is_success() {
            if let Some(s) = self.table.remove(cqe.cid) {
                reply(&self.pool, s.reply, Ok(cqe), s.buf);
            }
            return;
        }
        self.shared.bump(self.qid, |c| &c.errors);
        let status = NvmeStatus {
            sct: cqe.sct(),
            sc: cqe.sc(),
            dnr: cqe.dnr(),
        };
        let we_aborted = slot.stage != Stage::Issued
            && status.sct == sct::GENERIC
            && status.sc == sc::ABORT_REQUESTED;
        let op = cmd::io_name(slot.cmd.opcode());
        if (we_aborted || retryable(status)) && slot.attempts < max {
            slot.attempts += 1;
            slot.stage = Stage::Issued;
            tracing::debug!(device = %self.device, qid = self.qid, cid = cqe.cid, op, %status, attempt = slot.attempts, "reissuing command");
            self.issue(cqe.cid);
            return;
        }
        let failure = if we_aborted {
            IoFailure::Timeout
        } else {
            IoFailure::Status(status)
        };
        if let Some(s) = self.table.remove(cqe.cid) {
            reply(&self.pool, s.reply, Err(failure), s.buf);
        }
    }

    /// Escalate commands past their deadline: first Abort, then a controller reset.
    fn check_deadlines(&mut self, now: Instant) {
        if now < self.next_check || self.qp.is_none() {
            return;
        }
        let mut next = now + self.cfg.command_timeout;
        let mut expired = Vec::new();
        for cid in self.table.cids() {
            if let Some(s) = self.table.get_mut(cid) {
                if s.deadline <= now {
                    expired.push(cid);
                } else {
                    next = next.min(s.deadline);
                }
            }
        }
        self.next_check = next;
        if expired.is_empty() {
            return;
        }
        if let Err(why) = regs::check(&*self.backing) {
            self.shared.mark_lost(why);
            return;
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        for cid in expired {
            let Some(s) = self.table.get_mut(cid) else {
                continue;
            };
            let op = cmd::io_name(s.cmd.opcode());
            s.deadline = now + self.cfg.command_timeout;
            match s.stage {
                Stage::Issued => {
                    s.stage = Stage::AbortSent;
                    self.shared.bump(self.qid, |c| &c.timeouts);
                    tracing::warn!(device = %self.device, qid = self.qid, cid, op, timeout = ?self.cfg.command_timeout, "command timed out; sending Abort");
                    self.sup.send(AdminMsg::Abort {
                        sqid: self.qid,
                        cid,
                    });
                }
                Stage::AbortSent | Stage::ResetWanted => {
                    s.stage = Stage::ResetWanted;
                    tracing::warn!(device = %self.device, qid = self.qid, cid, op, "no completion after Abort; requesting controller reset");
                    self.sup.send(AdminMsg::Reset {
                        generation,
                        reason: format!(
                            "{op} cid {cid} on queue {} not completed after Abort",
                            self.qid
                        ),
                    });
                }
            }
        }
    }

    /// Acknowledge a pause and block until the supervisor says how to continue.
    /// Returns false when the thread should end.
    fn pause(&mut self) -> bool {
        let _ = self.sup.acks.send(self.qid);
        loop {
            match self.ctl.recv() {
                Ok(Ctl::Resume) => {
                    if self.shared.is_lost() {
                        let why = self.shared.lost_reason().unwrap_or_default();
                        self.enter_lost(why);
                    } else {
                        self.resume();
                    }
                    return true;
                }
                Ok(Ctl::Pause) => {
                    let _ = self.sup.acks.send(self.qid);
                }
                Ok(Ctl::Quiesce) => self.closing = true,
                Ok(Ctl::Exit) | Err(_) => return false,
            }
        }
    }

    /// After a controller reset: fresh rings, then reissue what was in flight.
    fn resume(&mut self) {
        let Some(qp) = self.qp.as_mut() else { return };
        qp.reset();
        self.backlog.clear();
        self.shared.bump(self.qid, |c| &c.resets);
        let max = self.cfg.max_retries;
        for cid in self.table.cids() {
            let Some(s) = self.table.get_mut(cid) else {
                continue;
            };
            if s.stage != Stage::Issued {
                s.attempts += 1;
                s.stage = Stage::Issued;
                if s.attempts > max {
                    let op = cmd::io_name(s.cmd.opcode());
                    tracing::error!(device = %self.device, qid = self.qid, cid, op, "command failed: timed out after {max} reissues");
                    if let Some(s) = self.table.remove(cid) {
                        reply(&self.pool, s.reply, Err(IoFailure::Timeout), s.buf);
                    }
                    continue;
                }
            }
            self.issue(cid);
        }
        self.next_check = Instant::now();
        self.ring();
        tracing::info!(device = %self.device, qid = self.qid, reissued = self.table.in_use(), "queue resumed after controller reset");
    }

    /// Fail everything in flight and release the rings; later requests fail at once.
    fn enter_lost(&mut self, why: String) {
        for cid in self.table.cids() {
            if let Some(s) = self.table.remove(cid) {
                // The buffer is dropped (unmapped) here rather than reused: the device may
                // still write it.
                let _ = s.reply.send(IoReply {
                    outcome: Err(IoFailure::Lost(why.clone())),
                    buf: None,
                });
            }
        }
        self.backlog.clear();
        self.qp = None;
        self.pool.close();
        self.lost = Some(why);
    }

    fn exit(mut self) {
        let why = self
            .shared
            .lost_reason()
            .unwrap_or_else(|| "controller shut down".into());
        self.enter_lost(why.clone());
        while let Ok(req) = self.rx.try_recv() {
            reply(
                &self.pool,
                req.reply,
                Err(IoFailure::Lost(why.clone())),
                None,
            );
        }
    }

    fn sleep(&mut self) {
        let busy = self.table.in_use() > 0 && self.qp.is_some();
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.rx.is_empty()
            || !self.ctl.is_empty()
            || (self.lost.is_none() && self.shared.is_lost())
        {
            self.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        let irq = self.irq.clone().filter(|_| self.qp.is_some());
        let timeout = busy.then(|| {
            let cap = if irq.is_some() {
                self.cfg.max_sleep
            } else {
                self.backoff
            };
            cap.min(self.next_check.saturating_duration_since(Instant::now()))
        });
        let mut fds: Vec<&EventFd> = vec![&self.kick];
        if let Some(i) = &irq {
            fds.push(i);
        }
        let ready = wait::wait(&fds, timeout);
        self.sleeping.store(false, Ordering::SeqCst);
        wait::drain(&self.kick);
        if let Some(i) = irq.as_ref().filter(|_| ready & 0b10 != 0) {
            wait::drain(i);
        }
        if ready == 0 && busy {
            self.backoff = (self.backoff * 2).min(self.cfg.max_sleep);
            if let Err(why) = regs::check(&*self.backing) {
                self.shared.mark_lost(why);
            }
        }
    }
}

/// Answer a caller; if it has gone away, keep the bounce buffer for reuse.
fn reply(
    pool: &BufPool,
    to: oneshot::Sender<IoReply>,
    outcome: Result<Completion, IoFailure>,
    buf: Option<DmaBuffer>,
) {
    if let Err(IoReply { buf: Some(b), .. }) = to.send(IoReply { outcome, buf }) {
        pool.put(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy() {
        let s = |sct, sc, dnr| NvmeStatus { sct, sc, dnr };
        assert!(retryable(s(0, sc::INTERNAL_ERROR, false)));
        assert!(
            !retryable(s(0, sc::INTERNAL_ERROR, true)),
            "DNR is honoured"
        );
        assert!(!retryable(s(0, sc::LBA_OUT_OF_RANGE, false)));
        assert!(!retryable(s(1, sc::CS_INVALID_QID, false)));
        assert!(retryable(s(2, sc::MEDIA_UNRECOVERED_READ, false)));
        assert!(!retryable(s(2, sc::MEDIA_UNRECOVERED_READ, true)));
    }
}
