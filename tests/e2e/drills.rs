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

#[test]
fn a_pulled_drive_degrades_the_pool_and_is_resilvered_when_reinserted() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let pass = passphrase_file(t.path(), "pull pass");
    let up = Up::start(&data, &pass, &["--drive-size", "512M"]);
    sh(
        &up.mnt,
        "seq 1 300000 > before && dd if=before of=before.copy conv=fsync status=none \
         && sha256sum before > ../sum",
    );
    let out = up.ingot_ok(&["sim", "fault", "--data", &d, "nvme1", "remove"]);
    assert!(out.contains("nvme1 (sim1): pulled"), "{out}");
    // Writes go on while it is out (fsync makes the pool try the pulled drive).
    sh(
        &up.mnt,
        "seq 300000 600000 > during && dd if=during of=during.copy conv=fsync status=none \
         && sha256sum during >> ../sum",
    );
    let st = up.wait_status("tank", LIMIT, |st| {
        st["state"] == "DEGRADED" && members(st)[1]["state"] == "REMOVED"
    });
    assert!(
        members(&st)[1]["fault_reason"]
            .as_str()
            .is_some_and(|r| r.contains("hot-unplug")),
        "{st:#}"
    );
    let text = up.ingot_ok(&["pool", "status", "tank"]);
    assert!(text.contains("state:       DEGRADED"), "{text}");
    assert!(text.contains("nvme1   REMOVED"), "{text}");
    // A second pull is refused; so is a replace onto the pulled drive.
    let o = up.ingot(&["sim", "fault", "--data", &d, "nvme1", "remove"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already pulled"),
        "{o:?}"
    );

    up.ingot_ok(&["sim", "fault", "--data", &d, "nvme1", "reinsert"]);
    let st = up.wait_status("tank", LIMIT, |st| {
        st["state"] == "ONLINE" && st["jobs"].as_array().is_some_and(|j| j.is_empty())
    });
    assert!(
        members(&st).iter().all(|m| m["state"] == "ONLINE"),
        "{st:#}"
    );
    // The reinserted drive got what it missed: a scrub finds nothing to repair.
    let job = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["errors_found"], 0, "{job:#}");
    sh(&up.mnt, "sha256sum -c --quiet ../sum");
    // The event log tells the story.
    let events = up.api_get("/api/v1/events?limit=200");
    let msgs: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    for needle in [
        "fault drill: nvme1 pulled",
        "nvme1 is REMOVED",
        "pool tank is DEGRADED",
        "fault drill: nvme1 reinserted",
        "partial resilver",
        "of nvme1 completed",
        "pool tank is ONLINE",
    ] {
        assert!(
            msgs.iter().any(|m| m.contains(needle)),
            "no {needle:?} in the events: {msgs:#?}"
        );
    }
    let jobs = up.api_get("/api/v1/jobs");
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "resilver"
                && j["device"] == "nvme1"
                && j["state"] == "completed"),
        "{jobs:#}"
    );
    up.stop();
}

/// A deterministic tree of files (seeded) under `dir`: nested directories, sizes from
/// empty to 300 KiB, compressible and not.
fn make_tree(dir: &std::path::Path) {
    use rand::{Rng, RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1960);
    for i in 0..160 {
        let sub = dir.join(format!("d{}/e{}", i % 7, i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        let len = rng.random_range(0..300 * 1024);
        let mut buf = vec![0u8; len];
        if i % 2 == 0 {
            rng.fill_bytes(&mut buf);
        } else {
            for (k, b) in buf.iter_mut().enumerate() {
                *b = b"ingot resilver "[k % 15];
            }
        }
        std::fs::write(sub.join(format!("f{i}")), &buf).unwrap();
    }
}

#[test]
fn a_copy_through_the_mount_survives_a_drive_pulled_and_replaced() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let src = t.path().join("src");
    make_tree(&src);
    let pass = passphrase_file(t.path(), "copy pass");
    let up = Up::start(&data, &pass, &["--drive-size", "512M"]);
    // The copy runs while the drive is pulled and replaced.
    let mut copy = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(format!(
            "cp -r {} {}/tree && sync -f {}/tree",
            src.display(),
            up.mnt.display(),
            up.mnt.display()
        ))
        .spawn()
        .unwrap();
    up.ingot_ok(&["sim", "fault", "--data", &d, "nvme2", "remove"]);
    let added = up.ingot_json(&["sim", "add", "--data", &d, "--json"]);
    assert_eq!(added["id"], "nvme4", "{added:#}");
    assert_eq!(added["in_pool"], false, "{added:#}");
    let job = up.ingot_json(&[
        "pool", "replace", "tank", "nvme2", "nvme4", "--wait", "--json",
    ]);
    assert_eq!(job["kind"], "resilver", "{job:#}");
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["device"], "nvme4", "{job:#}");
    assert!(copy.wait().unwrap().success(), "the copy failed");
    let st = up.wait_status("tank", LIMIT, |st| {
        st["state"] == "ONLINE" && st["jobs"].as_array().is_some_and(|j| j.is_empty())
    });
    assert_eq!(members(&st)[2]["device"], "nvme4", "{st:#}");
    sh(t.path(), &format!("diff -r src {}/tree", up.mnt.display()));
    // Nothing is lost and nothing needs repair: every block, including those written
    // while the replace switched the column, is on the new drive.
    let scrub = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(scrub["state"], "completed", "{scrub:#}");
    assert_eq!(scrub["errors_found"], 0, "{scrub:#}");
    up.stop();
    // After a restart: the new drive is a member (recorded in ingot.toml), the pulled one
    // is left unassigned, and the tree is intact.
    let up = Up::start(&data, &pass, &[]);
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    assert_eq!(st["state"], "ONLINE", "{st:#}");
    assert_eq!(members(&st)[2]["device"], "nvme4", "{st:#}");
    sh(t.path(), &format!("diff -r src {}/tree", up.mnt.display()));
    up.stop();
}

