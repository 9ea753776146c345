//! Unpacking a bundle into a private directory for a restore. The [`Checker`] admits every
//! entry first; this writes it through [`Beneath`], so no path of the bundle's can reach
//! outside the directory: components are opened one at a time without following links, files
//! are created 0600 with `O_EXCL|O_NOFOLLOW`, symlinks are created only after the whole bundle
//! was accepted, and modes and owners are set last on open descriptors. Nothing in the
//! directory may be trusted until `unpack` returns Ok; on any failure the directory is removed.
//!
//! Every file and directory is synced except the snapshot, which only lives until `etcdutl`
//! has copied it (see `restore::steps` for how a continued restore re-checks it).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;

use crate::beneath::Beneath;
use crate::bundle::check::{Admitted, Expectation, Sink};
use crate::bundle::manifest::{EntryKind, Manifest, SNAPSHOT_PATH};
use crate::bundle::reader::read_bundle;
use crate::keys::Identities;
use crate::snapshot::SnapshotSummary;

/// What `unpack` wrote, verified.
pub struct Unpacked {
    /// The bundle's manifest, checked.
    pub manifest: Manifest,
    /// `<dest>/etcd/snapshot.db`.
    pub snapshot: PathBuf,
    /// The staged snapshot's size, trailer and meta pages, checked.
    pub snapshot_check: SnapshotSummary,
}

/// Writes admitted entries below the staging directory.
struct Staging {
    dir: Beneath,
    file: Option<Output>,
    /// Files and directories, in bundle order, for their modes and owners at the end.
    owned: Vec<Admitted>,
    links: Vec<Admitted>,
}

impl Sink for Staging {
    fn begin(&mut self, e: &Admitted) -> io::Result<()> {
        match e.kind {
            EntryKind::Dir => {
                self.dir.create_dir(&e.path)?;
                self.owned.push(e.clone());
            }
            EntryKind::File => {
                let f = self.dir.create_file(&e.path)?;
                self.file = Some(match e.is_snapshot() {
                    true => Output::Background(Background::spawn(f)?),
                    false => Output::File(f),
                });
                self.owned.push(e.clone());
            }
            // After everything else, once the bundle is accepted.
            EntryKind::Symlink => self.links.push(e.clone()),
        }
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(Output::File(f)) => f.write_all(chunk),
            Some(Output::Background(b)) => b.write(chunk),
            None => Err(io::Error::other("content outside a file entry")),
        }
    }

    fn end(&mut self, _: &Admitted) -> io::Result<()> {
        match self.file.take() {
            // Durable before a restore renames it onto the host.
            Some(Output::File(f)) => f.sync_all(),
            // The snapshot is not synced: etcdutl copies it (and syncs its copy) right away,
            // and a restore continued by another process hashes it again before use.
            Some(Output::Background(mut b)) => b.finish(),
            None => Ok(()),
        }
    }
}

/// Where an entry's content goes.
enum Output {
    File(File),
    /// The snapshot: most of a bundle's bytes.
    Background(Background),
}

