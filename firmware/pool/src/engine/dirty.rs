//! Dirty records: object data written in pieces smaller than a record, held in memory
//! until the transaction group commits.
//!
//! A write that does not cover a whole record does not re-encode the record at once: the
//! record becomes a [`DirtyRecord`] of 4 KiB pages (written pages in memory, the others
//! still those of the record's extent, its *base*), later writes, punches and truncates of
//! the same txg change the pages, and the record is encoded and written once: when the
//! commit freezes the txg (`Inner::flush_dirty`, called from `Inner::commit`), or as soon
//! as every page of it has been written (it is then as good as a full-record write),
//! whichever comes first. The base is read (verified and decoded, through the record
//! cache) when the record becomes dirty, so an unreadable record fails the write that
//! touches it rather than the commit; the flush takes it from the cache again, where the
//! flushed record's new contents go too, for the next txg's writes.
//!
//! Visibility: the records of the open txg live in a [`DirtyView`], published together
//! with the tree root readers see (`Inner::readable`): a batch stages its changes in a
//! [`Staged`] overlay and publishes them with its root, the commit publishes the flushed
//! tree and an empty view at once, so a reader that takes both under the view's lock sees
//! one consistent state.
//!
//! Pages are shared (`Arc`) between the published view and a batch's staged copy, so a
//! 4 KiB write into a dirty record copies one page, not the record.

use super::bptr::BlockPtr;
use crate::store::ObjectId;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Page size of dirty records.
pub const PAGE: usize = 4096;

/// Smallest default dirty limit.
pub const MIN_DIRTY_LIMIT: u64 = 64 << 20;
/// Largest default dirty limit (ZFS's `zfs_dirty_data_max_max`).
pub const MAX_DIRTY_LIMIT: u64 = 4 << 30;

/// The default dirty limit (`Tunables::dirty_limit_bytes`) for a machine with `mem_total`
/// bytes of physical memory (`None`: unknown): a tenth of it, as ZFS's
/// `zfs_dirty_data_max`, within [`MIN_DIRTY_LIMIT`, `MAX_DIRTY_LIMIT`]. A larger open txg
/// lets small random writes into the same record coalesce before the record is encoded.
pub fn default_dirty_limit_for(mem_total: Option<u64>) -> u64 {
    mem_total.map_or(MIN_DIRTY_LIMIT, |m| {
        (m / 10).clamp(MIN_DIRTY_LIMIT, MAX_DIRTY_LIMIT)
    })
}

/// [`default_dirty_limit_for`] this machine's `/proc/meminfo`.
pub fn default_dirty_limit() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").ok();
    default_dirty_limit_for(
        text.as_deref()
            .and_then(super::recordcache::mem_total_bytes),
    )
}

/// A record key: object and record index.
pub type RecKey = (ObjectId, u64);

/// One 4 KiB page of a dirty record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Page {
    /// As in the record's extent when it became dirty ([`DirtyRecord::base`]).
    Base,
    /// Zeroes.
    Zero,
    /// These bytes (`PAGE` of them).
    Data(Arc<Vec<u8>>),
    /// These bytes (`PAGE` of them), a slice of the buffer of a whole-record write
    /// ([`DirtyRecord::whole`]): held without a copy.
    Shared(Bytes),
}

/// One record's pending contents: written pages in memory, the rest from the extent the
/// record had when it became dirty (its *base*, unchanged in the tree while the record is
/// dirty: every change of it goes through the dirty record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyRecord {
    base: Option<BlockPtr>,
    pages: Vec<Page>,
    /// Per page, the byte range `[lo, hi)` written since the record became dirty (one
    /// contiguous range, grown by adjoining writes: enough to see appends complete a
    /// page). A record whose pages are all written entirely no longer depends on its base.
    written: Vec<(u16, u16)>,
    /// The whole record's contents as one buffer, while the record is exactly what one
    /// whole-record write left ([`DirtyRecord::whole`]; dropped by any later change).
    whole: Option<Bytes>,
    /// Whether `whole` is a buffer of its own, not a slice of a larger one: the record
    /// cache may then keep it as it is (see [`DirtyRecord::whole`]).
    whole_own: bool,
}

/// The length of `data` without its trailing zero bytes, found 64 bytes at a time.
pub(crate) fn trimmed_len(data: &[u8]) -> usize {
    let mut end = data.len();
    while end >= 64 && data[end - 64..end].iter().fold(0u8, |a, &b| a | b) == 0 {
        end -= 64;
    }
    while end > 0 && data[end - 1] == 0 {
        end -= 1;
    }
    end
}

