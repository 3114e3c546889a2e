//! Sequential readahead of object records, after ZFS's zfetch.
//!
//! Every object read reports the records it touches ([`Readahead::plan`]). Per object a few
//! *streams* are tracked (where the last reads of a sequential run ended); a read that
//! continues a stream advances it, one that continues nothing starts a new stream (the
//! least recently used one of the object is replaced). Once a stream has been continued
//! [`CONFIRM_HITS`] times, each further advance asks for the records after it to be read
//! ahead, over a window that starts at twice the read's length and doubles with every
//! advance up to [`MAX_WINDOW_BYTES`]. Random reads start streams that are never continued,
//! so they never prefetch.
//!
//! The records asked for are read, verified, decrypted and decompressed by background tasks
//! (see `ObjectStore::read` in `objects.rs`) into the decoded-record cache as *prefetched*
//! entries ([`super::recordcache::RecordCache::put_prefetched`]). Records being prefetched
//! are registered here ([`Readahead::begin`]) so a demand read of one of them waits for that
//! read instead of reading the record a second time; a demand read never waits for any
//! other record. The records in flight are bounded pool-wide ([`MAX_INFLIGHT_BYTES`]), the
//! objects tracked by [`MAX_OBJECTS`], their streams by [`MAX_STREAMS`]. A failed prefetch
//! is dropped: the demand read reads the record itself and reports its errors.

use super::bptr::BlockPtr;
use super::pool::Inner;
use crate::store::ObjectId;
use bytes::Bytes;
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::Shared;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Streams tracked per object.
pub const MAX_STREAMS: usize = 4;
/// Objects with streams tracked (the least recently read is forgotten first).
pub const MAX_OBJECTS: usize = 256;
/// Advances of a stream before it prefetches (a random read that happens to land just
/// after another one does not).
pub const CONFIRM_HITS: u32 = 2;
/// Largest readahead window, in bytes of records.
pub const MAX_WINDOW_BYTES: u64 = 8 << 20;
/// Most record bytes being prefetched at once, pool-wide.
pub const MAX_INFLIGHT_BYTES: usize = 32 << 20;
/// How far (in records) a read may start past a stream's end and still continue it:
/// concurrent reads of one sequential reader (kernel readahead with several FUSE reader
/// threads) may be served slightly out of order.
pub const MAX_SKIP: u64 = 8;

/// One sequential run of reads in an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stream {
    /// One past the highest record read.
    next: u64,
    /// One past the highest record prefetch was asked for.
    issued: u64,
    /// Current window in records (0 until the stream prefetches).
    window: u64,
    /// Advances seen.
    hits: u32,
    /// Last use (for replacement).
    tick: u64,
}

/// The streams of one object.
#[derive(Debug, Default)]
struct Object {
    streams: Vec<Stream>,
    tick: u64,
}

/// Stream detection (the state machine; no I/O).
#[derive(Debug, Default)]
pub struct Streams {
    objects: HashMap<u64, Object>,
    tick: u64,
}

impl Streams {
    /// Record a read of records `first..=last` of object `id` (records of `rec_bytes`
    /// bytes); returns the records to read ahead, if any (at most `budget` of them).
    pub fn access(
        &mut self,
        id: u64,
        first: u64,
        last: u64,
        rec_bytes: u64,
        budget: u64,
    ) -> Option<Range<u64>> {
        self.tick += 1;
        let tick = self.tick;
        if !self.objects.contains_key(&id) && self.objects.len() >= MAX_OBJECTS {
            let oldest = self
                .objects
                .iter()
                .min_by_key(|(_, o)| o.tick)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.objects.remove(&k);
            }
        }
        let obj = self.objects.entry(id).or_default();
        obj.tick = tick;
        // A read continues a stream if it starts in the stream's last record or at most
        // MAX_SKIP records after its end.
        let hit = obj
            .streams
            .iter_mut()
            .find(|s| first + 1 >= s.next && first <= s.next + MAX_SKIP);
        let Some(s) = hit else {
            let fresh = Stream {
                next: last + 1,
                issued: last + 1,
                window: 0,
                hits: 0,
                tick,
            };
            if obj.streams.len() < MAX_STREAMS {
                obj.streams.push(fresh);
            } else if let Some(old) = obj.streams.iter_mut().min_by_key(|s| s.tick) {
                *old = fresh;
            }
            return None;
        };
        s.tick = tick;
        if last < s.next {
            // Again inside records already read (small reads of one record): no news.
            return None;
        }
        s.next = last + 1;
        s.hits += 1;
        if s.hits < CONFIRM_HITS {
            return None;
        }
        let max = (MAX_WINDOW_BYTES / rec_bytes.max(1)).max(1);
        s.window = if s.window == 0 {
            2 * (last - first + 1)
        } else {
            2 * s.window
        }
        .min(max);
        let from = s.issued.max(s.next);
        let to = (s.next + s.window).min(from.saturating_add(budget));
        if from >= to {
            return None;
        }
        s.issued = to;
        Some(from..to)
    }

    /// Objects tracked.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    /// Streams tracked for object `id`.
    pub fn streams_of(&self, id: u64) -> usize {
        self.objects.get(&id).map_or(0, |o| o.streams.len())
    }
}

