//! Injected failures: rules that make matching operations fail with a chosen error.
//!
//! A rule matches by operation kind and, for operations that have one, by byte range; it can let
//! a number of matching operations through first ("fail after N"), stop after failing a number of
//! times, and fire with a probability drawn from the device's seeded RNG.

use crate::blockdev::{BlockError, NvmeStatus};
use crate::nvme::spec::{sc, sct};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::ops::{BitOr, Range};

/// One kind of block-device operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `read`.
    Read,
    /// `write` (with or without FUA).
    Write,
    /// `flush`.
    Flush,
    /// `deallocate`.
    Deallocate,
    /// `write_zeroes`.
    WriteZeroes,
    /// `health`.
    Health,
}

impl Op {
    /// The operation's name as errors print it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Deallocate => "deallocate",
            Op::WriteZeroes => "write zeroes",
            Op::Health => "health",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Op::Read => 1,
            Op::Write => 2,
            Op::Flush => 4,
            Op::Deallocate => 8,
            Op::WriteZeroes => 16,
            Op::Health => 32,
        }
    }
}

/// A set of operation kinds. Combine with `|`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpSet(u8);

impl OpSet {
    /// No operation.
    pub const NONE: OpSet = OpSet(0);
    /// Reads.
    pub const READ: OpSet = OpSet(1);
    /// Writes.
    pub const WRITE: OpSet = OpSet(2);
    /// Flushes.
    pub const FLUSH: OpSet = OpSet(4);
    /// Deallocates.
    pub const DEALLOCATE: OpSet = OpSet(8);
    /// Write zeroes.
    pub const WRITE_ZEROES: OpSet = OpSet(16);
    /// Health queries.
    pub const HEALTH: OpSet = OpSet(32);
    /// Everything that changes stored data: writes, write zeroes, deallocates.
    pub const MUTATING: OpSet = OpSet(2 | 8 | 16);
    /// Every operation.
    pub const ALL: OpSet = OpSet(63);

    /// Whether `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }
}

impl BitOr for OpSet {
    type Output = OpSet;
    fn bitor(self, rhs: OpSet) -> OpSet {
        OpSet(self.0 | rhs.0)
    }
}

impl From<Op> for OpSet {
    fn from(op: Op) -> OpSet {
        OpSet(op.bit())
    }
}

impl fmt::Debug for OpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [
            Op::Read,
            Op::Write,
            Op::Flush,
            Op::Deallocate,
            Op::WriteZeroes,
            Op::Health,
        ];
        f.debug_set()
            .entries(all.iter().filter(|&&o| self.contains(o)).map(|o| o.name()))
            .finish()
    }
}

/// The error an injected fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// An NVMe media error: Unrecovered Read Error (SCT 2h, SC 81h) on reads, Write Fault
    /// (SCT 2h, SC 80h) on anything else. Do-not-retry is set.
    MediaError,
    /// This exact NVMe status.
    Nvme(NvmeStatus),
    /// A host I/O error (`EIO`), as a file backend reports.
    Io,
    /// The command timed out even after abort, reset and retry.
    Timeout,
    /// The device is gone.
    DeviceLost,
    /// Silent, writes only: the write reports success but nothing is stored (a lost write).
    LostWrite,
    /// Silent, writes only: the write reports success but lands `by_blocks` blocks away from
    /// where it was aimed (wrapping around so it stays on the device), which is left untouched.
    Misdirected {
        /// Signed distance in blocks.
        by_blocks: i64,
    },
}

impl FaultKind {
    /// Whether the fault is silent (the operation reports success): only writes can have one.
    pub fn is_silent(self) -> bool {
        matches!(self, FaultKind::LostWrite | FaultKind::Misdirected { .. })
    }

