//! The one checker that decides whether a bundle is acceptable. Every command that reads a
//! bundle (verify, restore and its dry run, export-openshift, extract, inspect) feeds each tar
//! entry through a [`Checker`] before it sees the entry, and trusts nothing it wrote until
//! [`Checker::finish`] has accepted the whole bundle.
//!
//! An entry is admitted only with a normalised path (`./x` is `x`) that is relative, has no
//! `..`, is not a duplicate, lies below no symlink or file entry and above no earlier entry
//! unless it is a directory, is one of the entry types and path prefixes a bundle may hold, and
//! is not setuid/setgid. At the end, the manifest (the last entry) must list exactly the
//! entries seen with their sizes, hashes and link targets, the snapshot's trailer and meta pages
//! must be sound, the paths must be those of the manifest's platform, and the bundle must agree
//! with its record (ciphertext size and SHA-256, cluster, node, revision, etcd cluster).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::bundle::manifest::{
    EntryKind, MANIFEST_PATH, MAX_MANIFEST_BYTES, Manifest, SNAPSHOT_PATH,
};
use crate::bundle::reader::VerifyError;
use crate::host::Platform;
use crate::snapshot::{SnapshotCheck, SnapshotSummary, TrailerStatus};
use crate::store::Record;

/// An entry the checker let through.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Normalised: relative, `/`-separated, no `.`/`..`/empty components, no trailing `/`.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`& 0o7777`); a missing or unreadable mode means 0600.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Content bytes (files only).
    pub size: u64,
    pub link_target: Option<String>,
}

impl Admitted {
    pub fn is_snapshot(&self) -> bool {
        self.path == SNAPSHOT_PATH
    }
}

/// What a reader does with the entries the checker admits. Nothing it receives may be trusted
/// (or put anywhere that matters) before the whole bundle is accepted.
pub trait Sink {
    /// An admitted directory, symlink or file, before a file's content.
    fn begin(&mut self, _entry: &Admitted) -> io::Result<()> {
        Ok(())
    }
    /// A piece of the current file's content.
    fn data(&mut self, _chunk: &[u8]) -> io::Result<()> {
        Ok(())
    }
    /// The current file's content is complete.
    fn end(&mut self, _entry: &Admitted) -> io::Result<()> {
        Ok(())
    }
}

/// Where a sink sends the content of the entry being read: nowhere, on to a stream (the
/// snapshot), or into a buffer taken at the entry's end (small files).
#[derive(Debug, Default)]
pub enum Route {
    #[default]
    Skip,
    Stream,
    Buffer(Vec<u8>),
}

impl Route {
    /// Buffers a file of `size` bytes.
    pub fn buffer(size: u64) -> Self {
        Route::Buffer(Vec::with_capacity(size as usize))
    }

