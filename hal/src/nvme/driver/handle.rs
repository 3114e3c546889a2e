//! The handles around a queue-pair owner: the submitting side held by namespaces, the
//! supervisor's control link to it, and its link back to the supervisor.

use super::msg::{AdminMsg, Ctl, IoRequest};
use super::pool::BufPool;
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use vmm_sys_util::eventfd::EventFd;

/// The submitting side of a queue pair, held by namespaces.
#[derive(Debug)]
pub(crate) struct QueueHandle {
    pub(super) tx: Sender<IoRequest>,
    pub(super) ctl: Sender<Ctl>,
    pub(super) kick: Arc<EventFd>,
    pub(super) sleeping: Arc<AtomicBool>,
    /// Bounce buffers of this queue pair.
    pub pool: BufPool,
    /// Commands the queue pair holds in flight (one request keeps at most this many).
    pub depth: usize,
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
    /// Send a message and wake the supervisor.
    pub(super) fn send(&self, m: AdminMsg) {
        let _ = self.tx.send(m);
        let _ = self.kick.write(1);
    }
}
