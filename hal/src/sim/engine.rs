//! The controller thread: CC state machine, queue fetch/complete, interrupts, held commands.
//!
//! The thread parks on a condition variable until a CC write or doorbell wakes it
//! (or a held command's deadline passes), so an idle controller costs no CPU. Before it
//! parks it publishes that it does and rereads the doorbells, so doorbell writes made
//! while it runs need not signal it; CQ head doorbells wake it only while a completion
//! queue is full.
//! Commands are fetched from every submission queue round-robin in bursts, run to
//! completion ([`super::admin`], [`super::io`]) and posted with phase tags. All
//! host memory is reached through the simulated IOMMU.

use super::controller::Shared;
use super::faults::FaultAction;
use super::iommu::DmaSpans;
use super::prp::{self, PrpError};
use crate::nvme::spec::{self, Command, Completion, cc, csts, sc, sct};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

/// Commands taken from one SQ before moving to the next (round-robin arbitration burst).
const BURST: usize = 16;
/// Asynchronous events kept while no Asynchronous Event Request is outstanding.
const MAX_PENDING_EVENTS: usize = 16;
/// Asynchronous Event Requests held at once (Identify AERL + 1).
pub(super) const AER_LIMIT: usize = 4;
/// Longest an injected delay holds a command (longer delays are cut to this).
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
/// Memory page size (CC.MPS = 0; CAP.MPSMIN = CAP.MPSMAX = 4 KiB).
pub(super) const PAGE: usize = 4096;

/// A completion status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Status {
    pub(super) sct: u8,
    pub(super) sc: u8,
    pub(super) dnr: bool,
}

impl Status {
    pub(super) const SUCCESS: Status = Status {
        sct: sct::GENERIC,
        sc: sc::SUCCESS,
        dnr: false,
    };
    /// A generic status that retrying will not fix (DNR set).
    pub(super) fn invalid(sc_v: u8) -> Status {
        Status {
            sct: sct::GENERIC,
            sc: sc_v,
            dnr: true,
        }
    }
    /// A command-specific status (DNR set).
    pub(super) fn specific(sc_v: u8) -> Status {
        Status {
            sct: sct::COMMAND_SPECIFIC,
            sc: sc_v,
            dnr: true,
        }
    }
    /// A generic status worth retrying (DNR clear).
    pub(super) fn transient(sc_v: u8) -> Status {
        Status {
            sct: sct::GENERIC,
            sc: sc_v,
            dnr: false,
        }
    }
    fn is_success(self) -> bool {
        self.sct == 0 && self.sc == 0
    }
}

/// The result of running a command.
#[derive(Debug, Clone, Copy)]
pub(super) struct Done {
    pub(super) dw0: u32,
    pub(super) status: Status,
    /// LBA to report in the error log.
    pub(super) lba: u64,
}

impl Done {
    pub(super) fn ok(dw0: u32) -> Done {
        Done {
            dw0,
            status: Status::SUCCESS,
            lba: 0,
        }
    }
    pub(super) fn err(status: Status) -> Done {
        Done {
            dw0: 0,
            status,
            lba: 0,
        }
    }
}

impl From<Status> for Done {
    fn from(s: Status) -> Done {
        Done::err(s)
    }
}

/// What became of a command.
pub(super) enum Outcome {
    /// Complete it now.
    Done(Done),
    /// Keep it outstanding (Asynchronous Event Request).
    Hold,
}

#[derive(Debug)]
pub(super) struct Sq {
    pub(super) base: u64,
    pub(super) size: u16,
    pub(super) head: u16,
    pub(super) cqid: u16,
    bad_tail: Option<u16>,
}

#[derive(Debug)]
pub(super) struct Cq {
    pub(super) base: u64,
    pub(super) size: u16,
    tail: u16,
    head: u16,
    phase: bool,
    pub(super) ien: bool,
    pub(super) iv: u16,
    backlog: VecDeque<Completion>,
    irq: bool,
    bad_head: Option<u16>,
}

impl Cq {
    fn is_full(&self) -> bool {
        (self.tail + 1) % self.size == self.head
    }
    /// Whether completions wait for the host to free entries.
    fn blocks(&self) -> bool {
        !self.backlog.is_empty() || self.is_full()
    }
}

