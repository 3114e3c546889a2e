//! RAID layouts and the mapping of an extent's pool address to device locations.
//!
//! The pool address space is counted in 4 KiB sectors. Per layout, with `n` devices
//! and `R` sectors in each device's data area:
//!
//! - **Stripe** (RAID 0) and **RAID-Z1/Z2**: address `a` is sector `a / n` of device
//!   `a % n`; capacity `R * n` (rounded down to a multiple of `p + 1`). An extent of
//!   `D` data sectors at `a` occupies the addresses `a .. a + asize(D)`: it is laid out
//!   in up to `n` columns, column `c` on device `(a + c) % n` starting at device
//!   sector `(a + c) / n`, one sector per row. The first `p` columns are parity, the
//!   others hold the data in order (column-major: the first data column holds the
//!   first sectors of the extent). With `q = D / (n - p)`, `r = D % (n - p)` the first
//!   `r + p` columns (if `r > 0`) hold `q + 1` sectors and the others `q`. Each parity
//!   column is as long as the longest column; a data column shorter than it counts as
//!   zero in its last row. `asize(D) = D + p * ceil(D / (n - p))` rounded up to a
//!   multiple of `p + 1`, so any gap left between allocations that are multiples of
//!   `p + 1` can hold an extent. Parity is always written with its extent (full-stripe
//!   writes only, never read-modify-write).
//! - **Mirror** (n-way): address `a` is sector `a` of every device; `asize(D) = D`;
//!   capacity `R`.
//! - **RAID 10**: a stripe over the mirror pairs `(0,1), (2,3), ...`: address `a` is
//!   sector `a / m` of pair `a % m` (`m = n / 2`), both devices of the pair;
//!   `asize(D) = D`; capacity `R * m`.

use serde::{Deserialize, Serialize};

/// How data is spread over the devices of a vdev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// RAID 0: no redundancy.
    Stripe,
    /// n-way mirror: every device holds everything.
    Mirror,
    /// Stripe over mirror pairs (even number of devices).
    Raid10,
    /// Single parity, variable-width stripes.
    Raidz1,
    /// Double parity (P + Q), variable-width stripes.
    Raidz2,
}

impl Layout {
    /// Parity columns per extent (0 for stripe, mirror and RAID 10).
    pub fn parity(self) -> usize {
        match self {
            Layout::Raidz1 => 1,
            Layout::Raidz2 => 2,
            _ => 0,
        }
    }

    /// How many devices may be missing or failed with no data lost, for `n` devices
    /// (RAID 10: one, though one per pair may survive).
    pub fn redundancy(self, n: usize) -> usize {
        match self {
            Layout::Stripe => 0,
            Layout::Mirror => n.saturating_sub(1),
            Layout::Raid10 => 1,
            Layout::Raidz1 => 1,
            Layout::Raidz2 => 2,
        }
    }

    /// Fewest devices the layout takes.
    pub fn min_devices(self) -> usize {
        match self {
            Layout::Stripe | Layout::Mirror => 1,
            Layout::Raid10 | Layout::Raidz1 => 2,
            Layout::Raidz2 => 3,
        }
    }

    /// On-disk code (labels): stripe 0, mirror 1, raid10 2, raidz1 3, raidz2 4.
    pub fn code(self) -> u8 {
        match self {
            Layout::Stripe => 0,
            Layout::Mirror => 1,
            Layout::Raid10 => 2,
            Layout::Raidz1 => 3,
            Layout::Raidz2 => 4,
        }
    }

    /// Parse an on-disk code.
    pub fn from_code(code: u8) -> Option<Layout> {
        Some(match code {
            0 => Layout::Stripe,
            1 => Layout::Mirror,
            2 => Layout::Raid10,
            3 => Layout::Raidz1,
            4 => Layout::Raidz2,
            _ => return None,
        })
    }

    /// Check that `n` devices suit this layout.
    pub fn check_devices(self, n: usize) -> Result<(), String> {
        if n < self.min_devices() {
            return Err(format!(
                "{self:?} needs at least {} devices, got {n}",
                self.min_devices()
            ));
        }
        if n > MAX_DEVICES {
            return Err(format!("at most {MAX_DEVICES} devices per vdev, got {n}"));
        }
        if self == Layout::Raid10 && !n.is_multiple_of(2) {
            return Err(format!("RAID 10 needs an even number of devices, got {n}"));
        }
        Ok(())
    }

    /// Allocated sectors (data + parity + padding) for an extent of `data_sectors`.
    pub fn asize(self, n: usize, data_sectors: u64) -> u64 {
        let p = self.parity() as u64;
        match self {
            Layout::Stripe | Layout::Mirror | Layout::Raid10 => data_sectors,
            Layout::Raidz1 | Layout::Raidz2 => {
                let dcols = n as u64 - p;
                let rows = data_sectors.div_ceil(dcols);
                (data_sectors + p * rows).div_ceil(p + 1) * (p + 1)
            }
        }
    }

