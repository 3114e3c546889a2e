//! Mounts an empty in-memory (MemStore test double) ingot fs for manual testing and FUSE
//! overhead measurements (fio, dd), until Ctrl-C or stdin closes.
//!
//! `cargo run -p ingot-export --example memmount -- /mnt/x [--writeback] [--threads N]`

use ingot_export::{MountOptions, mount};
use ingot_fs::memstore::MemStore;
use ingot_fs::{Fs, FsOptions};
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
    while let Some(a) = args.next() {
        match a.as_str() {
            "--writeback" => opts.writeback_cache = true,
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
    let fs = rt.block_on(Fs::mount(Arc::new(MemStore::new()), FsOptions::default()))?;
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