#[derive(Debug)]
struct Held {
    deadline: Instant,
    sqid: u16,
    cmd: Command,
}

/// Feature values (reset to defaults on controller reset).
#[derive(Debug, Clone, Copy)]
pub(super) struct Features {
    /// Allocated I/O SQs, 0-based.
    pub(super) nsqa: u16,
    /// Allocated I/O CQs, 0-based.
    pub(super) ncqa: u16,
    /// Volatile write cache enabled.
    pub(super) wce: bool,
    /// Interrupt coalescing value (accepted, not applied).
    pub(super) coalescing: u32,
}

/// The controller thread's state.
pub(super) struct Engine {
    pub(super) sh: Arc<Shared>,
    enabled: bool,
    shn_seen: bool,
    shut_down: bool,
    pub(super) sqs: Vec<Option<Sq>>,
    pub(super) cqs: Vec<Option<Cq>>,
    pub(super) feat: Features,
    held: Vec<Held>,
    aers: VecDeque<u16>,
    events: VecDeque<u32>,
    /// MSI-X vectors the host has enabled (read each time the thread wakes).
    vectors_enabled: usize,
}

impl Engine {
    pub(super) fn new(sh: Arc<Shared>) -> Engine {
        let n = usize::from(sh.cfg.tuning.max_io_queues) + 1;
        let feat = Self::default_features(&sh);
        Engine {
            sh,
            enabled: false,
            shn_seen: false,
            shut_down: false,
            sqs: (0..n).map(|_| None).collect(),
            cqs: (0..n).map(|_| None).collect(),
            feat,
            held: Vec::new(),
            aers: VecDeque::new(),
            events: VecDeque::new(),
            vectors_enabled: 0,
        }
    }

    pub(super) fn default_features(sh: &Shared) -> Features {
        let max = sh.cfg.tuning.max_io_queues - 1;
        Features {
            nsqa: max,
            ncqa: max,
            wce: sh.cfg.tuning.volatile_write_cache,
            coalescing: 0,
        }
    }

    /// The thread body: wait for work, handle CC writes, process queues; until stopped.
    pub(super) fn run(mut self) {
        while let Some((cc_writes, events)) = self.wait() {
            for v in cc_writes {
                self.on_cc(v);
            }
            self.vectors_enabled = self.sh.msix.lock().len();
            if !self.halted() {
                for ev in events {
                    self.async_event(ev);
                }
            }
            self.process();
        }
        self.sh.persist(self.shut_down);
        tracing::debug!(device = %self.sh.id, "sim: controller thread stopped");
    }

    /// Park until woken, a held command is due, or stop (`None`). Returns the CC writes
    /// and asynchronous events that arrived meanwhile.
    fn wait(&mut self) -> Option<(VecDeque<u32>, Vec<u32>)> {
        let r = self.park();
        self.sh.parked.store(false, Ordering::SeqCst);
        r
    }

    fn park(&mut self) -> Option<(VecDeque<u32>, Vec<u32>)> {
        let mut w = self.sh.wake.lock();
        loop {
            if w.stop {
                return None;
            }
            if w.pending || !w.cc_writes.is_empty() {
                w.pending = false;
                return Some((
                    std::mem::take(&mut w.cc_writes),
                    std::mem::take(&mut w.events),
                ));
            }
            // Doorbell writes signal only a parked thread: say so, then look at the
            // doorbells once more (pairs with the check in `SimController::write32`).
            self.sh
                .cq_blocked
                .store(self.cqs.iter().flatten().any(Cq::blocks), Ordering::SeqCst);
            self.sh.parked.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.halted() && self.doorbell_work() {
                return Some((VecDeque::new(), Vec::new()));
            }
            match self.next_deadline() {
                Some(d) if d <= Instant::now() => return Some((VecDeque::new(), Vec::new())),
                Some(d) => {
                    self.sh.wake_cv.wait_until(&mut w, d);
                }
                None => self.sh.wake_cv.wait(&mut w),
            }
        }
    }

