//! Fault injection for the simulated controller.
//!
//! [`SimFaults`] is a cloneable handle, usable from tests and from a running
//! appliance. It can fail, delay or swallow commands that match an opcode and/or
//! an LBA range; raise controller fatal status; simulate surprise removal (with
//! or without a removal-request notice); and silently corrupt stored sectors.
//! Every injected fault is counted in [`FaultCounters`].

use super::SimError;
use super::controller::Shared;
use crate::nvme::spec::{self, Command};
use parking_lot::Mutex;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which commands a rule applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandMatch {
    /// `Some(true)`: admin commands only; `Some(false)`: I/O commands only; `None`: both.
    pub admin: Option<bool>,
    /// Opcode to match, or any.
    pub opcode: Option<u8>,
    /// LBA range the command must overlap (I/O commands with an SLBA/NLB only).
    pub lbas: Option<Range<u64>>,
}

impl CommandMatch {
    /// Any I/O command with this opcode.
    pub fn io(opcode: u8) -> CommandMatch {
        CommandMatch {
            admin: Some(false),
            opcode: Some(opcode),
            lbas: None,
        }
    }
    /// Any admin command with this opcode.
    pub fn admin(opcode: u8) -> CommandMatch {
        CommandMatch {
            admin: Some(true),
            opcode: Some(opcode),
            lbas: None,
        }
    }
    /// Every I/O command.
    pub fn any_io() -> CommandMatch {
        CommandMatch {
            admin: Some(false),
            opcode: None,
            lbas: None,
        }
    }
    /// Restrict to I/O commands whose blocks overlap `lbas`.
    pub fn with_lbas(mut self, lbas: Range<u64>) -> CommandMatch {
        self.lbas = Some(lbas);
        self
    }

    fn matches(&self, sqid: u16, cmd: &Command) -> bool {
        let is_admin = sqid == 0;
        if self.admin.is_some_and(|a| a != is_admin) {
            return false;
        }
        if self.opcode.is_some_and(|o| o != cmd.opcode()) {
            return false;
        }
        if let Some(r) = &self.lbas {
            let has_lba = !is_admin
                && matches!(
                    cmd.opcode(),
                    spec::io::READ | spec::io::WRITE | spec::io::WRITE_ZEROES
                );
            if !has_lba {
                return false;
            }
            let start = cmd.slba();
            let end = start.saturating_add(u64::from(cmd.nlb()));
            if start >= r.end || end <= r.start {
                return false;
            }
        }
        true
    }
}

/// What happens to a matching command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Complete without executing, with this status.
    Status {
        /// Status Code Type.
        sct: u8,
        /// Status Code.
        sc: u8,
        /// Do Not Retry.
        dnr: bool,
    },
    /// Hold the command this long (at most a year) before executing it; Abort can take it back.
    Delay(Duration),
    /// Execute the command but never post its completion.
    LoseCompletion,
}

/// How many times a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCount {
    /// On every matching command until cleared.
    Always,
    /// On the next `n` matching commands.
    Times(u32),
}

/// Counts of injected faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Commands completed with an injected status.
    pub status_injected: u64,
    /// Commands delayed.
    pub delayed: u64,
    /// Completions swallowed.
    pub lost_completions: u64,
    /// Controller fatal status raised.
    pub fatal: u64,
    /// Surprise removals.
    pub removals: u64,
    /// Sectors silently corrupted.
    pub corrupted_sectors: u64,
}

#[derive(Debug)]
struct Rule {
    matcher: CommandMatch,
    action: FaultAction,
    remaining: Option<u32>,
}

/// Fault rules and counters, kept in the controller's shared state.
#[derive(Debug, Default)]
pub(super) struct FaultState {
    rules: Mutex<Vec<Rule>>,
    status_injected: AtomicU64,
    delayed: AtomicU64,
    lost: AtomicU64,
    fatal: AtomicU64,
    removals: AtomicU64,
    corrupted: AtomicU64,
}

impl FaultState {
    /// The action for a freshly fetched command, if a rule matches (first rule wins).
    pub(super) fn take_action(&self, sqid: u16, cmd: &Command) -> Option<FaultAction> {
        let mut rules = self.rules.lock();
        let i = rules.iter().position(|r| r.matcher.matches(sqid, cmd))?;
        let action = rules[i].action;
        if let Some(n) = &mut rules[i].remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(i);
            }
        }
        let counter = match action {
            FaultAction::Status { .. } => &self.status_injected,
            FaultAction::Delay(_) => &self.delayed,
            FaultAction::LoseCompletion => &self.lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            sqid,
            cid = cmd.cid(),
            opcode = cmd.opcode(),
            ?action,
            "sim: injecting fault"
        );
        Some(action)
    }
}