    /// Size of the address space for `n` devices of `rows` sectors each.
    pub fn capacity(self, n: usize, rows: u64) -> u64 {
        match self {
            Layout::Mirror => rows,
            Layout::Raid10 => rows * (n as u64 / 2),
            Layout::Stripe | Layout::Raidz1 | Layout::Raidz2 => {
                let p1 = self.parity() as u64 + 1;
                rows * n as u64 / p1 * p1
            }
        }
    }

    /// Where the extent of `data_sectors` at pool address `addr` lives.
    pub fn map(self, n: usize, addr: u64, data_sectors: u64) -> ExtentMap {
        match self {
            Layout::Mirror => {
                let copies = (0..n)
                    .map(|device| Location {
                        device,
                        sector: addr,
                    })
                    .collect();
                let columns = if data_sectors == 0 {
                    Vec::new()
                } else {
                    vec![Column {
                        role: Role::Data { first: 0 },
                        sectors: data_sectors,
                        copies,
                    }]
                };
                ExtentMap {
                    columns,
                    parity: 0,
                    width: data_sectors,
                }
            }
            Layout::Raid10 => {
                let m = n / 2;
                let mut map = columns_map(m, 0, addr, data_sectors);
                for col in &mut map.columns {
                    let pair = col.copies[0].device;
                    let sector = col.copies[0].sector;
                    col.copies = vec![
                        Location {
                            device: 2 * pair,
                            sector,
                        },
                        Location {
                            device: 2 * pair + 1,
                            sector,
                        },
                    ];
                }
                map
            }
            Layout::Stripe | Layout::Raidz1 | Layout::Raidz2 => {
                columns_map(n, self.parity(), addr, data_sectors)
            }
        }
    }
}

/// Most devices in one vdev (Q parity needs distinct generator powers per data column).
pub const MAX_DEVICES: usize = 255;

/// One place on one device: a device index and a sector of its data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// Index of the device in the vdev.
    pub device: usize,
    /// Sector in the device's data area.
    pub sector: u64,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Parity column `0` (P) or `1` (Q).
    Parity(usize),
    /// Data: the column holds the extent's sectors `first .. first + sectors`.
    Data {
        /// First data sector of the extent in this column.
        first: u64,
    },
}

/// One column of an extent: consecutive sectors on one device (or, for mirrors, the
/// same sectors on each device of `copies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Parity or data.
    pub role: Role,
    /// Sectors in the column.
    pub sectors: u64,
    /// Where the column's first sector lives; more than one for mirrored layouts.
    pub copies: Vec<Location>,
}

/// The columns of one extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentMap {
    /// Parity columns first, then data columns in data order.
    pub columns: Vec<Column>,
    /// Number of parity columns.
    pub parity: usize,
    /// Length in sectors of the longest column (the parity length for RAID-Z).
    pub width: u64,
}

impl ExtentMap {
    /// Data columns in data order.
    pub fn data_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().skip(self.parity)
    }
}

