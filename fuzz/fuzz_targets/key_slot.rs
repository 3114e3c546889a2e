//! Key slots parsed from arbitrary bytes (they come from device labels): never a panic,
//! and a slot that parses encodes back to the same bytes. (No unwrap: the Argon2 cost
//! comes from the input and may legitimately be gigabytes.)
#![no_main]

use ingot_pool::crypto::KeySlot;
use ingot_pool::crypto::keys::KEY_SLOT_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = KeySlot::decode(data) {
        assert_eq!(data.len(), KEY_SLOT_LEN);
        assert_eq!(&slot.encode()[..], data);
    }
});
