//! A block device on a plain file (development and sparse-file drives).
