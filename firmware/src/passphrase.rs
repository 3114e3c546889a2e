//! Getting a pool passphrase: from a file (scripts) or a terminal prompt, never from argv.

use crate::error::CliError;
use std::io::IsTerminal;
use std::path::Path;

/// Read a passphrase: the first line of `file` if given, else ask on the terminal
/// (twice when `confirm`). Errors if neither is possible or the passphrase is empty.
pub fn obtain(file: Option<&Path>, prompt: &str, confirm: bool) -> Result<String, CliError> {
    let pass = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(CliError::io(format!(
                "cannot read passphrase file {}",
                f.display()
            )))?;
            text.lines().next().unwrap_or("").to_string()
        }
        None => {
            if !std::io::stdin().is_terminal() {
                return Err(CliError::Usage(format!(
                    "{prompt}: no terminal to ask on; give --passphrase-file FILE"
                )));
            }
            let p = rpassword::prompt_password(format!("{prompt}: "))
                .map_err(CliError::io("cannot read the passphrase from the terminal"))?;
            if confirm {
                let again = rpassword::prompt_password("Repeat it: ")
                    .map_err(CliError::io("cannot read the passphrase from the terminal"))?;
                if again != p {
                    return Err(CliError::Usage("the passphrases do not match".into()));
                }
            }
            p
        }
    };
    if pass.is_empty() {
        return Err(CliError::Usage("the passphrase is empty".into()));
    }
    Ok(pass)
}
