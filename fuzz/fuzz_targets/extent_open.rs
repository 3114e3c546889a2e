//! The extent read path on arbitrary stored bytes and block-pointer fields: `Codec::open`
//! never panics and returns exactly `lsize` bytes when it succeeds; and any data goes
//! through compress -> seal -> open unchanged.
#![no_main]

use ingot_pool::checksum::crc32c;
use ingot_pool::codec::Codec;
use ingot_pool::compress::{Compression, CompressionKind};
use ingot_pool::crypto::{MasterKey, XtsCipher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let cipher = (head & 1 == 1).then(|| XtsCipher::new(&MasterKey::from_bytes([7; 64])));
    let codec = Codec::new(Compression::Zstd { level: 1 }, cipher);
    let kind = if head & 2 == 2 {
        CompressionKind::Zstd
    } else {
        CompressionKind::None
    };
    // Block-pointer sizes from the input, bounded so one case stays fast.
    let psize = u32::from(head >> 2) * 97;
    let lsize = (rest.len() as u32).wrapping_mul(u32::from(head) + 1) % (1 << 20);

    let mut stored = rest.to_vec();
    stored.resize(rest.len().div_ceil(4096) * 4096, 0);
    let crc = crc32c(&stored);
    if let Ok(out) = codec.open(&mut stored, u64::from(head), crc, kind, psize, lsize) {
        assert_eq!(out.len(), lsize as usize);
    }

    let c = codec.compress(rest);
    let mut buf = c.buf.clone();
    let sector = u64::from(head) << 20;
    let crc = codec.seal(&mut buf, sector);
    let back = codec
        .open(&mut buf, sector, crc, c.kind, c.psize, rest.len() as u32)
        .expect("a sealed extent opens");
    assert_eq!(back, rest);
});
