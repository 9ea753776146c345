//! Which backup a reader gets: a path to a `.cpb` file (with the record beside it), a name as
//! `list` prints it, or `--latest` — the cluster's newest trustworthy backup, ranked by its
//! record's time, which must agree with its name. With trusted signers, only backups whose
//! record one of them signed. What is passed over, and why, is said on stderr.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{BackupState, BundleName, Chosen, Listing, Record, Store, state_of};
use crate::error::usage;

/// How far in the future a backup's name may be dated (clock skew between nodes).
const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// How far a record's time may be from the time in the name.
const MAX_NAME_RECORD_GAP: time::Duration = time::Duration::minutes(2);

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// A name from `list`, or a path to a `.cpb` file.
    pub backup: Option<String>,
    /// The newest trustworthy backup instead.
    pub latest: bool,
    /// With `latest`: only this cluster's backups.
    pub cluster: Option<String>,
    /// With `latest`: only backups taken on this node.
    pub node: Option<String>,
    /// Public keys (`cpbsig1:…`) a record must be signed by; empty: any record.
    pub trust: Vec<String>,
}

/// Resolves the selector against the stores (or a path to a `.cpb` file).
pub fn choose(sel: &Selector, stores: &[Box<dyn Store>]) -> anyhow::Result<Chosen> {
    let trust = sel
        .trust
        .iter()
        .map(|s| crate::store::signing::parse_trusted(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(arg) = sel.backup.as_deref().filter(|a| Path::new(a).is_file()) {
        return from_file(arg, &trust);
    }
    let mut all: Vec<(usize, Listing)> = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        all.extend(s.list()?.into_iter().map(|l| (i, l)));
    }
    let (idx, listing) = if sel.latest {
        latest(sel, &trust, all)?
    } else {
        let want = sel.backup.as_deref().unwrap_or_default().trim_matches('/');
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

/// A `.cpb` file given by path, and the record beside it if there is one.
fn from_file(path: &str, trust: &[String]) -> anyhow::Result<Chosen> {
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let (record, record_error) = match std::fs::read(format!("{path}.json")) {
        Ok(b) => match Record::parse_limited(&b) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        },
        Err(_) => (None, None),
    };
    let listing = Listing {
        name: path.to_owned(),
        store: "(file)".into(),
        size: Some(size),
        state: state_of(Some(size), record.as_ref(), &[]),
        record,
        pending: Vec::new(),
        tampered: Vec::new(),
        record_error,
        version_id: None,
    };
    trusted(&listing, trust)?;
    Ok(Chosen {
        listing,
        reader: Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
    })
}

/// With trusted signers: the backup's record must be signed by one of them.
fn trusted(l: &Listing, trust: &[String]) -> anyhow::Result<()> {
    if trust.is_empty() {
        return Ok(());
    }
    let why = match &l.record {
        None => "it has no record to carry a signature".to_owned(),
        Some(r) => match crate::store::signing::check(r, trust) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        },
    };
    anyhow::bail!(
        "refusing {}: {why}. With --trust-signer only backups signed by a trusted node key are read",
        l.name
    )
}

/// Why `--latest` passes over a complete backup of the wanted cluster and node, if it does;
/// else the record's time it ranks by.
fn ranked_time(
    l: &Listing,
    name: &BundleName,
    rec: &Record,
    trust: &[String],
    now: OffsetDateTime,
) -> Result<OffsetDateTime, String> {
    let named = name.time().ok_or("its name carries no time")?;
    if named > now + MAX_CLOCK_SKEW {
        return Err(format!("its name is dated {named}, in the future"));
    }
    let recorded = OffsetDateTime::parse(&rec.created, &Rfc3339)
        .map_err(|_| format!("its record's time {:?} is unreadable", rec.created))?;
    if (recorded - named).abs() > MAX_NAME_RECORD_GAP {
        return Err(format!(
            "its record says {recorded}, its name {named}: one of them was forged"
        ));
    }
    if rec.cluster != name.cluster || rec.node != name.node {
        return Err(format!(
            "its record names {}/{}, not {}/{}",
            rec.cluster, rec.node, name.cluster, name.node
        ));
    }
    if rec.name != l.name {
        return Err(format!("its record is that of {}", rec.name));
    }
    if !trust.is_empty() {
        crate::store::signing::check(rec, trust)?;
    }
    Ok(recorded)
}

/// `--latest`: the newest complete backup of one cluster by its record's time.
fn latest(
    sel: &Selector,
    trust: &[String],
    all: Vec<(usize, Listing)>,
) -> anyhow::Result<(usize, Listing)> {
    let now = OffsetDateTime::now_utc();
    let mut candidates: Vec<(OffsetDateTime, usize, Listing, BundleName)> = Vec::new();
    for (i, l) in all {
        if !matches!(l.state, BackupState::Complete | BackupState::Tampered) {
            continue;
        }
        let (Some(name), Some(rec)) = (BundleName::parse(&l.name), l.record.as_ref()) else {
            continue;
        };
        if sel.cluster.as_ref().is_some_and(|c| *c != name.cluster)
            || sel.node.as_ref().is_some_and(|n| *n != name.node)
        {
            continue;
        }
        match ranked_time(&l, &name, rec, trust, now) {
            Ok(at) => candidates.push((at, i, l, name)),
            Err(why) => eprintln!("WARNING: --latest ignores {} in {}: {why}", l.name, l.store),
        }
    }
    let clusters: std::collections::BTreeSet<&str> =
        candidates.iter().map(|c| c.3.cluster.as_str()).collect();
    if clusters.len() > 1 {
        return Err(usage(format!(
            "the stores hold backups of {} clusters ({}): say which with --cluster NAME",
            clusters.len(),
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let n = candidates.len();
    let (at, i, l, name) = candidates
        .into_iter()
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.name.cmp(&b.2.name)))
        .ok_or_else(|| {
            let of = sel.cluster.as_ref().map(|c| format!(" of cluster {c}"));
            anyhow::anyhow!(
                "no complete backup{} in the stores; run `cpbackup list` to see what is there",
                of.unwrap_or_default()
            )
        })?;
    eprintln!(
        "--latest chose {} in {}: the newest of {n} complete backup(s) of cluster {} by its record's time ({at})",
        l.name, l.store, name.cluster
    );
    Ok((i, l))
}
