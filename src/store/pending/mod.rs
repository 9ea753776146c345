//! Pending uploads: when a backup reached a local store but not a remote one, the local copy is
//! marked with the stores it still owes (`<bundle>.pending`, JSON, 0600), and
//! `backup --upload-pending` (later the daemon) copies it there and clears the mark.

pub mod upload;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const PENDING_EXT: &str = ".pending";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Pending {
    /// Store locations (as configured) that do not have this backup yet.
    pub stores: Vec<String>,
}

/// The marker beside a bundle file.
pub fn marker_path(bundle: &Path) -> PathBuf {
    PathBuf::from(format!("{}{PENDING_EXT}", bundle.display()))
}

pub fn read(bundle: &Path) -> Pending {
    fs::read(marker_path(bundle))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes (or, when `stores` is empty, removes) the marker atomically.
pub fn write(bundle: &Path, stores: &[String]) -> anyhow::Result<()> {
    let path = marker_path(bundle);
    if stores.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let body = serde_json::to_vec_pretty(&Pending {
        stores: stores.to_vec(),
    })?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_clear() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("x.cpb");
        assert!(read(&b).stores.is_empty());
        write(&b, &["s3://a/b".into()]).unwrap();
        assert_eq!(read(&b).stores, vec!["s3://a/b"]);
        write(&b, &[]).unwrap();
        assert!(!marker_path(&b).exists());
    }
}
