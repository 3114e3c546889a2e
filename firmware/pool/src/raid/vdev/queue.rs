//! Write aggregation per device, as ZFS's `vdev_queue`: small writes that arrive while
//! a device already has [`MAX_ACTIVE`] of them in flight wait in a queue ordered by
//! device offset; when one completes, the oldest waiting write and the waiting writes
//! contiguous with it on the same device (before and after) are copied into one buffer
//! and issued as one command, up to [`AGG_LIMIT`] bytes.
//!
//! Why: every small extent (a file of a few KiB, a tree node) is a column or two on each
//! device, and each device command costs thread hand-offs in the driver (and in the
//! simulated controller) that cost far more than copying a few KiB. The allocator places
//! what one commit writes next to each other (next fit), so a commit's thousands of
//! small column writes become a few large commands per device.
//!
//! What it does not change: a write returns only once the command holding it completed,
//! so a flush issued after the writes returned covers them; writes larger than
//! [`AGG_PIECE_MAX`] bypass the queue (copying them would cost more than it saves); only
//! writes queued at the same time to the same device are merged, never across a gap (the
//! gap may be another writer's allocation); a write to another device than the one the
//! slot's queued and in-flight writes are for (a replace or a spare took the slot) goes
//! straight to it, never waiting behind the old device. A merged command that fails fails each of
//! its writes with the same error. A waiting write whose caller goes away is taken out
//! of the queue, unless it was already issued (as a command already submitted to the
//! device, it lands).

use ingot_hal::blockdev::{BlockDevice, BlockError, WriteFlags};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Small writes in flight per device before further ones wait (and may be merged).
pub const MAX_ACTIVE: usize = 2;
/// Writes larger than this go to the device directly, never queued nor merged.
pub const AGG_PIECE_MAX: usize = 32 << 10;
/// Largest merged command.
pub const AGG_LIMIT: usize = 128 << 10;

/// One write waiting in the queue.
struct Waiting {
    dev: Arc<dyn BlockDevice>,
    buf: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(), BlockError>>,
}

#[derive(Default)]
struct State {
    /// The device (its `Arc` address) the writes in flight and waiting are for.
    dev: usize,
    /// Small writes in flight (direct or merged commands).
    active: usize,
    /// Sequence number of the next waiting write (arrival order).
    next: u64,
    /// Waiting writes by (device offset, sequence).
    by_offset: BTreeMap<(u64, u64), Waiting>,
    /// The same, by sequence: the oldest is issued first, so none starves.
    by_seq: BTreeMap<u64, u64>,
}

/// Counters of one queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Device write commands issued through the queue (a merged command counts once).
    pub commands: AtomicU64,
    /// Writes that went out as part of a merged command of two or more.
    pub merged: AtomicU64,
}

/// The write queue of one device slot.
#[derive(Default)]
pub struct WriteQueue {
    state: Mutex<State>,
    /// Counters.
    pub stats: QueueStats,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("WriteQueue")
            .field("active", &st.active)
            .field("waiting", &st.by_seq.len())
            .finish()
    }
}

/// Gives the active slot back (and starts the drain of what waits) when a direct write
/// finishes or its caller goes away.
struct ActiveSlot(Arc<WriteQueue>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Takes a waiting write out of the queue if its caller goes away before it is issued.
struct WaitGuard<'a> {
    q: &'a WriteQueue,
    key: (u64, u64),
    armed: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.q.state.lock();
            if st.by_offset.remove(&self.key).is_some() {
                st.by_seq.remove(&self.key.1);
            }
        }
    }
}

