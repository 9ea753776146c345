//! OpenShift compatibility export: from a bundle, the two files `cluster-backup.sh` writes —
//! `snapshot_<%F_%H%M%S>.db` and `static_kuberesources_<same>.tar.gz` holding
//! `static-pod-resources/<component>-pod-N/…` relative to `/etc/kubernetes` — so the stock
//! `cluster-restore.sh` and the documented OpenShift procedure work unchanged. A forced backup
//! gets the `__POSSIBLY_DIRTY__` suffix, as with `cluster-backup.sh --force`.
//!
//! Both files are written under temporary names (0600) and appear only once every exported
//! entry matched the bundle's manifest; a failure removes them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::bundle::manifest::{EntryKind, MANIFEST_PATH, Manifest, SNAPSHOT_PATH};
use crate::bundle::reader::{Flow, VerifyError, entry_path, for_each_entry, read_manifest};
use crate::keys::Identities;

const RESOURCES_PREFIX: &str = "static-pod-resources/";

#[derive(Debug, serde::Serialize)]
pub struct Exported {
    pub snapshot: PathBuf,
    pub static_kuberesources: PathBuf,
}

/// Removes the temporary files unless disarmed.
struct Temps(Vec<PathBuf>);

impl Drop for Temps {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn create_0600(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

pub fn export_openshift(
    input: impl Read + Send,
    ids: &Identities,
    out_dir: &Path,
) -> anyhow::Result<Exported> {
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let pid = std::process::id();
    let snap_tmp = out_dir.join(format!(".cpbackup-export-{pid}.db"));
    let res_tmp = out_dir.join(format!(".cpbackup-export-{pid}.tar.gz"));
    let mut snap =
        create_0600(&snap_tmp).with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let temps = Temps(vec![snap_tmp.clone(), res_tmp.clone()]);
    let mut res = tar::Builder::new(GzEncoder::new(
        create_0600(&res_tmp)?,
        Compression::default(),
    ));
    res.follow_symlinks(false);
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut resources = 0usize;
    let io_err = |e: io::Error| VerifyError::Io(e.to_string());
    for_each_entry(input, ids, |entry| {
        let path = entry_path(entry).map_err(io_err)?;
        let kind = entry.header().entry_type();
        if path == MANIFEST_PATH {
            let size = entry.size();
            manifest = Some(read_manifest(entry, size, io_err)?);
        } else if path == SNAPSHOT_PATH {
            let mut h = Hashing {
                inner: &mut *entry,
                hash: Sha256::new(),
                n: 0,
            };
            io::copy(&mut h, &mut snap).map_err(io_err)?;
            seen.insert(path, (h.n, hex::encode(h.hash.finalize())));
        } else if path.starts_with(RESOURCES_PREFIX) {
            let mut header = entry.header().clone();
            if kind.is_dir() {
                res.append_data(&mut header, &path, io::empty())
                    .map_err(io_err)?;
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(io_err)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                res.append_link(&mut header, &path, target)
                    .map_err(io_err)?;
            } else if kind.is_file() {
                let mut h = Hashing {
                    inner: &mut *entry,
                    hash: Sha256::new(),
                    n: 0,
                };
                res.append_data(&mut header, &path, &mut h)
                    .map_err(io_err)?;
                seen.insert(path, (h.n, hex::encode(h.hash.finalize())));
            }
            resources += 1;
        }
        Ok(Flow::Continue)
    })?;
    let manifest = manifest.ok_or_else(|| {
        VerifyError::Mismatch(
            "no cpbackup/manifest.json: the bundle is incomplete or not made by cpbackup".into(),
        )
    })?;
    for e in manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
    {
        if let Some((n, sha)) = seen.get(&e.path)
            && (*n != e.size || Some(sha) != e.sha256.as_ref())
        {
            return Err(VerifyError::Mismatch(format!(
                "{}: content differs from the manifest",
                e.path
            ))
            .into());
        }
    }
    if !seen.contains_key(SNAPSHOT_PATH) {
        return Err(VerifyError::Mismatch(format!("no {SNAPSHOT_PATH} in the bundle")).into());
    }
    if resources == 0 {
        anyhow::bail!(
            "this backup holds no OpenShift static pod resources (platform {:?}); export-openshift needs a backup of an OpenShift master",
            manifest.platform
        );
    }
    res.into_inner()?.finish()?.sync_all()?;
    snap.sync_all()?;
    let created = time::OffsetDateTime::parse(
        &manifest.created,
        &time::format_description::well_known::Rfc3339,
    )
    .context("the manifest's creation time is unreadable")?;
    let ts = created.format(time::macros::format_description!(
        "[year]-[month]-[day]_[hour][minute][second]"
    ))?;
    let dirty = if manifest.forced {
        "__POSSIBLY_DIRTY__"
    } else {
        ""
    };
    let out = Exported {
        snapshot: out_dir.join(format!("snapshot_{ts}{dirty}.db")),
        static_kuberesources: out_dir.join(format!("static_kuberesources_{ts}{dirty}.tar.gz")),
    };
    // Publish without ever replacing an existing file.
    fs::hard_link(&snap_tmp, &out.snapshot)
        .with_context(|| format!("{} already exists?", out.snapshot.display()))?;
    if let Err(e) = fs::hard_link(&res_tmp, &out.static_kuberesources) {
        let _ = fs::remove_file(&out.snapshot);
        return Err(e)
            .with_context(|| format!("{} already exists?", out.static_kuberesources.display()));
    }
    drop(temps);
    File::open(out_dir)?.sync_all()?;
    Ok(out)
}
