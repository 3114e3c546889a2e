//! Ingot's FUSE export: serves an [`ingot_fs::Fs`] on `/dev/fuse`.
//!
//! [`mount()`] mounts with `default_permissions`, `allow_other` when root, fsname/subtype
//! `ingot`, several reader threads on cloned `/dev/fuse` fds, 1 MiB writes and read-ahead
//! (`FUSE_MAX_PAGES`), readdirplus, attribute/entry timeouts and an optional writeback cache.
//! Requests run as tokio tasks (the `adapter` module), so many are in flight at once.

#![forbid(unsafe_code)]

mod adapter;
mod bdi;
pub mod config;
pub mod mount;

pub use config::MountOptions;
pub use mount::{ExportError, MountHandle, clear_stale_mount, mount};