    /// The error this fault gives for `op` at `offset` on `device`; `None` for silent faults.
    pub fn error(self, device: &str, op: Op, offset: u64) -> Option<BlockError> {
        let device = device.to_string();
        Some(match self {
            FaultKind::MediaError => BlockError::Nvme {
                device,
                op: op.name(),
                offset,
                status: NvmeStatus {
                    sct: sct::MEDIA,
                    sc: if op == Op::Read {
                        sc::MEDIA_UNRECOVERED_READ
                    } else {
                        sc::MEDIA_WRITE_FAULT
                    },
                    dnr: true,
                },
            },
            FaultKind::Nvme(status) => BlockError::Nvme {
                device,
                op: op.name(),
                offset,
                status,
            },
            FaultKind::Io => BlockError::Io {
                device,
                op: op.name(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            },
            FaultKind::Timeout => BlockError::Timeout {
                device,
                op: op.name(),
            },
            FaultKind::DeviceLost => BlockError::DeviceLost {
                device,
                reason: "injected fault".into(),
            },
            FaultKind::LostWrite | FaultKind::Misdirected { .. } => return None,
        })
    }
}

/// A rule that fails matching operations. Build with [`FaultRule::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Which operation kinds it matches.
    pub ops: OpSet,
    /// Byte range it matches: an operation matches if its range overlaps this one. Operations
    /// without a range (flush, health) never match a rule that has one. `None` matches all.
    pub range: Option<Range<u64>>,
    /// Matching operations let through before the rule starts failing them.
    pub after: u64,
    /// Failures after which the rule retires; `None` fails forever.
    pub times: Option<u64>,
    /// Probability that an eligible matching operation fails (drawn from the device's seeded RNG).
    pub probability: f64,
    /// The error produced.
    pub kind: FaultKind,
}

impl FaultRule {
    /// Fail every operation in `ops` with `kind`.
    pub fn new(ops: impl Into<OpSet>, kind: FaultKind) -> FaultRule {
        FaultRule {
            ops: ops.into(),
            range: None,
            after: 0,
            times: None,
            probability: 1.0,
            kind,
        }
    }

    /// Only operations overlapping bytes `offset..offset+len`.
    pub fn range(mut self, offset: u64, len: u64) -> FaultRule {
        self.range = Some(offset..offset.saturating_add(len));
        self
    }

    /// Let the first `n` matching operations succeed.
    pub fn after(mut self, n: u64) -> FaultRule {
        self.after = n;
        self
    }

    /// Fail at most `n` times, then retire.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Fail each eligible matching operation with probability `p` (clamped to 0..=1).
    pub fn probability(mut self, p: f64) -> FaultRule {
        self.probability = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self
    }

    fn matches(&self, op: Op, span: Option<Range<u64>>) -> bool {
        if !self.ops.contains(op) || (self.kind.is_silent() && op != Op::Write) {
            return false;
        }
        match (&self.range, span) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(r), Some(s)) => {
                // An empty operation range still "touches" its offset.
                let s_end = s.end.max(s.start + 1);
                s.start < r.end && r.start < s_end
            }
        }
    }
}

/// Handle of an installed rule, for removing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

#[derive(Debug)]
struct Installed {
    id: RuleId,
    rule: FaultRule,
    seen: u64,
    fired: u64,
}

/// The rules of one device, with the RNG their probabilities draw from.
#[derive(Debug)]
pub(super) struct RuleSet {
    rules: Vec<Installed>,
    next_id: u64,
    rng: ChaCha8Rng,
}

