//! Reading and verifying a bundle as a stream: age → gunzip → tar, hashing every entry and
//! comparing it with the manifest, checking the snapshot's trailer and meta pages, and the
//! SHA-256 of the ciphertext itself. Nothing is written to disk; memory stays flat.
//!
//! Failures are classified so the user learns *what* is wrong: the wrong key, a truncated
//! copy, corrupted or tampered bytes, or content that disagrees with the manifest.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::read::MultiGzDecoder;

use crate::bundle::pargz::default_threads;
use crate::bundle::parungz::ParGzReader;
use crate::bundle::readahead::ReadAhead;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::bundle::manifest::{
    EntryKind, MANIFEST_PATH, MAX_MANIFEST_BYTES, Manifest, SNAPSHOT_PATH,
};
use crate::keys::Identities;
use crate::snapshot::{SnapshotCheck, SnapshotSummary, TrailerStatus};

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(
        "wrong key: none of the identities given ({have}) can decrypt this bundle{want}. \
         Pass the --identity file whose recipient was used when the backup was taken"
    )]
    WrongKey { have: String, want: String },
    #[error("not a cpbackup bundle: {0}")]
    NotABundle(String),
    #[error(
        "bundle is truncated: {0}. This copy is incomplete: use another copy or another backup"
    )]
    Truncated(String),
    #[error(
        "bundle is corrupted or was tampered with: {0}. Do not restore from it: use another copy or another backup"
    )]
    Corrupted(String),
    #[error("bundle content does not match its manifest: {0}. Do not restore from it")]
    Mismatch(String),
    #[error("cannot read the bundle: {0}")]
    Io(String),
}

/// What a successful verification saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub entries: usize,
    pub files: usize,
    pub plaintext_bytes: u64,
    pub ciphertext_bytes: u64,
    pub ciphertext_sha256: String,
    pub snapshot: SnapshotSummary,
    pub manifest: Manifest,
}

type Tap = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

/// The value behind a mutex, even if a thread panicked holding it (nothing here can be left
/// half-updated).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers the first error that passed through a layer, to classify failures afterwards.
struct ErrorTap<R> {
    inner: R,
    seen: Tap,
}

impl<R: Read> Read for ErrorTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            locked(&self.seen).get_or_insert((e.kind(), e.to_string()));
        })
    }
}

/// Hashes and counts the raw (encrypted) bytes.
struct HashCount<R> {
    inner: R,
    hash: Sha256,
    count: u64,
    progress: Box<dyn FnMut(u64) + Send>,
}

impl<R: Read> Read for HashCount<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// What the caller knows about the bundle from its record, to sharpen the diagnosis.
#[derive(Debug, Default, Clone)]
pub struct Expectation {
    pub sha256: Option<String>,
    pub recipients: Vec<String>,
}

/// Verifies the bundle read from `input`. Reading, hashing and decrypting run on a thread of
/// their own, ahead of gunzip (worker threads) and tar and its hashing (this thread).
pub fn verify(
    input: impl Read + Send,
    ids: &Identities,
    expect: &Expectation,
    progress: Box<dyn FnMut(u64) + Send>,
) -> Result<VerifyReport, VerifyError> {
    let taps = Taps::default();
    let counted = Arc::new(Mutex::new(HashCount {
        inner: ErrorTap {
            inner: input,
            seen: taps.raw.clone(),
        },
        hash: Sha256::new(),
        count: 0,
        progress,
    }));
    let plain = decrypt(
        SharedReader(counted.clone()),
        ids,
        &expect.recipients,
        &taps,
    )?;
    let result = std::thread::scope(|s| {
        read_tar(ParGzReader::new(
            ReadAhead::spawn(s, plain),
            default_threads(),
        ))
    });
    let fail = |e: VerifyError| taps.classify(e);
    let (report_parts, plaintext_bytes) = result.map_err(fail)?;
    let (entries, files, snapshot, manifest) = report_parts;

    let hc = locked(&counted);
    let ciphertext_sha256 = hex::encode(hc.hash.clone().finalize());
    if let Some(want) = &expect.sha256
        && *want != ciphertext_sha256
    {
        return Err(VerifyError::Corrupted(format!(
            "ciphertext SHA-256 {ciphertext_sha256} differs from the recorded {want}"
        )));
    }
    Ok(VerifyReport {
        entries,
        files,
        plaintext_bytes,
        ciphertext_bytes: hc.count,
        ciphertext_sha256,
        snapshot,
        manifest,
    })
}

