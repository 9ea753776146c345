//! Unpacking a bundle into a private directory for a restore, verifying as it goes: every
//! entry's size and SHA-256 against the manifest (nothing missing, nothing extra), the
//! snapshot's sha256 trailer and bbolt meta pages. Nothing in the directory may be trusted
//! until `unpack` returns Ok. Every file and directory is synced except the snapshot, which
//! only lives until `etcdutl` has copied it (see `restore::steps` for how a continued restore
//! re-checks it).
//!
//! Paths are confined to the directory (absolute paths and `..` are refused); files are created
//! 0600 and get the bundle's mode, owner and group once written; symlinks are recreated as
//! links, never followed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::bundle::manifest::{EntryKind, MANIFEST_PATH, Manifest, SNAPSHOT_PATH};
use crate::bundle::reader::{Flow, VerifyError, entry_path, for_each_entry, read_manifest};
use crate::keys::Identities;
use crate::snapshot::check::{SnapshotCheck, SnapshotSummary, TrailerStatus};

/// What `unpack` wrote, verified.
pub struct Unpacked {
    pub manifest: Manifest,
    /// `<dest>/etcd/snapshot.db`.
    pub snapshot: PathBuf,
    pub snapshot_check: SnapshotSummary,
}

/// Keeps a bundle path inside `dest`.
fn confined(dest: &Path, path: &str) -> Result<PathBuf, VerifyError> {
    let p = Path::new(path);
    let mut out = dest.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(VerifyError::Mismatch(format!(
                    "{path}: entry path escapes the bundle (absolute or ..)"
                )));
            }
        }
    }
    if out == dest {
        return Err(VerifyError::Mismatch(format!("{path}: empty entry path")));
    }
    Ok(out)
}

