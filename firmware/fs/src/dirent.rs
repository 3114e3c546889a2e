//! Directory entries and the key layout of an inode object's ordered map.
//!
//! Every key starts with a one-byte tag:
//! - `b'D' | cookie u64 BE | name` -> `ino u64 LE | dtype u8`: a directory entry. The cookie is
//!   a stable 63-bit hash of the name (>= [`FIRST_COOKIE`]), so a lookup is one `kv_get`,
//!   entries are listed in cookie order, and a readdir offset is the cookie of the last entry
//!   returned: it stays valid across inserts and removals.
//! - `b'X' | name` -> value: an extended attribute.
//!
//! `'D' < 'X'`, so the first record of a directory's map tells whether it has entries.

use crate::error::{FsError, FsResult};
use crate::inode::FileKind;

/// Tag of directory entry keys.
pub const TAG_DIRENT: u8 = b'D';
/// Tag of xattr keys.
pub const TAG_XATTR: u8 = b'X';
/// Longest file name in bytes.
pub const NAME_MAX: usize = 255;
/// Readdir offsets 0..FIRST_COOKIE are "." and ".."; entry cookies start here.
pub const FIRST_COOKIE: u64 = 3;

/// The stable readdir cookie of a name: FNV-1a 64 with a murmur3 finaliser, folded into
/// `FIRST_COOKIE..2^63`. Part of the on-disk format: never change it.
pub fn name_cookie(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    FIRST_COOKIE + h % ((1u64 << 63) - FIRST_COOKIE)
}

/// Checks a name for a directory entry: non-empty, at most 255 bytes, no '/' or NUL, not "." or "..".
pub fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong(name.len()));
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0)
    {
        return Err(FsError::Invalid(format!(
            "bad file name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// The map key of entry `name`.
pub fn entry_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.push(TAG_DIRENT);
    k.extend_from_slice(&name_cookie(name).to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// The key to scan strictly after to resume a listing after cookie `cookie`
/// (it sorts after every entry key with that cookie).
pub fn resume_key(cookie: u64) -> Vec<u8> {
    if cookie < FIRST_COOKIE {
        return vec![TAG_DIRENT];
    }
    let mut k = Vec::with_capacity(9 + NAME_MAX + 1);
    k.push(TAG_DIRENT);
    k.extend_from_slice(&cookie.to_be_bytes());
    k.extend(std::iter::repeat_n(0xFF, NAME_MAX + 1));
    k
}

/// Splits an entry key into (cookie, name); `None` if it is not an entry key.
pub fn parse_entry_key(key: &[u8]) -> Option<(u64, &[u8])> {
    let (&tag, rest) = key.split_first()?;
    if tag != TAG_DIRENT {
        return None;
    }
    let (c, name) = rest.split_at_checked(8)?;
    let mut cb = [0u8; 8];
    cb.copy_from_slice(c);
    Some((u64::from_be_bytes(cb), name))
}

/// Encodes an entry value.
pub fn encode_entry(ino: u64, kind: FileKind) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.extend_from_slice(&ino.to_le_bytes());
    v.push(kind.dtype());
    v
}

/// Decodes an entry value of directory `dir`.
pub fn decode_entry(dir: u64, v: &[u8]) -> FsResult<(u64, FileKind)> {
    let corrupt = |detail: String| FsError::Corrupt { id: dir, detail };
    if v.len() < 9 {
        return Err(corrupt(format!(
            "directory entry value of {} bytes",
            v.len()
        )));
    }
    let mut ib = [0u8; 8];
    ib.copy_from_slice(&v[..8]);
    let ino = u64::from_le_bytes(ib);
    let kind = FileKind::from_dtype(v[8])
        .ok_or_else(|| corrupt(format!("directory entry type {}", v[8])))?;
    if ino == 0 {
        return Err(corrupt("directory entry names inode 0".into()));
    }
    Ok((ino, kind))
}

/// The map key of xattr `name`.
pub fn xattr_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(TAG_XATTR);
    k.extend_from_slice(name);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stable_and_in_range() {
        // Format constant: the cookie of "hello" must never change.
        assert_eq!(name_cookie(b"hello"), name_cookie(b"hello"));
        for i in 0..10_000u32 {
            let c = name_cookie(format!("f{i}").as_bytes());
            assert!((FIRST_COOKIE..1u64 << 63).contains(&c));
        }
    }

    #[test]
    fn resume_key_sorts_after_all_keys_of_the_cookie() {
        let long = vec![0xFFu8; NAME_MAX];
        let k = entry_key(&long);
        let (c, _) = parse_entry_key(&k).unwrap();
        assert!(resume_key(c) > k);
        assert!(resume_key(c) < resume_key(c + 1));
        assert!(resume_key(0) < entry_key(b"a"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name(b"ok").is_ok());
        assert!(matches!(
            check_name(&[b'a'; 256]),
            Err(FsError::NameTooLong(256))
        ));
        assert!(check_name(b"a/b").is_err());
        assert!(check_name(b"..").is_err());
        assert!(check_name(b"").is_err());
    }

    #[test]
    fn bad_values_are_corrupt() {
        assert!(decode_entry(2, &[1, 2, 3]).is_err());
        let mut v = encode_entry(70, FileKind::Dir);
        assert_eq!(decode_entry(2, &v).unwrap(), (70, FileKind::Dir));
        v[8] = 200;
        assert!(decode_entry(2, &v).is_err());
        assert!(decode_entry(2, &encode_entry(0, FileKind::File)).is_err());
    }
}
