//! One file per CLI command: each takes its parsed flags and the [`Settings`] resolved once in
//! `main`, calls the engines below (`backup`, `restore`, `store::…`, `extract`, `bundle`) and
//! reports. [`run`] dispatches.

pub(crate) mod backup;
pub(crate) mod daemon;
pub(crate) mod docs;
pub(crate) mod doctor;
pub(crate) mod export_openshift;
pub(crate) mod extract;
pub(crate) mod inspect;
pub(crate) mod keygen;
pub(crate) mod list;
pub(crate) mod prune;
pub(crate) mod restore;
pub(crate) mod upload_pending;
pub(crate) mod verify;

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::cli::{BackupRef, Command};
use crate::error::usage;
use crate::settings::Settings;
use crate::settings::flags::StoreArgs;
use crate::store::{self, Store};

/// Runs one command.
pub fn run(command: &Command, s: &Settings) -> anyhow::Result<()> {
    match command {
        Command::Keygen(a) => keygen::run(a, s),
        Command::List(a) => list::run(a, s),
        Command::Verify(a) => verify::run(a, s),
        Command::ExportOpenshift(a) => export_openshift::run(a, s),
        Command::Prune(a) => prune::run(a, s),
        Command::Inspect(a) => inspect::run(a, s),
        Command::Extract(a) => extract::run(a, s),
        Command::Restore(a) => restore::run(a, s),
        Command::Daemon(a) => daemon::run(a, s),
        Command::Backup(a) => backup::run(a, s),
        Command::Doctor(a) => doctor::run(a, s),
        Command::Completion(a) => docs::completion(a),
        Command::Man(a) => docs::man(a),
    }
}

/// Fills what a command reads from the config file into its flags where they were not given:
/// `trusted_signers` for the commands that read a backup.
pub fn apply_file_defaults(command: &mut Command, s: &Settings) {
    let given = match command {
        Command::Verify(a) => &mut a.which.trust.trust_signers,
        Command::Inspect(a) => &mut a.source.which.trust.trust_signers,
        Command::ExportOpenshift(a) => &mut a.which.trust.trust_signers,
        Command::Extract(a) => &mut a.source.which.trust.trust_signers,
        Command::Restore(a) => &mut a.trust.trust_signers,
        _ => return,
    };
    *given = s.trusted_signers(given);
}

/// The stores a `BACKUP | --latest` argument needs: none for a path to a file; a path that
/// does not exist is said to be missing (not "no store configured").
pub(crate) fn stores_for(
    which: &BackupRef,
    stores: &StoreArgs,
    s: &Settings,
) -> anyhow::Result<Vec<crate::store::StoreSpec>> {
    let given = which.backup.as_deref();
    if given.is_some_and(|b| Path::new(b).is_file()) {
        return Ok(Vec::new());
    }
    if let Some(b) = given
        && store::BundleName::parse(b).is_none()
    {
        return Err(usage(format!(
            "no such file: {b}. Give the path of a .cpb file, or a name from `cpbackup list` (cluster/node/file.cpb) with --store"
        )));
    }
    s.stores(stores)
}

pub(crate) use crate::store::Chosen;

/// Resolves `BACKUP | --latest` against the stores (or a path to a `.cpb` file).
pub(crate) fn choose(which: &BackupRef, stores: &[Box<dyn Store>]) -> anyhow::Result<Chosen> {
    let selector = store::select::Selector {
        backup: which.backup.clone(),
        latest: which.latest,
        cluster: which.cluster.clone(),
        node: which.node.clone(),
        trust: which.trust.trust_signers.clone(),
    };
    store::select::choose(&selector, stores)
}

const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Whether a file is an age-encrypted bundle (rather than a bare snapshot).
pub(crate) fn starts_with_age(p: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 19];
    let n = std::fs::File::open(p)?.read(&mut head)?;
    Ok(&head[..n] == AGE_MAGIC)
}

/// Refuses, before any key or store is needed, a missing BACKUP without `--latest`, and a
/// BACKUP that is neither an existing file nor shaped like a backup's name.
pub(crate) fn check_backup_arg(which: &BackupRef, command: &str) -> anyhow::Result<()> {
    match which.backup.as_deref() {
        None if !which.latest => Err(usage(format!(
            "which backup? Give a name from `cpbackup list`, a path to a file, or --latest (`cpbackup {command} --latest`)"
        ))),
        Some(b) if !Path::new(b).exists() && store::BundleName::parse(b).is_none() => {
            Err(usage(format!(
                "{b}: no such file, and not a backup name (names look like CLUSTER/NODE/20261201T120000Z-rev42.cpb: see `cpbackup list`)"
            )))
        }
        _ => Ok(()),
    }
}

/// Maps a snapshot file (read-only).
pub(crate) fn map_file(f: std::fs::File, what: &str) -> anyhow::Result<memmap2::Mmap> {
    // SAFETY: the file is opened read-only (or is our own unlinked spool); if another process
    // truncates it while mapped, reads may fault — the same contract every mmap reader has.
    // `populate` faults the whole file in with one call instead of one fault per page.
    unsafe { memmap2::MmapOptions::new().populate().map(&f) }
        .with_context(|| format!("cannot map {what}"))
}

/// Where `inspect` and `extract` read a snapshot from.
pub(crate) enum SnapshotInput {
    /// A bare snapshot file (not age-encrypted): its path.
    Bare(String),
    /// A backup, the identities that decrypt it, and an unlinked 0600 spool file for its snapshot.
    Backup(Box<BackupInput>),
}

/// A backup to read: the chosen bundle, the identities that decrypt it, the spool file.
pub(crate) struct BackupInput {
    pub chosen: Chosen,
    pub ids: crate::keys::Identities,
    pub spool: std::fs::File,
}

/// Resolves `BACKUP | FILE | --latest` for the commands that read snapshots.
pub(crate) fn snapshot_input(
    args: &crate::cli::SnapshotArgs,
    s: &Settings,
    command: &str,
) -> anyhow::Result<SnapshotInput> {
    let which = &args.which;
    check_backup_arg(which, command)?;
    let given = which.backup.as_deref();
    let is_file = given.is_some_and(|s| Path::new(s).is_file());
    if let Some(path) = given.filter(|_| is_file)
        && !starts_with_age(Path::new(path))?
    {
        return Ok(SnapshotInput::Bare(path.to_owned()));
    }
    let ids = crate::keys::Identities::load(&s.identities(&args.identities)?)?;
    let stores = store::open_all(&stores_for(which, &args.stores, s)?)?;
    let chosen = choose(which, &stores)?;
    let spool_dir = s.spool_dir(args.spool_dir.as_deref());
    let spool = tempfile::tempfile_in(&spool_dir).with_context(|| {
        format!(
            "cannot create a spool file in {}; pass --spool-dir DIR",
            spool_dir.display()
        )
    })?;
    Ok(SnapshotInput::Backup(Box::new(BackupInput {
        chosen,
        ids,
        spool,
    })))
}
