//! One module per subcommand.

pub mod devices;
pub mod pool;
pub mod remote;
pub mod resilver;
pub mod scrub;
pub mod sim;
pub mod up;
