//! `ingot sim create`: make sparse-file simulated NVMe drives.

use crate::cli::SimCreateArgs;
use crate::error::CliError;
use crate::size::human;
use crate::table::Table;

/// Create the drives and print what was made.
pub fn create(args: &SimCreateArgs) -> Result<(), CliError> {
    if args.drives == 0 {
        return Err(CliError::Usage("--drives must be at least 1".into()));
    }
    let drives = ingot_hal::sim::create_drives(&args.dir, args.drives, args.size.0, args.lba_size)?;
    let mut t = Table::new(["DRIVE", "SERIAL", "SIZE", "LBA", "FILE"]);
    for d in &drives {
        t.row([
            d.name(),
            d.meta.serial.clone(),
            human(d.meta.size_bytes),
            d.meta.lba_size.to_string(),
            d.data_path.display().to_string(),
        ]);
    }
    print!("{}", t.render());
    println!(
        "created {} simulated NVMe drive(s) in {} (sparse: no space used until written)",
        drives.len(),
        args.dir.display()
    );
    Ok(())
}
