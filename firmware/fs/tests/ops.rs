//! Unit tests of every fs operation on `MemStore`, with the errno ext4 gives.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::ObjectStore;
use std::sync::Arc;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};
const R: Ctx = Ctx::ROOT;

async fn setup() -> (Arc<MemStore>, Fs) {
    let store = Arc::new(MemStore::new());
    let fs = Fs::mount(store.clone(), FsOptions::default())
        .await
        .unwrap();
    (store, fs)
}

fn errno<T: std::fmt::Debug>(r: FsResult<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

#[tokio::test]
async fn mkfs_then_mount_again_keeps_the_tree() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let r = fs.getattr(root).await.unwrap();
    assert_eq!(r.kind(), FileKind::Dir);
    assert_eq!(r.nlink, 2);
    fs.mkdir(U, root, b"d", 0o755).await.unwrap();
    drop(fs);
    let fs = Fs::mount(store, FsOptions::default()).await.unwrap();
    assert_eq!(fs.lookup(root, b"d").await.unwrap().kind(), FileKind::Dir);
    assert_eq!(fs.getattr(root).await.unwrap().nlink, 3);
}

#[tokio::test]
async fn create_lookup_and_errors() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"a", 0o644, libc::O_RDWR).await.unwrap();
    assert_eq!(f.mode, libc::S_IFREG | 0o644);
    assert_eq!((f.uid, f.gid, f.nlink), (1000, 1000, 1));
    fs.release(fh).await.unwrap();
    assert_eq!(fs.lookup(root, b"a").await.unwrap().ino, f.ino);
    assert_eq!(errno(fs.lookup(root, b"nope").await), libc::ENOENT);
    assert_eq!(errno(fs.mknod(U, root, b"a", 0o644, 0).await), libc::EEXIST);
    assert_eq!(errno(fs.mkdir(U, root, b"a", 0o755).await), libc::EEXIST);
    let long = vec![b'x'; 256];
    assert_eq!(
        errno(fs.mknod(U, root, &long, 0o644, 0).await),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(fs.lookup(root, &long).await), libc::ENAMETOOLONG);
    assert!(fs.mknod(U, root, &vec![b'y'; 255], 0o644, 0).await.is_ok());
    assert_eq!(errno(fs.lookup(f.ino, b"x").await), libc::ENOTDIR);
    assert_eq!(
        errno(fs.mknod(U, f.ino, b"x", 0o644, 0).await),
        libc::ENOTDIR
    );
    // Device nodes keep rdev; fifos and sockets work.
    let c = fs
        .mknod(R, root, b"null", libc::S_IFCHR | 0o666, 0x0103)
        .await
        .unwrap();
    assert_eq!((c.kind(), c.rdev), (FileKind::CharDev, 0x0103));
    let p = fs
        .mknod(U, root, b"fifo", libc::S_IFIFO | 0o600, 0)
        .await
        .unwrap();
    assert_eq!(p.kind(), FileKind::Fifo);
}

#[tokio::test]
async fn directories_nlink_rmdir() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let d = fs.mkdir(U, root, b"d", 0o755).await.unwrap();
    let e = fs.mkdir(U, d.ino, b"e", 0o700).await.unwrap();
    assert_eq!(fs.getattr(d.ino).await.unwrap().nlink, 3);
    assert_eq!(e.parent, d.ino);
    assert_eq!(fs.lookup(e.ino, b"..").await.unwrap().ino, d.ino);
    assert_eq!(errno(fs.rmdir(root, b"d").await), libc::ENOTEMPTY);
    fs.mknod(U, e.ino, b"f", 0o644, 0).await.unwrap();
    assert_eq!(errno(fs.rmdir(e.ino, b"f").await), libc::ENOTDIR);
    assert_eq!(errno(fs.unlink(d.ino, b"e").await), libc::EISDIR);
    fs.unlink(e.ino, b"f").await.unwrap();
    fs.rmdir(d.ino, b"e").await.unwrap();
    assert_eq!(fs.getattr(d.ino).await.unwrap().nlink, 2);
    // Referenced by the kernel (from the mkdir): still there, empty, unlinked, and nothing
    // can be made in it; the kernel's forget deletes it.
    assert_eq!(fs.getattr(e.ino).await.unwrap().nlink, 0);
    assert_eq!(fs.readdir(e.ino, 0, 10).await.unwrap().len(), 2);
    assert_eq!(
        errno(fs.mknod(U, e.ino, b"g", 0o644, 0).await),
        libc::ENOENT
    );
    fs.forget(e.ino, 1).await;
    assert_eq!(errno(fs.getattr(e.ino).await), libc::ENOENT);
    assert_eq!(errno(fs.rmdir(d.ino, b"e").await), libc::ENOENT);
    fs.rmdir(root, b"d").await.unwrap();
    assert_eq!(fs.getattr(root).await.unwrap().nlink, 2);
}

