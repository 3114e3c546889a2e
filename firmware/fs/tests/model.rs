//! Property test: seeded random operation sequences run against both the fs (on `MemStore`)
//! and a plain in-memory model of the namespace; results, errnos and the whole tree must agree.

use bytes::Bytes;
use ingot_fs::memstore::MemStore;
use ingot_fs::*;
use ingot_pool::store::ObjectStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const U: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
};
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

#[derive(Debug, Clone)]
enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
}

#[derive(Debug, Clone)]
struct MInode {
    body: Body,
    nlink: u32,
    parent: u64,
}

#[derive(Debug)]
struct Model {
    inodes: HashMap<u64, MInode>,
    root: u64,
}

impl Model {
    fn dir(&self, ino: u64) -> &BTreeMap<String, u64> {
        match &self.inodes[&ino].body {
            Body::Dir(c) => c,
            Body::File(_) => panic!("model: {ino} is not a dir"),
        }
    }
    fn dir_mut(&mut self, ino: u64) -> &mut BTreeMap<String, u64> {
        match &mut self.inodes.get_mut(&ino).unwrap().body {
            Body::Dir(c) => c,
            Body::File(_) => panic!("model: {ino} is not a dir"),
        }
    }
    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino].body, Body::Dir(_))
    }
    fn dirs(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, i)| matches!(i.body, Body::Dir(_)))
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }
    fn files(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, i)| matches!(i.body, Body::File(_)))
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }
    fn within(&self, mut dir: u64, anc: u64) -> bool {
        loop {
            if dir == anc {
                return true;
            }
            if dir == self.root {
                return false;
            }
            dir = self.inodes[&dir].parent;
        }
    }
    fn drop_link(&mut self, ino: u64) {
        let i = self.inodes.get_mut(&ino).unwrap();
        i.nlink -= 1;
        if i.nlink == 0 {
            self.inodes.remove(&ino);
        }
    }

    /// Expected result of a rename: Err(errno) or Ok(()) after applying it.
    fn rename(&mut self, p: u64, n: &str, np: u64, nn: &str, flags: u32) -> Result<(), i32> {
        let Some(&src) = self.dir(p).get(n) else {
            return Err(libc::ENOENT);
        };
        let dst = self.dir(np).get(nn).copied();
        if dst == Some(src) {
            return Ok(());
        }
        let sdir = self.is_dir(src);
        if flags & RENAME_EXCHANGE != 0 {
            let Some(d) = dst else {
                return Err(libc::ENOENT);
            };
            let ddir = self.is_dir(d);
            if p != np && ((sdir && self.within(np, src)) || (ddir && self.within(p, d))) {
                return Err(libc::EINVAL);
            }
            self.dir_mut(p).insert(n.into(), d);
            self.dir_mut(np).insert(nn.into(), src);
            if p != np {
                if sdir {
                    self.inodes.get_mut(&src).unwrap().parent = np;
                    self.inodes.get_mut(&p).unwrap().nlink -= 1;
                    self.inodes.get_mut(&np).unwrap().nlink += 1;
                }
                if ddir {
                    self.inodes.get_mut(&d).unwrap().parent = p;
                    self.inodes.get_mut(&np).unwrap().nlink -= 1;
                    self.inodes.get_mut(&p).unwrap().nlink += 1;
                }
            }
            return Ok(());
        }
        if let Some(d) = dst {
            if flags & RENAME_NOREPLACE != 0 {
                return Err(libc::EEXIST);
            }
            match (sdir, self.is_dir(d)) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.dir(d).is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        if sdir && p != np && self.within(np, src) {
            return Err(libc::EINVAL);
        }
        self.dir_mut(p).remove(n);
        self.dir_mut(np).insert(nn.into(), src);
        if sdir && p != np {
            self.inodes.get_mut(&src).unwrap().parent = np;
            self.inodes.get_mut(&p).unwrap().nlink -= 1;
            self.inodes.get_mut(&np).unwrap().nlink += 1;
        }
        if let Some(d) = dst {
            if self.is_dir(d) {
                self.inodes.remove(&d);
                self.inodes.get_mut(&np).unwrap().nlink -= 1;
            } else {
                self.drop_link(d);
            }
        }
        Ok(())
    }
}

