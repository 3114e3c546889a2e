//! The volatile write cache model: what a drive holds in RAM until a flush, and what of it a
//! power cut leaves on the media.
//!
//! Writes without FUA are kept here, per sector, and shadow the media for reads. A flush destages
//! them. A crash decides, for each write still pending, whether it is kept, dropped or torn (a
//! random subset of its sectors persists), then applies the survivors in a random order (or in
//! issue order, see [`CrashPolicy::reorder`]). Everything random comes from the caller's RNG, so a
//! seed reproduces a crash exactly.

use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The content of one sector held by the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sector {
    /// All zeroes (write zeroes, deallocate).
    Zero,
    /// These bytes (exactly one block).
    Data(Arc<[u8]>),
}

/// One write the device has accepted but not yet made durable.
#[derive(Debug)]
struct PendingWrite {
    /// First sector (block index).
    first: u64,
    /// Each sector's data; `None` where a later durable (FUA) write has replaced it.
    sectors: Vec<Option<Sector>>,
}

/// How a crash treats the writes still in the volatile cache.
///
/// Each pending write independently draws one outcome with these relative weights. A write of a
/// single sector cannot tear: it is kept or dropped with the weights `keep : drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPolicy {
    /// Weight of "the whole write persisted".
    pub keep: u32,
    /// Weight of "nothing of the write persisted".
    pub drop: u32,
    /// Weight of "a random non-empty, proper subset of its sectors persisted".
    pub tear: u32,
    /// Apply surviving writes in a random order (true), so an older cached write to a sector can
    /// land after a newer one, or in issue order (false), so the newest surviving version of a
    /// sector always wins.
    pub reorder: bool,
}

impl Default for CrashPolicy {
    /// Keep, drop and tear equally likely; surviving writes land in a random order.
    fn default() -> Self {
        CrashPolicy {
            keep: 1,
            drop: 1,
            tear: 1,
            reorder: true,
        }
    }
}

impl CrashPolicy {
    /// Every pending write persists (a drive with power-loss protection).
    pub const KEEP_ALL: CrashPolicy = CrashPolicy {
        keep: 1,
        drop: 0,
        tear: 0,
        reorder: false,
    };
    /// No pending write persists.
    pub const DROP_ALL: CrashPolicy = CrashPolicy {
        keep: 0,
        drop: 1,
        tear: 0,
        reorder: false,
    };
}

/// What a crash did to one device's pending writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Writes that were pending (including one in flight at the cut), not counting writes whose
    /// every sector a later FUA write had replaced.
    pub pending_writes: u64,
    /// Writes that persisted whole.
    pub kept: u64,
    /// Writes of which nothing persisted.
    pub dropped: u64,
    /// Writes of which some sectors persisted and some did not.
    pub torn: u64,
    /// Sectors written to the media by the crash.
    pub sectors_persisted: u64,
    /// Pending sectors that were lost.
    pub sectors_lost: u64,
}

/// The outcome drawn for one pending write.
enum Outcome {
    Keep,
    Drop,
    Tear,
}

/// The volatile cache of one device.
#[derive(Debug, Default)]
pub(super) struct WriteCache {
    /// Pending writes in issue order.
    pending: Vec<PendingWrite>,
    /// The newest cached value of each sector: what reads see over the media.
    latest: BTreeMap<u64, Sector>,
}

impl WriteCache {
    /// Accept a cached write of `sectors` starting at sector `first`; reads see it at once.
    pub(super) fn insert(&mut self, first: u64, sectors: Vec<Sector>) {
        for (i, s) in sectors.iter().enumerate() {
            self.latest.insert(first + i as u64, s.clone());
        }
        self.pending.push(PendingWrite {
            first,
            sectors: sectors.into_iter().map(Some).collect(),
        });
    }