/// A copy of `e` for every write of a failed merged command.
fn clone_error(e: &BlockError) -> BlockError {
    match e {
        BlockError::Misaligned {
            device,
            offset,
            len,
            block_size,
        } => BlockError::Misaligned {
            device: device.clone(),
            offset: *offset,
            len: *len,
            block_size: *block_size,
        },
        BlockError::OutOfRange {
            device,
            offset,
            len,
            capacity,
        } => BlockError::OutOfRange {
            device: device.clone(),
            offset: *offset,
            len: *len,
            capacity: *capacity,
        },
        BlockError::Nvme {
            device,
            op,
            offset,
            status,
        } => BlockError::Nvme {
            device: device.clone(),
            op,
            offset: *offset,
            status: *status,
        },
        BlockError::Timeout { device, op } => BlockError::Timeout {
            device: device.clone(),
            op,
        },
        BlockError::DeviceLost { device, reason } => BlockError::DeviceLost {
            device: device.clone(),
            reason: reason.clone(),
        },
        BlockError::Io { device, op, source } => BlockError::Io {
            device: device.clone(),
            op,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        BlockError::Injected { device, what } => BlockError::Injected {
            device: device.clone(),
            what: what.clone(),
        },
        BlockError::Unsupported { device, op } => BlockError::Unsupported {
            device: device.clone(),
            op,
        },
        other => BlockError::Io {
            device: String::new(),
            op: "write",
            source: std::io::Error::other(other.to_string()),
        },
    }
}

impl WriteQueue {
    /// Write `buf` at byte `offset` of `dev` (the slot's device), through the queue.
    pub async fn write(
        self: &Arc<Self>,
        dev: &Arc<dyn BlockDevice>,
        offset: u64,
        buf: &[u8],
    ) -> Result<(), BlockError> {
        if buf.len() > AGG_PIECE_MAX {
            self.stats.commands.fetch_add(1, Ordering::Relaxed);
            return dev.write(offset, buf, WriteFlags::NONE).await;
        }
        let id = Arc::as_ptr(dev) as *const () as usize;
        let waiting = {
            let mut st = self.state.lock();
            if st.active == 0 && st.by_seq.is_empty() {
                st.dev = id;
            }
            if st.dev != id {
                // Another device took the slot (replace, spare, reattach) while writes to
                // the old one are in flight: never make the new device wait behind them.
                Err(())
            } else if st.active < MAX_ACTIVE {
                st.active += 1;
                Ok(None)
            } else {
                let seq = st.next;
                st.next += 1;
                let (done, rx) = tokio::sync::oneshot::channel();
                st.by_offset.insert(
                    (offset, seq),
                    Waiting {
                        dev: dev.clone(),
                        buf: buf.to_vec(),
                        done,
                    },
                );
                st.by_seq.insert(seq, offset);
                Ok(Some((rx, seq)))
            }
        };
        match waiting {
            Err(()) => {
                self.stats.commands.fetch_add(1, Ordering::Relaxed);
                dev.write(offset, buf, WriteFlags::NONE).await
            }
            Ok(None) => {
                let _slot = ActiveSlot(self.clone());
                self.stats.commands.fetch_add(1, Ordering::Relaxed);
                dev.write(offset, buf, WriteFlags::NONE).await
            }
            Ok(Some((rx, seq))) => {
                let mut guard = WaitGuard {
                    q: self,
                    key: (offset, seq),
                    armed: true,
                };
                let r = rx.await;
                guard.armed = false;
                r.unwrap_or_else(|_| {
                    Err(BlockError::Io {
                        device: dev.identity().location,
                        op: "write",
                        source: std::io::Error::other(
                            "the write queue went away before issuing the write",
                        ),
                    })
                })
            }
        }
    }

    /// A small write in flight finished: give its slot back, or keep it for a task that
    /// issues what waits.
    fn release(self: &Arc<Self>) {
        let mut st = self.state.lock();
        if st.by_seq.is_empty() {
            st.active -= 1;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                drop(st);
                rt.spawn(self.clone().drain());
            }
            Err(_) => {
                // No runtime to issue them on: fail what waits (dropping the senders).
                st.by_offset.clear();
                st.by_seq.clear();
                st.active -= 1;
            }
        }
    }

    /// Issue the waiting writes, merged, until none waits; holds one active slot.
    async fn drain(self: Arc<Self>) {
        loop {
            let run = {
                let mut st = self.state.lock();
                let run = take_run(&mut st);
                if run.is_empty() {
                    st.active -= 1;
                    return;
                }
                run
            };
            self.issue(run).await;
        }
    }

    /// Issue one run of contiguous waiting writes (sorted by offset) as one command.
    async fn issue(&self, run: Vec<(u64, Waiting)>) {
        self.stats.commands.fetch_add(1, Ordering::Relaxed);
        let dev = run[0].1.dev.clone();
        let offset = run[0].0;
        let r = if run.len() == 1 {
            dev.write(offset, &run[0].1.buf, WriteFlags::NONE).await
        } else {
            self.stats
                .merged
                .fetch_add(run.len() as u64, Ordering::Relaxed);
            let total = run.iter().map(|(_, w)| w.buf.len()).sum();
            let mut buf = Vec::with_capacity(total);
            for (_, w) in &run {
                buf.extend_from_slice(&w.buf);
            }
            dev.write(offset, &buf, WriteFlags::NONE).await
        };
        match r {
            Ok(()) => {
                for (_, w) in run {
                    let _ = w.done.send(Ok(()));
                }
            }
            Err(e) => {
                for (_, w) in run {
                    let _ = w.done.send(Err(clone_error(&e)));
                }
            }
        }
    }
}

