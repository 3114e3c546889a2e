//! Messages between the public handles, the admin supervisor and the queue-pair owners.

use crate::blockdev::NvmeStatus;
use crate::dma::DmaBuffer;
use crate::nvme::spec::{Command, Completion};
use tokio::sync::oneshot;

/// One I/O command for a queue-pair owner: fully encoded except its CID.
#[derive(Debug)]
pub(crate) struct IoRequest {
    pub cmd: Command,
    /// The bounce buffer the PRPs point into; kept alive until the device is done with it.
    pub buf: Option<DmaBuffer>,
    pub reply: oneshot::Sender<IoReply>,
}

/// How an I/O command ended, with its bounce buffer handed back.
#[derive(Debug)]
pub(crate) struct IoReply {
    pub outcome: Result<Completion, IoFailure>,
    pub buf: Option<DmaBuffer>,
}

/// Why an I/O command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoFailure {
    /// Error status from the device (after any retries).
    Status(NvmeStatus),
    /// No completion even after abort, reset and reissue.
    Timeout,
    /// The device is gone or the controller was shut down.
    Lost(String),
}

/// Supervisor-to-owner control.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// Stop touching the rings and acknowledge; a `Resume`, `Lost` or `Exit` follows.
    Pause,
    /// The controller was reset and the queues recreated: reset rings, reissue.
    Resume,
    /// Stop accepting new requests; report `Drained` once nothing is in flight.
    Quiesce,
    /// Fail everything and end the thread.
    Exit,
}

/// Messages to the admin supervisor.
#[derive(Debug)]
pub(crate) enum AdminMsg {
    /// Run an admin command; `data_len` bytes come back from the scratch page.
    Command {
        op: &'static str,
        cmd: Command,
        data_len: usize,
        reply: oneshot::Sender<Result<(Completion, Vec<u8>), super::NvmeError>>,
    },
    /// A queue owner saw command `cid` on `sqid` time out.
    Abort { sqid: u16, cid: u16 },
    /// A queue owner wants a controller reset (ignored if one happened since `generation`).
    Reset { generation: u64, reason: String },
    /// A queue owner finished draining after `Ctl::Quiesce`.
    Drained { qid: u16 },
    /// Clean shutdown: drain, delete queues, CC.SHN.
    Shutdown {
        reply: oneshot::Sender<Result<(), super::NvmeError>>,
    },
    /// The last handle is gone: disable the controller and end.
    Exit,
}
