//! The consistency walk the crash tests run after a crash: every directory entry leads
//! to an inode, directories' parents and link counts are right, files' link counts equal
//! the entries naming them, and every file reads back its whole size.

use ingot_fs::*;
use std::collections::HashMap;

/// Walk the tree from the root checking link counts, parents and file sizes; returns
/// the inodes reached (directories and files).
pub async fn check(fs: &Fs) -> usize {
    let mut refs: HashMap<u64, u32> = HashMap::new();
    let mut stack = vec![fs.root()];
    let mut dirs = 0;
    while let Some(dir) = stack.pop() {
        dirs += 1;
        let di = fs.getattr(dir).await.unwrap();
        let ents = fs.readdir(dir, 0, 100_000).await.unwrap();
        let mut subdirs = 0;
        for e in &ents[2..] {
            let i = fs
                .getattr(e.ino)
                .await
                .unwrap_or_else(|err| panic!("dangling {:?}: {err}", e.name));
            if i.kind() == FileKind::Dir {
                subdirs += 1;
                assert_eq!(i.parent, dir);
                stack.push(e.ino);
            } else {
                *refs.entry(e.ino).or_insert(0) += 1;
                let len = u32::try_from(i.size).expect("test files are small");
                let data = fs.read(e.ino, 0, len).await.unwrap();
                assert_eq!(data.len() as u64, i.size, "size of {:?}", e.name);
            }
        }
        assert_eq!(di.nlink, 2 + subdirs, "nlink of dir {dir}");
    }
    for (&ino, &n) in &refs {
        assert_eq!(
            fs.getattr(ino).await.unwrap().nlink,
            n,
            "nlink of file {ino}"
        );
    }
    dirs + refs.len()
}
