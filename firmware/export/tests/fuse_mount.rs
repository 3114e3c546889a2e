//! Real FUSE mount tests: a MemStore-backed fs mounted in a tempdir, exercised through the
//! kernel with std::fs and rustix calls. Every mount is torn down by a guard, even on failure.

use ingot_export::{MountHandle, MountOptions, mount};
use ingot_fs::memstore::MemStore;
use ingot_fs::{Fs, FsOptions};
use ingot_pool::store::ObjectStore;
use rustix::io::Errno;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// A mounted test fs; unmounts on drop (falling back to a lazy fusermount3 unmount).
struct Mounted {
    handle: Option<MountHandle>,
    path: PathBuf,
    store: Arc<MemStore>,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn new(opts: MountOptions) -> Self {
        Self::with_store(Arc::new(MemStore::new()), opts)
    }

    fn with_store(store: Arc<MemStore>, opts: MountOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        fs::create_dir(&path).unwrap();
        let handle = mount_store(store.clone(), &path, opts);
        Mounted {
            handle: Some(handle),
            path,
            store,
            _dir: dir,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            h.unmount().unwrap();
        }
    }
}

fn mount_store(store: Arc<MemStore>, path: &Path, opts: MountOptions) -> MountHandle {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let fs = rt.block_on(Fs::mount(store, FsOptions::default())).unwrap();
    mount(Arc::new(fs), path, &opts).unwrap()
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take()
            && h.unmount().is_err()
        {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.path)
                .status();
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().expect("an OS error")
}