#[tokio::test]
async fn write_read_sparse_truncate() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        fs.write(U, f.ino, fh, 0, Bytes::from(data.clone()))
            .await
            .unwrap(),
        300_000
    );
    assert_eq!(fs.read(f.ino, 0, 400_000).await.unwrap(), data);
    assert_eq!(
        fs.read(f.ino, 299_990, 100).await.unwrap(),
        &data[299_990..]
    );
    assert!(fs.read(f.ino, 300_000, 10).await.unwrap().is_empty());
    // Overwrite inside, then a sparse write far away.
    fs.write(U, f.ino, fh, 10, Bytes::from_static(b"hello"))
        .await
        .unwrap();
    fs.write(U, f.ino, fh, 10 << 20, Bytes::from_static(b"end"))
        .await
        .unwrap();
    let a = fs.getattr(f.ino).await.unwrap();
    assert_eq!(a.size, (10 << 20) + 3);
    assert_eq!(&fs.read(f.ino, 10, 5).await.unwrap(), b"hello");
    assert!(
        fs.read(f.ino, 5 << 20, 4096)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
    // Truncate down then up: the tail reads as zeroes.
    let t = fs
        .setattr(
            U,
            f.ino,
            SetAttr {
                size: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(t.size, 100);
    fs.setattr(
        U,
        f.ino,
        SetAttr {
            size: Some(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let back = fs.read(f.ino, 0, 1000).await.unwrap();
    assert_eq!(back.len(), 200);
    assert_eq!(&back[10..15], b"hello");
    assert!(back[100..].iter().all(|&b| b == 0));
    assert_eq!(
        errno(
            fs.setattr(
                U,
                f.ino,
                SetAttr {
                    size: Some(MAX_FILE_SIZE + 1),
                    ..Default::default()
                }
            )
            .await
        ),
        libc::EFBIG
    );
    assert_eq!(
        errno(
            fs.setattr(
                U,
                root,
                SetAttr {
                    size: Some(0),
                    ..Default::default()
                }
            )
            .await
        ),
        libc::EISDIR
    );
    assert_eq!(errno(fs.read(root, 0, 10).await), libc::EISDIR);
    assert_eq!(
        errno(fs.write(U, f.ino, 9999, 0, Bytes::from_static(b"x")).await),
        libc::EBADF
    );
    fs.release(fh).await.unwrap();
    assert_eq!(errno(fs.release(fh).await), libc::EBADF);
}

#[tokio::test]
async fn append_and_o_trunc() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs
        .create(U, root, b"log", 0o644, libc::O_WRONLY)
        .await
        .unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    let ah = fs
        .open(U, f.ino, libc::O_WRONLY | libc::O_APPEND)
        .await
        .unwrap();
    fs.write(U, f.ino, ah, 0, Bytes::from_static(b"ab"))
        .await
        .unwrap();
    fs.write(U, f.ino, ah, 3, Bytes::from_static(b"cd"))
        .await
        .unwrap();
    assert_eq!(fs.read(f.ino, 0, 100).await.unwrap(), b"0123456789abcd");
    let th = fs
        .open(U, f.ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .unwrap();
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, 0);
    for h in [fh, ah, th] {
        fs.release(h).await.unwrap();
    }
}

#[tokio::test]
async fn hard_links_and_symlinks() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let d = fs.mkdir(U, root, b"d", 0o755).await.unwrap();
    let f = fs.mknod(U, root, b"f", 0o644, 0).await.unwrap();
    let l = fs.link(f.ino, d.ino, b"g").await.unwrap();
    assert_eq!(l.nlink, 2);
    assert_eq!(fs.lookup(d.ino, b"g").await.unwrap().ino, f.ino);
    assert_eq!(errno(fs.link(f.ino, d.ino, b"g").await), libc::EEXIST);
    assert_eq!(errno(fs.link(d.ino, root, b"dl").await), libc::EPERM);
    assert_eq!(errno(fs.link(f.ino, f.ino, b"x").await), libc::ENOTDIR);
    fs.unlink(root, b"f").await.unwrap();
    assert_eq!(fs.getattr(f.ino).await.unwrap().nlink, 1);
    fs.unlink(d.ino, b"g").await.unwrap();
    // Three kernel references (mknod, link, lookup) keep it until they are all forgotten.
    assert_eq!(fs.getattr(f.ino).await.unwrap().nlink, 0);
    fs.forget(f.ino, 2).await;
    assert_eq!(fs.getattr(f.ino).await.unwrap().nlink, 0);
    fs.forget(f.ino, 1).await;
    assert_eq!(errno(fs.getattr(f.ino).await), libc::ENOENT);

    let s = fs.symlink(U, root, b"s", b"../target/path").await.unwrap();
    assert_eq!(s.kind(), FileKind::Symlink);
    assert_eq!(s.size, 14);
    assert_eq!(fs.readlink(s.ino).await.unwrap(), b"../target/path");
    assert_eq!(errno(fs.readlink(d.ino).await), libc::EINVAL);
    assert_eq!(
        errno(fs.symlink(U, root, b"s2", &vec![b'a'; 4096]).await),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(fs.symlink(U, root, b"s3", b"").await), libc::ENOENT);
}

#[tokio::test]
async fn rename_cases() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let a = fs.mkdir(U, root, b"a", 0o755).await.unwrap();
    let b = fs.mkdir(U, root, b"b", 0o755).await.unwrap();
    let f = fs.mknod(U, a.ino, b"f", 0o644, 0).await.unwrap();
    let g = fs.mknod(U, b.ino, b"g", 0o644, 0).await.unwrap();
    // Across directories, over an existing file: the victim goes away.
    fs.rename(a.ino, b"f", b.ino, b"g", 0).await.unwrap();
    assert_eq!(fs.lookup(b.ino, b"g").await.unwrap().ino, f.ino);
    assert_eq!(errno(fs.lookup(a.ino, b"f").await), libc::ENOENT);
    assert_eq!(fs.getattr(g.ino).await.unwrap().nlink, 0);
    fs.forget(g.ino, 1).await;
    assert_eq!(errno(fs.getattr(g.ino).await), libc::ENOENT);
    assert_eq!(
        errno(fs.rename(a.ino, b"f", b.ino, b"x", 0).await),
        libc::ENOENT
    );
    // NOREPLACE / EXCHANGE.
    let h = fs.mknod(U, a.ino, b"h", 0o644, 0).await.unwrap();
    assert_eq!(
        errno(fs.rename(a.ino, b"h", b.ino, b"g", RENAME_NOREPLACE).await),
        libc::EEXIST
    );
    fs.rename(a.ino, b"h", b.ino, b"g", RENAME_EXCHANGE)
        .await
        .unwrap();
    assert_eq!(fs.lookup(a.ino, b"h").await.unwrap().ino, f.ino);
    assert_eq!(fs.lookup(b.ino, b"g").await.unwrap().ino, h.ino);
    assert_eq!(
        errno(fs.rename(a.ino, b"h", b.ino, b"zz", RENAME_EXCHANGE).await),
        libc::ENOENT
    );
    assert_eq!(
        errno(fs.rename(a.ino, b"h", b.ino, b"g", 3).await),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.rename(a.ino, b"h", b.ino, b"g", RENAME_WHITEOUT).await),
        libc::EINVAL
    );
    // Directory moves: nlink follows, loops are EINVAL, kinds must match.
    fs.rename(root, b"b", a.ino, b"b", 0).await.unwrap();
    assert_eq!(fs.getattr(root).await.unwrap().nlink, 3);
    assert_eq!(fs.getattr(a.ino).await.unwrap().nlink, 3);
    assert_eq!(fs.getattr(b.ino).await.unwrap().parent, a.ino);
    assert_eq!(
        errno(fs.rename(root, b"a", b.ino, b"loop", 0).await),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.rename(root, b"a", a.ino, b"self", 0).await),
        libc::EINVAL
    );
    let e = fs.mkdir(U, root, b"e", 0o755).await.unwrap();
    assert_eq!(
        errno(fs.rename(root, b"e", a.ino, b"h", 0).await),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(fs.rename(a.ino, b"h", root, b"e", 0).await),
        libc::EISDIR
    );
    assert_eq!(
        errno(fs.rename(root, b"e", root, b"a", 0).await),
        libc::ENOTEMPTY
    );
    // Over an empty directory.
    let x = fs.mkdir(U, root, b"x", 0o755).await.unwrap();
    fs.rename(root, b"e", root, b"x", 0).await.unwrap();
    assert_eq!(fs.lookup(root, b"x").await.unwrap().ino, e.ino);
    assert_eq!(fs.getattr(x.ino).await.unwrap().nlink, 0);
    assert_eq!(
        errno(fs.rename(a.ino, b"h", x.ino, b"in_removed", 0).await),
        libc::ENOENT
    );
    fs.forget(x.ino, 1).await;
    assert_eq!(errno(fs.getattr(x.ino).await), libc::ENOENT);
    assert_eq!(fs.getattr(root).await.unwrap().nlink, 4);
    // Same inode under both names: no-op.
    fs.link(f.ino, root, b"f2").await.unwrap();
    fs.rename(a.ino, b"h", root, b"f2", 0).await.unwrap();
    assert_eq!(fs.lookup(a.ino, b"h").await.unwrap().ino, f.ino);
    // Exchange a file and a directory across parents.
    fs.rename(root, b"x", a.ino, b"h", RENAME_EXCHANGE)
        .await
        .unwrap();
    assert_eq!(fs.lookup(a.ino, b"h").await.unwrap().ino, e.ino);
    assert_eq!(fs.getattr(e.ino).await.unwrap().parent, a.ino);
    assert_eq!(fs.getattr(a.ino).await.unwrap().nlink, 4);
    assert_eq!(fs.getattr(root).await.unwrap().nlink, 3);
}