#[test]
fn a_hot_spare_from_the_config_takes_over_a_pulled_drive() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let drives = data.join("drives");
    let d = data.to_str().unwrap().to_string();
    ingot_tests::ingot_ok(&[
        "sim",
        "create",
        drives.to_str().unwrap(),
        "--drives",
        "5",
        "--size",
        "256M",
    ]);
    let mut toml = String::from("spares = [{ kind = \"sim\", path = \"");
    toml.push_str(drives.join("sim4.img").to_str().unwrap());
    toml.push_str("\" }]\n");
    for i in 0..4 {
        toml.push_str(&format!(
            "[[drive]]\nkind = \"sim\"\npath = \"{}\"\n",
            drives.join(format!("sim{i}.img")).display()
        ));
    }
    std::fs::write(data.join("ingot.toml"), toml).unwrap();
    let pass = passphrase_file(t.path(), "spare pass");
    let up = Up::start(&data, &pass, &[]);
    assert!(
        up.log
            .iter()
            .any(|l| l.contains("hot spare sim:sim4/n1 ready")),
        "{:#?}",
        up.log
    );
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    assert_eq!(st["spares"], serde_json::json!(["nvme4"]), "{st:#}");
    sh(&up.mnt, "seq 1 200000 > a && sha256sum a > ../sum");
    up.ingot_ok(&["sim", "fault", "--data", &d, "nvme1", "remove"]);
    sh(
        &up.mnt,
        "seq 5 300000 > b && dd if=b of=b.copy conv=fsync status=none && sha256sum b >> ../sum",
    );
    // The spare takes slot 1 and is resilvered; the pool is whole again.
    let st = up.wait_status("tank", LIMIT, |st| {
        members(st)[1]["device"] == "nvme4"
            && st["state"] == "ONLINE"
            && st["jobs"].as_array().is_some_and(|j| j.is_empty())
    });
    assert_eq!(st["spares"], serde_json::json!([]), "{st:#}");
    let scrub = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(scrub["state"], "completed", "{scrub:#}");
    assert_eq!(scrub["errors_found"], scrub["errors_repaired"], "{scrub:#}");
    sh(&up.mnt, "sha256sum -c --quiet ../sum");
    let jobs = up.api_get("/api/v1/jobs");
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "resilver"
                && j["device"] == "nvme4"
                && j["state"] == "completed"),
        "{jobs:#}"
    );
    up.stop();
}

#[test]
fn damage_beyond_redundancy_is_reported_with_the_file_path() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let pass = passphrase_file(t.path(), "damage pass");
    let up = Up::start(&data, &pass, &["--drive-size", "512M"]);
    sh(
        &up.mnt,
        "mkdir -p dir/sub && head -c 24000000 /dev/zero \
         | openssl enc -aes-128-ctr -nosalt -pass pass:damage 2>/dev/null > dir/sub/blob \
         && sync -f dir/sub/blob",
    );
    let first = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(first["errors_found"], 0, "{first:#}");
    // The same sectors rotten on two drives of a raidz1: beyond its redundancy.
    for drive in ["sim0", "sim1"] {
        up.ingot_ok(&[
            "sim", "fault", "--data", &d, drive, "corrupt", "--lba", "1000", "--blocks", "64",
        ]);
    }
    let o = up.ingot(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert!(
        !o.status.success(),
        "a scrub with unrecoverable damage must fail: {o:?}"
    );
    let job: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(job["state"], "failed", "{job:#}");
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    let damaged = st["damaged"].as_array().unwrap();
    assert!(!damaged.is_empty(), "{st:#}");
    assert!(
        damaged.iter().all(|b| b["path"] == "/dir/sub/blob"),
        "{st:#}"
    );
    let text = up.ingot_ok(&["pool", "status", "tank"]);
    assert!(text.contains("unrecoverable blocks"), "{text}");
    assert!(text.contains("/dir/sub/blob offset"), "{text}");
    // Reading the damaged range is an I/O error, never wrong data. The running pool's
    // record cache still holds what was written (correct bytes, as ZFS's ARC would), so
    // restart the appliance to read from the drives; the page cache is dropped too.
    up.stop();
    let up = Up::start(&data, &pass, &["--drive-size", "512M"]);
    let f = std::fs::File::open(up.mnt.join("dir/sub/blob")).unwrap();
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
    drop(f);
    let r = std::fs::read(up.mnt.join("dir/sub/blob"));
    assert_eq!(
        r.map(|_| ()).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO))
    );
    up.stop();
}