/// Lets the age decryptor own a reader whose counters we still read afterwards.
struct SharedReader<R>(Arc<Mutex<R>>);

impl<R: Read> Read for SharedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        locked(&self.0).read(buf)
    }
}

/// Error taps on the storage layer (`raw`) and the age layer (`age`): after a failure they tell
/// which layer it came from.
#[derive(Default)]
struct Taps {
    raw: Tap,
    age: Tap,
}

impl Taps {
    /// Names the layer that failed; `inner` is what the layer above (gzip/tar) reported.
    fn classify(&self, inner: VerifyError) -> VerifyError {
        if let Some((_, m)) = locked(&self.raw).clone() {
            return VerifyError::Io(m);
        }
        match locked(&self.age).clone() {
            Some((io::ErrorKind::UnexpectedEof, m)) => VerifyError::Truncated(m),
            Some((_, m)) => VerifyError::Corrupted(format!(
                "age authentication failed ({m}); the bytes were changed, or cut inside a chunk"
            )),
            None => inner,
        }
    }
}

/// Opens the age layer over `input` (already tapped by the caller into `taps.raw`); the
/// returned plaintext reader is tapped into `taps.age`. `encrypted_to` (fingerprints from the
/// record, if known) sharpens the wrong-key message.
fn decrypt<'r>(
    input: impl Read + 'r,
    ids: &Identities,
    encrypted_to: &[String],
    taps: &Taps,
) -> Result<impl Read + 'r, VerifyError> {
    let decryptor = age::Decryptor::new(input).map_err(|e| classify_header(e, &taps.raw))?;
    let plain = decryptor.decrypt(ids.as_dyn()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => VerifyError::WrongKey {
            have: ids.fingerprints().join(", "),
            want: if encrypted_to.is_empty() {
                String::new()
            } else {
                format!(" (it was encrypted to {})", encrypted_to.join(", "))
            },
        },
        other => classify_header(other, &taps.raw),
    })?;
    Ok(ErrorTap {
        inner: plain,
        seen: taps.age.clone(),
    })
}

fn classify_header(e: age::DecryptError, raw_tap: &Tap) -> VerifyError {
    if let Some((_, m)) = locked(raw_tap).clone() {
        return VerifyError::Io(m);
    }
    match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            VerifyError::NotABundle(
                "the age header is missing or unreadable (not age-encrypted, or damaged)".into(),
            )
        }
        age::DecryptError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            VerifyError::Truncated("the file ends inside the age header".into())
        }
        age::DecryptError::InvalidMac => {
            VerifyError::Corrupted("the age header's MAC does not match (header modified)".into())
        }
        other => VerifyError::Corrupted(format!("age: {other}")),
    }
}

type TarOutcome = (usize, usize, SnapshotSummary, Manifest);

/// Checks an already-decrypted bundle (the gzip'd tar): every entry against the manifest, the
/// snapshot trailer and meta pages. The entry point for fuzzing the untrusted-bytes parsers.
pub fn check_plaintext(input: impl Read) -> Result<Manifest, VerifyError> {
    read_tar(MultiGzDecoder::new(input)).map(|((_, _, _, m), _)| m)
}