/// Take the oldest waiting write and the ones contiguous with it on the same device,
/// up to [`AGG_LIMIT`] bytes, in offset order (empty when nothing waits).
fn take_run(st: &mut State) -> Vec<(u64, Waiting)> {
    let Some((&seq, &offset)) = st.by_seq.iter().next() else {
        return Vec::new();
    };
    let Some(first) = st.by_offset.remove(&(offset, seq)) else {
        // Unreachable: both maps change together; drop the stale index entry.
        st.by_seq.remove(&seq);
        return Vec::new();
    };
    st.by_seq.remove(&seq);
    let mut total = first.buf.len();
    let mut start = offset;
    let mut end = offset + first.buf.len() as u64;
    let dev = first.dev.clone();
    let mut after = Vec::new();
    // Forwards: a waiting write that starts where the run ends.
    loop {
        let next = st
            .by_offset
            .range((end, 0)..(end + 1, 0))
            .find(|(_, w)| Arc::ptr_eq(&w.dev, &dev) && total + w.buf.len() <= AGG_LIMIT)
            .map(|(k, _)| *k);
        let Some(k) = next else { break };
        if let Some(w) = st.by_offset.remove(&k) {
            st.by_seq.remove(&k.1);
            total += w.buf.len();
            end += w.buf.len() as u64;
            after.push((k.0, w));
        }
    }
    // Backwards: a waiting write that ends where the run starts.
    let mut before = Vec::new();
    loop {
        let prev = st
            .by_offset
            .range(..(start, 0))
            .rev()
            .take_while(|(k, _)| k.0 + AGG_PIECE_MAX as u64 >= start)
            .find(|(k, w)| {
                k.0 + w.buf.len() as u64 == start
                    && Arc::ptr_eq(&w.dev, &dev)
                    && total + w.buf.len() <= AGG_LIMIT
            })
            .map(|(k, _)| *k);
        let Some(k) = prev else { break };
        if let Some(w) = st.by_offset.remove(&k) {
            st.by_seq.remove(&k.1);
            total += w.buf.len();
            start = k.0;
            before.push((k.0, w));
        }
    }
    before.reverse();
    before.push((offset, first));
    before.extend(after);
    before
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingot_hal::blockdev::MemBlockDevice;

    fn waiting(dev: &Arc<dyn BlockDevice>, len: usize, fill: u8) -> Waiting {
        Waiting {
            dev: dev.clone(),
            buf: vec![fill; len],
            done: tokio::sync::oneshot::channel().0,
        }
    }

    fn push(st: &mut State, dev: &Arc<dyn BlockDevice>, offset: u64, len: usize) {
        let seq = st.next;
        st.next += 1;
        st.by_offset
            .insert((offset, seq), waiting(dev, len, seq as u8));
        st.by_seq.insert(seq, offset);
    }

    fn mem() -> Arc<dyn BlockDevice> {
        Arc::new(MemBlockDevice::new("q", 4096, 1024))
    }

    #[test]
    fn run_starts_at_the_oldest_and_takes_contiguous_neighbours_both_ways() {
        let d = mem();
        let mut st = State::default();
        push(&mut st, &d, 8192, 4096); // oldest
        push(&mut st, &d, 40960, 4096); // not contiguous
        push(&mut st, &d, 12288, 8192);
        push(&mut st, &d, 4096, 4096);
        push(&mut st, &d, 0, 4096);
        let run = take_run(&mut st);
        let offs: Vec<u64> = run.iter().map(|(o, _)| *o).collect();
        assert_eq!(offs, vec![0, 4096, 8192, 12288]);
        // The rest stays, indexed both ways.
        assert_eq!(st.by_offset.len(), 1);
        assert_eq!(st.by_seq.len(), 1);
        let run = take_run(&mut st);
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].0, 40960);
        assert!(take_run(&mut st).is_empty());
    }

    #[test]
    fn runs_stop_at_the_limit_and_at_another_device() {
        let d = mem();
        let other = mem();
        let mut st = State::default();
        let piece = AGG_PIECE_MAX;
        let n = AGG_LIMIT / piece + 2;
        for i in 0..n {
            push(&mut st, &d, (i * piece) as u64, piece);
        }
        // Contiguous on another device of the same slot (a replace): never merged.
        push(&mut st, &other, (n * piece) as u64, 4096);
        let run = take_run(&mut st);
        assert_eq!(run.len(), AGG_LIMIT / piece);
        let total: usize = run.iter().map(|(_, w)| w.buf.len()).sum();
        assert!(total <= AGG_LIMIT);
        let run = take_run(&mut st);
        assert_eq!(run.len(), 2);
        let run = take_run(&mut st);
        assert_eq!(run.len(), 1);
        assert!(Arc::ptr_eq(&run[0].1.dev, &other));
    }

    /// A device whose writes wait until released, to hold the queue's slots busy.
    #[derive(Debug)]
    struct Gated {
        inner: MemBlockDevice,
        gate: Arc<tokio::sync::Semaphore>,
        writes: Mutex<Vec<(u64, usize)>>,
        fail_at: Option<u64>,
    }

    #[async_trait::async_trait]
    impl BlockDevice for Gated {
        fn geometry(&self) -> ingot_hal::blockdev::Geometry {
            self.inner.geometry()
        }
        fn identity(&self) -> ingot_hal::blockdev::DeviceIdentity {
            self.inner.identity()
        }
        async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.inner.read(offset, buf).await
        }
        async fn write(&self, offset: u64, buf: &[u8], f: WriteFlags) -> Result<(), BlockError> {
            self.gate
                .acquire()
                .await
                .map_err(|_| BlockError::Unsupported {
                    device: "gated".into(),
                    op: "write",
                })?
                .forget();
            self.writes.lock().push((offset, buf.len()));
            if self
                .fail_at
                .is_some_and(|o| o >= offset && o < offset + buf.len() as u64)
            {
                return Err(BlockError::Injected {
                    device: "gated".into(),
                    what: "write error".into(),
                });
            }
            self.inner.write(offset, buf, f).await
        }
        async fn flush(&self) -> Result<(), BlockError> {
            self.inner.flush().await
        }
        async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
            self.inner.deallocate(offset, len).await
        }
        async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
            self.inner.write_zeroes(offset, len).await
        }
        async fn health(&self) -> Result<ingot_hal::blockdev::HealthInfo, BlockError> {
            self.inner.health().await
        }
    }

    fn gated(fail_at: Option<u64>) -> (Arc<Gated>, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let g = Arc::new(Gated {
            inner: MemBlockDevice::new("g", 4096, 1024),
            gate: gate.clone(),
            writes: Mutex::new(Vec::new()),
            fail_at,
        });
        (g, gate)
    }

    /// Start `n` writes of one sector each at sectors `0..n` (in reverse order), let them
    /// queue behind the gate, open it and return every result.
    async fn burst(
        q: &Arc<WriteQueue>,
        dev: Arc<dyn BlockDevice>,
        gate: &tokio::sync::Semaphore,
        n: u64,
    ) -> Vec<Result<(), BlockError>> {
        let tasks: Vec<_> = (0..n)
            .rev()
            .map(|i| {
                let (q, dev) = (q.clone(), dev.clone());
                tokio::spawn(async move { q.write(&dev, i * 4096, &vec![i as u8 + 1; 4096]).await })
            })
            .collect();
        // Every task has either taken a slot or queued (the runtime is current-thread:
        // yielding lets each run up to its first wait).
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(q.state.lock().by_seq.len(), n as usize - MAX_ACTIVE);
        gate.add_permits(1000);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn writes_queued_behind_busy_slots_go_out_merged_and_land() {
        let (g, gate) = gated(None);
        let dev: Arc<dyn BlockDevice> = g.clone();
        let q = Arc::new(WriteQueue::default());
        let n = 10u64;
        for r in burst(&q, dev.clone(), &gate, n).await {
            r.unwrap();
        }
        // Two direct writes, then the eight waiting ones as one command.
        let writes = g.writes.lock().clone();
        assert_eq!(writes.len(), MAX_ACTIVE + 1, "{writes:?}");
        assert!(writes.contains(&(0, 8 * 4096)), "{writes:?}");
        assert_eq!(q.stats.commands.load(Ordering::Relaxed), 3);
        assert_eq!(q.stats.merged.load(Ordering::Relaxed), 8);
        for i in 0..n {
            let mut b = vec![0u8; 4096];
            dev.read(i * 4096, &mut b).await.unwrap();
            assert!(b.iter().all(|&x| x == i as u8 + 1), "sector {i}");
        }
        let st = q.state.lock();
        assert_eq!((st.active, st.by_seq.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_failed_merged_command_fails_each_of_its_writes() {
        // Sector 5 fails: it is in the merged command of sectors 0..8.
        let (g, gate) = gated(Some(5 * 4096));
        let dev: Arc<dyn BlockDevice> = g.clone();
        let q = Arc::new(WriteQueue::default());
        let results = burst(&q, dev, &gate, 10).await;
        // Results are in spawn order: sectors 9, 8, then 7..0.
        let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
        assert_eq!(failed[..2], [false, false]);
        assert!(failed[2..].iter().all(|&f| f), "{failed:?}");
        assert!(matches!(results[5], Err(BlockError::Injected { .. })));
        assert_eq!(q.state.lock().active, 0);
    }

    #[tokio::test]
    async fn a_new_device_in_the_slot_never_waits_behind_the_old_one() {
        let (g, gate) = gated(None);
        let old: Arc<dyn BlockDevice> = g.clone();
        let q = Arc::new(WriteQueue::default());
        // The old device's writes hang (gate closed) with both slots taken and one waiting.
        let stuck: Vec<_> = (0..=MAX_ACTIVE as u64)
            .map(|i| {
                let (q, dev) = (q.clone(), old.clone());
                tokio::spawn(async move { q.write(&dev, i * 4096, &[1u8; 4096]).await })
            })
            .collect();
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(q.state.lock().by_seq.len(), 1);
        // A write to the device now in the slot completes at once.
        let new: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new("new", 4096, 1024));
        q.write(&new, 0, &[9u8; 4096]).await.unwrap();
        let mut b = [0u8; 4096];
        new.read(0, &mut b).await.unwrap();
        assert!(b.iter().all(|&x| x == 9));
        gate.add_permits(1000);
        for t in stuck {
            t.await.unwrap().unwrap();
        }
        assert_eq!(q.state.lock().active, 0);
    }

    #[tokio::test]
    async fn a_waiting_write_whose_caller_goes_away_is_not_issued() {
        let (g, gate) = gated(None);
        let dev: Arc<dyn BlockDevice> = g.clone();
        let q = Arc::new(WriteQueue::default());
        let busy: Vec<_> = (0..MAX_ACTIVE as u64)
            .map(|i| {
                let (q, dev) = (q.clone(), dev.clone());
                tokio::spawn(async move { q.write(&dev, i * 4096, &[1u8; 4096]).await })
            })
            .collect();
        let (q2, dev2) = (q.clone(), dev.clone());
        let doomed = tokio::spawn(async move { q2.write(&dev2, 100 * 4096, &[2u8; 4096]).await });
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(q.state.lock().by_seq.len(), 1);
        doomed.abort();
        assert!(doomed.await.unwrap_err().is_cancelled());
        assert_eq!(q.state.lock().by_seq.len(), 0);
        gate.add_permits(1000);
        for t in busy {
            t.await.unwrap().unwrap();
        }
        assert!(g.writes.lock().iter().all(|&(o, _)| o != 100 * 4096));
        assert_eq!(q.state.lock().active, 0);
    }
}
