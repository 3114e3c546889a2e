//! One module per subcommand.

pub mod devices;
pub mod pool;
pub mod sim;
pub mod up;
