//! The owner of one I/O queue pair: a dedicated thread that takes requests from a
//! channel, submits them and polls completions (recovery lives in `recovery`). Only
//! this thread touches its rings, so the hot path takes no locks. Each pass takes every
//! queued request (one SQ doorbell for all of them) and every posted completion (one CQ
//! doorbell), reading the clock at most once. With commands outstanding it may spin for
//! `DriverConfig::spin` (default 0: no spinning), then it sleeps on its MSI-X eventfd
//! (or a polling backoff) and on a submission kick.

use super::cid::CidTable;
use super::config::DriverConfig;
use super::handle::{QueueHandle, SupervisorLink};
use super::msg::{AdminMsg, Ctl, IoFailure, IoReply, IoRequest};
use super::pool::BufPool;
use super::queue::QueuePair;
use super::recovery::retryable;
use super::shared::Shared;
use super::{cmd, regs, wait};
use crate::backing::DeviceBacking;
use crate::blockdev::NvmeStatus;
use crate::dma::DmaBuffer;
use crate::nvme::spec::{Command, Completion, sc, sct};
use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Issued,
    AbortSent,
    ResetWanted,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) cmd: Command,
    pub(super) buf: Option<DmaBuffer>,
    pub(super) reply: oneshot::Sender<IoReply>,
    pub(super) attempts: u32,
    pub(super) deadline: Instant,
    pub(super) stage: Stage,
}
pub(super) struct Worker {
    pub(super) qid: u16,
    pub(super) device: String,
    pub(super) backing: Arc<dyn DeviceBacking>,
    pub(super) qp: Option<QueuePair>,
    pub(super) irq: Option<Arc<EventFd>>,
    pub(super) table: CidTable<Slot>,
    pub(super) backlog: VecDeque<u16>,
    pub(super) doorbell_due: bool,
    pub(super) rx: Receiver<IoRequest>,
    pub(super) ctl: Receiver<Ctl>,
    pub(super) kick: Arc<EventFd>,
    pub(super) sleeping: Arc<AtomicBool>,
    pub(super) sup: SupervisorLink,
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: DriverConfig,
    pub(super) pool: BufPool,
    pub(super) lost: Option<String>,
    pub(super) closing: bool,
    pub(super) drained_sent: bool,
    pub(super) next_check: Instant,
    pub(super) backoff: Duration,
    /// This pass's time, once read (see [`Worker::now`]).
    pub(super) now: Option<Instant>,
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
        now: None,
    };
    let thread = std::thread::Builder::new()
        .name(format!("nvme-q{qid}"))
        .spawn(move || w.run())?;
    Ok((
        QueueHandle {
            depth: usize::from(depth),
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
        let spin = !self.cfg.spin.is_zero();
        loop {
            // The clock is read at most once per pass (`now`), and only when a command is
            // issued or in flight: deadlines need no finer time than the pass's.
            self.now = None;
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
            if self.table.in_use() > 0 {
                let now = self.now();
                self.check_deadlines(now);
            }
            if self.closing && !self.drained_sent && self.table.in_use() == 0 {
                self.drained_sent = true;
                self.sup.send(AdminMsg::Drained { qid: self.qid });
            }
            if progress {
                if spin {
                    busy_since = self.now();
                }
                self.backoff = self.cfg.min_sleep;
                continue;
            }
            if spin
                && self.table.in_use() > 0
                && self.now().saturating_duration_since(busy_since) < self.cfg.spin
            {
                std::hint::spin_loop();
                continue;
            }
            self.sleep();
        }
    }

    /// The time of this pass (read once per pass, on first use).
    pub(super) fn now(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
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
                        deadline: self.now(),
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
    pub(super) fn issue(&mut self, cid: u16) {
        let deadline = self.now() + self.cfg.command_timeout;
        let Some(slot) = self.table.get_mut(cid) else {
            return;
        };
        slot.cmd.set_cid(cid);
        slot.deadline = deadline;
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

    pub(super) fn ring(&mut self) {
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
        let now = self.now();
        let timeout = busy.then(|| {
            let cap = if irq.is_some() {
                self.cfg.max_sleep
            } else {
                self.backoff
            };
            cap.min(self.next_check.saturating_duration_since(now))
        });
        let ready = match &irq {
            Some(i) => wait::wait(&[&self.kick, i], timeout),
            None => wait::wait(&[&self.kick], timeout),
        };
        self.sleeping.store(false, Ordering::SeqCst);
        if ready & 1 != 0 {
            wait::drain(&self.kick);
        }
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
pub(super) fn reply(
    pool: &BufPool,
    to: oneshot::Sender<IoReply>,
    outcome: Result<Completion, IoFailure>,
    buf: Option<DmaBuffer>,
) {
    if let Err(IoReply { buf: Some(b), .. }) = to.send(IoReply { outcome, buf }) {
        pool.put(b);
    }
}