#[test]
fn large_files_write_read_truncate() {
    let m = Mounted::new(MountOptions::default());
    let data = pattern(24 << 20, 7);
    let batches_before = m.store.applied_batches();
    {
        let mut f = File::create(m.p("big")).unwrap();
        for chunk in data.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    // 1 MiB writes were negotiated: 24 MiB arrive in a few dozen requests, not 6144 pages.
    let batches = m.store.applied_batches() - batches_before;
    assert!(batches < 100, "24 MiB took {batches} write batches");
    eprintln!("24 MiB written in {batches} store batches");
    assert_eq!(fs::metadata(m.p("big")).unwrap().len(), data.len() as u64);
    assert!(fs::read(m.p("big")).unwrap() == data);
    // Random-offset overwrite then read back through a fresh open.
    {
        let mut f = OpenOptions::new().write(true).open(m.p("big")).unwrap();
        f.seek(SeekFrom::Start(5_000_000)).unwrap();
        f.write_all(b"overwritten").unwrap();
    }
    let mut f = File::open(m.p("big")).unwrap();
    let mut buf = [0u8; 11];
    f.seek(SeekFrom::Start(5_000_000)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"overwritten");
    // Truncate down and up: the tail is zeroes.
    let f = OpenOptions::new().write(true).open(m.p("big")).unwrap();
    f.set_len(1000).unwrap();
    f.set_len(10_000).unwrap();
    drop(f);
    let back = fs::read(m.p("big")).unwrap();
    assert_eq!(back.len(), 10_000);
    assert!(back[..1000] == data[..1000]);
    assert!(back[1000..].iter().all(|&b| b == 0));
    // O_TRUNC on an existing file (FUSE_ATOMIC_O_TRUNC: the fs truncates in open).
    fs::write(m.p("big"), b"tiny").unwrap();
    assert_eq!(fs::read(m.p("big")).unwrap(), b"tiny");
    // Sparse file.
    let mut s = File::create(m.p("sparse")).unwrap();
    s.seek(SeekFrom::Start(1 << 30)).unwrap();
    s.write_all(b"x").unwrap();
    drop(s);
    assert_eq!(fs::metadata(m.p("sparse")).unwrap().len(), (1 << 30) + 1);
    // O_APPEND.
    fs::write(m.p("log"), b"one\n").unwrap();
    let mut a = OpenOptions::new().append(true).open(m.p("log")).unwrap();
    a.write_all(b"two\n").unwrap();
    drop(a);
    assert_eq!(fs::read(m.p("log")).unwrap(), b"one\ntwo\n");
    assert!(m.store.sync_count() > 0, "fsync reached the store");
}

#[test]
fn namespace_links_symlinks_rename() {
    let m = Mounted::new(MountOptions::default());
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/a"), b"A").unwrap();
    fs::write(m.p("b"), b"B").unwrap();
    assert_eq!(
        errno_of(fs::create_dir(m.p("d")).unwrap_err()),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(fs::remove_dir(m.p("d")).unwrap_err()),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno_of(fs::read(m.p("missing")).unwrap_err()),
        libc::ENOENT
    );
    // Rename over an existing file, across directories.
    fs::rename(m.p("b"), m.p("d/a")).unwrap();
    assert_eq!(fs::read(m.p("d/a")).unwrap(), b"B");
    assert!(!m.p("b").exists());
    // Hard links share the inode.
    fs::hard_link(m.p("d/a"), m.p("h")).unwrap();
    let md = fs::metadata(m.p("h")).unwrap();
    assert_eq!(md.nlink(), 2);
    assert_eq!(md.ino(), fs::metadata(m.p("d/a")).unwrap().ino());
    fs::remove_file(m.p("d/a")).unwrap();
    assert_eq!(fs::metadata(m.p("h")).unwrap().nlink(), 1);
    // Symlinks.
    std::os::unix::fs::symlink("h", m.p("s")).unwrap();
    assert_eq!(fs::read_link(m.p("s")).unwrap(), PathBuf::from("h"));
    assert_eq!(fs::read(m.p("s")).unwrap(), b"B");
    assert!(
        fs::symlink_metadata(m.p("s"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Directory loops and renameat2 flags.
    fs::create_dir(m.p("d/sub")).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("d"), m.p("d/sub/x")).unwrap_err()),
        libc::EINVAL
    );
    fs::write(m.p("x"), b"X").unwrap();
    let cwd = rustix::fs::CWD;
    let r = rustix::fs::renameat_with(
        cwd,
        m.p("x"),
        cwd,
        m.p("h"),
        rustix::fs::RenameFlags::NOREPLACE,
    );
    assert_eq!(r, Err(Errno::EXIST));
    rustix::fs::renameat_with(
        cwd,
        m.p("x"),
        cwd,
        m.p("h"),
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read(m.p("h")).unwrap(), b"X");
    assert_eq!(fs::read(m.p("x")).unwrap(), b"B");
    // Permissions and times.
    fs::set_permissions(m.p("x"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(m.p("x")).unwrap().mode() & 0o7777, 0o600);
    let f = File::open(m.p("x")).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    f.set_modified(t).unwrap();
    drop(f);
    assert_eq!(fs::metadata(m.p("x")).unwrap().modified().unwrap(), t);
    let long = "n".repeat(256);
    assert_eq!(
        errno_of(fs::write(m.p(&long), b"").unwrap_err()),
        libc::ENAMETOOLONG
    );
}

#[test]
fn xattrs_fallocate_unlink_open_statfs() {
    let m = Mounted::new(MountOptions::default());
    let f = m.p("f");
    fs::write(&f, vec![5u8; 64 * 1024]).unwrap();
    use rustix::fs::{XattrFlags, getxattr, listxattr, removexattr, setxattr};
    setxattr(&f, "user.color", b"blue", XattrFlags::empty()).unwrap();
    assert_eq!(
        setxattr(&f, "user.color", b"red", XattrFlags::CREATE),
        Err(Errno::EXIST)
    );
    assert_eq!(
        setxattr(&f, "user.none", b"x", XattrFlags::REPLACE),
        Err(Errno::NODATA)
    );
    let mut buf = [0u8; 64];
    let n = getxattr(&f, "user.color", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"blue");
    let mut small = [0u8; 2];
    assert_eq!(getxattr(&f, "user.color", &mut small), Err(Errno::RANGE));
    assert_eq!(getxattr(&f, "user.none", &mut buf), Err(Errno::NODATA));
    let n = listxattr(&f, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"user.color\0");
    removexattr(&f, "user.color").unwrap();
    assert_eq!(removexattr(&f, "user.color"), Err(Errno::NODATA));

    use rustix::fs::{FallocateFlags, fallocate};
    let file = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    fallocate(&file, FallocateFlags::empty(), 0, 100_000).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 100_000);
    fallocate(&file, FallocateFlags::KEEP_SIZE, 0, 200_000).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 100_000);
    fallocate(
        &file,
        FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE,
        4096,
        8192,
    )
    .unwrap();
    assert_eq!(
        fallocate(&file, FallocateFlags::ZERO_RANGE, 0, 10),
        Err(Errno::OPNOTSUPP)
    );
    drop(file);
    let d = fs::read(&f).unwrap();
    assert!(d[..4096].iter().all(|&b| b == 5));
    assert!(d[4096..12288].iter().all(|&b| b == 0));
    assert!(d[12288..65536].iter().all(|&b| b == 5));

    // Unlink while open: the data stays readable and writable until close.
    let mut h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    fs::remove_file(&f).unwrap();
    assert!(!f.exists());
    h.write_all(b"still").unwrap();
    h.seek(SeekFrom::Start(0)).unwrap();
    let mut five = [0u8; 5];
    h.read_exact(&mut five).unwrap();
    assert_eq!(&five, b"still");
    drop(h);

    let st = rustix::fs::statfs(&m.path).unwrap();
    assert_eq!(st.f_namelen, 255);
    assert!(st.f_blocks > 0 && st.f_bavail <= st.f_blocks);
}

