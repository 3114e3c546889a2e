//! Command identifier allocation: a slot table indexed by CID with a free list.
//!
//! A CID stays allocated from submission until the device completes the command (or
//! the controller is reset), so a late or duplicate completion can never be matched to
//! a newer command that reused the slot while the old one was still with the device.

/// A fixed-capacity table of in-flight entries keyed by CID `0..capacity`.
#[derive(Debug)]
pub struct CidTable<T> {
    slots: Vec<Option<T>>,
    free: Vec<u16>,
}

impl<T> CidTable<T> {
    /// A table for `capacity` commands (at most 65535).
    pub fn new(capacity: u16) -> Self {
        CidTable {
            slots: (0..capacity).map(|_| None).collect(),
            // Pop from the end: low CIDs first.
            free: (0..capacity).rev().collect(),
        }
    }

    /// Entries in use.
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether a CID is free.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Store `value` under a fresh CID, or give it back if the table is full.
    pub fn insert(&mut self, value: T) -> Result<u16, T> {
        match self.free.pop() {
            Some(cid) => {
                self.slots[usize::from(cid)] = Some(value);
                Ok(cid)
            }
            None => Err(value),
        }
    }

    /// The entry under `cid`, if in use.
    pub fn get_mut(&mut self, cid: u16) -> Option<&mut T> {
        self.slots.get_mut(usize::from(cid))?.as_mut()
    }

    /// Remove and return the entry under `cid`, freeing the CID. `None` for an unknown CID.
    pub fn remove(&mut self, cid: u16) -> Option<T> {
        let v = self.slots.get_mut(usize::from(cid))?.take()?;
        self.free.push(cid);
        Some(v)
    }

    /// CIDs in use, ascending.
    pub fn cids(&self) -> Vec<u16> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .map(|i| i as u16)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn fill_and_drain() {
        let mut t = CidTable::new(3);
        assert_eq!(t.insert('a'), Ok(0));
        assert_eq!(t.insert('b'), Ok(1));
        assert_eq!(t.insert('c'), Ok(2));
        assert_eq!(t.insert('d'), Err('d'));
        assert_eq!(t.remove(1), Some('b'));
        assert_eq!(t.remove(1), None, "double completion is not matched");
        assert_eq!(t.remove(7), None, "out-of-range CID from the device");
        assert_eq!(t.insert('e'), Ok(1));
        assert_eq!(t.cids(), vec![0, 1, 2]);
    }

    proptest! {
        /// Against a model: CIDs are unique among live entries and entries come back intact.
        #[test]
        fn model(ops in proptest::collection::vec((any::<bool>(), 0u16..20), 1..400)) {
            let mut t = CidTable::new(16);
            let mut model: HashMap<u16, u32> = HashMap::new();
            for (n, (ins, cid)) in ops.into_iter().enumerate() {
                if ins {
                    match t.insert(n as u32) {
                        Ok(c) => { prop_assert!(model.insert(c, n as u32).is_none()); prop_assert!(c < 16); }
                        Err(_) => prop_assert_eq!(model.len(), 16),
                    }
                } else {
                    prop_assert_eq!(t.remove(cid), model.remove(&cid));
                }
                prop_assert_eq!(t.in_use(), model.len());
            }
        }
    }
}
