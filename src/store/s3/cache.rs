//! What an S3 store remembers between runs, so that a fleet's `list` and `prune` cost one
//! listing rather than two requests per backup. One file per store (`<cache dir>/s3/<id>.json`,
//! 0600 in a 0700 directory), holding only what cannot have changed on the server:
//! - records already read, by object version: the bytes of a version never change, so a record
//!   read once is that version's record (it is parsed and checked again on every use);
//! - COMPLIANCE locks: such a lock can be extended but never shortened or lifted, so a version
//!   seen locked until T is still locked before T. GOVERNANCE locks (a privileged user may lift
//!   them) and expired locks are asked for every time.
//!
//! The listing itself is never cached: every run still sees new, overwritten and deleted keys.
//! Losing or damaging the file costs only the requests (a damaged file is said, then replaced);
//! writing it back keeps only the versions the last listing still showed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A cache file larger than this is not read (and is replaced).
const MAX_FILE_BYTES: u64 = 512 << 20;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    /// `"<key>\n<version>"` → the record's bytes (JSON text).
    #[serde(default)]
    records: HashMap<String, String>,
    /// `"<key>\n<version>"` → the retain-until date (RFC 3339) of its COMPLIANCE lock.
    #[serde(default)]
    locks: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    dirty: bool,
    saved: Saved,
    /// `"<key>\n<version>"` of every version the last listing of this run showed.
    listed: Option<HashSet<String>>,
}