/// Unpacks `input` into `dest` (created 0700; it must not exist yet).
pub fn unpack(
    input: impl Read + Send,
    ids: &Identities,
    dest: &Path,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Unpacked> {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(false)
        .create(dest)
        .with_context(|| format!("cannot create the staging directory {}", dest.display()))?;
    let io_err = |e: io::Error| VerifyError::Io(e.to_string());
    let mut seen: BTreeMap<String, (EntryKind, u64, Option<String>, Option<String>)> =
        BTreeMap::new();
    // (path, mode, uid, gid, is a directory)
    let mut modes: Vec<(PathBuf, u32, u64, u64, bool)> = Vec::new();
    let mut manifest: Option<Manifest> = None;
    let mut summary: Option<SnapshotSummary> = None;
    for_each_entry(input, ids, |entry| {
        let path = entry_path(entry).map_err(io_err)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if path == MANIFEST_PATH {
            let size = entry.size();
            manifest = Some(read_manifest(entry, size, io_err)?);
            return Ok(Flow::Continue);
        }
        if seen.contains_key(&path) {
            return Err(VerifyError::Mismatch(format!("{path} appears twice")));
        }
        let target = confined(dest, &path)?;
        // The snapshot entry carries no owner; anything unreadable means root, 0600.
        let mode = header.mode().unwrap_or(0o600) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        if kind.is_dir() {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&target)
                .map_err(io_err)?;
            modes.push((target, mode, uid, gid, true));
            seen.insert(path, (EntryKind::Dir, 0, None, None));
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(io_err)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            make_parent(&target).map_err(io_err)?;
            std::os::unix::fs::symlink(&link, &target).map_err(io_err)?;
            let _ = nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &target,
                Some(nix::unistd::Uid::from_raw(uid as u32)),
                Some(nix::unistd::Gid::from_raw(gid as u32)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            seen.insert(path, (EntryKind::Symlink, 0, None, Some(link)));
        } else if kind.is_file() {
            make_parent(&target).map_err(io_err)?;
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(io_err)?;
            let is_snapshot = path == SNAPSHOT_PATH;
            let mut check = is_snapshot.then(|| SnapshotCheck::new(header.size().unwrap_or(0)));
            // The snapshot's whole-file digest comes from its check; others hash here.
            let mut hash = (!is_snapshot).then(Sha256::new);
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let k = entry.read(&mut buf).map_err(io_err)?;
                if k == 0 {
                    break;
                }
                if let Some(h) = hash.as_mut() {
                    h.update(&buf[..k]);
                }
                if let Some(c) = check.as_mut() {
                    c.update(&buf[..k]);
                }
                out.write_all(&buf[..k]).map_err(io_err)?;
                n += k as u64;
                progress(k as u64);
            }
            let digest = match (hash, check) {
                (Some(h), _) => {
                    // Durable before a restore renames it onto the host.
                    out.sync_all().map_err(io_err)?;
                    hex::encode(h.finalize())
                }
                (None, Some(c)) => {
                    // Not synced: etcdutl copies it (and syncs its copy) right away, and a
                    // restore continued by another process hashes it again before use.
                    let s = c.finish();
                    let d = s.file_sha256.clone();
                    summary = Some(s);
                    d
                }
                (None, None) => unreachable!("a file is either hashed or checked"),
            };
            modes.push((target, mode, uid, gid, false));
            seen.insert(path, (EntryKind::File, n, Some(digest), None));
        } else {
            return Err(VerifyError::Mismatch(format!(
                "{path}: unexpected tar entry type {kind:?}"
            )));
        }
        Ok(Flow::Continue)
    })
    .map_err(anyhow::Error::new)?;

    let manifest = manifest.ok_or_else(|| {
        VerifyError::Mismatch(
            "no cpbackup/manifest.json: the bundle is incomplete or not made by cpbackup".into(),
        )
    })?;
    for e in &manifest.entries {
        let Some((kind, size, sha, link)) = seen.remove(&e.path) else {
            return Err(VerifyError::Mismatch(format!(
                "{} is in the manifest but not in the bundle",
                e.path
            ))
            .into());
        };
        let ok = kind == e.kind
            && match e.kind {
                EntryKind::File => size == e.size && sha == e.sha256,
                EntryKind::Symlink => link == e.link_target,
                EntryKind::Dir => true,
            };
        if !ok {
            return Err(VerifyError::Mismatch(format!(
                "{}: content differs from the manifest",
                e.path
            ))
            .into());
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(VerifyError::Mismatch(format!(
            "{extra} is in the bundle but not in the manifest"
        ))
        .into());
    }
    let summary = summary
        .ok_or_else(|| VerifyError::Mismatch(format!("no {SNAPSHOT_PATH} in the bundle")))?;
    if summary.trailer != TrailerStatus::Valid {
        return Err(VerifyError::Corrupted(format!(
            "the snapshot's sha256 trailer is {}",
            summary.trailer.as_str()
        ))
        .into());
    }
    if let Some(e) = &summary.meta_error {
        return Err(VerifyError::Corrupted(format!("the snapshot's bbolt meta pages: {e}")).into());
    }
    // Modes and owners last, deepest first, so a read-only directory does not block its files.
    for (p, mode, uid, gid, dir) in modes.iter().rev() {
        let _ = nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(*uid as u32)),
            Some(nix::unistd::Gid::from_raw(*gid as u32)),
        );
        fs::set_permissions(p, fs::Permissions::from_mode(*mode))
            .with_context(|| format!("setting the mode of {}", p.display()))?;
        if *dir {
            File::open(p)?.sync_all()?;
        }
    }
    File::open(dest)?.sync_all()?;
    Ok(Unpacked {
        manifest,
        snapshot: dest.join(SNAPSHOT_PATH),
        snapshot_check: summary,
    })
}

fn make_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(d) => fs::DirBuilder::new().mode(0o700).recursive(true).create(d),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::confined;
    use std::path::Path;

    #[test]
    fn paths_stay_inside() {
        let d = Path::new("/stage");
        assert_eq!(confined(d, "a/b").unwrap(), Path::new("/stage/a/b"));
        assert!(confined(d, "../x").is_err());
        assert!(confined(d, "/etc/passwd").is_err());
        assert!(confined(d, "a/../../x").is_err());
        assert!(confined(d, "").is_err());
    }
}
