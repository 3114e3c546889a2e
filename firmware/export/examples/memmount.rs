//! Mounts an empty ingot fs for manual testing and FUSE overhead measurements (fio, dd),
//! until Ctrl-C or stdin closes. The store is the MemStore test double, or with `--pool MIB`
//! the real pool (mirror of two in-memory block devices of MIB MiB each: zstd, AES-XTS,
//! crc32c, COW tree).
//!
//! `cargo run -p ingot-export --example memmount -- /mnt/x [--writeback] [--threads N] [--pool MIB]`

use ingot_export::{MountOptions, mount};
use ingot_fs::memstore::MemStore;
use ingot_fs::{Fs, FsOptions};
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::engine::{Pool, PoolConfig, PoolLayout};
use ingot_pool::store::ObjectStore;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let mut mountpoint: Option<PathBuf> = None;
    let mut opts = MountOptions::default();
    let mut pool_mib: Option<u64> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--writeback" => opts.writeback_cache = true,
            "--pool" => pool_mib = Some(args.next().ok_or("--pool needs MiB")?.parse()?),
            "--threads" => {
                opts.reader_threads = args.next().ok_or("--threads needs a value")?.parse()?;
            }
            _ => mountpoint = Some(PathBuf::from(a)),
        }
    }
    let mountpoint = mountpoint.ok_or("usage: memmount MOUNTPOINT [--writeback] [--threads N]")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store: Arc<dyn ObjectStore> = match pool_mib {
        None => Arc::new(MemStore::new()),
        Some(mib) => {
            let devs: Vec<Arc<dyn BlockDevice>> = (0..2)
                .map(|i| Arc::new(MemBlockDevice::new(format!("m{i}"), 4096, mib * 256)) as _)
                .collect();
            let mut c = PoolConfig::new("bench", PoolLayout::Mirror);
            c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
            Arc::new(rt.block_on(Pool::create(devs, c))?)
        }
    };
    let fs = rt.block_on(Fs::mount(store, FsOptions::default()))?;
    opts.runtime = Some(rt.handle().clone());
    let handle = mount(Arc::new(fs), &mountpoint, &opts)?;
    eprintln!(
        "mounted at {}; press Ctrl-C or close stdin to unmount",
        mountpoint.display()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    rt.block_on(async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = rx => {}
        }
    });
    handle.unmount()?;
    Ok(())
}
