//! crc32c over stored bytes: the checksum a block pointer carries for its extent.
//!
//! Computed over exactly what lies on the devices (after compression and
//! encryption), so scrub and resilver verify ciphertext without keys. The `crc32c`
//! crate uses the SSE4.2 / ARMv8 CRC instructions when the CPU has them.

/// crc32c (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continue a crc32c over more bytes: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46dd_794e);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn append_matches_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let (a, b) = data.split_at(4567);
        assert_eq!(crc32c_append(crc32c(a), b), crc32c(&data));
    }
}