fn res<T>(r: FsResult<T>) -> Result<T, i32> {
    r.map_err(|e| e.errno())
}

async fn check_tree(fs: &Fs, m: &Model) {
    for (&ino, mi) in &m.inodes {
        let a = fs
            .getattr(ino)
            .await
            .unwrap_or_else(|e| panic!("getattr {ino}: {e}"));
        assert_eq!(a.nlink, mi.nlink, "nlink of {ino}");
        match &mi.body {
            Body::File(data) => {
                assert_eq!(a.size, data.len() as u64, "size of {ino}");
                let got = fs.read(ino, 0, data.len() as u32 + 10).await.unwrap();
                assert!(got == *data, "content of {ino}");
            }
            Body::Dir(children) => {
                assert_eq!(a.parent, mi.parent, "parent of {ino}");
                let ents = fs.readdir(ino, 0, 10_000).await.unwrap();
                let got: BTreeMap<String, u64> = ents[2..]
                    .iter()
                    .map(|e| (String::from_utf8(e.name.clone()).unwrap(), e.ino))
                    .collect();
                assert_eq!(&got, children, "entries of {ino}");
            }
        }
    }
}

async fn run(
    seed: u64,
    steps: usize,
    store: Arc<dyn ObjectStore>,
) -> HashMap<(u32, Result<(), i32>), u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fs = Fs::mount(store, FsOptions::default()).await.unwrap();
    let root = fs.root();
    let mut m = Model {
        inodes: HashMap::new(),
        root,
    };
    m.inodes.insert(
        root,
        MInode {
            body: Body::Dir(BTreeMap::new()),
            nlink: 2,
            parent: root,
        },
    );
    let mut outcomes: HashMap<(u32, Result<(), i32>), u32> = HashMap::new();
    for step in 0..steps {
        let dirs = m.dirs();
        let d = dirs[rng.random_range(0..dirs.len())];
        let name = NAMES[rng.random_range(0..NAMES.len())];
        let op = rng.random_range(0..10);
        let ctx = format!("seed {seed} step {step} op {op} dir {d} name {name}");
        match op {
            0 | 1 => {
                let want = if m.dir(d).contains_key(name) {
                    Err(libc::EEXIST)
                } else {
                    Ok(())
                };
                let mkdir = op == 1;
                let got = if mkdir {
                    fs.mkdir(U, d, name.as_bytes(), 0o755).await
                } else {
                    fs.mknod(U, d, name.as_bytes(), 0o644, 0).await
                };
                let got = res(got);
                assert_eq!(got.as_ref().map(|_| ()).map_err(|e| *e), want, "{ctx}");
                if let Ok(i) = got {
                    let body = if mkdir {
                        Body::Dir(BTreeMap::new())
                    } else {
                        Body::File(Vec::new())
                    };
                    m.inodes.insert(
                        i.ino,
                        MInode {
                            body,
                            nlink: if mkdir { 2 } else { 1 },
                            parent: d,
                        },
                    );
                    m.dir_mut(d).insert(name.into(), i.ino);
                    if mkdir {
                        m.inodes.get_mut(&d).unwrap().nlink += 1;
                    }
                }
            }
            2 | 3 => {
                let files = m.files();
                if files.is_empty() {
                    continue;
                }
                let f = files[rng.random_range(0..files.len())];
                let off = rng.random_range(0..20_000u64);
                let len = rng.random_range(0..9000usize);
                let byte: u8 = rng.random();
                let fh = fs.open(U, f, libc::O_WRONLY).await.unwrap();
                let n = fs
                    .write(U, f, fh, off, Bytes::from(vec![byte; len]))
                    .await
                    .unwrap();
                fs.release(fh).await.unwrap();
                assert_eq!(n as usize, len, "{ctx}");
                if let Body::File(data) = &mut m.inodes.get_mut(&f).unwrap().body
                    && len > 0
                {
                    let end = off as usize + len;
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[off as usize..end].fill(byte);
                }
            }
            4 => {
                let files = m.files();
                if files.is_empty() {
                    continue;
                }
                let f = files[rng.random_range(0..files.len())];
                let size = rng.random_range(0..25_000u64);
                fs.setattr(
                    U,
                    f,
                    SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                if let Body::File(data) = &mut m.inodes.get_mut(&f).unwrap().body {
                    data.resize(size as usize, 0);
                }
            }
            5 => {
                let want = match m.dir(d).get(name).copied() {
                    None => Err(libc::ENOENT),
                    Some(c) if m.is_dir(c) => Err(libc::EISDIR),
                    Some(c) => {
                        m.dir_mut(d).remove(name);
                        m.drop_link(c);
                        Ok(())
                    }
                };
                assert_eq!(res(fs.unlink(d, name.as_bytes()).await), want, "{ctx}");
            }
            6 => {
                let want = match m.dir(d).get(name).copied() {
                    None => Err(libc::ENOENT),
                    Some(c) if !m.is_dir(c) => Err(libc::ENOTDIR),
                    Some(c) if !m.dir(c).is_empty() => Err(libc::ENOTEMPTY),
                    Some(c) => {
                        m.dir_mut(d).remove(name);
                        m.inodes.remove(&c);
                        m.inodes.get_mut(&d).unwrap().nlink -= 1;
                        Ok(())
                    }
                };
                assert_eq!(res(fs.rmdir(d, name.as_bytes()).await), want, "{ctx}");
            }
            7 | 8 => {
                let d2 = dirs[rng.random_range(0..dirs.len())];
                let n2 = NAMES[rng.random_range(0..NAMES.len())];
                let flags = [0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE][rng.random_range(0..4)];
                let want = m.rename(d, name, d2, n2, flags);
                let got = res(fs
                    .rename(d, name.as_bytes(), d2, n2.as_bytes(), flags)
                    .await);
                assert_eq!(got, want, "{ctx} -> {d2}/{n2} flags {flags}");
                *outcomes.entry((flags, got)).or_insert(0) += 1;
            }
            _ => {
                let files = m.files();
                if files.is_empty() {
                    continue;
                }
                let f = files[rng.random_range(0..files.len())];
                let want = if m.dir(d).contains_key(name) {
                    Err(libc::EEXIST)
                } else {
                    Ok(())
                };
                let got = res(fs.link(f, d, name.as_bytes()).await).map(|_| ());
                assert_eq!(got, want, "{ctx} link {f}");
                if got.is_ok() {
                    m.dir_mut(d).insert(name.into(), f);
                    m.inodes.get_mut(&f).unwrap().nlink += 1;
                }
            }
        }
        if step % 50 == 49 {
            check_tree(&fs, &m).await;
        }
    }
    check_tree(&fs, &m).await;
    outcomes
}