    /// Whether the doorbells announce work a processing pass would do: new submissions
    /// (with room in their completion queue), room in a full completion queue, or a new
    /// invalid doorbell value to report.
    fn doorbell_work(&self) -> bool {
        let db = &self.sh.doorbells;
        let head_moved = |qid: usize, cq: &Cq| {
            let head = db[2 * qid + 1].load(Ordering::SeqCst) as u16;
            if head < cq.size {
                head != cq.head
            } else {
                cq.bad_head != Some(head)
            }
        };
        for (qid, sq) in self.sqs.iter().enumerate() {
            let Some(sq) = sq else { continue };
            let tail = db[2 * qid].load(Ordering::SeqCst) as u16;
            if tail >= sq.size {
                if sq.bad_tail != Some(tail) {
                    return true;
                }
                continue;
            }
            let cqid = usize::from(sq.cqid);
            if tail != sq.head
                && let Some(cq) = self.cqs[cqid].as_ref()
                && (!cq.blocks() || head_moved(cqid, cq))
            {
                return true;
            }
        }
        self.cqs.iter().enumerate().any(|(qid, cq)| {
            cq.as_ref()
                .is_some_and(|cq| !cq.backlog.is_empty() && head_moved(qid, cq))
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.halted() {
            return None;
        }
        self.held.iter().map(|h| h.deadline).min()
    }

    fn halted(&self) -> bool {
        !self.enabled || self.shut_down || self.sh.is_removed() || self.sh.is_fatal()
    }

    fn set_csts(&self, set: u32, clear: u32) {
        let c = &self.sh.csts;
        c.fetch_and(!clear, Ordering::AcqRel);
        c.fetch_or(set, Ordering::AcqRel);
    }

    /// An internal fatal error: raise CSTS.CFS and stop until reset.
    pub(super) fn fatal(&self, why: &str) {
        tracing::error!(device = %self.sh.id, reason = why, "sim: controller fatal status");
        self.sh.internal_fatal.store(true, Ordering::Release);
        self.sh.refresh_cfs();
    }

    fn on_cc(&mut self, v: u32) {
        let en = v & cc::EN != 0;
        if en && !self.enabled {
            self.enable(v);
        } else if !en && self.enabled {
            self.reset();
        }
        let shn = v & cc::SHN_MASK;
        if shn != 0 && !self.shn_seen {
            self.shn_seen = true;
            self.shutdown(shn == cc::SHN_ABRUPT);
        } else if shn == 0 {
            self.shn_seen = false;
        }
    }

    fn zero_doorbells(&self) {
        for d in self.sh.doorbells.iter() {
            d.store(0, Ordering::Release);
        }
    }

    fn enable(&mut self, v: u32) {
        let id = &self.sh.id;
        if self.sh.is_fatal() {
            tracing::warn!(device = %id, "sim: CC.EN=1 while fatal; staying not ready");
            return;
        }
        let mps = (v >> cc::MPS_SHIFT) & 0xf;
        let css = (v >> 4) & 0b111;
        let aqa = self.sh.aqa.load(Ordering::Acquire);
        let asqs = (aqa & 0xfff) as u16 + 1;
        let acqs = ((aqa >> 16) & 0xfff) as u16 + 1;
        let asq = self.sh.asq.load(Ordering::Acquire);
        let acq = self.sh.acq.load(Ordering::Acquire);
        let problem = if mps != 0 {
            Some(format!("CC.MPS {mps} unsupported (only 4 KiB pages)"))
        } else if css != 0 {
            Some(format!("CC.CSS {css} unsupported (NVM only)"))
        } else if asqs < 2 || acqs < 2 {
            Some(format!(
                "AQA {aqa:#x}: admin queues need at least 2 entries"
            ))
        } else if !asq.is_multiple_of(PAGE as u64) || !acq.is_multiple_of(PAGE as u64) {
            Some(format!("ASQ {asq:#x} / ACQ {acq:#x} not page-aligned"))
        } else {
            None
        };
        if let Some(p) = problem {
            self.fatal(&p);
            return;
        }
        self.zero_doorbells();
        self.sqs[0] = Some(Sq {
            base: asq,
            size: asqs,
            head: 0,
            cqid: 0,
            bad_tail: None,
        });
        self.cqs[0] = Some(Self::new_cq(acq, acqs, true, 0));
        self.enabled = true;
        self.shut_down = false;
        self.set_csts(csts::RDY, csts::SHST_MASK);
        tracing::info!(
            device = %id,
            asq = format_args!("{asq:#x}"),
            acq = format_args!("{acq:#x}"),
            asqs,
            acqs,
            "sim: controller enabled (CSTS.RDY=1)"
        );
    }

    pub(super) fn new_cq(base: u64, size: u16, ien: bool, iv: u16) -> Cq {
        Cq {
            base,
            size,
            tail: 0,
            head: 0,
            phase: true,
            ien,
            iv,
            backlog: VecDeque::new(),
            irq: false,
            bad_head: None,
        }
    }

    pub(super) fn new_sq(base: u64, size: u16, cqid: u16) -> Sq {
        Sq {
            base,
            size,
            head: 0,
            cqid,
            bad_tail: None,
        }
    }

    /// Controller reset (CC.EN 1 -> 0): drop every queue and outstanding command.
    fn reset(&mut self) {
        for q in self.sqs.iter_mut() {
            *q = None;
        }
        for q in self.cqs.iter_mut() {
            *q = None;
        }
        let dropped = self.held.len() + self.aers.len();
        self.held.clear();
        self.aers.clear();
        self.events.clear();
        self.feat = Self::default_features(&self.sh);
        self.zero_doorbells();
        self.enabled = false;
        self.sh.internal_fatal.store(false, Ordering::Release);
        self.sh.refresh_cfs();
        self.set_csts(0, csts::RDY | csts::SHST_MASK);
        tracing::info!(device = %self.sh.id, dropped, "sim: controller reset (CSTS.RDY=0)");
    }

    fn shutdown(&mut self, abrupt: bool) {
        self.set_csts(csts::SHST_OCCURRING, csts::SHST_MASK);
        tracing::info!(device = %self.sh.id, abrupt, "sim: shutdown notification");
        if let Err(e) = self.sh.store.flush() {
            tracing::error!(device = %self.sh.id, error = %e, "sim: flush at shutdown failed");
        }
        self.shut_down = true;
        self.sh.persist(true);
        self.set_csts(csts::SHST_COMPLETE, csts::SHST_MASK);
        tracing::info!(device = %self.sh.id, "sim: shutdown complete (CSTS.SHST=2)");
    }

    /// Fetch and run everything the doorbells announce.
    fn process(&mut self) {
        if self.halted() {
            return;
        }
        if !self.held.is_empty() {
            self.release_held(Instant::now());
        }
        loop {
            self.read_cq_heads();
            self.drain_backlogs();
            let mut progress = false;
            for qid in 0..self.sqs.len() {
                for _ in 0..BURST {
                    if self.halted() {
                        break;
                    }
                    let Some(cmd) = self.fetch(qid) else { break };
                    progress = true;
                    self.dispatch(qid as u16, cmd);
                }
            }
            if !progress || self.halted() {
                break;
            }
        }
        self.raise_interrupts();
    }

    fn read_cq_heads(&mut self) {
        let mut bad = Vec::new();
        for (qid, cq) in self.cqs.iter_mut().enumerate() {
            let Some(cq) = cq else { continue };
            let head = self.sh.doorbells[2 * qid + 1].load(Ordering::Acquire) as u16;
            if head < cq.size {
                cq.head = head;
                cq.bad_head = None;
            } else if cq.bad_head != Some(head) {
                cq.bad_head = Some(head);
                bad.push((qid, head));
            }
        }
        for (qid, head) in bad {
            tracing::warn!(device = %self.sh.id, qid, head, "sim: invalid CQ head doorbell value; ignored");
            self.async_event(INVALID_DOORBELL_VALUE_EVENT);
        }
    }

    fn fetch(&mut self, qid: usize) -> Option<Command> {
        let tail = self.sh.doorbells[2 * qid].load(Ordering::Acquire) as u16;
        let sq = self.sqs[qid].as_mut()?;
        if tail >= sq.size {
            if sq.bad_tail != Some(tail) {
                sq.bad_tail = Some(tail);
                tracing::warn!(device = %self.sh.id, qid, tail, "sim: invalid SQ tail doorbell value; ignored");
                self.async_event(INVALID_DOORBELL_VALUE_EVENT);
            }
            return None;
        }
        sq.bad_tail = None;
        if sq.head == tail {
            return None;
        }
        let cq = self.cqs[usize::from(sq.cqid)].as_ref()?;
        if !cq.backlog.is_empty() || cq.is_full() {
            return None;
        }
        let iova = sq
            .base
            .wrapping_add(u64::from(sq.head) * spec::SQE_SIZE as u64);
        let mut b = [0u8; spec::SQE_SIZE];
        if self.sh.iommu.read(iova, &mut b, "SQE fetch").is_err() {
            self.fatal("SQE fetch hit an unmapped IOVA");
            return None;
        }
        sq.head = (sq.head + 1) % sq.size;
        Some(Command::from_bytes(&b))
    }

    fn dispatch(&mut self, sqid: u16, cmd: Command) {
        match self.sh.faults.take_action(sqid, &cmd) {
            Some(FaultAction::Status { sct, sc, dnr }) => {
                let lba = if sqid == 0 { 0 } else { cmd.slba() };
                let done = Done {
                    dw0: 0,
                    status: Status { sct, sc, dnr },
                    lba,
                };
                self.complete(sqid, &cmd, done);
            }
            Some(FaultAction::Delay(d)) => {
                let now = Instant::now();
                let deadline = now.checked_add(d.min(MAX_DELAY)).unwrap_or(now);
                self.held.push(Held {
                    deadline,
                    sqid,
                    cmd,
                });
            }
            Some(FaultAction::LoseCompletion) => {
                if let Outcome::Hold = self.execute(sqid, &cmd) {
                    self.aers.push_back(cmd.cid());
                }
                self.sh.commands.fetch_add(1, Ordering::Relaxed);
            }
            None => self.run_command(sqid, cmd),
        }
    }

    fn run_command(&mut self, sqid: u16, cmd: Command) {
        match self.execute(sqid, &cmd) {
            Outcome::Done(done) => self.complete(sqid, &cmd, done),
            Outcome::Hold => self.aers.push_back(cmd.cid()),
        }
    }

    fn execute(&mut self, sqid: u16, cmd: &Command) -> Outcome {
        let fuse = (cmd.cdw0 >> 8) & 0b11;
        if cmd.psdt() != 0 || fuse != 0 {
            return Outcome::Done(Status::invalid(sc::INVALID_FIELD).into());
        }
        if sqid == 0 {
            self.admin(cmd)
        } else {
            Outcome::Done(self.io(cmd))
        }
    }

    /// Post the completion of `cmd` from `sqid`.
    pub(super) fn complete(&mut self, sqid: u16, cmd: &Command, done: Done) {
        self.complete_cid(sqid, cmd.cid(), cmd.nsid, done);
    }

    fn complete_cid(&mut self, sqid: u16, cid: u16, nsid: u32, done: Done) {
        let Some(sq) = self.sqs[usize::from(sqid)].as_ref() else {
            tracing::debug!(device = %self.sh.id, sqid, cid, "sim: completion for a deleted SQ dropped");
            return;
        };
        let (cqid, sq_head) = (sq.cqid, sq.head);
        let st = done.status;
        let mut status = Completion::status_field(st.sct, st.sc, st.dnr);
        self.sh.commands.fetch_add(1, Ordering::Relaxed);
        if !st.is_success() {
            status |= 1 << 14; // More: the error log has an entry for it
            self.sh.failed.fetch_add(1, Ordering::Relaxed);
            self.sh
                .health
                .record_error(sqid, cid, status, done.lba, nsid);
            tracing::debug!(
                device = %self.sh.id,
                sqid,
                cid,
                status = spec::status_name(st.sct, st.sc),
                "sim: command failed"
            );
        }
        let cqe = Completion {
            result: done.dw0,
            dw1: 0,
            sq_head,
            sq_id: sqid,
            cid,
            status,
        };
        let Some(cq) = self.cqs[usize::from(cqid)].as_mut() else {
            return;
        };
        if !cq.backlog.is_empty() || cq.is_full() {
            cq.backlog.push_back(cqe);
            return;
        }
        self.post(usize::from(cqid), cqe);
    }

    /// Write one entry at the CQ tail (there is room) with the current phase.
    fn post(&mut self, cqid: usize, mut cqe: Completion) {
        let Some(cq) = self.cqs[cqid].as_mut() else {
            return;
        };
        cqe.status = (cqe.status & !1) | u16::from(cq.phase);
        let iova = cq
            .base
            .wrapping_add(u64::from(cq.tail) * spec::CQE_SIZE as u64);
        // The interrupt is accounted before the entry becomes visible (the eventfd itself is
        // signalled once per CQ at the end of the processing pass), so a host that sees the
        // entry also sees the count.
        if cq.ien && !cq.irq && usize::from(cq.iv) < self.vectors_enabled {
            cq.irq = true;
            self.sh.interrupts.fetch_add(1, Ordering::Relaxed);
        }
        if self.sh.iommu.write_cqe(iova, &cqe.to_bytes()).is_err() {
            self.fatal("CQE post hit an unmapped IOVA");
            return;
        }
        cq.tail += 1;
        if cq.tail == cq.size {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
    }

    fn drain_backlogs(&mut self) {
        for qid in 0..self.cqs.len() {
            while let Some(cq) = self.cqs[qid].as_mut()
                && !cq.is_full()
                && let Some(cqe) = cq.backlog.pop_front()
            {
                self.post(qid, cqe);
            }
        }
    }

    fn raise_interrupts(&mut self) {
        let vectors = self.sh.msix.lock();
        for cq in self.cqs.iter_mut().flatten() {
            if !std::mem::take(&mut cq.irq) {
                continue;
            }
            if let Some(efd) = vectors.get(usize::from(cq.iv))
                && let Err(e) = efd.write(1)
            {
                tracing::warn!(device = %self.sh.id, error = %e, "sim: cannot signal MSI-X vector");
            }
        }
    }

    fn release_held(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.held.retain(|h| {
            if h.deadline <= now {
                due.push((h.sqid, h.cmd));
                false
            } else {
                true
            }
        });
        for (sqid, cmd) in due {
            if self.sqs[usize::from(sqid)].is_some() {
                self.run_command(sqid, cmd);
            }
        }
    }

    /// Abort a held command (delayed, or an outstanding AER); true if one was found.
    pub(super) fn abort_outstanding(&mut self, sqid: u16, cid: u16) -> bool {
        let abort = Done::err(Status::transient(sc::ABORT_REQUESTED));
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.sqid == sqid && h.cmd.cid() == cid)
        {
            let h = self.held.remove(i);
            self.complete(sqid, &h.cmd, abort);
            return true;
        }
        if sqid == 0
            && let Some(i) = self.aers.iter().position(|&c| c == cid)
        {
            self.aers.remove(i);
            self.complete_cid(0, cid, 0, abort);
            return true;
        }
        false
    }

    /// Complete every held command of `sqid` with "aborted due to SQ deletion".
    pub(super) fn abort_sq(&mut self, sqid: u16) {
        let (gone, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.sqid == sqid);
        self.held = keep;
        for h in gone {
            self.complete(
                sqid,
                &h.cmd,
                Done::err(Status::transient(sc::ABORTED_SQ_DELETION)),
            );
        }
    }

    /// Take an Asynchronous Event Request: answer a pending event or hold it.
    pub(super) fn aer(&mut self) -> Outcome {
        if self.aers.len() >= AER_LIMIT {
            return Outcome::Done(Status::specific(SC_AER_LIMIT).into());
        }
        match self.events.pop_front() {
            Some(ev) => Outcome::Done(Done::ok(ev)),
            None => Outcome::Hold,
        }
    }

    fn async_event(&mut self, dw0: u32) {
        match self.aers.pop_front() {
            Some(cid) => self.complete_cid(0, cid, 0, Done::ok(dw0)),
            None if self.events.len() < MAX_PENDING_EVENTS => self.events.push_back(dw0),
            None => {}
        }
    }

    /// Device-to-host transfer of `len` bytes: `data`, then zeroes past its end (or only
    /// the first `len` bytes of `data`).
    pub(super) fn dma_to_host_padded(
        &self,
        cmd: &Command,
        data: &[u8],
        len: u64,
    ) -> Result<(), Status> {
        let len = usize::try_from(len).map_err(|_| Status::invalid(sc::INVALID_FIELD))?;
        static ZEROES: [u8; PAGE] = [0u8; PAGE];
        for (iova, off, n) in self.plan(cmd, len)? {
            // Segments never exceed a page, so a page of zeroes pads any of them.
            let have = data.len().saturating_sub(off).min(n);
            let result = if have == n {
                self.sh
                    .iommu
                    .write(iova, &data[off..off + n], "data to host")
            } else if have == 0 {
                self.sh.iommu.write(iova, &ZEROES[..n], "data to host")
            } else {
                self.sh
                    .iommu
                    .write(iova, &data[off..off + have], "data to host")
                    .and_then(|()| {
                        self.sh
                            .iommu
                            .write(iova + have as u64, &ZEROES[..n - have], "data to host")
                    })
            };
            result.map_err(|_| Status::transient(sc::DATA_TRANSFER_ERROR))?;
        }
        Ok(())
    }

    /// Device-to-host transfer of `data` through the command's PRPs.
    pub(super) fn dma_to_host(&self, cmd: &Command, data: &[u8]) -> Result<(), Status> {
        for (iova, off, len) in self.plan(cmd, data.len())? {
            self.sh
                .iommu
                .write(iova, &data[off..off + len], "data to host")
                .map_err(|_| Status::transient(sc::DATA_TRANSFER_ERROR))?;
        }
        Ok(())
    }

    /// Host-to-device transfer into `out` through the command's PRPs.
    pub(super) fn dma_from_host(&self, cmd: &Command, out: &mut [u8]) -> Result<(), Status> {
        for (iova, off, len) in self.plan(cmd, out.len())? {
            self.sh
                .iommu
                .read(iova, &mut out[off..off + len], "data from host")
                .map_err(|_| Status::transient(sc::DATA_TRANSFER_ERROR))?;
        }
        Ok(())
    }

    /// The host memory of a `len`-byte data transfer of `cmd` (MDTS checked, PRPs walked,
    /// every segment checked by the IOMMU), for the store to copy to or from directly.
    pub(super) fn dma_spans(
        &self,
        cmd: &Command,
        len: usize,
        to_host: bool,
    ) -> Result<DmaSpans<'_>, Status> {
        let what = if to_host {
            "data to host"
        } else {
            "data from host"
        };
        let segs = self.segments(cmd, len)?;
        self.sh
            .iommu
            .spans(&segs, to_host, what)
            .map_err(|_| Status::transient(sc::DATA_TRANSFER_ERROR))
    }

    /// Check MDTS and walk the PRPs: `(iova, len)` per segment.
    fn segments(&self, cmd: &Command, len: usize) -> Result<Vec<(u64, usize)>, Status> {
        if len as u64 > self.sh.cfg.max_transfer() {
            return Err(Status::invalid(sc::INVALID_FIELD));
        }
        prp::segments(&self.sh.iommu, cmd.prp1, cmd.prp2, len, PAGE).map_err(|e| match e {
            PrpError::InvalidOffset => Status::invalid(sc::INVALID_PRP_OFFSET),
            PrpError::Dma => Status::transient(sc::DATA_TRANSFER_ERROR),
        })
    }

    /// Check MDTS and walk the PRPs: `(iova, offset in buffer, len)` per segment.
    fn plan(&self, cmd: &Command, len: usize) -> Result<Vec<(u64, usize, usize)>, Status> {
        let mut off = 0;
        Ok(self
            .segments(cmd, len)?
            .into_iter()
            .map(|(iova, n)| {
                let s = (iova, off, n);
                off += n;
                s
            })
            .collect())
    }
}

/// Asynchronous event: error status, "invalid doorbell write value", log page 01h.
const INVALID_DOORBELL_VALUE_EVENT: u32 = (0x01 << 8) | (0x01 << 16);
/// Command-specific status: Asynchronous Event Request Limit Exceeded.
const SC_AER_LIMIT: u8 = 0x05;
