//! The userspace NVMe driver: controller bring-up, admin and I/O queue pairs, namespaces.
//!
//! Written only against [`crate::backing::DeviceBacking`], so the same code drives VFIO
//! hardware and the simulated controller.
//!
//! Threads: one admin supervisor (admin queue, Abort, reset, removal, shutdown) and one
//! owner per I/O queue pair. Callers on tokio hand fully encoded commands (with PRPs into a
//! bounce buffer from the queue pair's pool) to an owner over a channel and await a oneshot.
//! An owner alone touches its rings: completions are found by the phase tag read with a
//! volatile load, every doorbell write follows a fence, and an idle owner sleeps on its
//! MSI-X eventfd (or a polling backoff) and a submission kick, never spinning.
//!
//! Recovery: a command past its timeout is aborted; if it still does not complete the
//! controller is reset (disable, enable, queues recreated) and everything in flight is
//! reissued, a bounded number of times, then it fails with `BlockError::Timeout`.
//! CSTS.CFS, all-ones registers or a removal request fail everything with `DeviceLost`.

mod admin;
mod bringup;
mod cid;
mod cmd;
mod config;
mod controller;
mod error;
mod handle;
mod msg;
mod namespace;
mod pool;
pub mod prp;
mod queue;
mod recovery;
mod regs;
mod shared;
pub mod split;
mod supervisor;
mod wait;
mod worker;

pub use bringup::NamespaceInfo;
pub use config::DriverConfig;
pub use controller::Controller;
pub use error::NvmeError;
pub use namespace::Namespace;
pub use shared::QueueStats;