    /// Record a write that was in flight when power failed: it may or may not persist, but it
    /// never completed, so reads never saw it.
    pub(super) fn insert_in_flight(&mut self, first: u64, sectors: Vec<Sector>) {
        self.pending.push(PendingWrite {
            first,
            sectors: sectors.into_iter().map(Some).collect(),
        });
    }

    /// A durable write replaced sectors `first..first+count` on the media: cached versions of
    /// them are stale and must neither be read nor persist at a crash.
    pub(super) fn supersede(&mut self, first: u64, count: u64) {
        let end = first + count;
        let stale: Vec<u64> = self.latest.range(first..end).map(|(&k, _)| k).collect();
        for k in stale {
            self.latest.remove(&k);
        }
        for p in &mut self.pending {
            let p_end = p.first + p.sectors.len() as u64;
            let lo = first.max(p.first);
            let hi = end.min(p_end);
            for s in lo..hi {
                p.sectors[(s - p.first) as usize] = None;
            }
        }
        self.pending
            .retain(|p| p.sectors.iter().any(|s| s.is_some()));
    }

    /// Copy cached sectors over `buf`, which holds the media's bytes of sectors from `first`.
    pub(super) fn overlay(&self, first: u64, block_size: usize, buf: &mut [u8]) {
        let count = (buf.len() / block_size) as u64;
        for (&s, v) in self.latest.range(first..first + count) {
            let at = (s - first) as usize * block_size;
            let dst = &mut buf[at..at + block_size];
            match v {
                Sector::Zero => dst.fill(0),
                Sector::Data(d) => dst.copy_from_slice(d),
            }
        }
    }

    /// The newest value of every cached sector, in sector order (what a flush destages).
    pub(super) fn latest(&self) -> Vec<(u64, Sector)> {
        self.latest.iter().map(|(&k, v)| (k, v.clone())).collect()
    }

    /// Forget everything: after a successful flush, or after a crash was applied.
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.latest.clear();
    }

    /// Number of pending writes (including one in flight at a power cut).
    pub(super) fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// Number of distinct sectors whose newest version is only in the cache.
    pub(super) fn cached_sectors(&self) -> usize {
        self.latest.len()
    }

    /// Decide the fate of every pending write and empty the cache. Returns, per sector, the
    /// value the media holds after the crash (only sectors that some surviving write touched).
    pub(super) fn crash<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        policy: &CrashPolicy,
    ) -> (BTreeMap<u64, Sector>, CrashReport) {
        let mut report = CrashReport::default();
        let pending = std::mem::take(&mut self.pending);
        self.latest.clear();
        // Survivors: (issue index, sector, value).
        let mut survivors: Vec<Vec<(u64, Sector)>> = Vec::with_capacity(pending.len());
        for p in pending {
            let live: Vec<(u64, Sector)> = p
                .sectors
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|s| (p.first + i as u64, s)))
                .collect();
            if live.is_empty() {
                continue;
            }
            report.pending_writes += 1;
            let n = live.len();
            let kept: Vec<(u64, Sector)> = match draw(rng, policy, n) {
                Outcome::Keep => {
                    report.kept += 1;
                    live
                }
                Outcome::Drop => {
                    report.dropped += 1;
                    Vec::new()
                }
                Outcome::Tear => {
                    report.torn += 1;
                    let mut mask: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
                    // A tear is a proper, non-empty subset.
                    if mask.iter().all(|&m| m) {
                        mask[rng.random_range(0..n)] = false;
                    } else if mask.iter().all(|&m| !m) {
                        mask[rng.random_range(0..n)] = true;
                    }
                    live.into_iter()
                        .zip(mask)
                        .filter_map(|(s, m)| m.then_some(s))
                        .collect()
                }
            };
            report.sectors_persisted += kept.len() as u64;
            report.sectors_lost += (n - kept.len()) as u64;
            survivors.push(kept);
        }
        if policy.reorder {
            survivors.shuffle(rng);
        }
        let mut image = BTreeMap::new();
        for w in survivors {
            for (s, v) in w {
                image.insert(s, v);
            }
        }
        (image, report)
    }
}