/// A file written by a thread of its own, so that its writes overlap the hashing and the
/// decompression that feed it. Chunks go round between the two threads (at most `DEPTH` in
/// flight), so memory stays at a few chunks whatever the file's size.
struct Background {
    full: Option<mpsc::SyncSender<Vec<u8>>>,
    empty: mpsc::Receiver<Vec<u8>>,
    done: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Background {
    const DEPTH: usize = 4;

    fn spawn(mut f: File) -> io::Result<Self> {
        let (full, chunks) = mpsc::sync_channel::<Vec<u8>>(Self::DEPTH);
        let (give_back, empty) = mpsc::channel();
        let done = std::thread::Builder::new()
            .name("stage-snapshot".into())
            .spawn(move || {
                for mut chunk in chunks {
                    f.write_all(&chunk)?;
                    chunk.clear();
                    let _ = give_back.send(chunk);
                }
                Ok(())
            })?;
        Ok(Background {
            full: Some(full),
            empty,
            done: Some(done),
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut chunk = self.empty.try_recv().unwrap_or_default();
        chunk.extend_from_slice(data);
        let sent = self.full.as_ref().map(|f| f.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // the writer stopped: its error says why
            _ => match self.finish() {
                Ok(()) => Err(io::Error::other("the staged snapshot's writer stopped")),
                Err(e) => Err(e),
            },
        }
    }

    /// Waits until every chunk is written; the writer's error, if it had one.
    fn finish(&mut self) -> io::Result<()> {
        drop(self.full.take());
        match self.done.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the staged snapshot's writer panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Staging {
    fn new(dest: &Path) -> io::Result<Self> {
        Ok(Staging {
            dir: Beneath::open(dest)?,
            file: None,
            owned: Vec::new(),
            links: Vec::new(),
        })
    }

    /// Links, then modes and owners (deepest first, so a read-only directory does not block
    /// what is below it), then directory syncs.
    fn complete(self) -> io::Result<()> {
        for l in &self.links {
            let target = l.link_target.as_deref().unwrap_or_default();
            self.dir.symlink(&l.path, target)?;
            self.dir.chown_link(&l.path, l.uid, l.gid)?;
        }
        let mut owned = self.owned;
        owned.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
        for e in &owned {
            self.dir.set_owner_mode(&e.path, e.uid, e.gid, e.mode)?;
            if e.kind == EntryKind::Dir {
                self.dir.open_nofollow(&e.path)?.sync_all()?;
            }
        }
        File::from(self.dir.root().try_clone()?).sync_all()
    }
}

/// Unpacks `input` into `dest` (created 0700; it must not exist yet), checking all of it.
pub fn unpack(
    input: impl Read + Send,
    ids: &Identities,
    expect: &Expectation,
    dest: &Path,
    progress: Box<dyn FnMut(u64) + Send>,
) -> anyhow::Result<Unpacked> {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(false)
        .create(dest)
        .with_context(|| format!("cannot create the staging directory {}", dest.display()))?;
    let unpacked = (|| {
        let mut staging = Staging::new(dest)?;
        let report = read_bundle(input, ids, expect, progress, &mut staging)?;
        staging
            .complete()
            .with_context(|| format!("completing the staged copy in {}", dest.display()))?;
        anyhow::Ok(Unpacked {
            manifest: report.manifest,
            snapshot: dest.join(SNAPSHOT_PATH),
            snapshot_check: report.snapshot,
        })
    })();
    if unpacked.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    unpacked
}

/// Unpacks an already-decrypted, uncompressed bundle tar into `dest` (created 0700) with the
/// same checker and writer as [`unpack`]: the entry point for fuzzing what a crafted tar can
/// do to the filesystem.
pub fn unpack_tar(input: impl Read, dest: &Path) -> anyhow::Result<Manifest> {
    fs::DirBuilder::new().mode(0o700).create(dest)?;
    let mut staging = Staging::new(dest)?;
    let checked = crate::bundle::reader::check_tar(input, &mut staging, &Expectation::default())?;
    staging.complete()?;
    Ok(checked.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails on the snapshot's writer thread (a full disk) is the unpack's
    /// error, never lost.
    #[test]
    fn the_background_writers_error_reaches_the_caller() {
        let full = File::options().write(true).open("/dev/full").unwrap();
        let mut b = Background::spawn(full).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut failed = None;
        for _ in 0..64 {
            if let Err(e) = b.write(&chunk) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.unwrap_or_else(|| b.finish().unwrap_err());
        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
        let ok = tempfile::tempfile().unwrap();
        let mut b = Background::spawn(ok.try_clone().unwrap()).unwrap();
        b.write(&chunk).unwrap();
        b.finish().unwrap();
        assert_eq!(ok.metadata().unwrap().len(), chunk.len() as u64);
    }
}
