//! End-to-end resilience through the real `ingot` binary: data written through the mount,
//! bit rot injected straight into one drive's image file, then `ingot pool scrub` finds and
//! repairs it (locked too: keylessly, with the verified ciphertext), a second scrub is
//! clean, and the files read back intact.

use ingot_tests::{Up, ingot_ok, passphrase_file};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Where the pool's data area starts on every drive (after two label copies).
const DATA_AREA: u64 = 16 * 1024;

/// Flip one byte in every 4 KiB sector of `len` bytes from the start of the data area.
fn rot(img: &Path, len: u64) {
    let f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let mut b = [0u8; 1];
    let mut off = DATA_AREA + 100;
    while off < DATA_AREA + len {
        f.read_exact_at(&mut b, off).unwrap();
        b[0] ^= 0x5a;
        f.write_all_at(&b, off).unwrap();
        off += 4096;
    }
    f.sync_all().unwrap();
}

fn scrub(drives: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "pool",
        "scrub",
        "--wait",
        "--json",
        "--sim",
        drives.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&ingot_ok(&args)).unwrap()
}

#[test]
fn scrub_repairs_rot_injected_in_a_drive_image() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let drives = data.join("drives");
    ingot_ok(&[
        "sim",
        "create",
        drives.to_str().unwrap(),
        "--drives",
        "2",
        "--size",
        "256M",
    ]);
    let mut toml = String::new();
    for i in 0..2 {
        toml.push_str(&format!(
            "[[drive]]\nkind = \"sim\"\npath = \"{}\"\n\n",
            drives.join(format!("sim{i}.img")).display()
        ));
    }
    toml.push_str("[pool]\nname = \"rot\"\nlayout = \"mirror\"\n");
    fs::write(data.join("ingot.toml"), toml).unwrap();
    let pass = passphrase_file(t.path(), "scrub e2e");
    let pass_arg = pass.to_str().unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let mut v = vec![0u8; 1 << 20];
            rng.fill_bytes(&mut v);
            (format!("f{i}"), v)
        })
        .collect();
    let up = Up::start(&data, &pass, &[]);
    for (name, bytes) in &files {
        let mut f = File::create(up.mnt.join(name)).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    }
    up.stop();

    // A clean pool scrubs clean.
    let clean = scrub(&drives, &["--passphrase-file", pass_arg]);
    assert_eq!(clean["state"], "finished", "{clean}");
    assert_eq!(clean["errors_found"], 0, "{clean}");
    let total = clean["total_bytes"].as_u64().unwrap();
    assert!(total >= 4 << 20, "{clean}");
    assert_eq!(clean["scanned_bytes"].as_u64().unwrap(), total);

    // Rot the first 8 MiB of one drive's data area (tree nodes and file data).
    rot(&drives.join("sim0.img"), 8 << 20);

    // Locked (no passphrase): keyless, finds the rot and repairs it (ciphertext is
    // verified by its crc32c and rewritten bit-identical; no key needed).
    let locked = scrub(&drives, &[]);
    assert_eq!(locked["state"], "finished", "{locked}");
    assert_eq!(locked["repairing"], true, "{locked}");
    let found = locked["errors_found"].as_u64().unwrap();
    assert!(found > 0, "{locked}");
    assert_eq!(locked["repaired"].as_u64().unwrap(), found, "{locked}");
    assert_eq!(locked["unrecoverable"], 0, "{locked}");

    // Unlocked: nothing is left to repair.
    let fixed = scrub(&drives, &["--passphrase-file", pass_arg]);
    assert_eq!(fixed["state"], "finished", "{fixed}");
    assert_eq!(fixed["errors_found"], 0, "{fixed} after locked {found}");
    assert_eq!(fixed["unrecoverable"], 0, "{fixed}");

    // The text report, and a second scrub that finds nothing.
    let text = ingot_ok(&[
        "pool",
        "scrub",
        "rot",
        "--passphrase-file",
        pass_arg,
        "--sim",
        drives.to_str().unwrap(),
    ]);
    assert!(text.contains("scrub of pool rot at txg"), "{text}");
    assert!(text.contains("errors found:  0"), "{text}");
    assert!(text.contains("unrecoverable: 0"), "{text}");

    // Status shows the per-device error columns.
    let st = ingot_ok(&["pool", "status", "--sim", drives.to_str().unwrap()]);
    assert!(st.contains("CKSUM"), "{st}");

    // Files read back intact through the mount.
    let up = Up::start(&data, &pass, &[]);
    for (name, bytes) in &files {
        assert!(
            &fs::read(up.mnt.join(name)).unwrap() == bytes,
            "{name} differs"
        );
    }
    up.stop();
}