/// The decoded record a prefetch hands to readers waiting for it (`Err`: it failed).
pub type Pending = Shared<oneshot::Receiver<Bytes>>;

/// Records being prefetched and the bytes they hold (shared with the prefetch tasks).
#[derive(Debug, Default)]
struct InFlight {
    /// By (address, birth).
    records: Mutex<HashMap<(u64, u64), Pending>>,
    /// Record bytes being prefetched or reserved for it.
    bytes: AtomicUsize,
}

/// Readahead state of a pool: streams, records in flight.
#[derive(Debug, Default)]
pub struct Readahead {
    streams: Mutex<Streams>,
    inflight: Arc<InFlight>,
}

/// The records a read asks to prefetch, with their room in the bound reserved; what is
/// not handed to a [`Ticket`] is given back when the plan is dropped.
#[derive(Debug)]
pub struct Plan {
    inflight: Arc<InFlight>,
    /// The records to read ahead.
    pub records: Range<u64>,
    rec_bytes: usize,
    reserved: usize,
}

impl Plan {
    /// Register a prefetch of extent (`addr`, `birth`), taking one record's room from the
    /// plan; `None` if one is in flight already or the room is used up.
    pub fn begin(&mut self, addr: u64, birth: u64) -> Option<Ticket> {
        if self.reserved < self.rec_bytes {
            return None;
        }
        let key = (addr, birth);
        let mut m = self.inflight.records.lock();
        if m.contains_key(&key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        m.insert(key, rx.shared());
        self.reserved -= self.rec_bytes;
        Some(Ticket {
            inflight: self.inflight.clone(),
            key,
            bytes: self.rec_bytes,
            tx: Some(tx),
        })
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        self.inflight
            .bytes
            .fetch_sub(self.reserved, Ordering::AcqRel);
    }
}

/// One record being prefetched: completing it (or dropping it, when the read failed)
/// wakes the readers waiting for it and releases its room in the bound.
#[derive(Debug)]
pub struct Ticket {
    inflight: Arc<InFlight>,
    key: (u64, u64),
    bytes: usize,
    tx: Option<oneshot::Sender<Bytes>>,
}

impl Ticket {
    /// Hand the decoded record to waiting readers.
    pub fn complete(mut self, data: Bytes) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(data);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.inflight.records.lock().remove(&self.key);
        self.inflight.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        // Dropping `tx` unsent tells waiters the prefetch failed.
    }
}

impl Readahead {
    /// Record a read of records `first..=last` (of `rec_bytes` bytes) of object `id`;
    /// if it continues a sequential stream, the records to read ahead, with room reserved.
    pub fn plan(&self, id: u64, first: u64, last: u64, rec_bytes: u64) -> Option<Plan> {
        let rec = usize::try_from(rec_bytes).ok()?.max(1);
        let free = MAX_INFLIGHT_BYTES.saturating_sub(self.inflight.bytes.load(Ordering::Acquire));
        let budget = (free / rec) as u64;
        let r = self
            .streams
            .lock()
            .access(id, first, last, rec_bytes, budget)?;
        let reserved = (r.end - r.start) as usize * rec;
        self.inflight.bytes.fetch_add(reserved, Ordering::AcqRel);
        Some(Plan {
            inflight: self.inflight.clone(),
            records: r,
            rec_bytes: rec,
            reserved,
        })
    }

    /// The prefetch of extent (`addr`, `birth`) in flight, if any.
    pub fn pending(&self, addr: u64, birth: u64) -> Option<Pending> {
        self.inflight.records.lock().get(&(addr, birth)).cloned()
    }

    /// Record bytes being prefetched now (or reserved for it).
    pub fn inflight_bytes(&self) -> usize {
        self.inflight.bytes.load(Ordering::Acquire)
    }
}

/// Keeps the extents of the tree a read found its records in from being reused while a
/// prefetch of them runs (as the read's own guard does; see `Inner::reader_root`).
pub(crate) struct Pin {
    inner: Arc<Inner>,
    txg: u64,
}