/// Bytes `[a, a + PAGE)` of `base` (zero-extended).
fn base_page(base: &[u8], pi: usize) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    let a = (pi * PAGE).min(base.len());
    let b = ((pi + 1) * PAGE).min(base.len());
    p[..b - a].copy_from_slice(&base[a..b]);
    p
}

impl DirtyRecord {
    /// A record of `record_size` bytes made dirty with the extent `base` (`None`: a hole).
    pub fn new(record_size: usize, base: Option<BlockPtr>) -> Self {
        let n = record_size / PAGE;
        let fill = if base.is_some() {
            Page::Base
        } else {
            Page::Zero
        };
        DirtyRecord {
            base,
            pages: vec![fill; n],
            written: vec![(0, 0); n],
            whole: None,
            whole_own: false,
        }
    }

    /// A record written whole by one write: `data` (the record size, a multiple of
    /// [`PAGE`]) is held as it is, its pages slices of it (no copy). `own`: `data` is a
    /// buffer of its own (the write's whole buffer), not a slice of a larger one, so
    /// keeping it (in the record cache) pins no more memory than its length.
    ///
    /// # Panics
    /// If `data` is not a whole number of pages (callers pass whole records).
    pub fn whole(data: Bytes, own: bool) -> Self {
        assert!(
            data.len().is_multiple_of(PAGE),
            "a whole record is whole pages"
        );
        let n = data.len() / PAGE;
        DirtyRecord {
            base: None,
            pages: (0..n)
                .map(|i| Page::Shared(data.slice(i * PAGE..(i + 1) * PAGE)))
                .collect(),
            written: vec![(0, PAGE as u16); n],
            whole: Some(data),
            whole_own: own,
        }
    }

    /// The record's contents as one buffer if it is exactly what one whole-record write
    /// left (see [`DirtyRecord::whole`]).
    pub fn whole_data(&self) -> Option<&Bytes> {
        self.whole.as_ref()
    }

    /// Whether [`DirtyRecord::whole_data`] is a buffer of its own (see
    /// [`DirtyRecord::whole`]).
    pub fn whole_is_own(&self) -> bool {
        self.whole.is_some() && self.whole_own
    }

    /// The extent the record had when it became dirty.
    pub fn base(&self) -> Option<&BlockPtr> {
        self.base.as_ref()
    }

    /// Whether some page still comes from the base (reading or encoding the record then
    /// needs the base's decoded bytes).
    pub fn uses_base(&self) -> bool {
        self.base.is_some() && self.pages.contains(&Page::Base)
    }

    /// Whether a write or zeroing of `[off, off + len)` needs the base's bytes (it covers
    /// part of a page that still comes from the base).
    pub fn needs_base_for(&self, off: usize, len: usize) -> bool {
        if len == 0 {
            return false;
        }
        let end = off + len;
        let edge = |pos: usize, partial: bool| partial && self.pages[pos / PAGE] == Page::Base;
        edge(off, !off.is_multiple_of(PAGE) || len < PAGE)
            || edge(end - 1, !end.is_multiple_of(PAGE))
    }

    /// Record size in bytes.
    pub fn len(&self) -> usize {
        self.pages.len() * PAGE
    }

    /// Whether the record has no pages (never for a real record size).
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Memory held by the record's pages.
    pub fn mem_bytes(&self) -> u64 {
        self.pages
            .iter()
            .filter(|p| matches!(p, Page::Data(_) | Page::Shared(_)))
            .count() as u64
            * PAGE as u64
    }

    /// Whether every byte has been written since the record became dirty.
    pub fn fully_written(&self) -> bool {
        self.written.iter().all(|&w| w == (0, PAGE as u16))
    }

    /// Note that `[a, b)` of page `pi` was written.
    fn mark_written(&mut self, pi: usize, a: usize, b: usize) {
        let (a, b) = (a as u16, b as u16);
        let w = &mut self.written[pi];
        if w.0 == w.1 || (a <= w.1 && b >= w.0) {
            *w = if w.0 == w.1 {
                (a, b)
            } else {
                (w.0.min(a), w.1.max(b))
            };
        } else if b - a > w.1 - w.0 {
            *w = (a, b);
        }
    }

