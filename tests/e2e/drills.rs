//! End-to-end fault drills against a running `ingot up` on simulated drives: the CLI acting
//! on the appliance through its console API (status, scrub, clear, replace, all `--json`),
//! `ingot sim fault` and `ingot sim add`, and the registration that lets the CLI find the
//! appliance (gone after a clean stop, ignored after a crash).

use ingot_tests::{Up, passphrase_file, sh};
use serde_json::Value;
use std::time::Duration;

/// How long a state may take to show before the test calls it a hang.
const LIMIT: Duration = Duration::from_secs(120);

fn members(st: &Value) -> &Vec<Value> {
    st["members"].as_array().expect("members")
}

#[test]
fn cli_scrubs_corrupts_and_clears_through_the_running_appliance() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "drill pass");
    let up = Up::start(&data, &pass, &["--drive-size", "512M"]);
    // Registration: a 0600 file with the token, and the pool's pointer.
    let reg = data.join("run/appliance.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&reg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(up.run_dir.join("tank.json").is_file());

    sh(
        &up.mnt,
        "head -c 24000000 /dev/zero | openssl enc -aes-128-ctr -nosalt -pass pass:seed 2>/dev/null > blob \
         && sha256sum blob > ../sum",
    );
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    assert_eq!(st["state"], "ONLINE", "{st:#}");
    assert_eq!(members(&st).len(), 4);
    assert_eq!(st["jobs"].as_array().unwrap().len(), 0);
    // Text status names the appliance and the member states.
    let text = up.ingot_ok(&["pool", "status", "tank"]);
    assert!(text.contains("held by the appliance at"), "{text}");
    assert!(text.contains("nvme3   ONLINE"), "{text}");

    // No scrub to pause yet: a clear error.
    let o = up.ingot(&["pool", "scrub", "tank", "--pause"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no scrub is running"),
        "{o:?}"
    );

    // Silent corruption of one drive's data area; the scrub (which commits first) finds
    // and repairs it from parity.
    let sims = up.ingot_json(&["sim", "list", "--data", data.to_str().unwrap(), "--json"]);
    assert_eq!(sims.as_array().unwrap().len(), 4);
    up.ingot_ok(&[
        "sim",
        "fault",
        "--data",
        data.to_str().unwrap(),
        "sim0",
        "corrupt",
        "--lba",
        "4",
        "--blocks",
        "1024",
    ]);
    let job = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(job["state"], "completed", "{job:#}");
    let found = job["errors_found"].as_u64().unwrap();
    assert!(found > 0, "the scrub found none of the corruption: {job:#}");
    assert_eq!(job["errors_repaired"], found, "{job:#}");
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    let cksum = members(&st)[0]["errors"]["checksum"].as_u64().unwrap();
    assert!(cksum > 0, "{st:#}");
    // A second scrub finds nothing: the repairs were written.
    let again = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(again["errors_found"], 0, "{again:#}");
    // Clear resets the counters.
    let cleared = up.ingot_json(&["pool", "clear", "tank", "--json"]);
    assert!(
        members(&cleared)
            .iter()
            .all(|m| m["errors"]["checksum"] == 0 && m["errors"]["read"] == 0),
        "{cleared:#}"
    );
    sh(&up.mnt, "sha256sum -c --quiet ../sum");

    // Bad fault requests get clear errors and change nothing.
    let o = up.ingot(&[
        "sim",
        "fault",
        "--data",
        data.to_str().unwrap(),
        "nvme9",
        "remove",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no device"),
        "{o:?}"
    );
    let o = up.ingot(&[
        "sim",
        "fault",
        "--data",
        data.to_str().unwrap(),
        "nvme1",
        "fail",
        "--status",
        "bogus",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SCT:SC"),
        "{o:?}"
    );

    // A clean stop removes the registration.
    let run_dir = up.run_dir.clone();
    up.stop();
    assert!(!reg.exists());
    assert!(!run_dir.join("tank.json").exists());
}

#[test]
fn a_crashed_appliance_is_not_talked_to() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "crash pass");
    let up = Up::start(&data, &pass, &["--drive-size", "256M"]);
    let run_dir = up.run_dir.clone();
    up.kill();
    // The registration is left behind by the crash, but its pid is dead: the CLI acts on
    // the drives directly instead (and they are free again).
    assert!(data.join("run/appliance.json").is_file());
    let o = std::process::Command::new(ingot_tests::ingot_bin())
        .args(["pool", "status", "tank", "--sim"])
        .arg(data.join("drives"))
        .env("INGOT_RUN_DIR", &run_dir)
        .env("INGOT_LOG", "warn")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("pool:        tank (guid"), "{out}");
    let o = std::process::Command::new(ingot_tests::ingot_bin())
        .args(["pool", "clear", "tank"])
        .env("INGOT_RUN_DIR", &run_dir)
        .env("INGOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no running appliance holds pool tank"),
        "{o:?}"
    );
    // The next start replaces the stale registration and its token.
    let up = Up::start(&data, &pass, &[]);
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    assert_eq!(st["state"], "ONLINE", "{st:#}");
    up.stop();
}
