//! Integrity without the key: a stored bundle's bytes against its record (size and SHA-256 of
//! the ciphertext), and its Object Lock still in force. What `verify --ciphertext-only` runs,
//! and what the daemon runs after each slot on the newest backup of its cluster in every
//! store. It proves the copy is the one that was written and is still protected; only a full
//! `verify` (with the key) proves what is inside.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::store::{BackupState, Listing, Record, Store};

/// What a ciphertext check found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Integrity {
    pub name: String,
    pub store: String,
    pub ok: bool,
    /// Why it is not ok (empty when it is).
    pub problems: Vec<String>,
    pub bytes: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
    /// The store saw the keys written over; the original is what was checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tampered: Vec<String>,
    /// Unix time the backup was taken (from its record), for "newest verified" metrics.
    #[serde(skip)]
    pub created_unix: Option<f64>,
}

/// Streams `reader` (the bundle `listing` names) and checks it against the listing's record.
pub fn check(listing: &Listing, reader: impl Read) -> anyhow::Result<Integrity> {
    let mut problems = Vec::new();
    let (bytes, sha256) = hash(reader)?;
    let record = listing.record.as_ref();
    match record {
        None => problems.push(match &listing.record_error {
            Some(e) => format!("its record is unusable ({e}): nothing to check the bytes against"),
            None => "no record beside the bundle: the backup did not finish".to_owned(),
        }),
        Some(r) => {
            if r.bundle_size != bytes {
                problems.push(format!(
                    "{bytes} bytes in the store, {} recorded",
                    r.bundle_size
                ));
            }
            if r.bundle_sha256 != sha256 {
                problems.push(format!(
                    "SHA-256 {sha256} differs from the recorded {}",
                    r.bundle_sha256
                ));
            }
            if let Some(p) = lock_problem(r, time::OffsetDateTime::now_utc()) {
                problems.push(p);
            }
        }
    }
    if !matches!(listing.state, BackupState::Complete | BackupState::Tampered)
        && problems.is_empty()
    {
        problems.push(format!("listed as {}", listing.state.as_str()));
    }
    Ok(Integrity {
        name: listing.name.clone(),
        store: listing.store.clone(),
        ok: problems.is_empty(),
        problems,
        bytes,
        sha256,
        version_id: listing.version_id.clone(),
        lock_mode: record.and_then(|r| r.lock_mode.clone()),
        retain_until: record.and_then(|r| r.retain_until.clone()),
        tampered: listing.tampered.clone(),
        created_unix: record.and_then(created_unix),
    })
}

/// What the daemon's check after a slot found across every store, for one cluster.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Creation time of the newest backup whose ciphertext checked out, in any store.
    pub newest_verified: Option<f64>,
    /// Checks that found a problem.
    pub failed: Vec<Integrity>,
    /// Backups of the cluster listed `tampered`, over all stores.
    pub tampered: usize,
    /// Stores that could not be listed or read.
    pub errors: Vec<String>,
}

/// Lists every store once and checks the newest backup of `cluster` in each.
pub fn sweep(stores: &[Box<dyn Store>], cluster: &str) -> Sweep {
    let mut out = Sweep::default();
    for store in stores {
        let listings = match store.list() {
            Ok(l) => l,
            Err(e) => {
                out.errors.push(format!("{}: {e:#}", store.location()));
                continue;
            }
        };
        out.tampered += listings
            .iter()
            .filter(|l| l.state == BackupState::Tampered)
            .filter(|l| l.record.as_ref().is_some_and(|r| r.cluster == cluster))
            .count();
        let Some(newest) = newest_of(&listings, cluster) else {
            continue;
        };
        match store.open_listed(newest).and_then(|r| check(newest, r)) {
            Ok(i) if i.ok => {
                out.newest_verified = later(out.newest_verified, i.created_unix);
            }
            Ok(i) => out.failed.push(i),
            Err(e) => out.errors.push(format!("{}: {e:#}", newest.name)),
        }
    }
    out
}

