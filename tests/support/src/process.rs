//! The cpbackup binary with a clean environment, and what a test reads of its runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The cpbackup binary cargo built for the tests: `CARGO_BIN_EXE_cpbackup` when the runner
/// sets it, else beside the test binary's `deps/` directory.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_cpbackup") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    target.join("cpbackup")
}

/// The cpbackup binary with a clean environment (no CPBACKUP_* leaking in, no config file).
pub fn cpbackup(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("CPBACKUP_") || k.starts_with("RUST_LOG") {
            c.env_remove(k);
        }
    }
    let cfg = dir.join("empty-config.toml");
    if !cfg.exists() {
        fs::write(&cfg, "").unwrap();
    }
    c.env("CPBACKUP_CONFIG", cfg)
        .env("CPBACKUP_STATE_DIR", dir.join("state"))
        .env("CPBACKUP_CACHE_DIR", dir.join("cache"))
        .stdin(Stdio::null());
    c
}

/// A run's standard output as JSON, or a panic showing both streams.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

/// Appends `backup --static-pods none --etcd-endpoint EP --recipient R` (etcd only, no host).
pub fn etcd_backup(c: &mut Command, endpoint: &str, recipient: &str) {
    c.args([
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        endpoint,
        "--recipient",
        recipient,
    ]);
}

/// Runs a `backup` given `--output json`; panics with stderr unless it succeeded; returns the
/// new backup's name.
pub fn backed_up(c: Command) -> String {
    let o = run(c);
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["name"]
        .as_str()
        .expect("the report names the backup")
        .to_owned()
}

/// Runs and returns output; panics with stderr if it could not start.
pub fn run(mut c: Command) -> Output {
    c.output().expect("cpbackup runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An age identity made by `cpbackup keygen`; returns (identity file, recipient).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    let mut c = cpbackup(dir);
    c.args(["keygen", "--out"]).arg(&p);
    let o = run(c);
    assert!(o.status.success(), "keygen: {}", stderr(&o));
    (p, stdout(&o).trim().to_owned())
}

/// All regular files under `dir`, relative paths, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Asserts that a run failed with exit code `code` (1 failed, 2 bad usage) and said `needle`
/// on stderr; returns stderr for further checks.
#[track_caller]
pub fn fails_with(o: &Output, code: i32, needle: &str) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr:\n{e}");
    assert!(e.contains(needle), "stderr lacks {needle:?}:\n{e}");
    e
}