fn read_tar(input: impl Read) -> Result<(TarOutcome, u64), VerifyError> {
    let bad = |m: String| {
        VerifyError::Corrupted(format!("invalid gzip/tar content after decryption: {m}"))
    };
    let mut archive = tar::Archive::new(input);
    let mut seen: BTreeMap<String, (EntryKind, u64, Option<String>, Option<String>)> =
        BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut snapshot: Option<SnapshotSummary> = None;
    let mut manifest: Option<Manifest> = None;
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry_path(&entry).map_err(|e| bad(e.to_string()))?;
        if manifest.is_some() {
            return Err(VerifyError::Mismatch(format!(
                "entry {path} follows the manifest, which must be last"
            )));
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        total += size;
        if path == MANIFEST_PATH {
            manifest = Some(read_manifest(&mut entry, size, |e| bad(e.to_string()))?);
            continue;
        }
        let rec = match kind {
            tar::EntryType::Directory => (EntryKind::Dir, 0, None, None),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(e.to_string()))?
                    .map(|t| t.to_string_lossy().into_owned());
                (EntryKind::Symlink, 0, None, target)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut hash = Sha256::new();
                let mut check = (path == SNAPSHOT_PATH).then(|| SnapshotCheck::new(size));
                loop {
                    let n = entry.read(&mut buf).map_err(|e| bad(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    if let Some(c) = check.as_mut() {
                        c.update(&buf[..n]);
                    } else {
                        hash.update(&buf[..n]);
                    }
                }
                let digest = match check {
                    Some(c) => {
                        let s = c.finish();
                        let d = s.file_sha256.clone();
                        snapshot = Some(s);
                        d
                    }
                    None => hex::encode(hash.finalize()),
                };
                (EntryKind::File, size, Some(digest), None)
            }
            other => {
                return Err(VerifyError::Mismatch(format!(
                    "{path}: unexpected tar entry type {other:?}"
                )));
            }
        };
        order.push(path.clone());
        seen.insert(path, rec);
    }
    // Drain what follows the tar end marker, so age authenticates the final chunk.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(e.to_string()))?;

    let manifest = manifest.ok_or_else(|| {
        VerifyError::Mismatch(
            "no cpbackup/manifest.json: the bundle is incomplete or not made by cpbackup".into(),
        )
    })?;
    let snapshot = snapshot
        .ok_or_else(|| VerifyError::Mismatch(format!("no {SNAPSHOT_PATH} in the bundle")))?;
    match snapshot.trailer {
        TrailerStatus::Valid => {}
        TrailerStatus::Invalid => {
            return Err(VerifyError::Mismatch(
                "the snapshot's sha256 trailer does not match its content".into(),
            ));
        }
        TrailerStatus::Absent => {
            return Err(VerifyError::Mismatch(
                "the snapshot has no sha256 trailer".into(),
            ));
        }
    }
    if let Some(e) = &snapshot.meta_error {
        return Err(VerifyError::Mismatch(format!(
            "the snapshot's bbolt meta pages are invalid: {e}"
        )));
    }
    let mut files = 0;
    for m in &manifest.entries {
        let Some((kind, size, sha, target)) = seen.remove(&m.path) else {
            return Err(VerifyError::Mismatch(format!(
                "{} is in the manifest but missing from the bundle",
                m.path
            )));
        };
        if kind != m.kind {
            return Err(VerifyError::Mismatch(format!(
                "{}: manifest says {:?}, bundle holds {kind:?}",
                m.path, m.kind
            )));
        }
        if kind == EntryKind::File {
            files += 1;
            if size != m.size || sha != m.sha256 {
                return Err(VerifyError::Mismatch(format!(
                    "{}: SHA-256 {} ({size} bytes) differs from the manifest's {} ({} bytes)",
                    m.path,
                    sha.unwrap_or_default(),
                    m.sha256.clone().unwrap_or_default(),
                    m.size
                )));
            }
        }
        if kind == EntryKind::Symlink && target != m.link_target {
            return Err(VerifyError::Mismatch(format!(
                "{}: symlink target differs from the manifest",
                m.path
            )));
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(VerifyError::Mismatch(format!(
            "{extra} is in the bundle but not in the manifest"
        )));
    }
    Ok(((order.len(), files, snapshot, manifest), total))
}

/// An entry's path as the manifest names it (directories without the trailing slash).
pub(crate) fn entry_path<R: Read>(entry: &tar::Entry<R>) -> io::Result<String> {
    Ok(entry
        .path()?
        .to_string_lossy()
        .trim_end_matches('/')
        .to_owned())
}

/// Reads and parses the `cpbackup/manifest.json` entry of `size` bytes; an implausibly large
/// one is refused before anything is read.
pub(crate) fn read_manifest(
    entry: &mut impl Read,
    size: u64,
    io_err: impl Fn(io::Error) -> VerifyError,
) -> Result<Manifest, VerifyError> {
    if size > MAX_MANIFEST_BYTES {
        return Err(VerifyError::Mismatch(format!(
            "manifest is implausibly large ({size} bytes)"
        )));
    }
    let mut json = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut json).map_err(io_err)?;
    serde_json::from_slice(&json)
        .map_err(|e| VerifyError::Mismatch(format!("manifest is not valid: {e}")))
}

