//! Kernel readahead of the FUSE mount: the kernel caps a FUSE mount's readahead at its
//! backing device info's `read_ahead_kb` (128 KiB by default) whatever `max_readahead` the
//! INIT reply asks for, so a sequential reader's data arrives in 128 KiB requests, each a
//! `/dev/fuse` round trip. After mounting, the mount's `/sys/class/bdi/MAJ:MIN/read_ahead_kb`
//! is raised to the negotiated `max_readahead` (what FUSE file systems such as JuiceFS
//! advise doing by hand), so the kernel sends reads of up to `max_pages` and the pool's
//! readahead sees the stream in large steps. Best effort: a failure is logged, not fatal.

use std::path::Path;

/// The `MAJ:MIN` device of the FUSE mount at `mountpoint`, from the text of
/// `/proc/self/mountinfo` (the last matching entry: the most recent mount on top).
pub(crate) fn fuse_device(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    let want = mountpoint.to_str()?;
    mountinfo.lines().rev().find_map(|l| {
        let (fields, rest) = l.split_once(" - ")?;
        let f: Vec<&str> = fields.split(' ').collect();
        let fstype = rest.split(' ').next()?;
        let at = unescape(f.get(4)?);
        (at == want && (fstype == "fuse" || fstype.starts_with("fuse.")))
            .then(|| f.get(2).map(|d| (*d).to_string()))
            .flatten()
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Raise the kernel readahead of the FUSE mount at `mountpoint` (a canonical path, taken
/// before mounting: resolving it now would ask the mount itself) to `bytes`.
pub(crate) fn set_readahead(mountpoint: &Path, bytes: u32) {
    let info = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "kernel readahead of the mount left as is: no mountinfo");
            return;
        }
    };
    let Some(dev) = fuse_device(&info, mountpoint) else {
        tracing::info!(mountpoint = %mountpoint.display(), "kernel readahead of the mount left as is: not in mountinfo");
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    let kb = (bytes / 1024).max(4);
    match std::fs::write(&knob, kb.to_string()) {
        Ok(()) => {
            tracing::info!(mountpoint = %mountpoint.display(), bdi = %dev, read_ahead_kb = kb, "kernel readahead of the mount raised")
        }
        // Not root, or a sysfs without the knob: reads just come in smaller requests.
        Err(e) => {
            tracing::info!(knob = %knob, error = %e, "kernel readahead of the mount left as is")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
60 27 0:45 / /mnt/old rw,nosuid,nodev,relatime - fuse fuse rw,user_id=0
61 27 0:46 / /dev/shm/a\\040b/mnt rw,nosuid - fuse.ingot ingot rw,user_id=0
62 27 0:47 / /dev/shm/x rw - tmpfs tmpfs rw
63 27 0:48 / /mnt/old rw,nosuid,nodev,relatime - fuse fuse rw,user_id=0
";

    #[test]
    fn finds_the_topmost_fuse_mount_at_the_path() {
        assert_eq!(
            fuse_device(INFO, Path::new("/mnt/old")).as_deref(),
            Some("0:48")
        );
        assert_eq!(
            fuse_device(INFO, Path::new("/dev/shm/a b/mnt")).as_deref(),
            Some("0:46")
        );
        assert_eq!(fuse_device(INFO, Path::new("/dev/shm/x")), None, "not FUSE");
        assert_eq!(fuse_device(INFO, Path::new("/proc/x")), None);
        assert_eq!(fuse_device("garbage\n\n - \n", Path::new("/")), None);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"a\040b\134c\011"), "a b\\c\t");
        assert_eq!(unescape(r"end\04"), r"end\04");
        assert_eq!(unescape(r"\999"), r"\999");
    }
}
