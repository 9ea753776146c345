//! The node lock: at most one backup, upload or restore runs at a time on a node.
//!
//! An advisory `flock` on `<state_dir>/backup.lock`, released when the process exits (even when
//! killed), so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// Held while a backup runs; dropping it releases the lock.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

impl NodeLock {
    /// Takes the lock for `what` (a command name, said to whoever finds the lock held).
    pub fn acquire(state_dir: &Path, what: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir).with_context(|| {
            format!(
                "cannot create state directory {}; set --state-dir to a writable directory",
                state_dir.display()
            )
        })?;
        let path = state_dir.join("backup.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot open lock file {}; give a directory you can write with --state-dir (or state_dir in the config file)",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let (pid, held_for) = holder
                    .trim()
                    .split_once(' ')
                    .unwrap_or((holder.trim(), "backup"));
                anyhow::bail!(
                    "another cpbackup {held_for} is running on this node (lock {} held by pid {pid}); wait for it to finish, then run {what} again",
                    path.display(),
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{} {what}", std::process::id())?;
        Ok(NodeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeLock::acquire(dir.path(), "restore").unwrap();
        let e = NodeLock::acquire(dir.path(), "restore").unwrap_err();
        assert!(
            e.to_string()
                .contains("another cpbackup restore is running"),
            "{e}"
        );
        assert!(e.to_string().contains(&std::process::id().to_string()));
        drop(a);
        NodeLock::acquire(dir.path(), "restore").unwrap();
    }
}