#[tokio::test]
async fn random_operations_match_the_model() {
    let mut all: HashMap<(u32, Result<(), i32>), u32> = HashMap::new();
    for seed in 0..12 {
        for (k, v) in run(seed, 600, Arc::new(MemStore::new())).await {
            *all.entry(k).or_insert(0) += v;
        }
    }
    // The sequences must reach the interesting outcomes, not just ENOENT.
    for want in [
        (0, Ok(())),
        (RENAME_EXCHANGE, Ok(())),
        (RENAME_NOREPLACE, Err(libc::EEXIST)),
        (0, Err(libc::EINVAL)),
        (0, Err(libc::ENOTEMPTY)),
        (0, Err(libc::EISDIR)),
        (0, Err(libc::ENOTDIR)),
    ] {
        assert!(
            all.get(&want).copied().unwrap_or(0) > 0,
            "no rename ended in {want:?}: {all:?}"
        );
    }
}

/// The same sequences on the real pool (mirror of two in-memory devices).
#[tokio::test]
async fn random_operations_match_the_model_on_the_pool() {
    use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
    use ingot_pool::engine::{Pool, PoolConfig, PoolLayout};
    for seed in 100..103 {
        let devs: Vec<Arc<dyn BlockDevice>> = (0..2)
            .map(|i| Arc::new(MemBlockDevice::new(format!("m{i}"), 4096, 64 * 256)) as _)
            .collect();
        let mut c = PoolConfig::new("tank", PoolLayout::Mirror);
        c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
        let pool = Pool::create(devs, c).await.unwrap();
        run(seed, 400, Arc::new(pool)).await;
    }
}
