//! End-to-end tests of the administration commands through the real `ingot` binary:
//! simulated drives, `ingot devices`, and the pool lifecycle on every layout.

use ingot_tests::{ingot, ingot_ok, passphrase_file};
use serde_json::Value;
use std::path::Path;

fn sim(dir: &Path, n: u32, lba: u32) -> String {
    let d = dir.join("drives");
    ingot_ok(&[
        "sim",
        "create",
        d.to_str().unwrap(),
        "--drives",
        &n.to_string(),
        "--size",
        "256M",
        "--lba-size",
        &lba.to_string(),
    ]);
    d.to_str().unwrap().to_string()
}

#[test]
fn devices_report_identify_and_smart_as_json() {
    let t = tempfile::tempdir().unwrap();
    let d = sim(t.path(), 2, 512);
    let v: Value = serde_json::from_str(&ingot_ok(&["devices", "--sim", &d, "--json"])).unwrap();
    let devs = v.as_array().unwrap();
    assert_eq!(devs.len(), 2);
    for (i, dev) in devs.iter().enumerate() {
        assert_eq!(dev["location"], format!("sim:sim{i}"));
        assert_eq!(dev["model"], "Ingot Simulated NVMe");
        assert!(dev["serial"].as_str().unwrap().starts_with("SIM"));
        assert_eq!(dev["namespaces"][0]["block_size"], 512);
        assert_eq!(dev["namespaces"][0]["capacity_bytes"], 256u64 << 20);
        assert!(dev["smart"]["temperature_kelvin"].as_u64().unwrap() > 273);
        assert!(dev.get("error").is_none(), "{dev}");
    }
    let table = ingot_ok(&["devices", "--sim", &d]);
    assert!(
        table.contains("SERIAL") && table.contains("sim:sim1"),
        "{table}"
    );
}

#[test]
fn pool_lifecycle_on_every_layout() {
    for (layout, n) in [
        ("stripe", 2),
        ("mirror", 2),
        ("raid10", 4),
        ("raidz1", 3),
        ("raidz2", 4),
    ] {
        let t = tempfile::tempdir().unwrap();
        let d = sim(t.path(), n, 4096);
        let out = ingot_ok(&[
            "pool",
            "create",
            "tank",
            "--layout",
            layout,
            "--encryption",
            "off",
            "--sim",
            &d,
        ]);
        assert!(out.contains("created pool tank"), "{out}");
        let st: Value = serde_json::from_str(&ingot_ok(&[
            "pool", "status", "tank", "--json", "--sim", &d,
        ]))
        .unwrap();
        assert_eq!(st["layout"], layout);
        assert_eq!(st["devices"].as_array().unwrap().len(), n as usize);
        assert!(
            st["devices"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "online")
        );
        assert_eq!(st["encrypted"], false);
        let imp = ingot_ok(&["pool", "import", "tank", "--sim", &d]);
        assert!(imp.contains("0 errors"), "{layout}: {imp}");
    }
}

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = sim(t.path(), 3, 4096);
    let good = passphrase_file(t.path(), "correct horse");
    let bad = passphrase_file(t.path(), "wrong");
    let newp = passphrase_file(t.path(), "battery staple!");
    ingot_ok(&[
        "pool",
        "create",
        "vault",
        "--passphrase-file",
        good.to_str().unwrap(),
        "--sim",
        &d,
    ]);
    let o = ingot(&[
        "pool",
        "import",
        "--passphrase-file",
        bad.to_str().unwrap(),
        "--sim",
        &d,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    // Still importable with the right one, and locked status needs none.
    ingot_ok(&[
        "pool",
        "import",
        "--passphrase-file",
        good.to_str().unwrap(),
        "--sim",
        &d,
    ]);
    let locked = ingot_ok(&["pool", "status", "--sim", &d]);
    assert!(locked.contains("LOCKED"), "{locked}");
    // Change it: the old one stops working, the new one works.
    ingot_ok(&[
        "pool",
        "change-passphrase",
        "--passphrase-file",
        good.to_str().unwrap(),
        "--new-passphrase-file",
        newp.to_str().unwrap(),
        "--sim",
        &d,
    ]);
    assert!(
        !ingot(&[
            "pool",
            "import",
            "--passphrase-file",
            good.to_str().unwrap(),
            "--sim",
            &d
        ])
        .status
        .success()
    );
    ingot_ok(&[
        "pool",
        "import",
        "--passphrase-file",
        newp.to_str().unwrap(),
        "--sim",
        &d,
    ]);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = sim(t.path(), 2, 4096);
    for (args, expect) in [
        (
            vec!["pool", "create", "x", "--layout", "raid7", "--sim", &d],
            "raid7",
        ),
        (
            vec!["pool", "create", "x", "--compression", "lz4", "--sim", &d],
            "lz4",
        ),
        (vec!["sim", "create", &d, "--size", "12Q"], "invalid size"),
        (
            vec!["pool", "status", "--sim", "/nonexistent"],
            "/nonexistent",
        ),
        (vec!["pool", "status", "--sim", &d], "not an Ingot pool"),
    ] {
        let o = ingot(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
