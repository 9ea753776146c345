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
    let (idx, listing) = if sel.latest {
        latest(sel, &trust, stores)?
    } else {
        let mut all: Vec<(usize, Listing)> = Vec::new();
        for (i, s) in stores.iter().enumerate() {
            all.extend(s.list()?.into_iter().map(|l| (i, l)));
        }
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
        record_version: None,
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

/// Records read at a time while looking for `--latest`, newest names first.
const LATEST_BATCH: usize = 8;

/// `--latest`, saying on stderr which backup it chose and why.
fn latest(
    sel: &Selector,
    trust: &[String],
    stores: &[Box<dyn Store>],
) -> anyhow::Result<(usize, Listing)> {
    let n = newest(sel, trust, stores)?.ok_or_else(|| {
        let of = sel.cluster.as_ref().map(|c| format!(" of cluster {c}"));
        anyhow::anyhow!(
            "no complete backup{} in the stores; run `cpbackup list` to see what is there",
            of.unwrap_or_default()
        )
    })?;
    let at =
        n.at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| n.at.to_string());
    eprintln!(
        "--latest chose {} in {}: the newest of {} backup(s) of cluster {} by its record's time ({at}; {} record(s) read)",
        n.listing.name, n.listing.store, n.listed, n.cluster, n.read
    );
    Ok((n.store, n.listing))
}

/// What [`newest`] found.
pub(crate) struct Newest {
    /// Index of the store that holds it.
    pub store: usize,
    /// The backup, its record read and checked.
    pub listing: Listing,
    /// Its record's time.
    pub at: OffsetDateTime,
    /// Its cluster.
    pub cluster: String,
    /// Candidates listed.
    pub listed: usize,
    /// Records read to decide.
    pub read: usize,
}

/// The newest complete backup of one cluster by its record's time (what `--latest` picks;
/// `doctor` asks the same). The candidates come from the listings' names (cluster, node, time;
/// a name dated in the future counts for nothing); records are read newest first, a batch at a
/// time, until no unread backup could rank higher (a record's time is within
/// [`MAX_NAME_RECORD_GAP`] of its name's).
pub(crate) fn newest(
    sel: &Selector,
    trust: &[String],
    stores: &[Box<dyn Store>],
) -> anyhow::Result<Option<Newest>> {
    let now = OffsetDateTime::now_utc();
    let mut unread: Vec<(OffsetDateTime, usize, Listing)> = Vec::new();
    let mut answered = 0;
    for (i, s) in stores.iter().enumerate() {
        // on the day a store is down, the others still have backups: choose among them
        let scanned = match s.scan() {
            Ok(l) => l,
            Err(e) if stores.len() > 1 => {
                eprintln!(
                    "WARNING: store {} did not answer: {e:#}; --latest chooses among the others",
                    s.location()
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        answered += 1;
        for l in scanned {
            let Some(name) = BundleName::parse(&l.name) else {
                continue;
            };
            if sel.cluster.as_ref().is_some_and(|c| *c != name.cluster)
                || sel.node.as_ref().is_some_and(|n| *n != name.node)
                || !matches!(l.state, BackupState::Unchecked | BackupState::Tampered)
            {
                continue;
            }
            // a name dated in the future (planted to win) counts for nothing, not even for
            // which clusters the stores hold
            match name.time() {
                Some(t) if t <= now + MAX_CLOCK_SKEW => unread.push((t, i, l)),
                Some(t) => eprintln!(
                    "WARNING: --latest ignores {} in {}: its name is dated {t}, in the future",
                    l.name,
                    s.location()
                ),
                None => eprintln!(
                    "WARNING: --latest ignores {} in {}: its name carries no time",
                    l.name,
                    s.location()
                ),
            }
        }
    }
    if answered == 0 {
        anyhow::bail!("no store answered; see the warnings above");
    }
    let clusters: std::collections::BTreeSet<String> = unread
        .iter()
        .filter_map(|(_, _, l)| BundleName::parse(&l.name).map(|n| n.cluster))
        .collect();
    if clusters.len() > 1 {
        return Err(usage(format!(
            "the stores hold backups of {} clusters ({}): say which with --cluster NAME",
            clusters.len(),
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let listed = unread.len();
    // newest last, so that batches pop off the end
    unread.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.name.cmp(&b.2.name)));
    let mut best: Option<(OffsetDateTime, usize, Listing, BundleName)> = None;
    let mut read = 0;
    while !unread.is_empty() {
        if let (Some((at, ..)), Some((next, ..))) = (&best, unread.last())
            && *at > *next + MAX_NAME_RECORD_GAP
        {
            break;
        }
        let batch: Vec<(OffsetDateTime, usize, Listing)> =
            unread.split_off(unread.len().saturating_sub(LATEST_BATCH));
        read += batch.len();
        for (i, store) in stores.iter().enumerate() {
            let mut mine: Vec<Listing> = batch
                .iter()
                .filter(|b| b.1 == i)
                .map(|b| b.2.clone())
                .collect();
            if mine.is_empty() {
                continue;
            }
            store.read_records(&mut mine)?;
            for l in mine {
                if let Some(c) = rank(&l, trust, now) {
                    let better = best
                        .as_ref()
                        .is_none_or(|b| c.0.cmp(&b.0).then_with(|| l.name.cmp(&b.2.name)).is_gt());
                    if better {
                        best = Some((c.0, i, l, c.1));
                    }
                }
            }
        }
    }
    let Some((at, i, l, name)) = best else {
        return Ok(None);
    };
    Ok(Some(Newest {
        store: i,
        listing: l,
        at,
        cluster: name.cluster,
        listed,
        read,
    }))
}

/// A complete backup's record time and name, or `None` (said on stderr) when `--latest` must
/// pass it over.
fn rank(
    l: &Listing,
    trust: &[String],
    now: OffsetDateTime,
) -> Option<(OffsetDateTime, BundleName)> {
    let name = BundleName::parse(&l.name)?;
    let rec = match (&l.record, l.state) {
        (Some(r), BackupState::Complete | BackupState::Tampered) => r,
        _ => {
            let why = l
                .record_error
                .as_ref()
                .map(|e| format!("its record is unusable: {e}"))
                .unwrap_or_else(|| format!("it is {}", l.state.as_str()));
            eprintln!("WARNING: --latest ignores {} in {}: {why}", l.name, l.store);
            return None;
        }
    };
    match ranked_time(l, &name, rec, trust, now) {
        Ok(at) => Some((at, name)),
        Err(why) => {
            eprintln!("WARNING: --latest ignores {} in {}: {why}", l.name, l.store);
            None
        }
    }
}