    /// Sends `chunk` where this route goes (`stream` for [`Route::Stream`]).
    pub fn data(&mut self, chunk: &[u8], stream: &mut dyn io::Write) -> io::Result<()> {
        match self {
            Route::Skip => Ok(()),
            Route::Stream => stream.write_all(chunk),
            Route::Buffer(b) => {
                b.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    /// The buffered content, if any; the route is reset to [`Route::Skip`].
    pub fn take_buffer(&mut self) -> Option<Vec<u8>> {
        match std::mem::take(self) {
            Route::Buffer(b) => Some(b),
            _ => None,
        }
    }
}

/// A sink that keeps nothing (`verify`).
pub struct Discard;
impl Sink for Discard {}

/// What the reader knows about a bundle besides its bytes: its record, if any.
#[derive(Debug, Default, Clone)]
pub struct Expectation {
    /// The record found beside the bundle; the manifest must agree with it.
    pub record: Option<Record>,
}

impl Expectation {
    /// What to check a bundle against: its record, if it has one.
    pub fn from_record(record: Option<&Record>) -> Self {
        Expectation {
            record: record.cloned(),
        }
    }
    /// The recipients' fingerprints the record names (sharpens a wrong-key message).
    pub fn recipients(&self) -> &[String] {
        self.record
            .as_ref()
            .map(|r| r.recipients.as_slice())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: EntryKind,
    size: u64,
    sha256: Option<String>,
    link: Option<String>,
}

/// A bundle being checked, entry by entry.
#[derive(Default)]
pub struct Checker {
    seen: BTreeMap<String, Seen>,
    /// Every proper ancestor of a seen entry: these may only ever be directories.
    ancestors: BTreeSet<String>,
    manifest: Option<Manifest>,
    snapshot: Option<SnapshotSummary>,
    plaintext_bytes: u64,
}

/// What the checker accepted.
#[derive(Debug, Clone)]
pub struct Checked {
    pub entries: usize,
    pub files: usize,
    pub plaintext_bytes: u64,
    pub snapshot: SnapshotSummary,
    pub manifest: Manifest,
}

fn mismatch(m: String) -> VerifyError {
    VerifyError::Mismatch(m)
}

/// Normalises a bundle path: `./` and `.` components and a trailing `/` go; an absolute
/// path, `..`, an empty path or component run (`a//b`), NUL and non-UTF-8 bytes are refused.
pub fn normalise(raw: &[u8]) -> Result<String, String> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let text = std::str::from_utf8(raw).map_err(|_| format!("{shown:?}: path is not UTF-8"))?;
    if text.contains('\0') {
        return Err(format!("{shown:?}: path holds a NUL byte"));
    }
    if text.starts_with('/') {
        return Err(format!("{shown}: absolute path"));
    }
    let trimmed = text.strip_suffix('/').unwrap_or(text);
    let mut out: Vec<&str> = Vec::new();
    for c in trimmed.split('/') {
        match c {
            "." => {}
            ".." => return Err(format!("{shown}: path contains `..`")),
            "" => return Err(format!("{shown}: path has an empty component")),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(format!("{shown:?}: empty path"));
    }
    Ok(out.join("/"))
}

/// Whether any platform's bundle may hold `path` (refused at once otherwise).
fn known_prefix(path: &str) -> bool {
    path == SNAPSHOT_PATH
        || path == MANIFEST_PATH
        || path == "extra"
        || path.starts_with("extra/")
        || kubeadm_path(path)
        || openshift_path(path)
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn kubeadm_path(path: &str) -> bool {
    under(path, "pki")
        || under(path, "manifests")
        || (!path.contains('/') && path.ends_with(".conf"))
}

fn openshift_path(path: &str) -> bool {
    if path == "static-pod-resources" {
        return true;
    }
    let pod_dir = |p: &str| {
        p.strip_prefix("static-pod-resources/")
            .and_then(|r| r.split('/').next())
            .and_then(|d| d.rsplit_once("-pod-"))
            .is_some_and(|(c, n)| {
                !c.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            })
    };
    pod_dir(path)
        || path
            .strip_prefix("manifests/")
            .is_some_and(|m| !m.contains('/') && m.ends_with("-pod.yaml"))
        || path == "manifests"
}

/// Whether a bundle of `platform` may hold `path`.
fn platform_allows(platform: Platform, path: &str) -> bool {
    if path == SNAPSHOT_PATH || under(path, "extra") {
        return true;
    }
    match platform {
        Platform::Kubeadm => kubeadm_path(path),
        Platform::Openshift => openshift_path(path),
        Platform::Unknown => false,
    }
}

/// The directories a restore places on the host as they are (`pki`, `manifests`, each
/// OpenShift `static-pod-resources/<component>-pod-N`) and their parents: never a symlink
/// or a file, which would land on the host pointing wherever the bundle says.
fn must_be_dir(path: &str) -> bool {
    matches!(
        path,
        "pki" | "manifests" | "static-pod-resources" | "extra" | "etcd" | "cpbackup"
    ) || (openshift_path(path)
        && path.matches('/').count() == 1
        && path.starts_with("static-pod-resources/"))
}

fn proper_ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// What a tar entry is; hard links, devices and fifos are refused.
fn entry_kind(header: &tar::Header, path: &str) -> Result<EntryKind, VerifyError> {
    match header.entry_type() {
        tar::EntryType::Directory => Ok(EntryKind::Dir),
        tar::EntryType::Symlink => Ok(EntryKind::Symlink),
        tar::EntryType::Regular | tar::EntryType::Continuous => Ok(EntryKind::File),
        tar::EntryType::Link => Err(mismatch(format!(
            "{path}: a hard link; bundles never hold hard links"
        ))),
        other => Err(mismatch(format!(
            "{path}: unexpected tar entry type {other:?} (only files, directories and symlinks belong in a bundle)"
        ))),
    }
}

/// The entry as sinks see it: no setuid/setgid file, a symlink's target UTF-8 and non-empty.
fn admitted<R: Read>(
    entry: &tar::Entry<'_, R>,
    path: String,
    kind: EntryKind,
) -> Result<Admitted, VerifyError> {
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o600) & 0o7777;
    if kind == EntryKind::File && mode & 0o6000 != 0 {
        return Err(mismatch(format!(
            "{path}: setuid/setgid file (mode {mode:04o}); a control-plane backup never holds one"
        )));
    }
    let link_target = match kind {
        EntryKind::Symlink => {
            let t = entry
                .link_name_bytes()
                .ok_or_else(|| mismatch(format!("{path}: symlink without a target")))?;
            let t = std::str::from_utf8(&t)
                .map_err(|_| mismatch(format!("{path}: symlink target is not UTF-8")))?
                .to_owned();
            if t.is_empty() || t.contains('\0') {
                return Err(mismatch(format!("{path}: empty or NUL symlink target")));
            }
            Some(t)
        }
        _ => None,
    };
    Ok(Admitted {
        kind,
        mode,
        uid: header.uid().unwrap_or(0),
        gid: header.gid().unwrap_or(0),
        mtime: header.mtime().unwrap_or(0),
        size: if kind == EntryKind::File {
            entry.size()
        } else {
            0
        },
        link_target,
        path,
    })
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one tar entry, hands it to `sink` and reads its content through. `buf` is scratch.
    /// A failure of the sink is [`VerifyError::Output`], of the reading [`VerifyError::Io`].
    pub fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        sink: &mut dyn Sink,
        buf: &mut [u8],
    ) -> Result<(), VerifyError> {
        let write_err = |e: io::Error| VerifyError::Output(e.to_string());
        let path = normalise(&entry.path_bytes()).map_err(|m| mismatch(format!("entry {m}")))?;
        if self.manifest.is_some() {
            return Err(mismatch(format!(
                "entry {path} follows the manifest, which must be last"
            )));
        }
        let kind = entry_kind(entry.header(), &path)?;
        if path == MANIFEST_PATH {
            if kind != EntryKind::File {
                return Err(mismatch(format!("{path} is not a file")));
            }
            let size = entry.size();
            self.plaintext_bytes += size;
            self.manifest = Some(read_manifest(entry, size, |e| {
                VerifyError::Io(e.to_string())
            })?);
            return Ok(());
        }
        self.admit_path(&path, kind)?;
        let admitted = admitted(entry, path, kind)?;
        sink.begin(&admitted).map_err(write_err)?;
        let mut seen = Seen {
            kind,
            size: 0,
            sha256: None,
            link: admitted.link_target.clone(),
        };
        if kind == EntryKind::File {
            let (n, digest) = self.stream_file(entry, &admitted, sink, buf)?;
            self.plaintext_bytes += n;
            seen.size = n;
            seen.sha256 = Some(digest);
            sink.end(&admitted).map_err(write_err)?;
        }
        for a in proper_ancestors(&admitted.path) {
            self.ancestors.insert(a.to_owned());
        }
        self.seen.insert(admitted.path, seen);
        Ok(())
    }

    /// Reads a file entry through to `sink`, hashing it (the snapshot: checking its trailer
    /// and meta pages as it goes); returns its length and SHA-256.
    fn stream_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        admitted: &Admitted,
        sink: &mut dyn Sink,
        buf: &mut [u8],
    ) -> Result<(u64, String), VerifyError> {
        let mut hash = (!admitted.is_snapshot()).then(Sha256::new);
        let mut check = admitted
            .is_snapshot()
            .then(|| SnapshotCheck::new(admitted.size));
        let mut n = 0u64;
        loop {
            let k = entry
                .read(buf)
                .map_err(|e| VerifyError::Io(e.to_string()))?;
            if k == 0 {
                break;
            }
            if let Some(h) = hash.as_mut() {
                h.update(&buf[..k]);
            }
            if let Some(c) = check.as_mut() {
                c.update(&buf[..k]);
            }
            sink.data(&buf[..k])
                .map_err(|e| VerifyError::Output(e.to_string()))?;
            n += k as u64;
        }
        let digest = match (hash, check) {
            (Some(h), _) => hex::encode(h.finalize()),
            (None, Some(c)) => {
                let s = c.finish();
                let d = s.file_sha256.clone();
                self.snapshot = Some(s);
                d
            }
            (None, None) => unreachable!("a file is either hashed or checked"),
        };
        Ok((n, digest))
    }

    /// The path rules that need no content: known prefix, no duplicate, nothing below a
    /// symlink or file, nothing but a directory above an earlier entry.
    fn admit_path(&self, path: &str, kind: EntryKind) -> Result<(), VerifyError> {
        if !known_prefix(path) {
            return Err(mismatch(format!(
                "{path}: not a path a cpbackup bundle holds (etcd/snapshot.db, pki/, manifests/, *.conf, static-pod-resources/<component>-pod-N/, extra/)"
            )));
        }
        if self.seen.contains_key(path) {
            return Err(mismatch(format!("{path} appears twice")));
        }
        for a in proper_ancestors(path) {
            match self.seen.get(a).map(|s| s.kind) {
                Some(EntryKind::Symlink) => {
                    return Err(mismatch(format!("{path} lies below the symlink entry {a}")));
                }
                Some(EntryKind::File) => {
                    return Err(mismatch(format!("{path} lies below the file entry {a}")));
                }
                _ => {}
            }
        }
        if kind != EntryKind::Dir && must_be_dir(path) {
            return Err(mismatch(format!(
                "{path}: a {kind:?} entry; a restore places this directory on the host as it is, so it must be a directory"
            )));
        }
        if kind != EntryKind::Dir && self.ancestors.contains(path) {
            return Err(mismatch(format!(
                "{path}: a {kind:?} entry where earlier entries needed a directory"
            )));
        }
        Ok(())
    }

    /// Accepts the bundle, or says why not.
    pub fn finish(self, expect: &Expectation) -> Result<Checked, VerifyError> {
        let Checker {
            mut seen,
            manifest,
            snapshot,
            plaintext_bytes,
            ..
        } = self;
        let manifest = manifest.ok_or_else(|| {
            mismatch(
                "no cpbackup/manifest.json: the bundle is incomplete or not made by cpbackup"
                    .into(),
            )
        })?;
        let snapshot =
            snapshot.ok_or_else(|| mismatch(format!("no {SNAPSHOT_PATH} in the bundle")))?;
        snapshot_is_whole(&snapshot)?;
        let entries = seen.len();
        let mut files = 0;
        let mut listed = BTreeSet::new();
        for m in &manifest.entries {
            let path = normalise(m.path.as_bytes())
                .map_err(|e| mismatch(format!("the manifest lists {e}")))?;
            if path != m.path {
                return Err(mismatch(format!(
                    "the manifest lists {:?}, which is not a normalised path",
                    m.path
                )));
            }
            if !listed.insert(path.clone()) {
                return Err(mismatch(format!("the manifest lists {path} twice")));
            }
            if !platform_allows(manifest.platform, &path) {
                return Err(mismatch(format!(
                    "{path}: not a path a {:?} bundle holds",
                    manifest.platform
                )));
            }
            let Some(s) = seen.remove(&path) else {
                return Err(mismatch(format!(
                    "{path} is in the manifest but missing from the bundle"
                )));
            };
            files += usize::from(s.kind == EntryKind::File);
            matches_manifest(&path, s, m)?;
        }
        if let Some(extra) = seen.keys().next() {
            return Err(mismatch(format!(
                "{extra} is in the bundle but not in the manifest"
            )));
        }
        if let Some(r) = &expect.record {
            agree_with_record(&manifest, &snapshot, r)?;
        }
        Ok(Checked {
            entries,
            files,
            plaintext_bytes,
            snapshot,
            manifest,
        })
    }
}

/// The snapshot's sha256 trailer and bbolt meta pages checked out.
fn snapshot_is_whole(snapshot: &SnapshotSummary) -> Result<(), VerifyError> {
    match snapshot.trailer {
        TrailerStatus::Valid => {}
        TrailerStatus::Invalid => {
            return Err(mismatch(
                "the snapshot's sha256 trailer does not match its content".into(),
            ));
        }
        TrailerStatus::Absent => {
            return Err(mismatch("the snapshot has no sha256 trailer".into()));
        }
    }
    match &snapshot.meta_error {
        Some(e) => Err(mismatch(format!(
            "the snapshot's bbolt meta pages are invalid: {e}"
        ))),
        None => Ok(()),
    }
}

/// An entry as read against its manifest line: same kind, a file's size and SHA-256, a
/// symlink's target.
fn matches_manifest(
    path: &str,
    s: Seen,
    m: &crate::bundle::manifest::Entry,
) -> Result<(), VerifyError> {
    if s.kind != m.kind {
        return Err(mismatch(format!(
            "{path}: manifest says {:?}, bundle holds {:?}",
            m.kind, s.kind
        )));
    }
    match s.kind {
        EntryKind::File if s.size != m.size || s.sha256 != m.sha256 => Err(mismatch(format!(
            "{path}: SHA-256 {} ({} bytes) differs from the manifest's {} ({} bytes)",
            s.sha256.unwrap_or_default(),
            s.size,
            m.sha256.clone().unwrap_or_default(),
            m.size
        ))),
        EntryKind::Symlink if s.link != m.link_target => Err(mismatch(format!(
            "{path}: symlink target differs from the manifest"
        ))),
        _ => Ok(()),
    }
}

/// The record (unencrypted, writable by anyone with PutObject) and the manifest (inside the
/// authenticated ciphertext) must describe the same backup.
fn agree_with_record(m: &Manifest, snap: &SnapshotSummary, r: &Record) -> Result<(), VerifyError> {
    let s = &m.etcd.status;
    let mut pairs: Vec<(&str, String, String)> = vec![
        ("cluster", r.cluster.clone(), m.cluster.clone()),
        ("node", r.node.clone(), m.node.clone()),
        (
            "etcd revision",
            r.etcd_revision.to_string(),
            s.revision.to_string(),
        ),
        (
            "etcd cluster id",
            r.etcd_cluster_id.clone(),
            s.cluster_id.clone(),
        ),
        (
            "etcd member id",
            r.etcd_member_id.clone(),
            s.member_id.clone(),
        ),
        (
            "snapshot size",
            r.snapshot_size.to_string(),
            snap.size.to_string(),
        ),
    ];
    if let Some(c) = &r.compression {
        pairs.push(("compression", c.clone(), m.compression.clone()));
    }
    for (what, rec, man) in pairs {
        if rec != man {
            return Err(VerifyError::Corrupted(format!(
                "the record says {what} {rec}, the bundle's manifest says {man}: the record was replaced or forged"
            )));
        }
    }
    Ok(())
}

/// Reads and parses the `cpbackup/manifest.json` entry of `size` bytes; an implausibly large
/// one is refused before anything is read.
pub(crate) fn read_manifest(
    entry: &mut impl Read,
    size: u64,
    io_err: impl Fn(io::Error) -> VerifyError,
) -> Result<Manifest, VerifyError> {
    if size > MAX_MANIFEST_BYTES {
        return Err(mismatch(format!(
            "manifest is implausibly large ({size} bytes)"
        )));
    }
    let mut json = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut json).map_err(io_err)?;
    serde_json::from_slice(&json).map_err(|e| mismatch(format!("manifest is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused() {
        assert_eq!(normalise(b"./pki/ca.crt").unwrap(), "pki/ca.crt");
        assert_eq!(normalise(b"pki/./etcd/").unwrap(), "pki/etcd");
        for bad in [
            &b"/etc/passwd"[..],
            b"../x",
            b"pki/../../x",
            b"pki//x",
            b"",
            b".",
            b"./",
            b"pki/\0x",
            b"pki/\xff",
        ] {
            assert!(
                normalise(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn prefixes_follow_the_platform() {
        assert!(platform_allows(Platform::Kubeadm, "pki/etcd/ca.crt"));
        assert!(platform_allows(Platform::Kubeadm, "admin.conf"));
        assert!(!platform_allows(
            Platform::Kubeadm,
            "static-pod-resources/etcd-pod-3/x"
        ));
        assert!(platform_allows(
            Platform::Openshift,
            "static-pod-resources/etcd-pod-3/x"
        ));
        assert!(platform_allows(
            Platform::Openshift,
            "manifests/etcd-pod.yaml"
        ));
        assert!(!platform_allows(Platform::Openshift, "pki/x"));
        assert!(!platform_allows(
            Platform::Openshift,
            "static-pod-resources/etcd-pod-x/y"
        ));
        assert!(platform_allows(Platform::Unknown, "extra/etc/x"));
        assert!(!known_prefix("etc/passwd"));
        assert!(!known_prefix("pkix/a"));
        assert!(!known_prefix("sub/admin.conf"));
        assert!(must_be_dir("pki") && must_be_dir("static-pod-resources/etcd-pod-3"));
        assert!(!must_be_dir("pki/ca.crt") && !must_be_dir("static-pod-resources/etcd-pod-3/x"));
        assert!(!must_be_dir("admin.conf"));
    }
}
