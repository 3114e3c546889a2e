//! SMART / Health and Error Information log pages parsed from arbitrary bytes: never a panic,
//! encode/parse round trips, and an error log yields only non-empty entries.
#![no_main]

use ingot_hal::nvme::spec::{ERROR_LOG_ENTRY_SIZE, ErrorLogEntry, SmartLog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let smart = SmartLog::parse(data);
    assert_eq!(SmartLog::parse(&smart.encode()), smart);

    let entries = ErrorLogEntry::parse_log(data);
    assert!(entries.len() <= data.len() / ERROR_LOG_ENTRY_SIZE);
    for e in &entries {
        assert_ne!(e.error_count, 0);
        assert_eq!(&ErrorLogEntry::parse(&e.encode()), e);
    }
});
