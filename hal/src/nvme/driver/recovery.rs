//! Per-command recovery in a queue-pair owner: which statuses are retried, timeout ->
//! Abort -> controller reset escalation, pausing and resuming around a reset (reissuing
//! what was in flight, bounded), and failing everything when the device is lost.

use super::msg::{AdminMsg, Ctl, IoFailure, IoReply};
use super::worker::{Stage, Worker, reply};
use super::{cmd, regs};
use crate::blockdev::NvmeStatus;
use crate::nvme::spec::{sc, sct};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Statuses worth reissuing when DNR is clear: not the ones that say the command is malformed.
pub(super) fn retryable(status: NvmeStatus) -> bool {
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

impl Worker {
    /// Escalate commands past their deadline: first Abort, then a controller reset.
    pub(super) fn check_deadlines(&mut self, now: Instant) {
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
    pub(super) fn pause(&mut self) -> bool {
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
    pub(super) fn resume(&mut self) {
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
        self.next_check = self.now();
        self.ring();
        tracing::info!(device = %self.device, qid = self.qid, reissued = self.table.in_use(), "queue resumed after controller reset");
    }

    /// Fail everything in flight and release the rings; later requests fail at once.
    pub(super) fn enter_lost(&mut self, why: String) {
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

    pub(super) fn exit(mut self) {
        let why = self
            .shared
            .lost_reason()
            .unwrap_or_else(|| super::shared::SHUT_DOWN.into());
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
