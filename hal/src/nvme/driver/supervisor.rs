//! The admin supervisor thread: serves admin commands for callers, Abort and reset
//! requests from queue owners, the removal eventfd, and clean or abrupt shutdown.

use super::admin::Admin;
use super::error::NvmeError;
use super::msg::{AdminMsg, Ctl};
use super::shared::SHUT_DOWN;
use super::{cmd, regs, wait};
use crate::nvme::spec::{cc, reg};
use crossbeam_channel::{Receiver, TryRecvError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// Run the supervisor until shutdown, drop or device loss.
pub(crate) fn serve(
    mut admin: Admin,
    rx: Receiver<AdminMsg>,
    kick: Arc<EventFd>,
    removal: Option<Arc<EventFd>>,
    threads: Vec<JoinHandle<()>>,
) {
    loop {
        if admin.shared.is_lost() {
            // Device lost: stop DMA where the device still answers (one CC write, no
            // wait), stop the owners and release every mapping and reference to it.
            let cc_v = admin.backing.read32(reg::CC);
            if cc_v != u32::MAX && cc_v & cc::EN != 0 {
                admin.backing.write32(reg::CC, cc_v & !cc::EN);
            }
            return finish(admin, threads);
        }
        match rx.try_recv() {
            Ok(AdminMsg::Command {
                op,
                cmd,
                data_len,
                reply,
            }) => {
                let _ = reply.send(admin.run(op, cmd, data_len));
            }
            Ok(AdminMsg::Abort { sqid, cid }) => admin.abort(sqid, cid),
            Ok(AdminMsg::Reset { generation, reason }) => {
                if generation >= admin.shared.generation.load(Ordering::SeqCst) {
                    let _ = admin.reset(&reason);
                }
            }
            Ok(AdminMsg::Drained { .. }) => {}
            Ok(AdminMsg::Shutdown { reply }) => {
                let r = shutdown(&mut admin, &rx);
                finish(admin, threads);
                let _ = reply.send(r);
                return;
            }
            Ok(AdminMsg::Exit) | Err(TryRecvError::Disconnected) => {
                admin.shared.mark_closed("controller handle dropped");
                let _ = regs::disable(&*admin.backing, admin.cap);
                return finish(admin, threads);
            }
            Err(TryRecvError::Empty) => {
                let mut fds: Vec<&EventFd> = vec![&kick];
                if let Some(r) = &removal {
                    fds.push(r);
                }
                let ready = wait::wait(&fds, Some(admin.cfg.health_interval));
                if ready == 0 {
                    if let Err(why) = regs::check(&*admin.backing) {
                        admin.shared.mark_lost(why);
                    }
                    continue;
                }
                if ready & 1 != 0 {
                    wait::drain(&kick);
                }
                if let Some(r) = removal.as_ref().filter(|_| ready & 2 != 0) {
                    wait::drain(r);
                    admin
                        .shared
                        .mark_lost("the platform requested the device back (hot-unplug)");
                    if regs::check(&*admin.backing).is_ok() {
                        let _ = regs::disable(&*admin.backing, admin.cap);
                    }
                }
            }
        }
    }
}

/// Quiesce the owners, delete the I/O queues, then CC.SHN normal and wait for SHST complete.
fn shutdown(admin: &mut Admin, rx: &Receiver<AdminMsg>) -> Result<(), NvmeError> {
    if let Some(reason) = admin.shared.lost_reason() {
        return Err(NvmeError::DeviceLost {
            device: admin.device.clone(),
            reason,
        });
    }
    tracing::info!(device = %admin.device, "NVMe shutdown: draining queues");
    for w in &admin.workers {
        w.control(Ctl::Quiesce);
    }
    let budget = admin.cfg.command_timeout * (admin.cfg.max_retries + 2);
    let bound = Instant::now() + budget;
    let mut drained = 0;
    while drained < admin.workers.len() && !admin.shared.is_lost() {
        match rx.recv_timeout(bound.saturating_duration_since(Instant::now())) {
            Ok(AdminMsg::Drained { qid }) => {
                tracing::debug!(device = %admin.device, qid, "queue drained");
                drained += 1;
            }
            Ok(AdminMsg::Abort { sqid, cid }) => admin.abort(sqid, cid),
            Ok(AdminMsg::Reset { generation, reason }) => {
                if generation >= admin.shared.generation.load(Ordering::SeqCst) {
                    let _ = admin.reset(&reason);
                }
            }
            Ok(AdminMsg::Command { reply, .. }) => {
                let _ = reply.send(Err(NvmeError::DeviceLost {
                    device: admin.device.clone(),
                    reason: "controller is shutting down".into(),
                }));
            }
            Ok(AdminMsg::Shutdown { reply }) => {
                let _ = reply.send(Ok(()));
            }
            Ok(AdminMsg::Exit) => {}
            Err(_) => {
                tracing::warn!(device = %admin.device, drained, queues = admin.workers.len(), "queues did not drain in time; shutting down anyway");
                break;
            }
        }
    }
    if let Some(reason) = admin.shared.lost_reason() {
        return Err(NvmeError::DeviceLost {
            device: admin.device.clone(),
            reason,
        });
    }
    let queues: Vec<u16> = admin.io_queues.iter().map(|q| q.qid).collect();
    for &qid in queues.iter().rev() {
        if let Err(e) = admin.exec_ok("delete I/O submission queue", cmd::delete_io_sq(qid)) {
            tracing::warn!(device = %admin.device, qid, error = %e, "delete SQ failed");
        }
    }
    for &qid in queues.iter().rev() {
        if let Err(e) = admin.exec_ok("delete I/O completion queue", cmd::delete_io_cq(qid)) {
            tracing::warn!(device = %admin.device, qid, error = %e, "delete CQ failed");
        }
    }
    let r = regs::shutdown(&*admin.backing, admin.cap);
    admin.shared.mark_closed(SHUT_DOWN);
    match &r {
        Ok(()) => tracing::info!(device = %admin.device, "NVMe controller shut down cleanly"),
        Err(e) => tracing::warn!(device = %admin.device, error = %e, "NVMe shutdown incomplete"),
    }
    r
}

/// End every queue owner and wait for them, then drop the admin queue (unmapping it).
fn finish(admin: Admin, threads: Vec<JoinHandle<()>>) {
    for w in &admin.workers {
        w.control(Ctl::Exit);
    }
    for t in threads {
        let _ = t.join();
    }
    tracing::debug!(device = %admin.device, "NVMe driver threads stopped; device released");
    drop(admin);
}
