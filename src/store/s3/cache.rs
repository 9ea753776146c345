//! What an S3 store remembers between runs, so that a fleet's `list` and `prune` cost one
//! listing rather than two requests per backup. Under `<cache dir>/s3/<store id>/`, one file
//! per cluster (0600, directories 0700), so that a command about one cluster of a shared bucket
//! loads only that cluster's. It holds only what cannot have changed on the server:
//! - records already read, by object version: the bytes of a version never change, so a record
//!   read once is that version's record (it is parsed and checked again on every use);
//! - COMPLIANCE locks: such a lock can be extended but never shortened or lifted, so a version
//!   seen locked until T is still locked before T. GOVERNANCE locks (a privileged user may lift
//!   them) and expired locks are asked for every time.
//!
//! The listing itself is never cached: every run still sees new, overwritten and deleted keys.
//! Losing or damaging a file costs only the requests (a damaged file is said, then replaced);
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

/// One cluster's file, loaded.
#[derive(Default)]
struct Shard {
    dirty: bool,
    saved: Saved,
}

#[derive(Default)]
struct State {
    /// By file name.
    shards: HashMap<String, Shard>,
    /// `"<key>\n<version>"` of every version the last listing of this run showed.
    listed: Option<HashSet<String>>,
}

/// The cache of one store (no directory: remembers nothing across runs).
pub(super) struct Cache {
    dir: Option<PathBuf>,
    /// The store's prefix with its slash (`""` for a whole bucket), stripped from keys to find
    /// their cluster.
    prefix: String,
    state: Mutex<State>,
}

fn entry(key: &str, version: &str) -> String {
    format!("{key}\n{version}")
}

/// Whether the RFC 3339 time `until` is after `now` (a lock that still holds).
pub(super) fn still_ahead(until: &str, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(until, &Rfc3339).is_ok_and(|u| u > now)
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text)[..16])
}

impl Cache {
    /// The cache of the store `s3://<bucket>/<prefix>` on `endpoint`, under `dir` (`None`: no
    /// cache).
    pub(super) fn new(
        dir: Option<PathBuf>,
        endpoint: Option<&str>,
        bucket: &str,
        prefix: &str,
    ) -> Cache {
        let id = short_hash(&format!(
            "{}\ns3://{bucket}/{prefix}",
            endpoint.unwrap_or("aws")
        ));
        Cache {
            dir: dir.map(|d| d.join("s3").join(id)),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            state: Mutex::new(State::default()),
        }
    }

    /// The file holding `key`'s cluster (the first component below the prefix).
    fn file_of(&self, key: &str) -> String {
        let rel = key.strip_prefix(&self.prefix).unwrap_or(key);
        format!("{}.json", short_hash(rel.split('/').next().unwrap_or("")))
    }

    /// Runs `f` on the shard of `key` (loaded at first use); `None` without a directory.
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Shard) -> R) -> Option<R> {
        let dir = self.dir.as_ref()?;
        let file = self.file_of(key);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let shard = s.shards.entry(file).or_insert_with_key(|file| Shard {
            dirty: false,
            saved: load(&dir.join(file)),
        });
        Some(f(shard))
    }

    /// The record bytes remembered for this version.
    pub(super) fn record(&self, key: &str, version: &str) -> Option<Vec<u8>> {
        self.with(key, |s| {
            s.saved
                .records
                .get(&entry(key, version))
                .map(|r| r.clone().into_bytes())
        })
        .flatten()
    }

    /// Remembers a record that parsed.
    pub(super) fn put_record(&self, key: &str, version: &str, bytes: &[u8]) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        self.with(key, |s| {
            s.saved.records.insert(entry(key, version), text.to_owned());
            s.dirty = true;
        });
    }

    /// The retain-until date of a COMPLIANCE lock remembered for this version, if still ahead.
    pub(super) fn lock(&self, key: &str, version: &str) -> Option<String> {
        let now = OffsetDateTime::now_utc();
        self.with(key, |s| {
            s.saved
                .locks
                .get(&entry(key, version))
                .filter(|u| still_ahead(u, now))
                .cloned()
        })
        .flatten()
    }

    /// Remembers a lock the server reported, if it is COMPLIANCE and still ahead.
    pub(super) fn put_lock(
        &self,
        key: &str,
        version: &str,
        mode: Option<&str>,
        until: Option<&str>,
    ) {
        let (Some("COMPLIANCE"), Some(until)) = (mode, until) else {
            return;
        };
        if !still_ahead(until, OffsetDateTime::now_utc()) {
            return;
        }
        self.with(key, |s| {
            s.saved.locks.insert(entry(key, version), until.to_owned());
            s.dirty = true;
        });
    }

    /// The versions a listing showed (`(key, version)`): what is written back is limited to them.
    pub(super) fn listed<'a>(&self, versions: impl Iterator<Item = (&'a str, &'a str)>) {
        if self.dir.is_none() {
            return;
        }
        let set = versions.map(|(k, v)| entry(k, v)).collect();
        self.state.lock().unwrap_or_else(|p| p.into_inner()).listed = Some(set);
    }

    /// Writes what was learnt back (only the files that changed). A failure is logged, never
    /// fatal.
    pub(super) fn save(&self) {
        let Some(dir) = &self.dir else { return };
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { shards, listed } = &mut *s;
        let dirty: Vec<_> = shards.iter_mut().filter(|(_, sh)| sh.dirty).collect();
        if dirty.is_empty() {
            return;
        }
        let created = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        };
        if let Err(e) = created {
            return not_saved(dir, &e.into());
        }
        let now = OffsetDateTime::now_utc();
        for (file, shard) in dirty {
            shard.dirty = false;
            let saved = &mut shard.saved;
            saved.locks.retain(|_, u| still_ahead(u, now));
            if let Some(listed) = listed {
                saved.records.retain(|k, _| listed.contains(k));
                saved.locks.retain(|k, _| listed.contains(k));
            }
            let path = dir.join(file);
            let written = serde_json::to_vec(saved)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| crate::fsutil::write_atomically(&path, &bytes, 0o600));
            if let Err(e) = written {
                return not_saved(&path, &e);
            }
        }
    }
}