    /// Copy `src` (`None`: zeroes) to byte `off` of the record. `base`: the base's
    /// decoded bytes, needed when [`DirtyRecord::needs_base_for`] says so.
    ///
    /// # Panics
    /// If the range is outside the record (callers split by record).
    fn put(
        &mut self,
        off: usize,
        len: usize,
        src: Option<&[u8]>,
        base: Option<&[u8]>,
        mark_written: bool,
    ) {
        assert!(off + len <= self.len(), "write outside the dirty record");
        if len > 0 {
            self.whole = None;
        }
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let pi = pos / PAGE;
            let in_page = pos - pi * PAGE;
            let n = (PAGE - in_page).min(end - pos);
            let chunk = src.map(|s| &s[pos - off..pos - off + n]);
            if in_page == 0 && n == PAGE {
                self.pages[pi] = match chunk {
                    None => Page::Zero,
                    Some(c) => Page::Data(Arc::new(c.to_vec())),
                };
            } else {
                let cur = std::mem::replace(&mut self.pages[pi], Page::Zero);
                let mut page = match cur {
                    Page::Data(p) => p,
                    Page::Shared(b) => Arc::new(b.to_vec()),
                    Page::Zero => Arc::new(vec![0u8; PAGE]),
                    Page::Base => Arc::new(base_page(base.unwrap_or(&[]), pi)),
                };
                let dst = &mut Arc::make_mut(&mut page)[in_page..in_page + n];
                match chunk {
                    Some(c) => dst.copy_from_slice(c),
                    None => dst.fill(0),
                }
                self.pages[pi] = Page::Data(page);
            }
            if mark_written {
                self.mark_written(pi, in_page, in_page + n);
            }
            pos += n;
        }
    }

    /// Write `src` at byte `off` of the record (`base`: see [`DirtyRecord::needs_base_for`]).
    pub fn write(&mut self, off: usize, src: &[u8], base: Option<&[u8]>) {
        self.put(off, src.len(), Some(src), base, true);
    }

    /// Zero `len` bytes at `off` (`base`: see [`DirtyRecord::needs_base_for`]).
    pub fn zero(&mut self, off: usize, len: usize, base: Option<&[u8]>) {
        self.put(off, len, None, base, false);
    }

    /// Copy bytes `[off, off + out.len())` of the record into `out`; `base`: the base's
    /// decoded bytes when [`DirtyRecord::uses_base`].
    pub fn read(&self, off: usize, out: &mut [u8], base: Option<&[u8]>) {
        let base = base.unwrap_or(&[]);
        let mut pos = off;
        let end = off + out.len();
        while pos < end {
            let pi = pos / PAGE;
            let in_page = pos - pi * PAGE;
            let n = (PAGE - in_page).min(end - pos);
            let dst = &mut out[pos - off..pos - off + n];
            match &self.pages[pi] {
                Page::Data(p) => dst.copy_from_slice(&p[in_page..in_page + n]),
                Page::Shared(p) => dst.copy_from_slice(&p[in_page..in_page + n]),
                Page::Zero => dst.fill(0),
                Page::Base => {
                    let a = pos.min(base.len());
                    let b = (pos + n).min(base.len());
                    dst[..b - a].copy_from_slice(&base[a..b]);
                    dst[b - a..].fill(0);
                }
            }
            pos += n;
        }
    }

    /// The record's logical contents without trailing zero bytes (what gets encoded);
    /// `base` as for [`DirtyRecord::read`].
    pub fn contents(&self, base: Option<&[u8]>) -> Vec<u8> {
        // Zero pages at the end are never copied (a small file's record is one page or
        // two, not the record size), and the trailing zeroes are found a block at a time.
        let end = self
            .pages
            .iter()
            .rposition(|p| *p != Page::Zero)
            .map_or(0, |i| (i + 1) * PAGE);
        let mut v = vec![0u8; end];
        self.read(0, &mut v, base);
        v.truncate(trimmed_len(&v));
        v
    }
}

/// The dirty records of the open txg, as readers see them.
#[derive(Debug, Default)]
pub struct DirtyView {
    recs: BTreeMap<RecKey, Arc<DirtyRecord>>,
    mem: u64,
}

impl DirtyView {
    /// Number of dirty records.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether no record is dirty.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Page memory held.
    pub fn mem_bytes(&self) -> u64 {
        self.mem
    }

    /// One record.
    pub fn get(&self, key: &RecKey) -> Option<&Arc<DirtyRecord>> {
        self.recs.get(key)
    }

