//! Writing a bundle in one streaming pass: tar entries → the codec (all cores) → age → the output.
//!
//! The snapshot is checked as it passes (sha256 trailer, bbolt meta pages); host trees are
//! walked without following symlinks, keeping modes and owners; every entry's SHA-256 goes into
//! the manifest written last. Nothing is buffered beyond the codec blocks in flight and one host
//! file of at most 1 MiB (searched for certificates).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::bundle::codec::{Codec, Encoder};
use crate::bundle::manifest::{Entry, EntryKind, MANIFEST_PATH, Manifest, SNAPSHOT_PATH};
use crate::doctor::certs::{self, CertInfo};
use crate::host::static_pods::Source;
use crate::keys::Recipients;
use crate::snapshot::{SnapshotCheck, SnapshotSummary, TrailerStatus};

/// Deepest directory nesting we follow in a host tree.
const MAX_DEPTH: usize = 64;

pub struct BundleWriter<W: Write> {
    tar: tar::Builder<Encoder<age::stream::StreamWriter<W>>>,
    codec: Codec,
    entries: Vec<Entry>,
    certificates: Vec<CertInfo>,
}

impl<W: Write> BundleWriter<W> {
    pub fn new(
        out: W,
        recipients: &Recipients,
        codec: Codec,
        level: u32,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let enc = age::Encryptor::with_recipients(
            recipients.keys.iter().map(|r| r as &dyn age::Recipient),
        )
        .context("setting up age encryption")?;
        let sealed = enc.wrap_output(out).context("writing the age header")?;
        let mut tar = tar::Builder::new(
            codec
                .encoder(sealed, level, threads)
                .context("setting up the compressor")?,
        );
        tar.follow_symlinks(false);
        Ok(BundleWriter {
            tar,
            codec,
            entries: Vec::new(),
            certificates: Vec::new(),
        })
    }

    /// Streams the etcd snapshot (`size` bytes, trailer included) into `etcd/snapshot.db`,
    /// calling `progress` with each chunk's length. Fails unless the trailer and meta pages check out.
    pub fn append_snapshot(
        &mut self,
        size: u64,
        reader: impl Read,
        progress: impl FnMut(u64),
    ) -> anyhow::Result<SnapshotSummary> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(now_secs());
        let mut check = SnapshotCheck::new(size);
        let mut r = CheckingReader {
            inner: reader,
            check: &mut check,
            progress,
        };
        self.tar
            .append_data(&mut h, SNAPSHOT_PATH, &mut r)
            .context("streaming the etcd snapshot")?;
        let s = check.finish();
        if s.size != size {
            anyhow::bail!("snapshot stream delivered {} of {size} bytes", s.size);
        }
        match s.trailer {
            TrailerStatus::Valid => {}
            TrailerStatus::Invalid => anyhow::bail!(
                "the snapshot's sha256 trailer does not match its content: the stream was corrupted in transit; retry the backup"
            ),
            TrailerStatus::Absent => anyhow::bail!(
                "the snapshot has no sha256 trailer ({size} bytes): etcd did not send one; is this a real etcd member?"
            ),
        }
        if let Some(e) = &s.meta_error {
            anyhow::bail!("the snapshot is not a valid bbolt database: {e}");
        }
        self.entries.push(Entry {
            path: SNAPSHOT_PATH.into(),
            kind: EntryKind::File,
            size,
            sha256: Some(s.file_sha256.clone()),
            mode: 0o600,
            uid: 0,
            gid: 0,
            link_target: None,
        });
        Ok(s)
    }

    /// Adds a host file or tree under its archive path.
    pub fn append_source(&mut self, src: &Source) -> anyhow::Result<()> {
        self.walk(&src.path, &src.archive_path, 0)
    }

    fn walk(&mut self, path: &Path, apath: &str, depth: usize) -> anyhow::Result<()> {
        if depth > MAX_DEPTH {
            anyhow::bail!(
                "{} is nested deeper than {MAX_DEPTH} levels; refusing to follow",
                path.display()
            );
        }
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let mut entry = Entry {
            path: apath.to_owned(),
            kind: EntryKind::File,
            size: 0,
            sha256: None,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            link_target: None,
        };
        if ft.is_dir() {
            h.set_size(0);
            self.tar.append_data(&mut h, apath, io::empty())?;
            entry.kind = EntryKind::Dir;
            self.entries.push(entry);
            let mut children = std::fs::read_dir(path)
                .and_then(|d| d.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot list {}", path.display()))?;
            children.sort_by_key(|c| c.file_name());
            for c in children {
                let name = c.file_name();
                let name = name.to_str().with_context(|| {
                    format!(
                        "{}: file name is not UTF-8; move it out of the tree or exclude it",
                        c.path().display()
                    )
                })?;
                self.walk(&c.path(), &format!("{apath}/{name}"), depth + 1)?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path)?;
            self.tar.append_link(&mut h, apath, &target)?;
            entry.kind = EntryKind::Symlink;
            entry.link_target = Some(target.to_string_lossy().into_owned());
            self.entries.push(entry);
        } else if ft.is_file() {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let mut r = ExactReader {
                inner: f,
                remaining: meta.len(),
                hash: Sha256::new(),
                path,
                // small files are kept while they pass, to find the certificates in them
                kept: (meta.len() <= certs::MAX_FILE).then(Vec::new),
            };
            self.tar
                .append_data(&mut h, apath, &mut r)
                .with_context(|| format!("archiving {}", path.display()))?;
            if let Some(bytes) = &r.kept {
                certs::certificates_in(path, bytes, &mut self.certificates);
            }
            entry.size = meta.len();
            entry.sha256 = Some(hex::encode(r.hash.finalize()));
            self.entries.push(entry);
        } else {
            tracing::warn!(path = %path.display(), "skipping a socket, FIFO or device file");
        }
        Ok(())
    }

    /// The X.509 certificates in the host files written so far (for their expiry metric).
    pub fn certificates(&self) -> &[CertInfo] {
        &self.certificates
    }

    /// Entries written so far (the manifest not included).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Writes the manifest (with every entry appended so far) and closes tar, gzip and age.
    pub fn finish(mut self, mut manifest: Manifest) -> anyhow::Result<W> {
        manifest.entries = std::mem::take(&mut self.entries);
        manifest.compression = self.codec.name().into();
        let json = serde_json::to_vec_pretty(&manifest)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(json.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(now_secs());
        self.tar.append_data(&mut h, MANIFEST_PATH, &json[..])?;
        let packed = self.tar.into_inner().context("closing the tar stream")?;
        let sealed = packed
            .finish()
            .with_context(|| format!("flushing {}", self.codec.name()))?;
        sealed.finish().context("closing the age stream")
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Feeds the snapshot checker and the progress callback as bytes pass.
struct CheckingReader<'a, R, P> {
    inner: R,
    check: &'a mut SnapshotCheck,
    progress: P,
}

impl<R: Read, P: FnMut(u64)> Read for CheckingReader<'_, R, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check.update(&buf[..n]);
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Yields exactly the size recorded in the tar header, hashing it; a file that shrank while
/// being read is an error rather than a corrupt archive.
struct ExactReader<'a, R> {
    inner: R,
    remaining: u64,
    hash: Sha256,
    path: &'a Path,
    /// The bytes read, when asked for.
    kept: Option<Vec<u8>>,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank while it was being read; retry the backup",
                    self.path.display()
                ),
            ));
        }
        self.hash.update(&buf[..n]);
        if let Some(k) = &mut self.kept {
            k.extend_from_slice(&buf[..n]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