/// A cloneable handle to inject faults into one simulated controller.
#[derive(Clone)]
pub struct SimFaults {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFaults")
            .field("device", &self.shared.id)
            .finish()
    }
}

impl SimFaults {
    fn state(&self) -> &FaultState {
        &self.shared.faults
    }

    /// Add a rule.
    pub fn inject(&self, matcher: CommandMatch, action: FaultAction, count: FaultCount) {
        let remaining = match count {
            FaultCount::Always => None,
            FaultCount::Times(0) => return,
            FaultCount::Times(n) => Some(n),
        };
        tracing::info!(device = %self.shared.id, ?matcher, ?action, ?count, "sim: fault rule added");
        self.state().rules.lock().push(Rule {
            matcher,
            action,
            remaining,
        });
    }

    /// Complete matching commands with status `sct`/`sc` (DNR clear) without executing them.
    pub fn error_status(&self, matcher: CommandMatch, sct: u8, sc: u8, count: FaultCount) {
        self.inject(
            matcher,
            FaultAction::Status {
                sct,
                sc,
                dnr: false,
            },
            count,
        );
    }

    /// Hold matching commands for `delay` before executing them.
    pub fn delay(&self, matcher: CommandMatch, delay: Duration, count: FaultCount) {
        self.inject(matcher, FaultAction::Delay(delay), count);
    }

    /// Execute matching commands but never post their completions.
    pub fn lose_completions(&self, matcher: CommandMatch, count: FaultCount) {
        self.inject(matcher, FaultAction::LoseCompletion, count);
    }

    /// Raise CSTS.CFS and stop processing commands. It survives controller resets until
    /// [`SimFaults::clear`].
    pub fn controller_fatal(&self) {
        self.state().fatal.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(device = %self.shared.id, "sim: injecting controller fatal status");
        self.shared.set_sticky_fatal(true);
    }

    /// Surprise removal: every register read returns all-ones and nothing completes.
    /// With `notice`, the removal-request eventfd is signalled first.
    pub fn surprise_removal(&self, notice: bool) {
        self.state().removals.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(device = %self.shared.id, notice, "sim: injecting surprise removal");
        if notice {
            self.removal_notice();
        }
        self.shared.set_removed(true);
    }

    /// Signal the removal-request eventfd only (the platform asks for the device back).
    pub fn removal_notice(&self) {
        if let Err(e) = self.shared.removal_efd.write(1) {
            tracing::warn!(device = %self.shared.id, error = %e, "sim: cannot signal removal request");
        }
    }

    /// Flip one bit in each of the `nlb` logical blocks from `slba` in the backing store,
    /// without telling anyone. Returns the number of blocks changed.
    pub fn corrupt_lbas(&self, slba: u64, nlb: u64) -> Result<u64, SimError> {
        let bs = u64::from(self.shared.cfg.lba_size);
        let blocks = self.shared.cfg.blocks();
        if slba.checked_add(nlb).is_none_or(|end| end > blocks) {
            return Err(SimError::OutOfRange {
                device: self.shared.id.clone(),
                slba,
                nlb,
                blocks,
            });
        }
        let seed = self.state().corrupted.load(Ordering::Relaxed);
        let n = self
            .shared
            .store
            .corrupt(slba * bs, nlb * bs, self.shared.cfg.lba_size, seed)
            .map_err(|source| SimError::Io {
                path: self.shared.store.describe(),
                op: "corrupt sectors",
                source,
            })?;
        self.state().corrupted.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(device = %self.shared.id, slba, nlb, "sim: silently corrupted sectors");
        Ok(n)
    }

    /// Remove every rule, clear injected fatal status and undo surprise removal.
    /// (Corrupted sectors stay corrupted; held commands keep their deadlines.)
    pub fn clear(&self) {
        self.state().rules.lock().clear();
        self.shared.set_sticky_fatal(false);
        self.shared.set_removed(false);
        tracing::info!(device = %self.shared.id, "sim: faults cleared");
    }

    /// Counts of faults injected so far.
    pub fn counters(&self) -> FaultCounters {
        let s = self.state();
        FaultCounters {
            status_injected: s.status_injected.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
            lost_completions: s.lost.load(Ordering::Relaxed),
            fatal: s.fatal.load(Ordering::Relaxed),
            removals: s.removals.load(Ordering::Relaxed),
            corrupted_sectors: s.corrupted.load(Ordering::Relaxed),
        }
    }
}
