//! Helpers for Ingot's end-to-end tests: find the `ingot` binary, run its subcommands, and
//! run the appliance (`ingot up`) as a real process with a real FUSE mount.
//!
//! The tests wait on what the appliance prints, never on sleeps; timeouts only guard hangs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// The `ingot` binary: `$INGOT_BIN`, else `ingot` beside the test binary's `deps/` directory
/// (`cargo build -p ingot` puts it there; `tests/run-all` builds it before the tests).
pub fn ingot_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("INGOT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/PROFILE/deps");
    let bin = dir.join("ingot");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo build -p ingot` first (tests/run-all does), or set INGOT_BIN",
        bin.display()
    );
    bin
}

/// Run `ingot ARGS` to completion.
pub fn ingot(args: &[&str]) -> Output {
    Command::new(ingot_bin())
        .args(args)
        .env("INGOT_LOG", "warn")
        .output()
        .expect("run ingot")
}

/// stdout of a successful `ingot ARGS`, or a panic with its stderr.
pub fn ingot_ok(args: &[&str]) -> String {
    let o = ingot(args);
    assert!(
        o.status.success(),
        "ingot {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Write a passphrase file in `dir`.
pub fn passphrase_file(dir: &Path, pass: &str) -> PathBuf {
    let p = dir.join(format!("pass-{}", pass.len()));
    std::fs::write(&p, format!("{pass}\n")).expect("write passphrase file");
    p
}

/// A running appliance.
#[derive(Debug)]
pub struct Up {
    child: Option<Child>,
    lines: Receiver<String>,
    /// Everything it printed so far.
    pub log: Vec<String>,
    /// The data directory.
    pub data: PathBuf,
    /// The FUSE mountpoint.
    pub mnt: PathBuf,
    /// The console's base URL (`http://127.0.0.1:PORT`).
    pub console: String,
    /// Its `$INGOT_RUN_DIR` (per-pool pointers), private to this appliance so that
    /// parallel tests' pools of the same name do not meet.
    pub run_dir: PathBuf,
    /// Leave the mount as the process left it (a crash test checks the next start clears it).
    leave_mount: bool,
}

/// How long start-up or shutdown may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(120);

impl Up {
    /// Start `ingot up --data DATA --passphrase-file PASS EXTRA...` and wait until it serves.
    pub fn start(data: &Path, pass: &Path, extra: &[&str]) -> Up {
        let run_dir = PathBuf::from(format!("{}.run", data.display()));
        let mut child = Command::new(ingot_bin())
            .arg("up")
            .arg("--data")
            .arg(data)
            .arg("--passphrase-file")
            .arg(pass)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("INGOT_LOG", "warn")
            .env("INGOT_RUN_DIR", &run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ingot up");
        let (tx, rx) = channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut up = Up {
            child: Some(child),
            lines: rx,
            log: Vec::new(),
            data: data.to_path_buf(),
            mnt: data.join("mnt"),
            console: String::new(),
            run_dir,
            leave_mount: false,
        };
        let line = up.wait_for("ingot up: console at ");
        up.console = line
            .trim_start_matches("ingot up: console at ")
            .trim_end_matches('/')
            .to_string();
        up.wait_for("ingot up: running");
        up
    }

    /// Wait for a line containing `needle`; panic with the log if the process ends first.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(HANG) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {needle:?} from ingot up within {HANG:?}:\n{}",
                        self.log.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("ingot up ended before {needle:?}:\n{}", self.log.join("\n"))
                }
            }
        }
    }

    /// Run `ingot ARGS` as an administrator of this appliance (same `$INGOT_RUN_DIR`).
    pub fn ingot(&self, args: &[&str]) -> Output {
        Command::new(ingot_bin())
            .args(args)
            .env("INGOT_LOG", "warn")
            .env("INGOT_RUN_DIR", &self.run_dir)
            .output()
            .expect("run ingot")
    }

    /// stdout of a successful [`Up::ingot`], or a panic with its stderr and the log.
    pub fn ingot_ok(&self, args: &[&str]) -> String {
        let o = self.ingot(args);
        assert!(
            o.status.success(),
            "ingot {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// [`Up::ingot_ok`] of a `--json` command, parsed.
    pub fn ingot_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ingot_ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ingot {args:?}: {e}: {out}"))
    }

    /// `GET path` of the console API with the appliance's local CLI token (from its
    /// registration), parsed.
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        let reg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.data.join("run/appliance.json")).expect("registration"),
        )
        .expect("registration JSON");
        let out = sh(
            &self.data,
            &format!(
                "curl -sf -H 'Authorization: Bearer {}' {}{path}",
                reg["token"].as_str().expect("token"),
                reg["url"].as_str().expect("url")
            ),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("GET {path}: {e}: {out}"))
    }

    /// Poll `ingot pool status NAME --json` until `done` holds; panic with the last status
    /// after `limit`. (A deadline on a polled state, not a sleep used as synchronisation.)
    pub fn wait_status(
        &self,
        name: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t0 = std::time::Instant::now();
        loop {
            let st = self.ingot_json(&["pool", "status", name, "--json"]);
            if done(&st) {
                return st;
            }
            assert!(
                t0.elapsed() < limit,
                "pool status did not reach the wanted state within {limit:?}: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let st = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .expect("run kill");
            assert!(st.success(), "kill {sig} failed");
        }
    }

    /// SIGTERM, and wait for a clean export.
    pub fn stop(mut self) -> Vec<String> {
        self.signal("-TERM");
        self.wait_for("pool exported, drives shut down cleanly");
        let st = self
            .child
            .take()
            .expect("child")
            .wait()
            .expect("wait ingot up");
        assert!(
            st.success(),
            "ingot up exited with {st}:\n{}",
            self.log.join("\n")
        );
        std::mem::take(&mut self.log)
    }

    /// SIGKILL (a crash): no sync, no unmount.
    pub fn kill(mut self) {
        self.leave_mount = true;
        self.signal("-KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.leave_mount {
            return;
        }
        // A failed test must not leave a dead mount behind.
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }
}

