//! Reading a bundle as a stream: age → zstd or gzip → tar → the one checker (`bundle::check`) → a
//! [`Sink`] that keeps what a command needs (nothing for `verify`, the staging directory for a
//! restore, the snapshot spool for `inspect`/`extract`, the two files of `export-openshift`),
//! plus the ciphertext's size and SHA-256 against the record. Memory stays flat.
//!
//! Failures are classified so the user learns *what* is wrong: the wrong key, a truncated
//! copy, corrupted or tampered bytes, or content that disagrees with the manifest.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bundle::codec::{Codec, Decoder, default_threads};
use crate::bundle::readahead::ReadAhead;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use crate::bundle::check::Expectation;
use crate::bundle::check::{Admitted, Checked, Checker, Discard, Route, Sink};
use crate::bundle::manifest::{EntryKind, Manifest};
use crate::keys::Identities;
use crate::snapshot::SnapshotSummary;

#[allow(missing_docs)] // the #[error] messages say what each variant and field means
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
    #[error("cannot write what the bundle holds: {0}")]
    Output(String),
}

/// What a successful verification saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Tar entries read, the manifest included.
    pub entries: usize,
    /// Of those, regular files.
    pub files: usize,
    /// Bytes of file content after decryption and decompression.
    pub plaintext_bytes: u64,
    /// Bytes of the encrypted bundle read.
    pub ciphertext_bytes: u64,
    /// SHA-256 of the encrypted bundle as read.
    pub ciphertext_sha256: String,
    /// The snapshot's size, trailer and meta pages.
    pub snapshot: SnapshotSummary,
    /// The bundle's manifest.
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

/// Reads, decrypts and checks a whole bundle from `input`, handing every entry the
/// [`Checker`] admits to `sink`. Reading, hashing and decrypting run on a thread of their own,
/// ahead of decompression (zstd: a thread of its own; gzip: worker threads) and of tar, the
/// checker and the sink (this thread). Nothing the sink received may be trusted unless this
/// returns Ok.
pub fn read_bundle(
    input: impl Read + Send,
    ids: &Identities,
    expect: &Expectation,
    progress: Box<dyn FnMut(u64) + Send>,
    sink: &mut dyn Sink,
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
        expect.recipients(),
        &taps,
    )?;
    let result = std::thread::scope(|s| {
        let mut plain = Decoder::parallel(ReadAhead::spawn(s, plain), default_threads());
        let codec = plain
            .detect_now()
            .map_err(|e| content_error(e.to_string()))?;
        let checked = match codec {
            // Parallel gunzip has worker threads of its own; one more stage would only copy.
            Some(Codec::Gzip) => check_tar(plain, sink, expect)?,
            // zstd decodes on the thread that reads it: a thread of its own, ahead of tar,
            // hashing and the sink.
            _ => check_tar(ReadAhead::spawn(s, plain), sink, expect)?,
        };
        codec_as_named(&checked.manifest, codec)?;
        Ok(checked)
    });
    let checked = result.map_err(|e| taps.classify(e))?;

    let hc = locked(&counted);
    let ciphertext_sha256 = hex::encode(hc.hash.clone().finalize());
    if let Some(r) = &expect.record {
        if r.bundle_size != hc.count {
            return Err(VerifyError::Corrupted(format!(
                "the bundle is {} bytes, its record says {}",
                hc.count, r.bundle_size
            )));
        }
        if r.bundle_sha256 != ciphertext_sha256 {
            return Err(VerifyError::Corrupted(format!(
                "ciphertext SHA-256 {ciphertext_sha256} differs from the recorded {}",
                r.bundle_sha256
            )));
        }
    }
    Ok(VerifyReport {
        entries: checked.entries,
        files: checked.files,
        plaintext_bytes: checked.plaintext_bytes,
        ciphertext_bytes: hc.count,
        ciphertext_sha256,
        snapshot: checked.snapshot,
        manifest: checked.manifest,
    })
}

