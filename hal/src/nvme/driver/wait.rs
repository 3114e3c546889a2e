//! Sleeping on eventfds (MSI-X vectors, submission kicks, removal requests) with poll(2).

use std::os::fd::AsRawFd;
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

/// Block until one of `fds` (at most 32) is readable or `timeout` passes (`None`: no
/// timeout). Returns a bit mask of the readable ones (bit i for `fds[i]`); 0 on timeout or EINTR.
pub(crate) fn wait(fds: &[&EventFd], timeout: Option<Duration>) -> u32 {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|e| libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs that outlives the call,
    // `ts_ptr` is null or points at a live timespec, and a null sigmask leaves it unchanged.
    let n = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if n <= 0 {
        return 0;
    }
    pfds.iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .fold(0, |m, (i, _)| m | (1 << i))
}

/// Reset an eventfd's counter. Call only for an eventfd that polled readable (or one
/// created non-blocking), so the read cannot block.
pub(crate) fn drain(e: &EventFd) {
    let _ = e.read();
}