#[test]
fn readdir_of_5000_entries() {
    let m = Mounted::new(MountOptions::default());
    fs::create_dir(m.p("many")).unwrap();
    for i in 0..5000 {
        File::create(m.p(&format!("many/entry-{i:05}"))).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(m.p("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5000);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(n, &format!("entry-{i:05}"));
    }
    // Types come through readdir(plus).
    assert!(
        fs::read_dir(m.p("many"))
            .unwrap()
            .all(|e| e.unwrap().file_type().unwrap().is_file())
    );
}

#[test]
fn data_survives_remount_and_writeback_mode_works() {
    let store = Arc::new(MemStore::new());
    let mut m = Mounted::with_store(store.clone(), MountOptions::default());
    fs::create_dir(m.p("keep")).unwrap();
    fs::write(m.p("keep/file"), pattern(3 << 20, 1)).unwrap();
    // Unmounting with a file still open detaches lazily: the open file keeps working.
    let mut open = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.p("open"))
        .unwrap();
    let mnt_dev = fs::metadata(&m.path).unwrap().dev();
    m.unmount();
    assert_ne!(
        fs::metadata(&m.path).unwrap().dev(),
        mnt_dev,
        "mountpoint still mounted"
    );
    open.write_all(b"after detach").unwrap();
    open.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    open.read_to_string(&mut s).unwrap();
    assert_eq!(s, "after detach");
    drop(open);
    let opts = MountOptions {
        writeback_cache: true,
        ..Default::default()
    };
    let m2 = Mounted::with_store(store, opts);
    assert!(fs::read(m2.p("keep/file")).unwrap() == pattern(3 << 20, 1));
    let mut f = OpenOptions::new()
        .append(true)
        .open(m2.p("keep/file"))
        .unwrap();
    f.write_all(b"tail").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let back = fs::read(m2.p("keep/file")).unwrap();
    assert_eq!(back.len(), (3 << 20) + 4);
    assert_eq!(&back[3 << 20..], b"tail");
    let mut g = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(m2.p("wb"))
        .unwrap();
    g.write_all(&pattern(5 << 20, 9)).unwrap();
    g.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    g.read_to_end(&mut all).unwrap();
    assert!(all == pattern(5 << 20, 9));
}

/// Child side of `stale_mount_is_cleared`: mounts, says "ready", waits to be killed.
#[test]
fn stale_mount_child() {
    let Ok(path) = std::env::var("INGOT_STALE_CHILD_MOUNT") else {
        return;
    };
    let _h = mount_store(
        Arc::new(MemStore::new()),
        Path::new(&path),
        MountOptions::default(),
    );
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line); // blocks until killed
}

