//! Completion queue entries decoded from arbitrary 16-byte chunks: never a panic, the status
//! accessors stay in their fields' ranges, and decode/encode is the identity.
#![no_main]

use ingot_hal::nvme::spec::{CQE_SIZE, Completion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(CQE_SIZE) {
        let Ok(raw) = <&[u8; CQE_SIZE]>::try_from(chunk) else {
            return;
        };
        let c = Completion::from_bytes(raw);
        assert_eq!(&c.to_bytes(), raw);
        assert!(c.sct() <= 0b111);
        let _ = (c.phase(), c.sc(), c.more(), c.dnr(), c.is_success());
        assert_eq!(
            c.status & !1 & !(0b11 << 12) & !(1 << 14),
            Completion::status_field(c.sct(), c.sc(), c.dnr())
        );
    }
});
