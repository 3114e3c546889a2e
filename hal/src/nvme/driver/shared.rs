//! State shared by the admin supervisor, the queue-pair owners and the public handles:
//! the device-lost latch, the reset generation and per-queue counters. Cold path only,
//! except for atomic loads and relaxed counter bumps.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use vmm_sys_util::eventfd::EventFd;

/// The reason commands fail with after a clean shutdown.
pub(crate) const SHUT_DOWN: &str = "controller shut down";

/// Counters of one queue (index 0 is the admin queue), a cache line each so queue
/// owners on different cores do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct QueueCounters {
    pub commands: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub resets: AtomicU64,
}

/// A snapshot of one queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueStats {
    /// Queue id (0 = admin).
    pub qid: u16,
    /// Commands completed (successfully or not).
    pub commands: u64,
    /// Commands that completed with an error status (including retried ones).
    pub errors: u64,
    /// Command timeouts seen (each starts abort/reset recovery).
    pub timeouts: u64,
    /// Controller resets this queue went through.
    pub resets: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub device: String,
    lost: AtomicBool,
    lost_reason: Mutex<Option<String>>,
    /// Bumped by every controller reset.
    pub generation: AtomicU64,
    /// Counters, index = qid.
    pub counters: Vec<QueueCounters>,
    /// Eventfds that wake every driver thread (set once the threads exist).
    wakers: Mutex<Vec<Arc<EventFd>>>,
}

impl Shared {
    pub fn new(device: String, queues: usize) -> Self {
        Shared {
            device,
            lost: AtomicBool::new(false),
            lost_reason: Mutex::new(None),
            generation: AtomicU64::new(0),
            counters: (0..queues).map(|_| QueueCounters::default()).collect(),
            wakers: Mutex::new(Vec::new()),
        }
    }

    pub fn set_wakers(&self, w: Vec<Arc<EventFd>>) {
        *self.wakers.lock() = w;
    }

    /// Latch the device as lost (first reason wins) and wake every driver thread.
    pub fn mark_lost(&self, reason: &str) {
        self.latch(reason, true);
    }

    /// Latch the controller as closed (clean shutdown): later commands fail with `reason`.
    pub fn mark_closed(&self, reason: &str) {
        self.latch(reason, false);
    }

    fn latch(&self, reason: &str, fault: bool) {
        {
            let mut r = self.lost_reason.lock();
            if r.is_none() {
                if fault {
                    tracing::error!(device = %self.device, reason, "NVMe device lost");
                } else {
                    tracing::info!(device = %self.device, reason, "NVMe controller closed");
                }
                *r = Some(reason.to_string());
            }
        }
        self.lost.store(true, Ordering::SeqCst);
        for w in self.wakers.lock().iter() {
            let _ = w.write(1);
        }
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    pub fn lost_reason(&self) -> Option<String> {
        if !self.is_lost() {
            return None;
        }
        self.lost_reason.lock().clone()
    }

    pub fn counter(&self, qid: u16) -> Option<&QueueCounters> {
        self.counters.get(usize::from(qid))
    }

    pub fn bump(&self, qid: u16, f: impl Fn(&QueueCounters) -> &AtomicU64) {
        if let Some(c) = self.counter(qid) {
            f(c).fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> Vec<QueueStats> {
        self.counters
            .iter()
            .enumerate()
            .map(|(i, c)| QueueStats {
                qid: i as u16,
                commands: c.commands.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                timeouts: c.timeouts.load(Ordering::Relaxed),
                resets: c.resets.load(Ordering::Relaxed),
            })
            .collect()
    }
}