#[tokio::test]
async fn unlink_while_open_and_orphan_reclaim() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from_static(b"still here"))
        .await
        .unwrap();
    fs.unlink(root, b"f").await.unwrap();
    assert_eq!(errno(fs.lookup(root, b"f").await), libc::ENOENT);
    assert_eq!(fs.getattr(f.ino).await.unwrap().nlink, 0);
    assert_eq!(fs.read(f.ino, 0, 100).await.unwrap(), b"still here");
    fs.write(U, f.ino, fh, 10, Bytes::from_static(b"!"))
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    // Closed, but the kernel still references it (from the create): kept until forget.
    assert!(store.exists(f.ino));
    fs.forget(f.ino, 1).await;
    assert!(!store.exists(f.ino));
    assert_eq!(errno(fs.getattr(f.ino).await), libc::ENOENT);

    // A crash with an unlinked file open: the next mount reclaims it.
    let (g, gh) = fs.create(U, root, b"g", 0o644, libc::O_RDWR).await.unwrap();
    let (v, vh) = fs.create(U, root, b"v", 0o644, libc::O_RDWR).await.unwrap();
    fs.unlink(root, b"g").await.unwrap();
    fs.mknod(U, root, b"w", 0o644, 0).await.unwrap();
    fs.rename(root, b"w", root, b"v", 0).await.unwrap(); // v replaced while open
    assert!(store.exists(g.ino) && store.exists(v.ino));
    let _ = (gh, vh);
    drop(fs);
    let fs = Fs::mount(store.clone(), FsOptions::default())
        .await
        .unwrap();
    assert!(!store.exists(g.ino));
    assert!(!store.exists(v.ino));
    assert!(fs.lookup(root, b"v").await.is_ok());
}