#[test]
fn replace_acts_on_the_drives_directly_when_no_appliance_holds_the_pool() {
    use ingot_tests::ingot_ok;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("drives");
    let spare = t.path().join("spare");
    let (d, s) = (dir.to_str().unwrap(), spare.to_str().unwrap());
    ingot_ok(&["sim", "create", d, "--drives", "3", "--size", "256M"]);
    ingot_ok(&["sim", "create", s, "--drives", "1", "--size", "256M"]);
    ingot_ok(&[
        "pool",
        "create",
        "tank",
        "--layout",
        "raidz1",
        "--encryption",
        "off",
        "--sim",
        d,
    ]);
    let new = format!("sim:{}", spare.join("sim0.img").display());
    let out = ingot_ok(&["pool", "replace", "tank", "1", &new, "--sim", d, "--json"]);
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["state"], "finished", "{p:#}");
    assert_eq!(p["column"], 1, "{p:#}");
    // The pool now lives on drives 0 and 2 of the first set and the new drive.
    let st: Value = serde_json::from_str(&ingot_ok(&[
        "pool", "status", "tank", "--json", "--sim", d, "--device", &new,
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let locs: Vec<&str> = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["identity"]["location"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(locs[1], "sim:sim0/n1", "{st:#}");
    assert!(
        st["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "online"),
        "{st:#}"
    );
    // Pausing needs a running appliance's scrub.
    let o = ingot_tests::ingot(&["pool", "scrub", "tank", "--pause", "--sim", d]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("act on a running appliance"),
        "{o:?}"
    );
}

/// `POST path` of the console API with the appliance's local CLI token, parsed.
fn api_post(up: &Up, path: &str) -> Value {
    let reg: Value = serde_json::from_slice(
        &std::fs::read(up.data.join("run/appliance.json")).expect("registration"),
    )
    .expect("registration JSON");
    let out = sh(
        &up.data,
        &format!(
            "curl -sf -X POST -H 'Authorization: Bearer {}' {}{path}",
            reg["token"].as_str().expect("token"),
            reg["url"].as_str().expect("url")
        ),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("POST {path}: {e}: {out}"))
}

#[test]
fn cli_scrub_repairs_a_locked_pool_held_by_the_appliance() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "drill pass");
    let up = Up::start(&data, &pass, &["--drive-size", "256M"]);
    sh(
        &up.mnt,
        "head -c 8000000 /dev/zero | openssl enc -aes-128-ctr -nosalt -pass pass:seed 2>/dev/null > blob \
         && sha256sum blob > ../sum && sync",
    );
    // Lock: the key is unloaded, the pool keeps maintaining itself keylessly.
    api_post(&up, "/api/v1/export/unmount");
    let enc = api_post(&up, "/api/v1/encryption/lock");
    assert_eq!(enc["locked"], true, "{enc}");
    let st = up.ingot_json(&["pool", "status", "tank", "--json"]);
    assert_eq!(st["read_only"], false, "{st:#}");
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
    assert!(
        found > 0,
        "the locked scrub found none of the corruption: {job:#}"
    );
    assert_eq!(job["errors_repaired"], found, "{job:#}");
    let again = up.ingot_json(&["pool", "scrub", "tank", "--wait", "--json"]);
    assert_eq!(again["errors_found"], 0, "{again:#}");
    // Unlocked, the data reads back.
    let body = r#"{"passphrase":"drill pass"}"#;
    let reg: Value =
        serde_json::from_slice(&std::fs::read(up.data.join("run/appliance.json")).unwrap())
            .unwrap();
    sh(
        &up.data,
        &format!(
            "curl -sf -X POST -H 'Authorization: Bearer {}' -H 'content-type: application/json' --data '{body}' {}/api/v1/encryption/unlock",
            reg["token"].as_str().unwrap(),
            reg["url"].as_str().unwrap()
        ),
    );
    api_post(&up, "/api/v1/export/mount");
    sh(&up.mnt, "sha256sum -c --quiet ../sum");
    up.stop();
}