/// Verifies the bundle read from `input`, keeping nothing.
pub fn verify(
    input: impl Read + Send,
    ids: &Identities,
    expect: &Expectation,
    progress: Box<dyn FnMut(u64) + Send>,
) -> Result<VerifyReport, VerifyError> {
    read_bundle(input, ids, expect, progress, &mut Discard)
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
        if matches!(inner, VerifyError::Output(_)) {
            return inner;
        }
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
        // One of ours is among the recipients the record names, yet no stanza opens: the
        // header was damaged, the key is right.
        age::DecryptError::NoMatchingKeys
            if ids.fingerprints().iter().any(|f| encrypted_to.contains(f)) =>
        {
            VerifyError::Corrupted(format!(
                "the age header does not open with {} although the backup was encrypted to it: its recipient stanza was damaged or modified",
                ids.fingerprints()
                    .into_iter()
                    .filter(|f| encrypted_to.contains(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
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
                "the age header is missing or unreadable (not age-encrypted, or damaged). \
                 A bare etcd snapshot is read with `cpbackup inspect FILE` or `cpbackup extract FILE`"
                    .into(),
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

/// The manifest (inside the authenticated ciphertext) names the codec the bytes are in.
fn codec_as_named(manifest: &Manifest, found: Option<Codec>) -> Result<(), VerifyError> {
    match found {
        Some(c) if c.name() == manifest.compression => Ok(()),
        Some(c) => Err(VerifyError::Mismatch(format!(
            "the manifest says the bundle is {}, its bytes are {}",
            manifest.compression,
            c.name()
        ))),
        None => Err(VerifyError::Mismatch(
            "the bundle's compression could not be told".into(),
        )),
    }
}

/// Checks an already-decrypted bundle (the compressed tar) with the checker. The entry point for
/// fuzzing the untrusted-bytes parsers.
pub fn check_plaintext(input: impl Read) -> Result<Manifest, VerifyError> {
    let mut plain = Decoder::sequential(input);
    let checked = check_tar(&mut plain, &mut Discard, &Expectation::default())?;
    codec_as_named(&checked.manifest, plain.codec())?;
    Ok(checked.manifest)
}

/// What decrypted but did not decompress or untar.
fn content_error(m: String) -> VerifyError {
    VerifyError::Corrupted(format!("invalid gzip/tar content after decryption: {m}"))
}

/// Every tar entry through the checker and into `sink`, then the checker's verdict.
pub(crate) fn check_tar(
    input: impl Read,
    sink: &mut dyn Sink,
    expect: &Expectation,
) -> Result<Checked, VerifyError> {
    let bad = content_error;
    let mut archive = tar::Archive::new(input);
    let mut checker = Checker::new();
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        checker
            .entry(&mut entry, sink, &mut buf)
            .map_err(|e| match e {
                VerifyError::Io(m) => bad(m),
                other => other,
            })?;
    }
    // Drain what follows the tar end marker, so age authenticates the final chunk.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(e.to_string()))?;
    checker.finish(expect)
}

/// Writes the snapshot into a spool and keeps in memory the small files `keep` wants.
struct SpoolSink<'a> {
    out: &'a mut dyn io::Write,
    small: u64,
    keep: &'a dyn Fn(&str, &[u8]) -> bool,
    kept: HashMap<String, Vec<u8>>,
    route: Route,
}

impl Sink for SpoolSink<'_> {
    fn begin(&mut self, e: &Admitted) -> io::Result<()> {
        self.route = if e.is_snapshot() {
            Route::Stream
        } else if e.kind == EntryKind::File && e.size <= self.small {
            Route::buffer(e.size)
        } else {
            Route::Skip
        };
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.route.data(chunk, self.out)
    }

    fn end(&mut self, e: &Admitted) -> io::Result<()> {
        if let Some(buf) = self.route.take_buffer()
            && (self.keep)(&e.path, &buf)
        {
            self.kept.insert(e.path.clone(), buf);
        }
        Ok(())
    }
}

/// What [`extract_snapshot`] read besides the snapshot.
pub struct Extracted {
    /// What verifying the whole bundle on the way saw.
    pub report: VerifyReport,
    /// Files of at most `small` bytes that `keep` wanted, by bundle path.
    pub kept: HashMap<String, Vec<u8>>,
}

/// Decrypts and checks a whole bundle, copying its `etcd/snapshot.db` into `out` and keeping
/// the files of at most `small` bytes that `keep` wants. `out` may be trusted only on Ok.
pub fn extract_snapshot(
    input: impl Read + Send,
    ids: &Identities,
    expect: &Expectation,
    out: &mut dyn io::Write,
    small: u64,
    keep: &dyn Fn(&str, &[u8]) -> bool,
) -> Result<Extracted, VerifyError> {
    let mut sink = SpoolSink {
        out,
        small,
        keep,
        kept: HashMap::new(),
        route: Route::Skip,
    };
    let report = read_bundle(input, ids, expect, Box::new(|_| {}), &mut sink)?;
    Ok(Extracted {
        report,
        kept: sink.kept,
    })
}
