//! One file per CLI command: each takes its parsed flags and the [`Settings`] resolved once in
//! `main`, calls the engines below (`backup`, `restore`, `store::…`, `extract`, `bundle`) and
//! reports. [`run`] dispatches.

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

use crate::cli::{BackupRef, Command};
use crate::error::usage;
use crate::settings::Settings;
use crate::settings::flags::{IdentityArgs, StoreArgs};
use crate::store::{self, BackupState, Listing, Record, Store};

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
    }
}

/// Fills what a command reads from the config file into its flags where they were not given:
/// `trusted_signers` for the commands that read a backup.
pub fn apply_file_defaults(command: &mut Command, s: &Settings) {
    let given = match command {
        Command::Verify(a) => &mut a.which.trust.trust_signers,
        Command::Inspect(a) => &mut a.which.trust.trust_signers,
        Command::ExportOpenshift(a) => &mut a.which.trust.trust_signers,
        Command::Extract(a) => &mut a.which.trust.trust_signers,
        Command::Restore(a) => &mut a.trust.trust_signers,
        _ => return,
    };
    *given = s.trusted_signers(given);
}

/// The stores a `BACKUP | --latest` argument needs: none for a path to a file; a path that
/// does not exist is said to be missing (not "no store configured").
pub fn stores_for(
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

pub use crate::store::Chosen;

/// Resolves `BACKUP | --latest` against the stores (or a path to a `.cpb` file).
pub fn choose(which: &BackupRef, stores: &[Box<dyn Store>]) -> anyhow::Result<Chosen> {
    let trust = which
        .trust
        .trust_signers
        .iter()
        .map(|s| crate::signing::parse_trusted(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(arg) = &which.backup {
        let p = Path::new(arg);
        if p.is_file() {
            let f = std::fs::File::open(p)?;
            let size = f.metadata()?.len();
            let (record, record_error) = match std::fs::read(format!("{arg}.json")) {
                Ok(b) => match Record::parse_limited(&b) {
                    Ok(r) => (Some(r), None),
                    Err(e) => (None, Some(e)),
                },
                Err(_) => (None, None),
            };
            let listing = Listing {
                name: arg.clone(),
                store: "(file)".into(),
                size: Some(size),
                state: store::state_of(Some(size), record.as_ref(), &[]),
                record,
                pending: Vec::new(),
                tampered: Vec::new(),
                record_error,
                version_id: None,
            };
            trusted(&listing, &trust)?;
            return Ok(Chosen {
                listing,
                reader: Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
            });
        }
    }
    let mut all: Vec<(usize, Listing)> = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        all.extend(s.list()?.into_iter().map(|l| (i, l)));
    }
    let (idx, listing) = if which.latest {
        latest(which, &trust, all)?
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
    for t in &listing.tampered {
        eprintln!(
            "WARNING: {} in {} looks tampered with: {t}. The original, locked version is what is read and checked; find out who can write to this store",
            listing.name, listing.store
        );
    }
    trusted(&listing, &trust)?;
    if listing.state == BackupState::MissingBundle {
        anyhow::bail!("{}: the record exists but the bundle is gone", listing.name);
    }
    Ok(Chosen {
        reader: stores[idx].open_listed(&listing)?,
        listing,
    })
}

/// How far in the future a backup's name may be dated (clock skew between nodes).
const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// How far a record's time may be from the time in the name.
const MAX_NAME_RECORD_GAP: time::Duration = time::Duration::minutes(2);

/// `--latest`: the cluster's newest backup whose record agrees with its name, by the record's
/// time; what is passed over, and why, is said on stderr.
/// With `--trust-signer`: the backup's record must be signed by one of `trust`.
fn trusted(l: &Listing, trust: &[String]) -> anyhow::Result<()> {
    if trust.is_empty() {
        return Ok(());
    }
    let why = match &l.record {
        None => "it has no record to carry a signature".to_owned(),
        Some(r) => match crate::signing::check(r, trust) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        },
    };
    anyhow::bail!(
        "refusing {}: {why}. With --trust-signer only backups signed by a trusted node key are read",
        l.name
    )
}

fn latest(
    which: &BackupRef,
    trust: &[String],
    all: Vec<(usize, Listing)>,
) -> anyhow::Result<(usize, Listing)> {
    let now = time::OffsetDateTime::now_utc();
    let mut candidates: Vec<(time::OffsetDateTime, usize, Listing)> = Vec::new();
    for (i, l) in all {
        if !matches!(l.state, BackupState::Complete | BackupState::Tampered) {
            continue;
        }
        let (Some(name), Some(rec)) = (store::BundleName::parse(&l.name), l.record.as_ref()) else {
            continue;
        };
        if which.cluster.as_ref().is_some_and(|c| *c != name.cluster)
            || which.node.as_ref().is_some_and(|n| *n != name.node)
        {
            continue;
        }
        let ignore = |why: String| {
            eprintln!("WARNING: --latest ignores {} in {}: {why}", l.name, l.store);
        };
        let Some(named) = name.time() else {
            ignore("its name carries no time".into());
            continue;
        };
        if named > now + MAX_CLOCK_SKEW {
            ignore(format!("its name is dated {named}, in the future"));
            continue;
        }
        let recorded = time::OffsetDateTime::parse(
            &rec.created,
            &time::format_description::well_known::Rfc3339,
        );
        let Ok(recorded) = recorded else {
            ignore(format!("its record's time {:?} is unreadable", rec.created));
            continue;
        };
        if (recorded - named).abs() > MAX_NAME_RECORD_GAP {
            ignore(format!(
                "its record says {recorded}, its name {named}: one of them was forged"
            ));
            continue;
        }
        if rec.cluster != name.cluster || rec.node != name.node {
            ignore(format!(
                "its record names {}/{}, not {}/{}",
                rec.cluster, rec.node, name.cluster, name.node
            ));
            continue;
        }
        if rec.name != l.name {
            ignore(format!("its record is that of {}", rec.name));
            continue;
        }
        if !trust.is_empty()
            && let Err(why) = crate::signing::check(rec, trust)
        {
            ignore(why);
            continue;
        }
        candidates.push((recorded, i, l));
    }
    let clusters: std::collections::BTreeSet<&str> = candidates
        .iter()
        .filter_map(|(_, _, l)| l.name.split('/').next())
        .collect();
    if clusters.len() > 1 {
        return Err(usage(format!(
            "the stores hold backups of {} clusters ({}): say which with --cluster NAME",
            clusters.len(),
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let n = candidates.len();
    let (at, i, l) = candidates
        .into_iter()
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.name.cmp(&b.2.name)))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no complete backup{} in the stores; run `cpbackup list` to see what is there",
                which
                    .cluster
                    .as_ref()
                    .map(|c| format!(" of cluster {c}"))
                    .unwrap_or_default()
            )
        })?;
    eprintln!(
        "--latest chose {} in {}: the newest of {n} complete backup(s) of cluster {} by its record's time ({at})",
        l.name,
        l.store,
        l.name.split('/').next().unwrap_or_default()
    );
    Ok((i, l))
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

/// Where `inspect` and `extract` read a snapshot from.
pub enum SnapshotInput {
    /// A bare snapshot file (not age-encrypted): its path.
    Bare(String),
    /// A backup, the identities that decrypt it, and an unlinked 0600 spool file for its snapshot.
    Backup(Box<BackupInput>),
}

/// A backup to read: the chosen bundle, the identities that decrypt it, the spool file.
pub struct BackupInput {
    pub chosen: Chosen,
    pub ids: crate::keys::Identities,
    pub spool: std::fs::File,
}

/// Resolves `BACKUP | FILE | --latest` for the commands that read snapshots.
pub fn snapshot_input(
    which: &BackupRef,
    identities: &IdentityArgs,
    stores: &StoreArgs,
    spool_dir: Option<&Path>,
    s: &Settings,
) -> anyhow::Result<SnapshotInput> {
    let given = which.backup.as_deref();
    let is_file = given.is_some_and(|s| Path::new(s).is_file());
    if let Some(path) = given.filter(|_| is_file)
        && !starts_with_age(Path::new(path))?
    {
        return Ok(SnapshotInput::Bare(path.to_owned()));
    }
    let ids = crate::keys::Identities::load(&s.identities(identities)?)?;
    let stores = store::open_all(&stores_for(which, stores, s)?)?;
    let chosen = choose(which, &stores)?;
    let spool_dir = s.spool_dir(spool_dir);
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
