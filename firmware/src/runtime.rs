//! Where a running appliance can be found: `ingot up` registers itself in
//! `DATA/run/appliance.json` (pid, pool name, console URL and a local API token for the
//! CLI; mode 0600) plus a pointer `$INGOT_RUN_DIR/NAME.json` (default `/run/ingot`) per
//! pool name, and removes both on a clean shutdown. The administration commands look
//! the appliance up by pool name or data directory and talk to it through the console's
//! API; registrations of a dead process are ignored.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default directory of the per-pool pointers.
pub const DEFAULT_RUN_DIR: &str = "/run/ingot";

/// Name of the API token the appliance mints for the local CLI.
pub const LOCAL_TOKEN_NAME: &str = "ingot-cli (local, managed by ingot up)";

/// What a running appliance publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Process id of `ingot up`.
    pub pid: u32,
    /// Name of the pool it holds.
    pub pool: String,
    /// Console base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
    /// Bearer token for the local CLI.
    pub token: String,
}

/// The per-pool pointer: which data directory holds the registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pointer {
    pid: u32,
    data: PathBuf,
}

/// The directory of the per-pool pointers (`$INGOT_RUN_DIR`, else `/run/ingot`).
pub fn run_dir() -> PathBuf {
    std::env::var_os("INGOT_RUN_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_RUN_DIR), PathBuf::from)
}

/// The registration file of the appliance using `data`.
pub fn info_path(data: &Path) -> PathBuf {
    data.join("run").join("appliance.json")
}

fn pointer_path(pool: &str) -> PathBuf {
    run_dir().join(format!("{pool}.json"))
}

/// Whether process `pid` is alive (and not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// A registration made by `ingot up`; [`Registration::remove`] undoes it.
#[derive(Debug)]
pub struct Registration {
    info: PathBuf,
    pointer: Option<PathBuf>,
}

impl Registration {
    /// Publish `info`: the registration file (0600: it holds the token) and the pool's
    /// pointer. A pointer that cannot be written (no permission on the run directory) is
    /// logged and skipped: the appliance is then found by its data directory only.
    pub fn publish(info: &RunInfo) -> std::io::Result<Registration> {
        let path = info_path(&info.data);
        let text = serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?;
        write_file(&path, &text, 0o600)?;
        let ptr = pointer_path(&info.pool);
        let p = Pointer {
            pid: info.pid,
            data: info.data.clone(),
        };
        let pointer = match serde_json::to_vec_pretty(&p)
            .map_err(std::io::Error::other)
            .and_then(|t| write_file(&ptr, &t, 0o644))
        {
            Ok(()) => Some(ptr),
            Err(e) => {
                tracing::warn!(path = %ptr.display(), error = %e,
                    "cannot write the appliance pointer; the CLI finds this appliance by --data only");
                None
            }
        };
        Ok(Registration {
            info: path,
            pointer,
        })
    }

    /// Remove the registration (clean shutdown). A pointer since taken over by another
    /// live appliance is left alone.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.info) {
            tracing::warn!(path = %self.info.display(), error = %e, "cannot remove the registration");
        }
        if let Some(p) = self.pointer {
            let mine = read_json::<Pointer>(&p).is_some_and(|ptr| ptr.pid == std::process::id());
            if mine {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable registration");
            None
        }
    }
}

/// The live appliance using data directory `data`, if any.
pub fn by_data(data: &Path) -> Option<RunInfo> {
    let info: RunInfo = read_json(&info_path(data))?;
    if alive(info.pid) && info.pid != std::process::id() {
        Some(info)
    } else {
        tracing::debug!(
            pid = info.pid,
            "ignoring the registration of a dead appliance"
        );
        None
    }
}

/// The live appliance holding pool `name`, if any.
pub fn by_pool(name: &str) -> Option<RunInfo> {
    let p: Pointer = read_json(&pointer_path(name))?;
    if !alive(p.pid) {
        return None;
    }
    by_data(&p.data).filter(|i| i.pool == name)
}

/// Every live appliance with a pointer in the run directory.
pub fn all() -> Vec<RunInfo> {
    let Ok(dir) = std::fs::read_dir(run_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<RunInfo> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| read_json::<Pointer>(&p))
        .filter(|p| alive(p.pid))
        .filter_map(|p| by_data(&p.data))
        .collect();
    out.sort_by(|a, b| a.pool.cmp(&b.pool));
    out.dedup();
    out
}

/// The appliance a command means: by `--data`, else by pool name, else the one using
/// `./ingot-data`, else the only one running. `None`: act on the drives directly.
pub fn find(name: Option<&str>, data: Option<&Path>) -> Option<RunInfo> {
    if let Some(d) = data {
        return by_data(d).filter(|i| name.is_none_or(|n| n == i.pool));
    }
    if let Some(n) = name {
        return by_pool(n);
    }
    if let Some(i) = by_data(Path::new(crate::DEFAULT_DATA_DIR)) {
        return Some(i);
    }
    let mut live = all();
    if live.len() == 1 { live.pop() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pid_is_ignored_and_a_live_one_found() {
        let t = tempfile::tempdir().unwrap();
        let mut info = RunInfo {
            pid: std::process::id(),
            pool: "tank".into(),
            url: "http://127.0.0.1:1".into(),
            data: t.path().to_path_buf(),
            token: "ingot_x".into(),
        };
        // Our own pid counts as "not another appliance".
        let path = info_path(t.path());
        write_file(&path, &serde_json::to_vec(&info).unwrap(), 0o600).unwrap();
        assert_eq!(by_data(t.path()), None);
        // pid 1 is alive in every Linux pid namespace.
        info.pid = 1;
        write_file(&path, &serde_json::to_vec(&info).unwrap(), 0o600).unwrap();
        assert_eq!(by_data(t.path()), Some(info.clone()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A pid far above pid_max is dead.
        info.pid = u32::MAX - 1;
        write_file(&path, &serde_json::to_vec(&info).unwrap(), 0o600).unwrap();
        assert_eq!(by_data(t.path()), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(by_data(t.path()), None);
    }
}