/// What to do after an entry in [`for_each_entry`].
pub enum Flow {
    Continue,
    Stop,
}

/// A decrypted entry as [`for_each_entry`] hands it over.
pub type PlainEntry<'e, 'r> = tar::Entry<'e, Box<dyn Read + 'r>>;

/// Decrypts a bundle and calls `f` with each tar entry in order (until it says stop). Failures of
/// the layers below (storage, age, gzip/tar) are classified like `verify` does.
pub fn for_each_entry<'r>(
    input: impl Read + Send + 'r,
    ids: &Identities,
    mut f: impl for<'e> FnMut(&mut PlainEntry<'e, 'r>) -> Result<Flow, VerifyError>,
) -> Result<(), VerifyError> {
    let taps = Taps::default();
    let plain = decrypt(
        ErrorTap {
            inner: input,
            seen: taps.raw.clone(),
        },
        ids,
        &[],
        &taps,
    )?;
    let fail = |m: String| {
        taps.classify(VerifyError::Corrupted(format!(
            "invalid gzip/tar content after decryption: {m}"
        )))
    };
    // Reading and decrypting run on a thread of their own, ahead of gunzip and of `f`.
    std::thread::scope(|s| {
        let stream: Box<dyn Read + 'r> = Box::new(ParGzReader::new(
            ReadAhead::spawn(s, plain),
            default_threads(),
        ));
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(|e| fail(e.to_string()))? {
            let mut entry = entry.map_err(|e| fail(e.to_string()))?;
            match f(&mut entry) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => return Ok(()),
                // An I/O error inside `f` is most likely the layers below failing: classify it.
                Err(VerifyError::Io(m)) => return Err(fail(m)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

/// Decrypts a bundle and copies its `etcd/snapshot.db` into `out`, stopping there; returns the
/// snapshot's size. (The trailer and structure are checked by whoever reads `out`.)
pub fn extract_snapshot(
    input: impl Read + Send,
    ids: &Identities,
    out: &mut impl io::Write,
) -> Result<u64, VerifyError> {
    let mut copied = None;
    for_each_entry(input, ids, |entry| {
        if entry
            .path()
            .map(|p| p.as_os_str() != SNAPSHOT_PATH)
            .unwrap_or(true)
        {
            return Ok(Flow::Continue);
        }
        let want = entry.size();
        let n = io::copy(entry, out).map_err(|e| VerifyError::Io(e.to_string()))?;
        if n != want {
            return Err(VerifyError::Truncated(format!(
                "snapshot entry holds {n} of {want} bytes"
            )));
        }
        copied = Some(n);
        Ok(Flow::Stop)
    })?;
    copied.ok_or_else(|| VerifyError::Mismatch(format!("no {SNAPSHOT_PATH} in the bundle")))
}