/// The newest complete (or tampered: the original is intact) backup of `cluster`, by its
/// record's time.
pub fn newest_of<'l>(listings: &'l [Listing], cluster: &str) -> Option<&'l Listing> {
    listings
        .iter()
        .filter(|l| matches!(l.state, BackupState::Complete | BackupState::Tampered))
        .filter(|l| l.record.as_ref().is_some_and(|r| r.cluster == cluster))
        .max_by(|a, b| {
            let t = |l: &Listing| l.record.as_ref().and_then(created_unix).unwrap_or(0.0);
            t(a).total_cmp(&t(b)).then_with(|| a.name.cmp(&b.name))
        })
}

/// The later of two optional times.
pub fn later(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.into_iter().chain(b).reduce(f64::max)
}

fn created_unix(r: &Record) -> Option<f64> {
    time::OffsetDateTime::parse(&r.created, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp() as f64)
}

/// A lock the record (as the store reports it now) says has run out.
fn lock_problem(r: &Record, now: time::OffsetDateTime) -> Option<String> {
    let until = r.retain_until.as_deref()?;
    match time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339) {
        Ok(t) if t <= now => Some(format!(
            "its Object Lock ({}) ran out at {until}: the copy can now be deleted or replaced",
            r.lock_mode.as_deref().unwrap_or("?")
        )),
        Ok(_) => None,
        Err(_) => Some(format!("its lock's retain-until {until:?} is unreadable")),
    }
}

fn hash(mut reader: impl Read) -> anyhow::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = reader.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(created: &str, until: Option<&str>) -> Record {
        Record {
            created: created.into(),
            bundle_size: 5,
            bundle_sha256: hex::encode(Sha256::digest(b"hello")),
            lock_mode: until.map(|_| "COMPLIANCE".into()),
            retain_until: until.map(str::to_owned),
            ..Record::sample("c/n/x.cpb", 5)
        }
    }

    fn listing(r: Record) -> Listing {
        Listing {
            name: r.name.clone(),
            store: "s".into(),
            size: Some(r.bundle_size),
            state: BackupState::Complete,
            record: Some(r),
            pending: vec![],
            tampered: vec![],
            record_error: None,
            version_id: None,
            record_version: Some(String::new()),
        }
    }

    #[test]
    fn bytes_record_and_lock_are_checked() {
        let ok = check(
            &listing(record("2026-01-01T00:00:00Z", Some("2999-01-01T00:00:00Z"))),
            &b"hello"[..],
        )
        .unwrap();
        assert!(ok.ok, "{:?}", ok.problems);
        let bad = check(
            &listing(record("2026-01-01T00:00:00Z", None)),
            &b"hellO"[..],
        )
        .unwrap();
        assert!(
            !bad.ok && bad.problems[0].contains("SHA-256"),
            "{:?}",
            bad.problems
        );
        let expired = check(
            &listing(record("2026-01-01T00:00:00Z", Some("2020-01-01T00:00:00Z"))),
            &b"hello"[..],
        )
        .unwrap();
        assert!(
            expired.problems[0].contains("ran out"),
            "{:?}",
            expired.problems
        );
    }

    #[test]
    fn the_newest_of_one_cluster_by_record_time() {
        let mut a = listing(record("2026-01-02T00:00:00Z", None));
        a.name = "c/n/a.cpb".into();
        let mut b = listing(record("2026-01-01T00:00:00Z", None));
        b.name = "c/n/zzz.cpb".into();
        let mut other = listing(record("2027-01-01T00:00:00Z", None));
        other.record.as_mut().unwrap().cluster = "other".into();
        let all = [a, b, other];
        assert_eq!(newest_of(&all, "c").unwrap().name, "c/n/a.cpb");
        assert!(newest_of(&all, "nope").is_none());
    }
}