#[test]
fn stale_mount_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnt");
    fs::create_dir(&path).unwrap();
    /// Kills the child mount server even if the test fails half-way.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "stale_mount_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("INGOT_STALE_CHILD_MOUNT", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before mounting"
        );
        if line.trim_end().ends_with("ready") {
            break;
        }
    }
    child.0.kill().unwrap(); // SIGKILL: the mount is left behind, dead
    child.0.wait().unwrap();
    let e = fs::metadata(&path).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
    // Mounting again clears it first.
    let mut m = Mounted {
        handle: Some(mount_store(
            Arc::new(MemStore::new()),
            &path,
            MountOptions::default(),
        )),
        path: path.clone(),
        store: Arc::new(MemStore::new()),
        _dir: dir,
    };
    fs::write(m.p("alive"), b"yes").unwrap();
    assert_eq!(fs::read(m.p("alive")).unwrap(), b"yes");
    m.unmount();
    assert!(fs::metadata(&path).is_ok());
}

#[test]
fn parallel_writers_through_fuse() {
    use std::os::unix::fs::FileExt;
    let m = Mounted::new(MountOptions::default());
    // A shared file written in disjoint 1 MiB regions by several threads at once.
    let shared = File::create(m.p("shared")).unwrap();
    shared.set_len(8 << 20).unwrap();
    drop(shared);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let m = &m;
            s.spawn(move || {
                let own = pattern(6 << 20, t);
                let mut f = File::create(m.p(&format!("own-{t}"))).unwrap();
                for c in own.chunks(256 << 10) {
                    f.write_all(c).unwrap();
                }
                let sh = OpenOptions::new().write(true).open(m.p("shared")).unwrap();
                for region in [t as u64, t as u64 + 4] {
                    sh.write_all_at(&pattern(1 << 20, region as u8 + 100), region << 20)
                        .unwrap();
                }
            });
        }
    });
    for t in 0..4u8 {
        assert!(fs::read(m.p(&format!("own-{t}"))).unwrap() == pattern(6 << 20, t));
    }
    let all = fs::read(m.p("shared")).unwrap();
    assert_eq!(all.len(), 8 << 20);
    for region in 0..8usize {
        let want = pattern(1 << 20, region as u8 + 100);
        assert!(
            all[region << 20..(region + 1) << 20] == want[..],
            "region {region}"
        );
    }
}

#[test]
fn read_only_mount_refuses_changes() {
    let store = Arc::new(MemStore::new());
    let mut m = Mounted::with_store(store.clone(), MountOptions::default());
    fs::write(m.p("f"), b"data").unwrap();
    m.unmount();
    let ro = Mounted::with_store(
        store,
        MountOptions {
            read_only: true,
            ..Default::default()
        },
    );
    assert_eq!(fs::read(ro.p("f")).unwrap(), b"data");
    assert_eq!(
        errno_of(fs::write(ro.p("g"), b"x").unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::remove_file(ro.p("f")).unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::create_dir(ro.p("d")).unwrap_err()),
        libc::EROFS
    );
}

