//! A directory as a store: `<root>/<cluster>/<node>/<file>.cpb` and `.cpb.json`.
//!
//! A bundle is written under a hidden temporary name (mode 0600), fsynced, linked to its final
//! name (never replacing an existing one) and the directory fsynced; only then is the record
//! written the same way. An interrupted backup leaves at most a hidden temp file, which `list`
//! ignores and which is removed when the upload is dropped.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::store::naming::{BUNDLE_EXT, RECORD_EXT};
use crate::store::record::MAX_RECORD_BYTES;
use crate::store::{BundleName, Listing, Record, Store, Upload, scanned_state, state_of};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The bundle file of a backup name.
    pub fn bundle_path(&self, key: &str) -> anyhow::Result<PathBuf> {
        self.path_of(key)
    }

    fn not_writable(&self) -> String {
        format!(
            "store {} is not writable: check the path and its permissions (backups run as root), or choose another --store",
            self.root.display()
        )
    }

    /// `<root>/<cluster>/<node>`, created 0700 where missing.
    fn node_dir(&self, cluster: &str, node: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(cluster).join(node);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| self.not_writable())?;
        Ok(dir)
    }

    fn path_of(&self, key: &str) -> anyhow::Result<PathBuf> {
        let n = BundleName::parse(key).ok_or_else(|| {
            crate::error::usage(format!(
                "{key:?} is not a backup name: use the NAME column of `cpbackup list` (cluster/node/file.cpb) or a path to a .cpb file"
            ))
        })?;
        Ok(self.root.join(n.key()))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to `path` atomically and durably, refusing to replace an existing file.
fn write_new_durably(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{}.tmp-{}", file_name(path), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

struct LocalUpload {
    file: Option<File>,
    dir: PathBuf,
    tmp: PathBuf,
    dest: PathBuf,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("upload closed"))?
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for LocalUpload {
    fn commit(mut self: Box<Self>, record: &Record) -> anyhow::Result<()> {
        let f = self.file.take().context("upload already closed")?;
        // Read-only from here on: a bundle is never written again.
        f.set_permissions(fs::Permissions::from_mode(0o400))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", self.tmp.display()))?;
        drop(f);
        fs::hard_link(&self.tmp, &self.dest).with_context(|| {
            format!(
                "cannot publish {} (does it already exist?)",
                self.dest.display()
            )
        })?;
        fs::remove_file(&self.tmp).ok();
        sync_dir(&self.dir).with_context(|| format!("fsync {}", self.dir.display()))?;
        let rec_path = PathBuf::from(format!("{}.json", self.dest.display()));
        let json = serde_json::to_vec_pretty(record)?;
        write_new_durably(&self.dir, &rec_path, &json)
            .with_context(|| format!("writing the record {}", rec_path.display()))?;
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn delete(&self, name: &str) -> anyhow::Result<crate::store::Deleted> {
        let bundle = self.path_of(name)?;
        let record = PathBuf::from(format!(
            "{}{}",
            bundle.display().to_string().trim_end_matches(BUNDLE_EXT),
            RECORD_EXT
        ));
        // The record goes first: a bundle without record is "incomplete", never mistaken for whole.
        for p in [
            record,
            crate::store::pending::marker_path(&bundle),
            bundle.clone(),
        ] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", p.display()));
                }
                _ => {}
            }
        }
        if let Some(dir) = bundle.parent() {
            let _ = sync_dir(dir);
        }
        Ok(crate::store::Deleted::Gone)
    }

    fn abort_unfinished(&self, cluster: &str, node: &str) -> anyhow::Result<usize> {
        let dir = self.root.join(cluster).join(node);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".tmp-") {
                fs::remove_file(e.path())
                    .with_context(|| format!("removing the stale {}", e.path().display()))?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn probe(&self, cluster: &str, node: &str) -> anyhow::Result<crate::store::Probe> {
        let dir = self.node_dir(cluster, node)?;
        let probe = dir.join(format!(".cpbackup-probe-{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .and_then(|mut f| {
                f.write_all(b"cpbackup doctor\n")
                    .and_then(|()| f.sync_all())
            });
        let _ = fs::remove_file(&probe);
        written.with_context(|| self.not_writable())?;
        Ok(crate::store::Probe::default())
    }

    fn create(&self, name: &BundleName) -> anyhow::Result<Box<dyn Upload>> {
        let dir = self.node_dir(&name.cluster, &name.node)?;
        let dest = dir.join(&name.file);
        if dest.exists() {
            anyhow::bail!(
                "{} already exists; refusing to overwrite a backup",
                dest.display()
            );
        }
        let tmp = dir.join(format!(".{}.tmp-{}", name.file, std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| self.not_writable())?;
        Ok(Box::new(LocalUpload {
            file: Some(file),
            dir,
            tmp,
            dest,
        }))
    }

    fn scan(&self) -> anyhow::Result<Vec<Listing>> {
        let mut out = Vec::new();
        let read = |p: &Path| -> anyhow::Result<Vec<fs::DirEntry>> {
            match fs::read_dir(p) {
                Ok(d) => Ok(d.filter_map(Result::ok).collect()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e).with_context(|| format!("cannot list {}", p.display())),
            }
        };
        if !self.root.exists() {
            anyhow::bail!(
                "store {} does not exist; check --store",
                self.root.display()
            );
        }
        // Only directories hold backups at the cluster and node levels; anything else there (a
        // README, a stray file) is named and skipped instead of failing the whole listing.
        let dirs = |p: &Path| -> anyhow::Result<Vec<fs::DirEntry>> {
            Ok(read(p)?
                .into_iter()
                .filter(|e| {
                    let dir = e.file_type().is_ok_and(|t| t.is_dir());
                    if !dir && !e.file_name().to_string_lossy().starts_with('.') {
                        tracing::warn!(path = %e.path().display(), "not a backup directory; ignored");
                    }
                    dir
                })
                .collect())
        };
        for cluster in dirs(&self.root)? {
            for node in dirs(&cluster.path())? {
                let files: std::collections::HashSet<String> = read(&node.path())?
                    .iter()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|f| !f.starts_with('.'))
                    .collect();
                let mut names: Vec<String> = files
                    .iter()
                    .cloned()
                    .filter_map(|f| {
                        f.strip_suffix(".json")
                            .map(str::to_owned)
                            .or_else(|| f.ends_with(BUNDLE_EXT).then_some(f.clone()))
                    })
                    .filter(|f| f.ends_with(BUNDLE_EXT))
                    .collect();
                names.sort();
                names.dedup();
                for file in names {
                    let key = format!(
                        "{}/{}/{file}",
                        cluster.file_name().to_string_lossy(),
                        node.file_name().to_string_lossy()
                    );
                    if BundleName::parse(&key).is_none() {
                        continue;
                    }
                    let bundle = node.path().join(&file);
                    let meta = fs::metadata(&bundle).ok().filter(|m| m.is_file());
                    let size = meta.as_ref().map(|m| m.len());
                    let rec_file = format!("{}{}", file.trim_end_matches(BUNDLE_EXT), RECORD_EXT);
                    let has_record = files.contains(&rec_file);
                    let tampered = meta
                        .and_then(|m| m.modified().ok())
                        .map(|m| changed_after_record(m, &node.path().join(&rec_file)))
                        .unwrap_or_default();
                    out.push(Listing {
                        name: key,
                        store: self.location(),
                        size,
                        state: scanned_state(size, has_record, &tampered),
                        record: None,
                        pending: crate::store::pending::read(&bundle).stores,
                        tampered,
                        record_error: None,
                        version_id: None,
                        record_version: has_record.then(String::new),
                    });
                }
            }
        }
        super::sort_listings(&mut out);
        Ok(out)
    }

    fn read_records(&self, listings: &mut [Listing]) -> anyhow::Result<()> {
        for l in listings.iter_mut().filter(|l| l.record_version.is_some()) {
            let bundle = self.path_of(&l.name)?;
            let rec_path = bundle.with_file_name(format!(
                "{}{}",
                bundle
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default()
                    .trim_end_matches(BUNDLE_EXT),
                RECORD_EXT
            ));
            (l.record, l.record_error) = match read_record(&rec_path) {
                Ok(r) => (r, None),
                Err(e) => (None, Some(e)),
            };
            l.state = state_of(l.size, l.record.as_ref(), &l.tampered);
        }
        Ok(())
    }

    fn open(&self, name: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        let p = self.path_of(name)?;
        let f = File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
        Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f)))
    }
}