impl RuleSet {
    pub(super) fn new(rng: ChaCha8Rng) -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            next_id: 0,
            rng,
        }
    }

    pub(super) fn add(&mut self, rule: FaultRule) -> RuleId {
        let id = RuleId(self.next_id);
        self.next_id += 1;
        self.rules.push(Installed {
            id,
            rule,
            seen: 0,
            fired: 0,
        });
        id
    }

    pub(super) fn remove(&mut self, id: RuleId) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() != before
    }

    pub(super) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault to inject for this operation, if any (the first rule that fires wins; every
    /// matching rule counts the operation).
    pub(super) fn check(&mut self, op: Op, span: Option<Range<u64>>) -> Option<FaultKind> {
        let mut hit = None;
        for r in &mut self.rules {
            if !r.rule.matches(op, span.clone()) {
                continue;
            }
            r.seen += 1;
            if hit.is_some() || r.seen <= r.rule.after {
                continue;
            }
            if r.rule.times.is_some_and(|t| r.fired >= t) {
                continue;
            }
            let fire = r.rule.probability >= 1.0
                || (r.rule.probability > 0.0 && self.rng.random_bool(r.rule.probability));
            if fire {
                r.fired += 1;
                hit = Some(r.rule.kind);
            }
        }
        self.rules
            .retain(|r| r.rule.times.is_none_or(|t| r.fired < t));
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn set() -> RuleSet {
        RuleSet::new(ChaCha8Rng::seed_from_u64(1))
    }

    #[test]
    fn range_and_kind_matching() {
        let mut s = set();
        s.add(FaultRule::new(OpSet::READ, FaultKind::MediaError).range(4096, 4096));
        assert_eq!(s.check(Op::Read, Some(0..4096)), None);
        assert_eq!(
            s.check(Op::Read, Some(0..4097)),
            Some(FaultKind::MediaError)
        );
        assert_eq!(
            s.check(Op::Read, Some(8191..9000)),
            Some(FaultKind::MediaError)
        );
        assert_eq!(s.check(Op::Read, Some(8192..9000)), None);
        assert_eq!(s.check(Op::Write, Some(4096..8192)), None);
        assert_eq!(s.check(Op::Flush, None), None);
    }

    #[test]
    fn after_and_times() {
        let mut s = set();
        let id = s.add(
            FaultRule::new(OpSet::ALL, FaultKind::Timeout)
                .after(2)
                .times(2),
        );
        assert_eq!(s.check(Op::Flush, None), None);
        assert_eq!(s.check(Op::Read, Some(0..1)), None);
        assert_eq!(s.check(Op::Flush, None), Some(FaultKind::Timeout));
        assert_eq!(s.check(Op::Flush, None), Some(FaultKind::Timeout));
        assert_eq!(s.check(Op::Flush, None), None);
        assert!(!s.remove(id), "retired rule is gone");
    }

    #[test]
    fn probability_is_seeded() {
        let run = || {
            let mut s = set();
            s.add(FaultRule::new(OpSet::READ, FaultKind::Io).probability(0.5));
            (0..64)
                .map(|_| s.check(Op::Read, Some(0..1)).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|&x| x) && a.iter().any(|&x| !x));
    }

    #[test]
    fn media_error_status_depends_on_op() {
        let e = FaultKind::MediaError.error("d", Op::Read, 512).unwrap();
        assert!(matches!(
            e,
            BlockError::Nvme {
                status: NvmeStatus {
                    sct: 2,
                    sc: 0x81,
                    dnr: true
                },
                offset: 512,
                ..
            }
        ));
        let e = FaultKind::MediaError.error("d", Op::Write, 0).unwrap();
        assert!(matches!(
            e,
            BlockError::Nvme {
                status: NvmeStatus { sc: 0x80, .. },
                ..
            }
        ));
        assert!(format!("{:?}", OpSet::READ | OpSet::FLUSH).contains("flush"));
        assert!(FaultKind::LostWrite.error("d", Op::Write, 0).is_none());
    }

    #[test]
    fn silent_faults_match_writes_only() {
        let mut s = set();
        s.add(FaultRule::new(OpSet::ALL, FaultKind::LostWrite));
        assert_eq!(s.check(Op::Read, Some(0..1)), None);
        assert_eq!(s.check(Op::WriteZeroes, Some(0..1)), None);
        assert_eq!(s.check(Op::Write, Some(0..1)), Some(FaultKind::LostWrite));
    }
}