/// The cache of one store (no file: remembers nothing across runs).
pub(super) struct Cache {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn entry(key: &str, version: &str) -> String {
    format!("{key}\n{version}")
}

fn future(until: &str, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(until, &Rfc3339).is_ok_and(|u| u > now)
}

impl Cache {
    /// The cache of the store at `location` on `endpoint`, under `dir` (`None`: no cache).
    pub(super) fn new(dir: Option<PathBuf>, endpoint: Option<&str>, location: &str) -> Cache {
        let path = dir.map(|d| {
            let id = Sha256::digest(format!("{}\n{location}", endpoint.unwrap_or("aws")));
            d.join("s3")
                .join(format!("{}.json", hex::encode(&id[..16])))
        });
        Cache {
            path,
            state: Mutex::new(State::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.loaded {
            s.loaded = true;
            if let Some(path) = &self.path {
                s.saved = load(path);
            }
        }
        f(&mut s)
    }

    /// The record bytes remembered for this version.
    pub(super) fn record(&self, key: &str, version: &str) -> Option<Vec<u8>> {
        self.path.as_ref()?;
        self.with(|s| {
            s.saved
                .records
                .get(&entry(key, version))
                .map(|r| r.clone().into_bytes())
        })
    }

    /// Remembers a record that parsed.
    pub(super) fn put_record(&self, key: &str, version: &str, bytes: &[u8]) {
        let (Some(_), Ok(text)) = (&self.path, std::str::from_utf8(bytes)) else {
            return;
        };
        self.with(|s| {
            s.saved.records.insert(entry(key, version), text.to_owned());
            s.dirty = true;
        });
    }

    /// The retain-until date of a COMPLIANCE lock remembered for this version, if still ahead.
    pub(super) fn lock(&self, key: &str, version: &str) -> Option<String> {
        self.path.as_ref()?;
        let now = OffsetDateTime::now_utc();
        self.with(|s| {
            s.saved
                .locks
                .get(&entry(key, version))
                .filter(|u| future(u, now))
                .cloned()
        })
    }

    /// Remembers a lock the server reported, if it is COMPLIANCE and still ahead.
    pub(super) fn put_lock(
        &self,
        key: &str,
        version: &str,
        mode: Option<&str>,
        until: Option<&str>,
    ) {
        let (Some(_), Some("COMPLIANCE"), Some(until)) = (&self.path, mode, until) else {
            return;
        };
        if !future(until, OffsetDateTime::now_utc()) {
            return;
        }
        self.with(|s| {
            s.saved.locks.insert(entry(key, version), until.to_owned());
            s.dirty = true;
        });
    }

    /// The versions a listing showed (`(key, version)`): what is written back is limited to them.
    pub(super) fn listed<'a>(&self, versions: impl Iterator<Item = (&'a str, &'a str)>) {
        if self.path.is_none() {
            return;
        }
        let set = versions.map(|(k, v)| entry(k, v)).collect();
        self.with(|s| s.listed = Some(set));
    }

    /// Writes what was learnt back (nothing when nothing was). A failure is logged, never fatal.
    pub(super) fn save(&self) {
        let Some(path) = &self.path else { return };
        let bytes = self.with(|s| {
            if !s.dirty {
                return None;
            }
            s.dirty = false;
            let now = OffsetDateTime::now_utc();
            s.saved.locks.retain(|_, u| future(u, now));
            if let Some(listed) = &s.listed {
                s.saved.records.retain(|k, _| listed.contains(k));
                s.saved.locks.retain(|k, _| listed.contains(k));
            }
            serde_json::to_vec(&s.saved).ok()
        });
        let Some(bytes) = bytes else { return };
        let written = path
            .parent()
            .map(|dir| {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
            })
            .unwrap_or(Ok(()))
            .map_err(anyhow::Error::from)
            .and_then(|()| crate::fsutil::write_atomically(path, &bytes, 0o600));
        if let Err(e) = written {
            tracing::warn!(
                file = %path.display(),
                error = %format!("{e:#}"),
                "could not save the S3 cache; the next listing asks the store again (give a writable --cache-dir, or --no-cache)"
            );
        }
    }
}

fn load(path: &std::path::Path) -> Saved {
    let read = std::fs::File::open(path).and_then(|f| {
        if f.metadata()?.len() > MAX_FILE_BYTES {
            return Err(std::io::Error::other("larger than 512 MiB"));
        }
        Ok(f)
    });
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "S3 cache unreadable; asking the store");
            Saved::default()
        }
        Ok(f) => serde_json::from_reader(std::io::BufReader::new(f)).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "S3 cache damaged; asking the store, then replacing it");
            Saved::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(t: OffsetDateTime) -> String {
        t.format(&Rfc3339).unwrap()
    }

    #[test]
    fn remembers_records_and_compliance_locks_across_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let ahead = rfc(OffsetDateTime::now_utc() + time::Duration::days(1));
        let past = rfc(OffsetDateTime::now_utc() - time::Duration::days(1));
        let c = Cache::new(Some(dir.path().into()), Some("http://x"), "s3://b/p");
        c.put_record("k.json", "v1", b"{\"a\":1}");
        c.put_lock("k.cpb", "v2", Some("COMPLIANCE"), Some(&ahead));
        c.put_lock("g.cpb", "v3", Some("GOVERNANCE"), Some(&ahead));
        c.put_lock("e.cpb", "v4", Some("COMPLIANCE"), Some(&past));
        c.save();

        let again = Cache::new(Some(dir.path().into()), Some("http://x"), "s3://b/p");
        assert_eq!(again.record("k.json", "v1").unwrap(), b"{\"a\":1}");
        assert_eq!(
            again.record("k.json", "other"),
            None,
            "by version, not by key"
        );
        assert_eq!(again.lock("k.cpb", "v2"), Some(ahead.clone()));
        assert_eq!(
            again.lock("g.cpb", "v3"),
            None,
            "governance locks can be lifted"
        );
        assert_eq!(
            again.lock("e.cpb", "v4"),
            None,
            "expired locks are asked for"
        );

        // another store (or endpoint) has its own file
        let other = Cache::new(Some(dir.path().into()), Some("http://y"), "s3://b/p");
        assert_eq!(other.record("k.json", "v1"), None);

        // written back: only what the last listing still showed
        again.listed([("k.cpb", "v2")].into_iter());
        again.put_record("n.json", "v9", b"{}");
        again.save();
        let third = Cache::new(Some(dir.path().into()), Some("http://x"), "s3://b/p");
        assert_eq!(third.record("k.json", "v1"), None);
        assert_eq!(third.lock("k.cpb", "v2"), Some(ahead));

        let path = third.path.clone().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        // a damaged file is ignored, then replaced
        std::fs::write(&path, b"{not json").unwrap();
        let damaged = Cache::new(Some(dir.path().into()), Some("http://x"), "s3://b/p");
        assert_eq!(damaged.lock("k.cpb", "v2"), None);
        damaged.put_record("k.json", "v1", b"{}");
        damaged.save();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).is_ok()
        );
    }

    #[test]
    fn without_a_directory_nothing_is_remembered() {
        let c = Cache::new(None, None, "s3://b/p");
        c.put_record("k", "v", b"{}");
        c.put_lock(
            "k",
            "v",
            Some("COMPLIANCE"),
            Some(&rfc(OffsetDateTime::now_utc() + time::Duration::days(1))),
        );
        assert_eq!(c.record("k", "v"), None);
        assert_eq!(c.lock("k", "v"), None);
        c.save();
    }
}