    /// The dirty records of object `id` with index in `[first, last]`.
    pub fn range(&self, id: ObjectId, first: u64, last: u64) -> Vec<(u64, Arc<DirtyRecord>)> {
        self.recs
            .range((id, first)..=(id, last))
            .map(|(k, r)| (k.1, r.clone()))
            .collect()
    }

    /// Every dirty record (for the commit's flush).
    pub fn all(&self) -> Vec<(RecKey, Arc<DirtyRecord>)> {
        self.recs.iter().map(|(k, r)| (*k, r.clone())).collect()
    }

    /// Apply a batch's staged changes.
    pub fn publish(&mut self, staged: Staged) {
        for (k, v) in staged.changes {
            let old = match v {
                Some(r) => {
                    self.mem += r.mem_bytes();
                    self.recs.insert(k, Arc::new(r))
                }
                None => self.recs.remove(&k),
            };
            if let Some(o) = old {
                self.mem -= o.mem_bytes();
            }
        }
    }

    /// Forget every record (the commit wrote them into the tree).
    pub fn clear(&mut self) {
        self.recs.clear();
        self.mem = 0;
    }
}

/// A batch's changes to the dirty records, on top of the published [`DirtyView`].
#[derive(Debug, Default)]
pub struct Staged {
    /// `None`: the record is no longer dirty (written to the tree, dropped or deleted).
    changes: BTreeMap<RecKey, Option<DirtyRecord>>,
}

impl Staged {
    /// Whether the batch changed no dirty record.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The record as the batch sees it: staged, else published.
    pub fn get<'a>(&'a self, view: &'a DirtyView, key: &RecKey) -> Option<&'a DirtyRecord> {
        match self.changes.get(key) {
            Some(v) => v.as_ref(),
            None => view.get(key).map(|a| &**a),
        }
    }

    /// Whether the record is dirty as the batch sees it.
    pub fn contains(&self, view: &DirtyView, key: &RecKey) -> bool {
        self.get(view, key).is_some()
    }