/// Run a shell command in `dir`, panicking with its output on failure.
pub fn sh(dir: &Path, script: &str) -> String {
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        o.status.success(),
        "`{script}` failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The Python program behind [`Mapper`]: one command per line on stdin, each answered on
/// stdout with a decimal length line and that many bytes.
/// `M path` maps the whole file read-only and shared (answer: its size, 0 maps nothing);
/// `W path` maps it read-write and shared; `P off hex` stores bytes into a read-write mapping
/// (clamped to it; answer: how many); `S` flushes the mapping (`msync`);
/// `R off len` reads from the mapping (clamped to it); `U` unmaps.
const MAPPER_PY: &str = r#"
import mmap, os, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
m = None
def send(b):
    out.write(b"%d\n" % len(b)); out.write(b); out.flush()
for line in inp:
    w = line.rstrip(b"\n").split(b"\t")
    if w[0] in (b"M", b"W"):
        rw = w[0] == b"W"
        fd = os.open(w[1], os.O_RDWR if rw else os.O_RDONLY)
        size = os.fstat(fd).st_size
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if rw else 0)
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, prot) if size else None
        os.close(fd)
        out.write(b"%d\n" % size); out.flush()
    elif w[0] == b"P":
        off, b = int(w[1]), bytes.fromhex(w[2].decode())
        n = max(0, min(len(b), (len(m) if m is not None else 0) - off))
        if n:
            m[off:off + n] = b[:n]
        out.write(b"%d\n" % n); out.flush()
    elif w[0] == b"S":
        if m is not None:
            m.flush()
        out.write(b"0\n"); out.flush()
    elif w[0] == b"R":
        off, n = int(w[1]), int(w[2])
        send(m[off:off + n] if m is not None else b"")
    elif w[0] == b"U":
        if m is not None:
            m.close()
        m = None
        out.write(b"0\n"); out.flush()
"#;

/// Reads files through shared memory mappings (`mmap(2)`), so page-fault reads of a FUSE
/// mount can be checked without `unsafe` in the tests: a long-lived `python3` process does the
/// mapping and copies the bytes back over a pipe. One mapping at a time.
#[derive(Debug)]
pub struct Mapper {
    child: Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Mapper {
    /// Starts the helper (`/usr/bin/python3`, else `python3` on the PATH).
    pub fn start() -> Mapper {
        let py = if Path::new("/usr/bin/python3").is_file() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut child = Command::new(py)
            .args(["-c", MAPPER_PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 for mmap reads (tests/setup-host needs python3)");
        let input = child.stdin.take().expect("mapper stdin");
        let output = BufReader::new(child.stdout.take().expect("mapper stdout"));
        Mapper {
            child,
            input,
            output,
        }
    }

    fn command(&mut self, line: &str) -> usize {
        use std::io::Write;
        writeln!(self.input, "{line}").expect("write to the mmap helper");
        self.input.flush().expect("flush to the mmap helper");
        let mut len = String::new();
        self.output
            .read_line(&mut len)
            .expect("read from the mmap helper");
        len.trim()
            .parse()
            .unwrap_or_else(|_| panic!("mmap helper failed on {line:?} (answered {len:?})"))
    }

    /// Maps `path` whole (replacing any mapping); returns its size.
    pub fn map(&mut self, path: &Path) -> u64 {
        self.map_as("M", path)
    }

    /// Maps `path` whole, read-write and shared (replacing any mapping); returns its size.
    pub fn map_writable(&mut self, path: &Path) -> u64 {
        self.map_as("W", path)
    }

    fn map_as(&mut self, cmd: &str, path: &Path) -> u64 {
        let p = path.to_str().expect("UTF-8 path");
        assert!(!p.contains(['\t', '\n']), "path unfit for the helper");
        self.command(&format!("{cmd}\t{p}")) as u64
    }

    /// Stores `bytes` at `off` through a writable mapping (page-fault writes); returns how
    /// many fit inside it.
    pub fn write(&mut self, off: u64, bytes: &[u8]) -> usize {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.command(&format!("P\t{off}\t{hex}"))
    }

    /// Writes the mapping's dirty pages back (`msync(MS_SYNC)`).
    pub fn sync(&mut self) {
        self.command("S");
    }

    /// Bytes `off..off+len` of the mapping (short at its end).
    pub fn read(&mut self, off: u64, len: usize) -> Vec<u8> {
        use std::io::Read;
        let n = self.command(&format!("R\t{off}\t{len}"));
        let mut buf = vec![0u8; n];
        self.output
            .read_exact(&mut buf)
            .expect("read mapped bytes from the helper");
        buf
    }

    /// Drops the mapping.
    pub fn unmap(&mut self) {
        self.command("U");
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