/// A bundle modified after its record was written (the record comes last) was changed.
fn changed_after_record(bundle_modified: std::time::SystemTime, record: &Path) -> Vec<String> {
    let b = bundle_modified;
    match fs::metadata(record).and_then(|m| m.modified()) {
        Ok(r) if b > r + std::time::Duration::from_secs(1) => vec![format!(
            "the bundle was modified {} s after its record was written",
            b.duration_since(r).unwrap_or_default().as_secs()
        )],
        _ => Vec::new(),
    }
}

/// The record at `path`: none if it does not exist, the reason if it cannot be used.
fn read_record(path: &Path) -> Result<Option<Record>, String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let mut buf = Vec::new();
    f.take(MAX_RECORD_BYTES)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Record::parse_limited(&buf).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BackupState;

    fn record(name: &str, size: u64) -> Record {
        Record::sample(name, size)
    }

    #[test]
    fn commit_publishes_a_read_only_bundle_then_its_record() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path());
        let n = BundleName::parse("c/n/20260101T000000Z-rev7.cpb").unwrap();
        let mut u = s.create(&n).unwrap();
        u.write_all(b"hello").unwrap();
        // nothing visible before commit
        assert!(s.list().unwrap().is_empty());
        u.commit(&record(&n.key(), 5)).unwrap();
        let l = s.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].state, BackupState::Complete);
        let b = d.path().join("c/n/20260101T000000Z-rev7.cpb");
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o400,
            "a published bundle is read-only"
        );
        let names: Vec<_> = fs::read_dir(d.path().join("c/n"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
        // the same name is never overwritten
        assert!(s.create(&n).is_err());
    }

    #[test]
    fn dropped_upload_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path());
        let n = BundleName::parse("c/n/20260101T000000Z-rev7.cpb").unwrap();
        let mut u = s.create(&n).unwrap();
        u.write_all(b"partial").unwrap();
        drop(u);
        assert_eq!(fs::read_dir(d.path().join("c/n")).unwrap().count(), 0);
    }

    #[test]
    fn stale_temp_files_of_a_killed_run_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c/n");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".20260101T000000Z-rev1.cpb.tmp-999"), b"x").unwrap();
        fs::write(dir.join("20260101T000000Z-rev1.cpb"), b"kept").unwrap();
        assert_eq!(
            LocalStore::new(d.path())
                .abort_unfinished("c", "n")
                .unwrap(),
            1
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn states_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c/n");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("20260101T000000Z-rev1.cpb"), b"x").unwrap();
        fs::write(dir.join("20260102T000000Z-rev2.cpb"), b"xy").unwrap();
        fs::write(
            dir.join("20260102T000000Z-rev2.cpb.json"),
            serde_json::to_vec(&record("c/n/20260102T000000Z-rev2.cpb", 5)).unwrap(),
        )
        .unwrap();
        fs::write(
            dir.join("20260103T000000Z-rev3.cpb.json"),
            serde_json::to_vec(&record("x", 5)).unwrap(),
        )
        .unwrap();
        fs::write(dir.join(".20260104T000000Z-rev4.cpb.tmp-1"), b"x").unwrap();
        let l = LocalStore::new(d.path()).list().unwrap();
        let states: Vec<_> = l.iter().map(|x| x.state).collect();
        assert_eq!(
            states,
            vec![
                BackupState::Incomplete,
                BackupState::SizeMismatch,
                BackupState::MissingBundle
            ]
        );
    }

    #[test]
    fn unwritable_store_says_so() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        fs::write(&f, b"").unwrap();
        let s = LocalStore::new(&f);
        let n = BundleName::parse("c/n/20260101T000000Z-rev7.cpb").unwrap();
        let e = s.create(&n).err().unwrap();
        assert!(format!("{e:#}").contains("not writable"), "{e:#}");
    }
}