#[test]
fn large_file_through_fuse_on_the_real_pool() {
    use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
    use ingot_pool::engine::{Pool, PoolConfig, PoolLayout};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let devs: Vec<Arc<dyn BlockDevice>> = (0..2)
        .map(|i| Arc::new(MemBlockDevice::new(format!("m{i}"), 4096, 128 * 256)) as _)
        .collect();
    let mut c = PoolConfig::new("tank", PoolLayout::Mirror);
    c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
    let pool = rt.block_on(Pool::create(devs, c)).unwrap();
    let fs = rt
        .block_on(Fs::mount(Arc::new(pool), FsOptions::default()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnt");
    fs::create_dir(&path).unwrap();
    let opts = MountOptions {
        runtime: Some(rt.handle().clone()),
        ..Default::default()
    };
    let m = Mounted {
        handle: Some(mount(Arc::new(fs), &path, &opts).unwrap()),
        path,
        store: Arc::new(MemStore::new()),
        _dir: dir,
    };
    let data = pattern(20 << 20, 3);
    let mut f = File::create(m.p("big")).unwrap();
    for c in data.chunks(1 << 20) {
        f.write_all(c).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    assert!(fs::read(m.p("big")).unwrap() == data);
    fs::rename(m.p("big"), m.p("renamed")).unwrap();
    assert_eq!(fs::metadata(m.p("renamed")).unwrap().len(), 20 << 20);
    drop(m);
}

/// `rename(tmp, name)` replaces `name` atomically: threads opening `name` while others keep
/// replacing it must always find a file and read one whole version, as on ext4. Through FUSE
/// the kernel resolves the path (a dentry, or a LOOKUP) and then sends OPEN for that inode:
/// the fs must keep a replaced inode until the kernel forgets it, and a lookup must not fall
/// between a rename's removal of the old inode and its entry for the new one. Afterwards, with
/// the kernel's references given back, no replaced inode may be left behind.
#[test]
fn opens_race_renames_replacing_the_name() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut m = Mounted::new(MountOptions {
        // Revalidate on every path walk: the most LOOKUPs racing the renames.
        entry_ttl: std::time::Duration::ZERO,
        ..MountOptions::default()
    });
    const LEN: usize = 8192;
    let version = |w: u8, k: u32| {
        let mut v = pattern(LEN, w);
        v[..4].copy_from_slice(&k.to_le_bytes());
        v
    };
    fs::write(m.p("x"), version(0, 0)).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (1..=2u8)
            .map(|w| {
                let m = &m;
                s.spawn(move || {
                    for k in 0..400u32 {
                        let tmp = m.p(&format!("tmp{w}"));
                        fs::write(&tmp, version(w, k)).unwrap();
                        fs::rename(&tmp, m.p("x")).unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (m, done) = (&m, &done);
                s.spawn(move || {
                    let mut n = 0u32;
                    while !done.load(Ordering::Relaxed) {
                        let mut f = File::open(m.p("x"))
                            .unwrap_or_else(|e| panic!("open of x while it is replaced: {e}"));
                        let mut got = Vec::new();
                        f.read_to_end(&mut got).unwrap();
                        assert_eq!(got.len(), LEN, "a partial version");
                        let k = u32::from_le_bytes(got[..4].try_into().unwrap());
                        let w = (0..=2u8)
                            .find(|&w| got[4..] == pattern(LEN, w)[4..])
                            .expect("a version nobody wrote");
                        assert!(k < 400 && (w > 0 || k == 0));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let opens: u32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(opens > 50, "the readers barely ran ({opens} opens)");
    });
    // Superblock, orphan list, root and x. The kernel forgets each replaced version as soon
    // as it drops its inode (asynchronously): every one must then be deleted, so the count
    // must come down to 4 while still mounted; a reference counted but never given back
    // would keep an unlinked inode forever. Bounded wait for the kernel's forgets.
    let t0 = std::time::Instant::now();
    while m.store.stats().objects != 4 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "replaced inodes left behind: {} objects",
            m.store.stats().objects
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    m.unmount();
    assert_eq!(m.store.stats().objects, 4);
}

/// Bytes of `path` in the kernel's page cache (`fincore` from util-linux; it opens the file
/// read-only, which keeps the cache).
fn cached_bytes(path: &Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("run fincore (util-linux)");
    assert!(out.status.success(), "fincore: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("fincore prints a byte count")
}

/// With direct writes (the default) a writable open bypasses the page cache: what it writes
/// leaves no cached pages, and a read-only open then caches what it reads. With
/// `direct_writes: false` the written pages stay cached (write-through).
#[test]
fn writable_opens_bypass_the_page_cache_unless_cached_writes() {
    for direct in [true, false] {
        let m = Mounted::new(MountOptions {
            direct_writes: direct,
            ..Default::default()
        });
        let data = pattern(4 << 20, 7);
        let mut f = File::create(m.p("f")).unwrap();
        f.write_all(&data).unwrap();
        drop(f);
        let after_write = cached_bytes(&m.p("f"));
        if direct {
            assert_eq!(after_write, 0, "direct writes left pages in the page cache");
        } else {
            assert!(
                after_write >= 4 << 20,
                "write-through cached {after_write} bytes"
            );
        }
        assert!(fs::read(m.p("f")).unwrap() == data);
        assert!(
            cached_bytes(&m.p("f")) >= 4 << 20,
            "a read-only open did not cache"
        );
    }
}
