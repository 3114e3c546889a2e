//! A fault-injecting block device: volatile write cache, power cuts, bit rot, failures.