/// Says that the cache could not be written at `path` (never fatal: it is only a cache).
fn not_saved(path: &std::path::Path, e: &anyhow::Error) {
    tracing::warn!(
        file = %path.display(),
        error = %format!("{e:#}"),
        "could not save the S3 cache; the next listing asks the store again (give a writable --cache-dir, or --no-cache)"
    );
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

    fn cache(dir: &std::path::Path, endpoint: &str) -> Cache {
        Cache::new(Some(dir.into()), Some(endpoint), "b", "p")
    }

    #[test]
    fn remembers_records_and_compliance_locks_across_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let ahead = rfc(OffsetDateTime::now_utc() + time::Duration::days(1));
        let past = rfc(OffsetDateTime::now_utc() - time::Duration::days(1));
        let c = cache(dir.path(), "http://x");
        c.put_record("p/a/n/k.json", "v1", b"{\"a\":1}");
        c.put_lock("p/a/n/k.cpb", "v2", Some("COMPLIANCE"), Some(&ahead));
        c.put_lock("p/a/n/g.cpb", "v3", Some("GOVERNANCE"), Some(&ahead));
        c.put_lock("p/a/n/e.cpb", "v4", Some("COMPLIANCE"), Some(&past));
        c.put_record("p/b/n/k.json", "v5", b"{}");
        c.save();

        let again = cache(dir.path(), "http://x");
        assert_eq!(again.record("p/a/n/k.json", "v1").unwrap(), b"{\"a\":1}");
        assert_eq!(
            again.record("p/a/n/k.json", "other"),
            None,
            "by version, not by key"
        );
        assert_eq!(again.lock("p/a/n/k.cpb", "v2"), Some(ahead.clone()));
        assert_eq!(
            again.lock("p/a/n/g.cpb", "v3"),
            None,
            "governance locks can be lifted"
        );
        assert_eq!(
            again.lock("p/a/n/e.cpb", "v4"),
            None,
            "expired locks are asked for"
        );
        assert_eq!(again.record("p/b/n/k.json", "v5").unwrap(), b"{}");
        // one file per cluster: reading cluster a's loaded only a's
        assert_eq!(again.state.lock().unwrap().shards.len(), 2);
        let only_a = cache(dir.path(), "http://x");
        only_a.record("p/a/n/k.json", "v1");
        assert_eq!(only_a.state.lock().unwrap().shards.len(), 1);

        // another endpoint (or store) has its own files
        let other = cache(dir.path(), "http://y");
        assert_eq!(other.record("p/a/n/k.json", "v1"), None);

        // written back: only what the last listing still showed
        again.listed([("p/a/n/k.cpb", "v2")].into_iter());
        again.put_record("p/a/n/n.json", "v9", b"{}");
        again.save();
        let third = cache(dir.path(), "http://x");
        assert_eq!(third.record("p/a/n/k.json", "v1"), None);
        assert_eq!(third.lock("p/a/n/k.cpb", "v2"), Some(ahead));

        let store_dir = third.dir.clone().unwrap();
        let path = store_dir.join(third.file_of("p/a/n/k.cpb"));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&store_dir), 0o700);

        // a damaged file is ignored, then replaced
        std::fs::write(&path, b"{not json").unwrap();
        let damaged = cache(dir.path(), "http://x");
        assert_eq!(damaged.lock("p/a/n/k.cpb", "v2"), None);
        damaged.put_record("p/a/n/k.json", "v1", b"{}");
        damaged.save();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).is_ok()
        );
    }

    /// A cache directory that cannot be made (here: below a regular file) costs only the
    /// requests: `save` says so and returns, and what this run learnt still answers.
    #[test]
    fn an_unwritable_directory_is_said_and_never_fatal() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let c = cache(&file.path().join("below-a-file"), "http://x");
        c.put_record("p/a/n/k.json", "v1", b"{}");
        c.save();
        assert_eq!(c.record("p/a/n/k.json", "v1").unwrap(), b"{}");
        let again = cache(&file.path().join("below-a-file"), "http://x");
        assert_eq!(again.record("p/a/n/k.json", "v1"), None);
    }

    #[test]
    fn without_a_directory_nothing_is_remembered() {
        let c = Cache::new(None, None, "b", "");
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
