//! One file per CLI command; each wires the library modules together and reports.

pub mod backup;
pub mod daemon;
pub mod export_openshift;
pub mod extract;
pub mod inspect;
pub mod keygen;
pub mod list;
pub mod prune;
pub mod restore;
pub mod upload_pending;
pub mod verify;

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::cli::BackupRef;
use crate::error::usage;
use crate::store::{self, BackupState, Listing, Record, Store};

/// Opens every configured store.
pub fn open_stores(specs: &[crate::config::StoreSpec]) -> anyhow::Result<Vec<Box<dyn Store>>> {
    specs.iter().map(store::open).collect()
}

/// A backup chosen by name, path or `--latest`, ready to stream.
pub struct Chosen {
    pub name: String,
    pub reader: Box<dyn std::io::Read + Send>,
    pub size: Option<u64>,
    pub record: Option<Record>,
}

/// Resolves `BACKUP | --latest` against the stores (or a path to a `.cpb` file).
pub fn choose(which: &BackupRef, stores: &[Box<dyn Store>]) -> anyhow::Result<Chosen> {
    if let Some(arg) = &which.backup {
        let p = Path::new(arg);
        if p.is_file() {
            let f = std::fs::File::open(p)?;
            let size = f.metadata()?.len();
            let rec = std::fs::read(format!("{arg}.json"))
                .ok()
                .and_then(|b| Record::parse(&b).ok());
            return Ok(Chosen {
                name: arg.clone(),
                reader: Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
                size: Some(size),
                record: rec,
            });
        }
    }
    let mut all: Vec<(usize, Listing)> = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        all.extend(s.list()?.into_iter().map(|l| (i, l)));
    }
    let (idx, listing) = if which.latest {
        all.into_iter()
            .filter(|(_, l)| l.state == BackupState::Complete)
            .max_by(|(_, a), (_, b)| file_part(&a.name).cmp(file_part(&b.name)))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no complete backup in the stores; run `cpbackup list` to see what is there"
                )
            })?
    } else {
        let want = which
            .backup
            .as_deref()
            .unwrap_or_default()
            .trim_matches('/');
        all.into_iter().find(|(_, l)| l.name == want).ok_or_else(|| {
            usage(format!(
                "no backup named {want:?} in the stores and no such file; run `cpbackup list` for the names"
            ))
        })?
    };
    if listing.state == BackupState::MissingBundle {
        anyhow::bail!("{}: the record exists but the bundle is gone", listing.name);
    }
    Ok(Chosen {
        reader: stores[idx].open(&listing.name)?,
        name: listing.name,
        size: listing.size,
        record: listing.record,
    })
}

fn file_part(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Whether a file is an age-encrypted bundle (rather than a bare snapshot).
pub fn starts_with_age(p: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 19];
    let n = std::fs::File::open(p)?.read(&mut head)?;
    Ok(&head[..n] == AGE_MAGIC)
}

/// Maps a snapshot file (read-only).
pub fn map_file(f: std::fs::File, what: &str) -> anyhow::Result<memmap2::Mmap> {
    // SAFETY: the file is opened read-only (or is our own unlinked spool); if another process
    // truncates it while mapped, reads may fault — the same contract every mmap reader has.
    // `populate` faults the whole file in with one call instead of one fault per page.
    unsafe { memmap2::MmapOptions::new().populate().map(&f) }
        .with_context(|| format!("cannot map {what}"))
}