#[tokio::test]
async fn fallocate_modes() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from(vec![9u8; 20_000]))
        .await
        .unwrap();
    fs.fallocate(f.ino, 0, 50_000, 0).await.unwrap();
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, 50_000);
    fs.fallocate(f.ino, 0, 90_000, FALLOC_FL_KEEP_SIZE)
        .await
        .unwrap();
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, 50_000);
    fs.fallocate(
        f.ino,
        4096,
        8192,
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    )
    .await
    .unwrap();
    let d = fs.read(f.ino, 0, 20_000).await.unwrap();
    assert!(d[..4096].iter().all(|&b| b == 9));
    assert!(d[4096..12288].iter().all(|&b| b == 0));
    assert!(d[12288..].iter().all(|&b| b == 9));
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, 50_000);
    assert_eq!(
        errno(fs.fallocate(f.ino, 0, 10, FALLOC_FL_PUNCH_HOLE).await),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(fs.fallocate(f.ino, 0, 10, 0x10).await),
        libc::EOPNOTSUPP
    );
    assert_eq!(errno(fs.fallocate(f.ino, 0, 0, 0).await), libc::EINVAL);
    assert_eq!(errno(fs.fallocate(root, 0, 10, 0).await), libc::EISDIR);
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn chmod_chown_utimens_and_setid() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let f = fs
        .mknod(U, root, b"f", libc::S_IFREG | 0o6755, 0)
        .await
        .unwrap();
    let a = fs
        .setattr(
            U,
            f.ino,
            SetAttr {
                mode: Some(0o4711),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.mode, libc::S_IFREG | 0o4711);
    assert!(a.ctime >= f.ctime);
    // chown clears suid (and sgid when group-executable) on files.
    fs.setattr(
        R,
        f.ino,
        SetAttr {
            mode: Some(0o6755),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let c = fs
        .setattr(
            R,
            f.ino,
            SetAttr {
                uid: Some(5),
                gid: Some(6),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((c.uid, c.gid, c.perm()), (5, 6, 0o755));
    // A write by a non-root caller clears set-id bits.
    fs.setattr(
        R,
        f.ino,
        SetAttr {
            mode: Some(0o6755),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fh = fs.open(U, f.ino, libc::O_WRONLY).await.unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(fs.getattr(f.ino).await.unwrap().perm(), 0o755);
    fs.release(fh).await.unwrap();
    // Times with nanoseconds; OMIT leaves a time alone; NOW sets it.
    let t = Timestamp {
        secs: 1_000_000_000,
        nsecs: 123_456_789,
    };
    let u = fs
        .setattr(
            U,
            f.ino,
            SetAttr {
                atime: Some(TimeSet::At(t)),
                mtime: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.atime, t);
    assert_ne!(u.mtime, t);
    let before = Timestamp::now();
    let n = fs
        .setattr(
            U,
            f.ino,
            SetAttr {
                mtime: Some(TimeSet::Now),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(n.mtime >= before);
    assert_eq!(n.atime, t);
}

#[tokio::test]
async fn setgid_directory_inheritance() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let d = fs.mkdir(R, root, b"shared", 0o2775).await.unwrap();
    fs.setattr(
        R,
        d.ino,
        SetAttr {
            gid: Some(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let f = fs.mknod(U, d.ino, b"f", 0o644, 0).await.unwrap();
    assert_eq!(f.gid, 50);
    let sub = fs.mkdir(U, d.ino, b"sub", 0o755).await.unwrap();
    assert_eq!(sub.gid, 50);
    assert_ne!(sub.mode & libc::S_ISGID, 0);
    let plain = fs.mknod(U, root, b"p", 0o644, 0).await.unwrap();
    assert_eq!(plain.gid, 1000);
}

#[tokio::test]
async fn xattrs() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let f = fs.mknod(U, root, b"f", 0o644, 0).await.unwrap();
    assert_eq!(errno(fs.getxattr(U, f.ino, b"user.a").await), libc::ENODATA);
    fs.setxattr(U, f.ino, b"user.a", b"1", 0).await.unwrap();
    assert_eq!(
        errno(fs.setxattr(U, f.ino, b"user.a", b"2", XATTR_CREATE).await),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.setxattr(U, f.ino, b"user.b", b"2", XATTR_REPLACE).await),
        libc::ENODATA
    );
    fs.setxattr(U, f.ino, b"user.a", b"22", XATTR_REPLACE)
        .await
        .unwrap();
    assert_eq!(
        fs.getxattr(U, f.ino, b"user.a").await.unwrap().as_ref(),
        b"22"
    );
    fs.setxattr(U, f.ino, b"user.empty", b"", XATTR_CREATE)
        .await
        .unwrap();
    assert_eq!(fs.getxattr(U, f.ino, b"user.empty").await.unwrap().len(), 0);
    assert_eq!(
        errno(fs.setxattr(U, f.ino, b"trusted.t", b"x", 0).await),
        libc::EPERM
    );
    fs.setxattr(R, f.ino, b"trusted.t", b"x", 0).await.unwrap();
    assert_eq!(
        errno(fs.getxattr(U, f.ino, b"trusted.t").await),
        libc::ENODATA
    );
    assert_eq!(
        errno(fs.setxattr(U, f.ino, b"security.s", b"x", 0).await),
        libc::EPERM
    );
    fs.setxattr(R, f.ino, b"security.s", b"x", 0).await.unwrap();
    assert_eq!(
        fs.getxattr(U, f.ino, b"security.s").await.unwrap().as_ref(),
        b"x"
    );
    assert_eq!(
        errno(fs.setxattr(U, f.ino, b"bogus.x", b"x", 0).await),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(fs.setxattr(U, f.ino, &[b'u'; 256], b"x", 0).await),
        libc::ERANGE
    );
    assert_eq!(
        errno(
            fs.setxattr(U, f.ino, b"user.big", &vec![0; 65_537], 0)
                .await
        ),
        libc::ERANGE
    );
    let list = fs.listxattr(U, f.ino).await.unwrap();
    assert_eq!(list, b"security.s\0user.a\0user.empty\0");
    let list_root = fs.listxattr(R, f.ino).await.unwrap();
    assert_eq!(list_root, b"security.s\0trusted.t\0user.a\0user.empty\0");
    fs.removexattr(U, f.ino, b"user.a").await.unwrap();
    assert_eq!(
        errno(fs.removexattr(U, f.ino, b"user.a").await),
        libc::ENODATA
    );
    // user.* on a symlink is EPERM; xattrs do not disturb directory listings.
    let s = fs.symlink(U, root, b"s", b"f").await.unwrap();
    assert_eq!(
        errno(fs.setxattr(U, s.ino, b"user.a", b"1", 0).await),
        libc::EPERM
    );
    fs.setxattr(U, root, b"user.dir", b"1", 0).await.unwrap();
    let names: Vec<Vec<u8>> = fs
        .readdir(root, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 4);
    let d = fs.mkdir(U, root, b"d", 0o755).await.unwrap();
    fs.setxattr(U, d.ino, b"user.x", b"1", 0).await.unwrap();
    fs.rmdir(root, b"d").await.unwrap();
}

#[tokio::test]
async fn readdir_cookies_are_stable() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let d = fs.mkdir(U, root, b"big", 0o755).await.unwrap();
    for i in 0..3000 {
        fs.mknod(U, d.ino, format!("file-{i:05}").as_bytes(), 0o644, 0)
            .await
            .unwrap();
    }
    // Read in pages of 100, deleting entries already seen and adding new ones in between:
    // every original entry not deleted is seen exactly once.
    let mut seen = std::collections::BTreeSet::new();
    let mut off = 0;
    let mut page = 0;
    loop {
        let ents = fs.readdir(d.ino, off, 100).await.unwrap();
        if ents.is_empty() {
            break;
        }
        for e in &ents {
            assert!(seen.insert(e.name.clone()), "duplicate {:?}", e.name);
        }
        off = ents.last().unwrap().offset;
        if page % 3 == 0 {
            let victim = &ents[ents.len() / 2].name;
            if victim != b"." && victim != b".." {
                fs.unlink(d.ino, victim).await.unwrap();
            }
            fs.mknod(U, d.ino, format!("new-{page}").as_bytes(), 0o644, 0)
                .await
                .unwrap();
        }
        page += 1;
    }
    for i in 0..3000 {
        assert!(
            seen.contains(format!("file-{i:05}").as_bytes()),
            "missing file-{i:05}"
        );
    }
    assert!(seen.contains(b".".as_slice()) && seen.contains(b"..".as_slice()));
    let plus = fs.readdirplus(d.ino, 0, 10).await.unwrap();
    assert_eq!(plus.len(), 10);
    assert_eq!(plus[0].1.ino, d.ino);
    assert_eq!(plus[1].1.ino, root);
    assert_eq!(errno(fs.readdir(plus[2].1.ino, 0, 10).await), libc::ENOTDIR);
}

#[tokio::test]
async fn statfs_fsync_sync_and_dirty_times() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let st = fs.statfs();
    assert_eq!(st.namelen, 255);
    assert!(st.blocks > 0 && st.bavail <= st.bfree && st.bfree <= st.blocks);
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from(vec![1u8; 8192]))
        .await
        .unwrap();
    let t0 = fs.getattr(f.ino).await.unwrap().mtime;
    // An in-place write updates mtime in the cache; fsync writes it and syncs the store.
    fs.write(U, f.ino, fh, 0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    let t1 = fs.getattr(f.ino).await.unwrap().mtime;
    assert!(t1 >= t0);
    let syncs = store.sync_count();
    fs.fsync(f.ino, false).await.unwrap();
    assert_eq!(store.sync_count(), syncs + 1);
    let rec = store.get_attr(f.ino).await.unwrap().unwrap();
    assert_eq!(Inode::decode(f.ino, &rec).unwrap().mtime, t1);
    fs.sync().await.unwrap();
    assert_eq!(store.sync_count(), syncs + 2);
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn enospc_erofs_and_corrupt() {
    let store = Arc::new(MemStore::with_capacity(256 * 1024));
    let fs = Fs::mount(store.clone(), FsOptions::default())
        .await
        .unwrap();
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    assert_eq!(
        errno(
            fs.write(U, f.ino, fh, 0, Bytes::from(vec![1u8; 1 << 20]))
                .await
        ),
        libc::ENOSPC
    );
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, 0);
    fs.release(fh).await.unwrap();

    store.set_read_only(true);
    assert_eq!(errno(fs.mkdir(U, root, b"d", 0o755).await), libc::EROFS);
    store.set_read_only(false);
    drop(fs);
    let ro = Fs::mount(
        store.clone(),
        FsOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(errno(ro.mkdir(U, root, b"d", 0o755).await), libc::EROFS);
    assert_eq!(errno(ro.unlink(root, b"f").await), libc::EROFS);
    assert!(ro.lookup(root, b"f").await.is_ok());

    // A garbage inode record is EIO, not a panic.
    use ingot_pool::store::Op;
    store
        .apply(vec![Op::SetAttr {
            id: f.ino,
            attr: Bytes::from_static(b"\x01garbage"),
        }])
        .await
        .unwrap();
    let fresh = Fs::mount(store.clone(), FsOptions::default())
        .await
        .unwrap();
    assert_eq!(errno(fresh.lookup(root, b"f").await), libc::EIO);
    // A garbage superblock refuses the mount.
    store
        .apply(vec![Op::SetAttr {
            id: 1,
            attr: Bytes::from_static(b"nonsense"),
        }])
        .await
        .unwrap();
    assert_eq!(
        errno(Fs::mount(store, FsOptions::default()).await),
        libc::EIO
    );
}

#[tokio::test]
async fn writes_truncates_and_chowns_drop_file_capabilities() {
    let (_s, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs
        .create(R, root, b"tool", 0o755, libc::O_RDWR)
        .await
        .unwrap();
    fs.write(R, f.ino, fh, 0, Bytes::from(vec![1u8; 100]))
        .await
        .unwrap();
    // In-place write (the shared path) by root still drops the capability.
    fs.setxattr(R, f.ino, XATTR_CAPS, b"caps", 0).await.unwrap();
    fs.write(R, f.ino, fh, 10, Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        errno(fs.getxattr(R, f.ino, XATTR_CAPS).await),
        libc::ENODATA
    );
    fs.setxattr(R, f.ino, XATTR_CAPS, b"caps", 0).await.unwrap();
    fs.setattr(
        R,
        f.ino,
        SetAttr {
            size: Some(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        errno(fs.getxattr(R, f.ino, XATTR_CAPS).await),
        libc::ENODATA
    );
    fs.setxattr(R, f.ino, XATTR_CAPS, b"caps", 0).await.unwrap();
    fs.setattr(
        R,
        f.ino,
        SetAttr {
            uid: Some(7),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        errno(fs.getxattr(R, f.ino, XATTR_CAPS).await),
        libc::ENODATA
    );
    // Other xattrs and chmod leave it alone.
    fs.setxattr(R, f.ino, XATTR_CAPS, b"caps", 0).await.unwrap();
    fs.setattr(
        R,
        f.ino,
        SetAttr {
            mode: Some(0o700),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.setxattr(R, f.ino, b"user.x", b"1", 0).await.unwrap();
    assert_eq!(
        fs.getxattr(R, f.ino, XATTR_CAPS).await.unwrap().as_ref(),
        b"caps"
    );
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn failed_delete_at_last_close_is_kept_and_retried() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    fs.write(U, f.ino, fh, 0, Bytes::from(vec![1u8; 64 * 1024]))
        .await
        .unwrap();
    fs.unlink(root, b"f").await.unwrap();
    fs.forget(f.ino, 1).await; // the kernel's reference: the last close deletes it
    assert!(store.exists(f.ino));
    // The store refuses the delete at the last close: the error is reported (and logged),
    // not lost, and the inode stays (on the orphan list) for a retry.
    store.set_read_only(true);
    assert!(fs.release(fh).await.is_err());
    assert!(store.exists(f.ino));
    assert_eq!(fs.pending_reclaims(), 1);
    // A retry while the store still refuses keeps it pending.
    fs.retry_reclaims().await;
    assert_eq!(fs.pending_reclaims(), 1);
    store.set_read_only(false);
    fs.sync().await.unwrap();
    assert!(!store.exists(f.ino));
    assert_eq!(fs.pending_reclaims(), 0);
    // Nothing is left on the orphan list: a new mount reclaims nothing and finds no file.
    drop(fs);
    let fs = Fs::mount(store.clone(), FsOptions::default())
        .await
        .unwrap();
    assert_eq!(errno(fs.lookup(root, b"f").await), libc::ENOENT);
    assert_eq!(fs.pending_reclaims(), 0);
}

#[tokio::test]
async fn failed_delete_at_last_close_is_retried_by_a_later_release() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    let (_g, gh) = fs.create(U, root, b"g", 0o644, libc::O_RDWR).await.unwrap();
    fs.unlink(root, b"f").await.unwrap();
    fs.forget(f.ino, 1).await;
    store.set_read_only(true);
    assert!(fs.release(fh).await.is_err());
    assert!(store.exists(f.ino));
    store.set_read_only(false);
    fs.release(gh).await.unwrap();
    assert!(!store.exists(f.ino));
    assert_eq!(fs.pending_reclaims(), 0);
}

#[tokio::test]
async fn failed_delete_at_forget_is_kept_and_retried() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.lookup(root, b"f").await.unwrap().ino, f.ino);
    fs.unlink(root, b"f").await.unwrap();
    // Closed but referenced twice (create, lookup): only the last forget deletes it, and a
    // refused delete stays pending (on the orphan list) for a retry.
    fs.forget(f.ino, 1).await;
    assert!(store.exists(f.ino));
    store.set_read_only(true);
    fs.forget(f.ino, 1).await;
    assert!(store.exists(f.ino));
    assert_eq!(fs.pending_reclaims(), 1);
    store.set_read_only(false);
    fs.sync().await.unwrap();
    assert!(!store.exists(f.ino));
    assert_eq!(fs.pending_reclaims(), 0);
}

#[tokio::test]
async fn forget_all_deletes_unlinked_inodes_not_open() {
    let (store, fs) = setup().await;
    let root = fs.root();
    let (f, fh) = fs.create(U, root, b"f", 0o644, libc::O_RDWR).await.unwrap();
    let g = fs.mknod(U, root, b"g", 0o644, 0).await.unwrap();
    let k = fs.mknod(U, root, b"k", 0o644, 0).await.unwrap();
    fs.unlink(root, b"f").await.unwrap();
    fs.unlink(root, b"g").await.unwrap();
    assert!(store.exists(f.ino) && store.exists(g.ino));
    // The connection ends: references go; the open one stays until its last close.
    fs.forget_all().await;
    assert!(!store.exists(g.ino));
    assert!(store.exists(f.ino));
    assert!(
        store.exists(k.ino),
        "a linked inode is never deleted by forget"
    );
    fs.release(fh).await.unwrap();
    assert!(!store.exists(f.ino));
}