    /// A mutable staged copy of a dirty record (copied from the view on first use: the
    /// page table only, pages stay shared until written).
    pub fn get_mut(&mut self, view: &DirtyView, key: RecKey) -> Option<&mut DirtyRecord> {
        match self.changes.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut().as_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let r = view.get(&key)?;
                e.insert(Some((**r).clone())).as_mut()
            }
        }
    }

    /// Make `key` dirty with contents `rec`.
    pub fn insert(&mut self, key: RecKey, rec: DirtyRecord) -> &mut DirtyRecord {
        let slot = self.changes.entry(key).or_default();
        *slot = Some(rec);
        slot.as_mut().expect("just set")
    }

    /// `key` is no longer dirty.
    pub fn remove(&mut self, key: RecKey) {
        self.changes.insert(key, None);
    }

    /// Remove every dirty record of `id` with index `>= from` (and `< to` if given).
    pub fn remove_range(&mut self, view: &DirtyView, id: ObjectId, from: u64, to: Option<u64>) {
        let hi = to.map_or(u64::MAX, |t| t.saturating_sub(1));
        if to.is_some_and(|t| t <= from) {
            return;
        }
        let mut keys: Vec<RecKey> = view
            .recs
            .range((id, from)..=(id, hi))
            .map(|(k, _)| *k)
            .collect();
        keys.extend(
            self.changes
                .range((id, from)..=(id, hi))
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| *k),
        );
        for k in keys {
            self.changes.insert(k, None);
        }
    }

    /// Page memory the batch adds to the view when published (negative: it frees).
    pub fn mem_delta(&self, view: &DirtyView) -> i64 {
        self.changes
            .iter()
            .map(|(k, v)| {
                let new = v.as_ref().map_or(0, DirtyRecord::mem_bytes) as i64;
                let old = view.get(k).map_or(0, |r| r.mem_bytes()) as i64;
                new - old
            })
            .sum()
    }

    /// Records the batch makes dirty that were not dirty before.
    pub fn new_records(&self, view: &DirtyView) -> u64 {
        self.changes
            .iter()
            .filter(|(k, v)| v.is_some() && view.get(k).is_none())
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: usize = 8 * PAGE;

    fn bp() -> BlockPtr {
        BlockPtr {
            addr: 1,
            birth: 1,
            lsize: 0,
            psize: 0,
            asize: 0,
            crc: 0,
            comp: 0,
            kind: super::super::bptr::BlockKind::Data,
        }
    }

    #[test]
    fn writes_zeroes_and_reads_by_page() {
        let mut base = vec![1u8; 3 * PAGE + 10];
        base[PAGE..2 * PAGE].fill(0);
        let mut r = DirtyRecord::new(RS, Some(bp()));
        assert!(r.uses_base());
        assert_eq!(r.mem_bytes(), 0, "base pages hold no memory");
        let mut out = vec![9u8; RS];
        r.read(0, &mut out, Some(&base));
        assert_eq!(&out[..base.len()], &base[..]);
        assert!(out[base.len()..].iter().all(|&b| b == 0));

        assert!(r.needs_base_for(PAGE - 2, 4));
        assert!(!r.needs_base_for(PAGE, PAGE));
        r.write(PAGE - 2, &[5, 5, 5, 5], Some(&base));
        assert_eq!(r.mem_bytes(), 2 * PAGE as u64);
        r.zero(2 * PAGE, PAGE, None);
        let mut out = vec![0u8; 8];
        r.read(PAGE - 4, &mut out, Some(&base));
        assert_eq!(out, [1, 1, 5, 5, 5, 5, 0, 0]);
        let c = r.contents(Some(&base));
        assert_eq!(c.len(), 3 * PAGE + 10);
        assert!(c[2 * PAGE..3 * PAGE].iter().all(|&b| b == 0));
        assert_eq!(c[3 * PAGE], 1);
        assert!(!r.fully_written());
        r.write(0, &vec![3u8; RS], None);
        assert!(r.fully_written());
        assert!(!r.uses_base());
        assert_eq!(r.contents(None), vec![3u8; RS]);
        r.zero(0, RS, None);
        assert!(r.contents(None).is_empty());
        assert_eq!(r.mem_bytes(), 0);

        // Unaligned appends complete pages; a partly written page does not count.
        let mut a = DirtyRecord::new(2 * PAGE, None);
        a.write(0, &[1u8; 3000], None);
        a.write(3000, &[1u8; 3000], None);
        assert!(!a.fully_written());
        a.write(6000, &[1u8; 2 * PAGE - 6000], None);
        assert!(a.fully_written());

        // A hole made dirty: zero pages, no base needed.
        let mut h = DirtyRecord::new(RS, None);
        assert!(!h.uses_base() && !h.needs_base_for(1, 1));
        h.write(5, &[7], None);
        assert_eq!(h.contents(None), [0, 0, 0, 0, 0, 7]);
    }

    #[test]
    fn default_dirty_limit_is_a_tenth_of_memory_within_bounds() {
        assert_eq!(default_dirty_limit_for(Some(20 << 30)), 2 << 30);
        assert_eq!(default_dirty_limit_for(Some(100 << 30)), MAX_DIRTY_LIMIT);
        assert_eq!(default_dirty_limit_for(Some(256 << 20)), MIN_DIRTY_LIMIT);
        assert_eq!(default_dirty_limit_for(None), MIN_DIRTY_LIMIT);
    }

    #[test]
    fn staged_changes_stay_private_until_published() {
        let mut view = DirtyView::default();
        let mut s = Staged::default();
        let mut r = DirtyRecord::new(RS, None);
        r.write(0, &[1u8; 100], None);
        s.insert((7, 0), r);
        assert_eq!(s.mem_delta(&view), PAGE as i64);
        assert_eq!(s.new_records(&view), 1);
        view.publish(s);
        assert_eq!(view.mem_bytes(), PAGE as u64);

        let mut s = Staged::default();
        s.get_mut(&view, (7, 0))
            .expect("dirty")
            .write(0, &[2u8; 10], None);
        // The published page is untouched.
        let mut b = [0u8; 1];
        view.get(&(7, 0)).expect("dirty").read(0, &mut b, None);
        assert_eq!(b, [1]);
        s.get(&view, &(7, 0)).expect("dirty").read(0, &mut b, None);
        assert_eq!(b, [2]);
        s.insert((7, 3), DirtyRecord::new(RS, None));
        s.insert((8, 0), DirtyRecord::new(RS, Some(bp())));
        s.remove_range(&view, 7, 0, None);
        assert!(!s.contains(&view, &(7, 0)) && !s.contains(&view, &(7, 3)));
        assert!(s.contains(&view, &(8, 0)));
        view.publish(s);
        assert_eq!(view.len(), 1);
        assert_eq!(view.range(8, 0, 10).len(), 1);
        assert!(view.range(7, 0, u64::MAX).is_empty());
    }
}
