//! NVMe: the specification's data structures and the userspace driver.

pub mod driver;
pub mod spec;
