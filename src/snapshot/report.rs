//! One pass over a mapped snapshot answering what `etcdutl snapshot status` answers (revision,
//! total keys, total size, its crc32c hash) plus what people ask next (live keys, compaction,
//! where the keys and bytes are). The sha256 trailer is verified on a second core meanwhile.

use sha2::{Digest, Sha256};

use crate::snapshot::TrailerStatus;
use crate::snapshot::db::{Db, DbError};
use crate::snapshot::mvcc::{self, MvccError};
use crate::snapshot::stats::{self, Breakdown};

/// One bbolt bucket and how many entries it holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BucketCount {
    /// The bucket's name.
    pub name: String,
    /// Its entries.
    pub entries: u64,
}

/// What `inspect` says of a snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Bytes of the file, trailer included.
    pub file_size: u64,
    /// Whether the SHA-256 trailer matches.
    pub hash_trailer: TrailerStatus,
    /// Main revision of the last entry of the `key` bucket (what `etcdutl snapshot status` says).
    pub revision: i64,
    /// The head revision etcd would start at (also counts compaction markers).
    pub head_revision: i64,
    /// The last compaction's revision.
    pub compact_revision: i64,
    /// Entries in all buckets (what `etcdutl snapshot status` calls total keys).
    pub total_keys: u64,
    /// Keys alive at the head revision.
    pub live_keys: u64,
    /// Stored revisions in the `key` bucket (history not yet compacted, tombstones included).
    pub key_revisions: u64,
    /// Database size as bbolt counts it (pages × page size).
    pub total_size: u64,
    /// crc32c over bucket names, keys and values: `etcdutl snapshot status`'s hash.
    pub hash: String,
    /// bbolt page size.
    pub page_size: u32,
    /// bbolt transaction id.
    pub txid: u64,
    /// Entries per bucket.
    pub buckets: Vec<BucketCount>,
    /// Live keys and bytes by resource and namespace.
    #[serde(flatten)]
    pub breakdown: Breakdown,
}

#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Mvcc(#[from] MvccError),
}

/// Analyses a whole snapshot file held in memory or mapped.
pub fn analyze(data: &[u8]) -> Result<Report, ReportError> {
    let has_trailer = data.len() % 512 == 32;
    std::thread::scope(|s| {
        let trailer = s.spawn(|| {
            if !has_trailer {
                return TrailerStatus::Absent;
            }
            let (image, tail) = data.split_at(data.len() - 32);
            if Sha256::digest(image)[..] == tail[..] {
                TrailerStatus::Valid
            } else {
                TrailerStatus::Invalid
            }
        });
        let db = Db::open(data)?;
        let mut crc = 0u32;
        let mut total_keys = 0u64;
        let mut buckets = Vec::new();
        // One walk: etcdutl's counts and hash, and the MVCC keyspace from `meta` and `key`.
        // A guess of one live key per 2 KiB of file sizes the index without rehashing.
        let mut ks = mvcc::Keyspace::with_capacity((data.len() / 2048).min(1 << 22));
        let mut saw_key_bucket = false;
        let mut failure: Option<MvccError> = None;
        for (name, root) in db.buckets()? {
            crc = crc32c::crc32c_append(crc, name);
            let is_key = name == b"key";
            let is_meta = name == b"meta";
            saw_key_bucket |= is_key;
            let mut n = 0u64;
            db.for_each(root, |k, v, _| {
                crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, k), v);
                n += 1;
                if is_key {
                    ks.add_revision(k, v).map_err(|e| {
                        failure = Some(e);
                        DbError::BadBucket("key".into())
                    })?;
                } else if is_meta {
                    ks.add_meta(k, v);
                }
                Ok(())
            })
            .map_err(|e| {
                failure
                    .take()
                    .map(ReportError::Mvcc)
                    .unwrap_or(ReportError::Db(e))
            })?;
            total_keys += n;
            buckets.push(BucketCount {
                name: String::from_utf8_lossy(name).into_owned(),
                entries: n,
            });
        }
        if !saw_key_bucket {
            return Err(MvccError::NoKeyBucket.into());
        }
        let breakdown = stats::breakdown(ks.live.iter().map(|(k, l)| (*k, l.value_len as usize)));
        Ok(Report {
            file_size: data.len() as u64,
            hash_trailer: trailer.join().unwrap_or(TrailerStatus::Invalid),
            revision: ks.last_revision,
            head_revision: ks.head_revision(),
            compact_revision: ks.compact_revision,
            total_keys,
            live_keys: ks.live.len() as u64,
            key_revisions: ks.revisions,
            total_size: db.size(),
            hash: format!("{crc:08x}"),
            page_size: db.meta.page_size,
            txid: db.meta.txid,
            buckets,
            breakdown,
        })
    })
}
