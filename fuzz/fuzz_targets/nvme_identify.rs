//! Identify Controller, Identify Namespace and the active namespace list, parsed from arbitrary
//! bytes: never a panic, and encoding a parsed structure then parsing it again changes nothing.
#![no_main]

use ingot_hal::nvme::spec::{IdentifyController, IdentifyNamespace, parse_namespace_list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctrl = IdentifyController::parse(data);
    assert_eq!(IdentifyController::parse(&ctrl.encode()), ctrl);
    let _ = (ctrl.supports_dsm(), ctrl.supports_write_zeroes());

    let ns = IdentifyNamespace::parse(data);
    assert!((1..=64).contains(&ns.lba_formats.len()));
    assert_eq!(IdentifyNamespace::parse(&ns.encode()), ns);
    if let Some(bs) = ns.block_size() {
        assert!(bs.is_power_of_two() && (512..=65536).contains(&bs));
    }

    let ids = parse_namespace_list(data);
    assert!(ids.len() <= data.len() / 4);
    assert!(ids.iter().all(|&id| id != 0));
});