impl Pin {
    /// Register a reader of open txg `txg`'s tree; the caller holds a reader guard of
    /// the same txg (so it has been registered all along).
    pub(crate) fn new(inner: &Arc<Inner>, txg: u64) -> Self {
        *inner.readers.lock().entry(txg).or_insert(0) += 1;
        Pin {
            inner: inner.clone(),
            txg,
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut r = self.inner.readers.lock();
        if let Some(n) = r.get_mut(&self.txg) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.txg);
            }
        }
    }
}

/// Read, verify and decode record `bp` of object `id` (at byte `rstart`) in a background
/// task into the record cache as a prefetched entry, then hand it to `ticket`'s waiters.
/// Without a tokio runtime, or once the pool is closing, nothing is read.
pub(crate) fn spawn_prefetch(
    inner: &Arc<Inner>,
    pin: Pin,
    id: ObjectId,
    rstart: u64,
    bp: BlockPtr,
    ticket: Ticket,
) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let inner = inner.clone();
    rt.spawn(async move {
        let _pin = pin;
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        match super::heal::reading(id, rstart, inner.io.read_data(&bp)).await {
            Ok(d) => {
                let d = Bytes::from(d);
                inner
                    .datapath
                    .cache
                    .put_prefetched(bp.addr, bp.birth, d.clone());
                ticket.complete(d);
            }
            // The demand read of the record reads it again and reports the error.
            Err(e) => tracing::debug!(object = id, offset = rstart, error = %e, "prefetch failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const RS: u64 = 128 << 10;
    const BIG: u64 = u64::MAX / 4;

    #[test]
    fn sequential_reads_prefetch_after_confirmation_and_the_window_grows() {
        let mut s = Streams::default();
        // 1 MiB reads: 8 records each.
        assert_eq!(s.access(1, 0, 7, RS, BIG), None, "a new stream");
        assert_eq!(s.access(1, 8, 15, RS, BIG), None, "first advance");
        // Confirmed: window 2 x 8 records after the read.
        assert_eq!(s.access(1, 16, 23, RS, BIG), Some(24..40));
        // Doubled to 32: up to 32 + 32, from where it left off.
        assert_eq!(s.access(1, 24, 31, RS, BIG), Some(40..64));
        // Capped at MAX_WINDOW_BYTES (64 records of 128 KiB).
        assert_eq!(s.access(1, 32, 39, RS, BIG), Some(64..104));
        assert_eq!(s.access(1, 40, 47, RS, BIG), Some(104..112));
        assert_eq!(s.access(1, 48, 55, RS, BIG), Some(112..120));
    }

    #[test]
    fn small_reads_inside_a_record_are_no_news_and_a_new_record_advances() {
        let mut s = Streams::default();
        assert_eq!(s.access(1, 0, 0, RS, BIG), None);
        for _ in 0..31 {
            assert_eq!(s.access(1, 0, 0, RS, BIG), None);
        }
        assert_eq!(s.access(1, 1, 1, RS, BIG), None, "first advance");
        assert_eq!(s.access(1, 1, 1, RS, BIG), None);
        assert_eq!(s.access(1, 2, 2, RS, BIG), Some(3..5));
        assert_eq!(s.access(1, 3, 3, RS, BIG), Some(5..8));
        // Unaligned reads that start in the last record read continue the stream too.
        assert_eq!(s.access(1, 3, 4, RS, BIG), Some(8..13));
    }

    #[test]
    fn random_reads_never_prefetch_and_streams_stay_bounded() {
        let mut s = Streams::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let records = 8192; // a 1 GiB file
        let mut prefetched = 0;
        for _ in 0..100_000 {
            let r = rng.random_range(0..records);
            if s.access(1, r, r, RS, BIG).is_some() {
                prefetched += 1;
            }
            assert!(s.streams_of(1) <= MAX_STREAMS);
        }
        // Three random reads continuing one stream are rare (about 2.5 in 100 000).
        assert!(
            prefetched <= 10,
            "random reads prefetched {prefetched} times"
        );
    }

    #[test]
    fn objects_are_bounded_and_streams_are_per_object() {
        let mut s = Streams::default();
        for id in 0..(MAX_OBJECTS as u64 * 2) {
            s.access(id, 0, 0, RS, BIG);
            assert!(s.objects() <= MAX_OBJECTS);
        }
        // Interleaved sequential readers of two objects each get their own stream.
        let mut got = Vec::new();
        for k in 0..4 {
            got.push(s.access(9000, k * 8, k * 8 + 7, RS, BIG));
            got.push(s.access(9001, k * 8, k * 8 + 7, RS, BIG));
        }
        assert_eq!(got[4], Some(24..40));
        assert_eq!(got[5], Some(24..40));
    }

    #[test]
    fn several_streams_in_one_object_and_the_oldest_is_replaced() {
        let mut s = Streams::default();
        // Two sequential readers of one object at different places.
        for k in 0..3 {
            s.access(1, k, k, RS, BIG);
            s.access(1, 1000 + k, 1000 + k, RS, BIG);
        }
        assert_eq!(s.streams_of(1), 2);
        assert!(s.access(1, 3, 3, RS, BIG).is_some());
        assert!(s.access(1, 1003, 1003, RS, BIG).is_some());
        // Four more places: the two streams are replaced, and the reader at 4 starts over.
        for k in 0..4 {
            s.access(1, 5000 + 100 * k, 5000 + 100 * k, RS, BIG);
        }
        assert_eq!(s.streams_of(1), MAX_STREAMS);
        assert_eq!(s.access(1, 4, 4, RS, BIG), None);
    }

    #[test]
    fn a_read_slightly_out_of_order_continues_the_stream() {
        let mut s = Streams::default();
        s.access(1, 0, 7, RS, BIG);
        // The reads of 8..15 and 16..23 come in reverse order: the later one continues
        // the stream, the earlier one starts a stream of its own.
        assert_eq!(s.access(1, 16, 23, RS, BIG), None);
        assert_eq!(s.access(1, 8, 15, RS, BIG), None);
        assert_eq!(s.streams_of(1), 2);
        assert_eq!(s.access(1, 24, 31, RS, BIG), Some(32..48));
        // Far beyond the end: a new stream.
        assert_eq!(s.access(1, 200, 207, RS, BIG), None);
        assert_eq!(s.streams_of(1), 3);
    }

    #[test]
    fn the_budget_limits_what_is_asked_and_the_rest_follows_later() {
        let mut s = Streams::default();
        s.access(1, 0, 7, RS, BIG);
        s.access(1, 8, 15, RS, BIG);
        assert_eq!(s.access(1, 16, 23, RS, 4), Some(24..28));
        assert_eq!(s.access(1, 24, 31, RS, 0), None);
        assert_eq!(s.access(1, 32, 39, RS, BIG), Some(40..104));
    }

    #[test]
    fn in_flight_records_are_bounded_and_registered_once() {
        let ra = Readahead::default();
        let rs = RS as usize;
        let mut plans = Vec::new();
        for k in 0..100 {
            if let Some(p) = ra.plan(1, k * 8, k * 8 + 7, RS) {
                plans.push(p);
            }
            assert!(ra.inflight_bytes() <= MAX_INFLIGHT_BYTES);
        }
        let planned: u64 = plans.iter().map(|p| p.records.end - p.records.start).sum();
        assert_eq!(planned as usize * rs, ra.inflight_bytes());
        assert_eq!(ra.inflight_bytes(), MAX_INFLIGHT_BYTES, "nothing completed");
        drop(plans);
        assert_eq!(ra.inflight_bytes(), 0, "unused reservations are given back");

        // A stream of one-record reads: the plan covers records 3..5.
        for k in 0..2 {
            assert!(ra.plan(2, k, k, RS).is_none());
        }
        let mut p = ra.plan(2, 2, 2, RS).expect("confirmed stream");
        assert_eq!(p.records, 3..5);
        assert_eq!(ra.inflight_bytes(), 2 * rs);
        let t = p.begin(10, 3).expect("first");
        assert!(p.begin(10, 3).is_none(), "already in flight");
        drop(p);
        assert_eq!(ra.inflight_bytes(), rs, "the ticket keeps its room");
        let mut waiter = ra.pending(10, 3).expect("pending");
        assert!((&mut waiter).now_or_never().is_none());
        t.complete(Bytes::from(vec![5; 4]));
        assert_eq!(
            waiter.now_or_never().expect("done").expect("sent").as_ref(),
            &[5; 4]
        );
        assert!(ra.pending(10, 3).is_none());
        assert_eq!(ra.inflight_bytes(), 0);

        // A dropped (failed) prefetch tells its waiters.
        let mut p = ra.plan(2, 3, 3, RS).expect("stream goes on");
        let t = p.begin(11, 3).expect("first");
        let waiter = ra.pending(11, 3).expect("pending");
        drop(t);
        assert!(waiter.now_or_never().expect("done").is_err());
        drop(p);
        assert_eq!(ra.inflight_bytes(), 0);
    }
}

#[cfg(test)]
#[path = "readahead_tests.rs"]
mod pool_tests;