/// Column-major map over `n` columns with `p` parity columns (stripe, RAID-Z, and the
/// pair-level stripe of RAID 10).
fn columns_map(n: usize, p: usize, addr: u64, data_sectors: u64) -> ExtentMap {
    if data_sectors == 0 {
        return ExtentMap {
            columns: Vec::new(),
            parity: p,
            width: 0,
        };
    }
    let n64 = n as u64;
    let dcols = n64 - p as u64;
    let q = data_sectors / dcols;
    let r = data_sectors % dcols;
    let (used, big) = if q == 0 {
        (r + p as u64, r + p as u64)
    } else if r == 0 {
        (n64, n64)
    } else {
        (n64, r + p as u64)
    };
    let width = if r == 0 { q } else { q + 1 };
    let mut columns = Vec::with_capacity(used as usize);
    let mut next_data = 0u64;
    for c in 0..used {
        let sectors = if c < big { width } else { q };
        let a = addr + c;
        let loc = Location {
            device: (a % n64) as usize,
            sector: a / n64,
        };
        let role = if (c as usize) < p {
            Role::Parity(c as usize)
        } else {
            let first = next_data;
            next_data += sectors;
            Role::Data { first }
        };
        columns.push(Column {
            role,
            sectors,
            copies: vec![loc],
        });
    }
    ExtentMap {
        columns,
        parity: p,
        width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn layouts() -> impl Strategy<Value = (Layout, usize)> {
        prop_oneof![
            (1usize..9).prop_map(|n| (Layout::Stripe, n)),
            (1usize..5).prop_map(|n| (Layout::Mirror, n)),
            (1usize..5).prop_map(|m| (Layout::Raid10, 2 * m)),
            (2usize..10).prop_map(|n| (Layout::Raidz1, n)),
            (3usize..10).prop_map(|n| (Layout::Raidz2, n)),
        ]
    }

    /// The pool addresses an extent's locations stand for.
    fn addresses(layout: Layout, n: usize, loc: Location) -> u64 {
        match layout {
            Layout::Mirror => loc.sector,
            Layout::Raid10 => loc.sector * (n as u64 / 2) + (loc.device / 2) as u64,
            _ => loc.sector * n as u64 + loc.device as u64,
        }
    }

    fn all_locations(map: &ExtentMap) -> Vec<Location> {
        let mut out = Vec::new();
        for col in &map.columns {
            for copy in &col.copies {
                for k in 0..col.sectors {
                    out.push(Location {
                        device: copy.device,
                        sector: copy.sector + k,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn raidz_examples() {
        // 5 devices raidz1, 10 data sectors: 3 rows (4+4+2), 13 sectors, asize 14.
        let l = Layout::Raidz1;
        assert_eq!(l.asize(5, 10), 14);
        let m = l.map(5, 7, 10);
        assert_eq!(m.width, 3);
        let sizes: Vec<u64> = m.columns.iter().map(|c| c.sectors).collect();
        assert_eq!(sizes, vec![3, 3, 3, 2, 2]);
        assert_eq!(m.columns[0].role, Role::Parity(0));
        assert_eq!(
            m.columns[0].copies[0],
            Location {
                device: 2,
                sector: 1
            }
        );
        assert_eq!(
            m.columns[4].copies[0],
            Location {
                device: 1,
                sector: 2
            }
        );
        // One data sector on raidz2: 1 data + 2 parity = 3 = asize.
        assert_eq!(Layout::Raidz2.asize(6, 1), 3);
        assert_eq!(Layout::Raidz2.map(6, 0, 1).columns.len(), 3);
        assert_eq!(Layout::Mirror.asize(3, 5), 5);
        assert_eq!(Layout::Raidz1.capacity(4, 10), 40);
        assert_eq!(Layout::Raidz2.capacity(4, 10), 39);
        assert!(Layout::Raid10.check_devices(3).is_err());
        assert!(Layout::Raidz2.check_devices(2).is_err());
        for l in [
            Layout::Stripe,
            Layout::Mirror,
            Layout::Raid10,
            Layout::Raidz1,
            Layout::Raidz2,
        ] {
            assert_eq!(Layout::from_code(l.code()), Some(l));
        }
        assert_eq!(Layout::from_code(9), None);
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(512))]
        #[test]
        fn map_is_inside_allocation_and_distinct(
            (layout, n) in layouts(),
            addr in 0u64..10_000,
            d in 0u64..200,
        ) {
            let map = layout.map(n, addr, d);
            let asize = layout.asize(n, d);
            // Data columns cover exactly the D data sectors, in order.
            let mut next = 0;
            for col in map.data_columns() {
                prop_assert_eq!(col.role, Role::Data { first: next });
                next += col.sectors;
            }
            prop_assert_eq!(next, d);
            for col in &map.columns {
                prop_assert!(col.sectors <= map.width);
                if let Role::Parity(_) = col.role {
                    prop_assert_eq!(col.sectors, map.width);
                }
            }
            // Every location distinct and inside [addr, addr + asize).
            let locs = all_locations(&map);
            let set: HashSet<Location> = locs.iter().copied().collect();
            prop_assert_eq!(set.len(), locs.len());
            for loc in &locs {
                prop_assert!(loc.device < n);
                let a = addresses(layout, n, *loc);
                prop_assert!(a >= addr && a < addr + asize, "{:?} -> {} outside {}+{}", loc, a, addr, asize);
            }
            // Each column (copy) on its own device: losing a device loses <= 1 column.
            let mut devs = HashSet::new();
            for col in &map.columns {
                for c in &col.copies {
                    prop_assert!(devs.insert(c.device));
                }
            }
            // asize rounding.
            prop_assert!(asize.is_multiple_of(layout.parity() as u64 + 1));
            prop_assert!(asize >= d);
        }

        #[test]
        fn disjoint_allocations_never_overlap(
            (layout, n) in layouts(),
            a1 in 0u64..5000,
            d1 in 1u64..100,
            gap in 0u64..50,
            d2 in 1u64..100,
        ) {
            let a2 = a1 + layout.asize(n, d1) + gap;
            let l1: HashSet<Location> = all_locations(&layout.map(n, a1, d1)).into_iter().collect();
            let l2: HashSet<Location> = all_locations(&layout.map(n, a2, d2)).into_iter().collect();
            prop_assert!(l1.is_disjoint(&l2));
        }
    }
}
