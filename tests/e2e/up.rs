//! End-to-end tests of the appliance: `ingot up` on its embedded default (simulated NVMe,
//! raidz1, zstd, AES-XTS), used through its real FUSE mount by standard tools, stopped,
//! killed, and started again.

use ingot_tests::{Up, passphrase_file, sh};
use std::path::Path;

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn first_run_serves_standard_tools_and_survives_restart() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "appliance pass");
    let up = Up::start(&data, &pass, &["--drive-size", "1G"]);
    assert!(
        up.log.iter().any(|l| l.contains("creating pool tank")),
        "{:?}",
        up.log
    );
    let src = repo_dir().join("hal");
    let m = up.mnt.clone();
    sh(
        &m,
        &format!(
            "cp -a {src} tree && diff -r {src} tree && \
             tar -C {src} -cf - . | tar -C . -xf - --one-top-level=untarred && diff -r {src} untarred && \
             tar -cf t.tar tree && mkdir out && tar -C out -xf t.tar && diff -r tree out/tree && \
             mkdir -p a/b && echo one > a/b/f && mv a/b/f a/g && ln a/g a/hard && ln -s g a/soft && \
             test \"$(cat a/soft)\" = one && test \"$(stat -c %h a/g)\" = 2 && \
             truncate -s 1M a/g && test \"$(stat -c %s a/g)\" = 1048576 && \
             echo two > a/x && mv -f a/x a/g && test \"$(cat a/hard)\" = one && \
             find tree -type f | sort | xargs sha256sum > ../sums",
            src = src.display()
        ),
    );
    let df = sh(&m, "df -B1 --output=size,used . | tail -1");
    let size: u64 = df.split_whitespace().next().unwrap().parse().unwrap();
    assert!(size > 1 << 30, "statfs reports the pool: {df}");
    sh(
        &m,
        "git init -q repo && cd repo && git config user.email t@t && git config user.name t && \
         cp -a ../tree . && git add -A && git commit -qm import && git fsck --no-progress && git log --oneline | grep -q import",
    );
    up.stop();

    let up = Up::start(&data, &pass, &[]);
    assert!(
        up.log.iter().any(|l| l.contains("importing pool tank")),
        "{:?}",
        up.log
    );
    sh(
        &up.mnt,
        "sha256sum -c --quiet ../sums && cd repo && git fsck --no-progress && git status --short | wc -l | grep -qx 0",
    );
    up.stop();
}

#[test]
fn fsynced_data_survives_a_kill() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "kill test");
    let up = Up::start(&data, &pass, &["--drive-size", "1G"]);
    sh(
        &up.mnt,
        "head -c 20000000 /dev/urandom > synced && sync synced && sha256sum synced > ../sum && \
         mkdir dir && echo x > dir/f && sync dir/f dir",
    );
    up.kill();
    // The next start clears the dead mount and finds everything that was fsynced.
    let up = Up::start(&data, &pass, &[]);
    assert!(
        up.log.iter().any(|l| l.contains("stale mount")),
        "{:?}",
        up.log
    );
    sh(
        &up.mnt,
        "sha256sum -c --quiet ../sum && test \"$(cat dir/f)\" = x",
    );
    up.stop();
}

#[test]
fn fio_verify_through_the_mount() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pass = passphrase_file(t.path(), "fio test");
    let up = Up::start(&data, &pass, &["--drive-size", "1G"]);
    sh(
        &up.mnt,
        "fio --name=v --filename=f --size=16M --rw=randwrite --bs=4k --ioengine=psync \
         --verify=crc32c --do_verify=1 --verify_fatal=1 --randseed=7 --output-format=terse >/dev/null && \
         fio --name=s --filename=g --size=64M --rw=write --bs=1M --ioengine=psync \
         --verify=crc32c --do_verify=1 --verify_fatal=1 --end_fsync=1 --output-format=terse >/dev/null",
    );
    // The verify passes read back what was just written: from the record cache, which the
    // stats API reports (as ZFS's arcstats), with the whole records written early.
    let stats = up.api_get("/api/v1/stats");
    let c = &stats["cache"];
    assert!(c["hits"].as_u64().unwrap() > 0, "{stats:#}");
    assert!(c["early_writes"].as_u64().unwrap() > 0, "{stats:#}");
    assert!(c["limit_bytes"].as_u64().unwrap() > 0, "{stats:#}");
    let (bytes, limit) = (
        c["bytes"].as_u64().unwrap(),
        c["limit_bytes"].as_u64().unwrap(),
    );
    assert!(bytes > 0 && bytes <= limit, "{stats:#}");
    up.stop();
}