/// Draw an outcome for a write of `n` live sectors.
fn draw<R: Rng + ?Sized>(rng: &mut R, policy: &CrashPolicy, n: usize) -> Outcome {
    let tear = if n >= 2 { policy.tear } else { 0 };
    let (keep, drop) = (policy.keep, policy.drop);
    let total = u64::from(keep) + u64::from(drop) + u64::from(tear);
    if total == 0 {
        // A policy of all-zero weights keeps nothing: the safest reading of "no survivors".
        return Outcome::Drop;
    }
    let x = rng.random_range(0..total);
    if x < u64::from(keep) {
        Outcome::Keep
    } else if x < u64::from(keep) + u64::from(drop) {
        Outcome::Drop
    } else {
        Outcome::Tear
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn data(b: u8) -> Sector {
        Sector::Data(Arc::from(vec![b; 4]))
    }

    #[test]
    fn overlay_shows_newest() {
        let mut c = WriteCache::default();
        c.insert(1, vec![data(1), data(1)]);
        c.insert(2, vec![data(2)]);
        let mut buf = vec![9u8; 16];
        c.overlay(0, 4, &mut buf);
        assert_eq!(buf, [9, 9, 9, 9, 1, 1, 1, 1, 2, 2, 2, 2, 9, 9, 9, 9]);
        assert_eq!(c.cached_sectors(), 2);
        assert_eq!(c.pending_writes(), 2);
    }

    #[test]
    fn supersede_masks_and_drops_empty_writes() {
        let mut c = WriteCache::default();
        c.insert(0, vec![data(1), data(1)]);
        c.insert(1, vec![data(2)]);
        c.supersede(1, 1);
        assert_eq!(c.pending_writes(), 1);
        assert_eq!(c.cached_sectors(), 1);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (img, r) = c.crash(&mut rng, &CrashPolicy::KEEP_ALL);
        assert_eq!(img.len(), 1);
        assert_eq!(img.get(&0), Some(&data(1)));
        assert_eq!(r.kept, 1);
        assert_eq!(c.pending_writes(), 0);
    }

    #[test]
    fn tear_is_a_proper_subset() {
        let policy = CrashPolicy {
            keep: 0,
            drop: 0,
            tear: 1,
            reorder: false,
        };
        for seed in 0..200 {
            let mut c = WriteCache::default();
            c.insert(0, vec![data(1), data(2)]);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (img, r) = c.crash(&mut rng, &policy);
            assert_eq!(r.torn, 1);
            assert_eq!(img.len(), 1, "seed {seed}");
            assert_eq!((r.sectors_persisted, r.sectors_lost), (1, 1));
        }
    }

    #[test]
    fn ordered_policy_newest_wins() {
        let policy = CrashPolicy {
            reorder: false,
            ..CrashPolicy::KEEP_ALL
        };
        let mut c = WriteCache::default();
        c.insert(0, vec![data(1)]);
        c.insert(0, vec![data(2)]);
        let (img, _) = c.crash(&mut ChaCha8Rng::seed_from_u64(3), &policy);
        assert_eq!(img.get(&0), Some(&data(2)));
    }

    #[test]
    fn reorder_can_land_older_version_last() {
        let policy = CrashPolicy {
            reorder: true,
            ..CrashPolicy::KEEP_ALL
        };
        let mut seen = [false, false];
        for seed in 0..64 {
            let mut c = WriteCache::default();
            c.insert(0, vec![data(1)]);
            c.insert(0, vec![data(2)]);
            let (img, _) = c.crash(&mut ChaCha8Rng::seed_from_u64(seed), &policy);
            match img.get(&0) {
                Some(Sector::Data(d)) => seen[usize::from(d[0] - 1)] = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, [true, true]);
    }
}
