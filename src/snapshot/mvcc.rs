//! etcd's MVCC layer on top of bbolt: the `key` bucket maps a revision (`main` u64 BE ‖ `_` ‖
//! `sub` u64 BE, plus `t` for a tombstone) to an `mvccpb.KeyValue` protobuf. Walking it in
//! revision order and keeping the last entry per key gives the live keyspace at the head
//! revision, as etcd's own `restore` does. Values are never copied: the index holds slices of
//! the mapped file.

use rustc_hash::FxHashMap as HashMap;

use thiserror::Error;

use crate::snapshot::db::{Db, DbError};

#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MvccError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no `key` bucket: this is not an etcd v3 database")]
    NoKeyBucket,
    #[error("key bucket entry {index}: invalid revision key of {len} bytes")]
    BadRevision { index: u64, len: usize },
    #[error("key bucket entry at revision {main}: {reason}")]
    BadKeyValue { main: i64, reason: String },
}

/// One key's newest state, borrowing from the mapped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValue<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value as stored.
    pub value: &'a [u8],
    /// Revision that created the key.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Changes since the key was created.
    pub version: i64,
    /// Lease id, 0 without a lease.
    pub lease: i64,
}

/// A parsed revision key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    /// Main revision (one per transaction).
    pub main: i64,
    /// Sub revision (the change within the transaction).
    pub sub: i64,
    /// Whether this revision deleted the key.
    pub tombstone: bool,
}

/// Parses a `key` bucket key (`main_sub` big-endian, `t` for a tombstone).
pub fn parse_revision(k: &[u8]) -> Option<Revision> {
    if !(k.len() == 17 || (k.len() == 18 && k[17] == b't')) || k[8] != b'_' {
        return None;
    }
    Some(Revision {
        main: i64::from_be_bytes(k[0..8].try_into().ok()?),
        sub: i64::from_be_bytes(k[9..17].try_into().ok()?),
        tombstone: k.len() == 18,
    })
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Decodes `mvccpb.KeyValue` (1 key, 2 create_revision, 3 mod_revision, 4 version, 5 value,
/// 6 lease); unknown fields are skipped.
pub fn decode_kv(b: &[u8]) -> Result<KeyValue<'_>, String> {
    let mut kv = KeyValue {
        key: &[],
        value: &[],
        create_revision: 0,
        mod_revision: 0,
        version: 0,
        lease: 0,
    };
    let mut pos = 0;
    while pos < b.len() {
        let tag = varint(b, &mut pos).ok_or("truncated field tag")?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                let v = varint(b, &mut pos).ok_or("truncated varint")? as i64;
                match field {
                    2 => kv.create_revision = v,
                    3 => kv.mod_revision = v,
                    4 => kv.version = v,
                    6 => kv.lease = v,
                    _ => {}
                }
            }
            2 => {
                let len = varint(b, &mut pos).ok_or("truncated length")? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= b.len())
                    .ok_or("field runs past the value")?;
                match field {
                    1 => kv.key = &b[pos..end],
                    5 => kv.value = &b[pos..end],
                    _ => {}
                }
                pos = end;
            }
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|&e| e <= b.len())
                    .ok_or("truncated fixed64")?
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|&e| e <= b.len())
                    .ok_or("truncated fixed32")?
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(kv)
}

/// A live key's entry in the index.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// The encoded `mvccpb.KeyValue` (decode with [`decode_kv`]).
    pub raw: &'a [u8],
    /// Bytes of its value.
    pub value_len: u32,
}

/// The live keyspace and the numbers `etcdutl snapshot status` reports.
pub struct Keyspace<'a> {
    /// Live key → where its encoded `KeyValue` is in the file. Slices keep the index small:
    /// no value is copied, and statistics need not touch the values again.
    pub live: HashMap<&'a [u8], Live<'a>>,
    /// Revision of the last entry in the `key` bucket.
    pub last_revision: i64,
    /// `finishedCompactRev` (0 if never compacted).
    pub compact_revision: i64,
    /// `scheduledCompactRev`: above `compact_revision` if a compaction was cut off.
    pub scheduled_compact_revision: i64,
    /// Entries in the `key` bucket (every stored revision, tombstones included).
    pub revisions: u64,
}

impl Keyspace<'_> {
    /// The head revision as etcd computes it on start-up.
    pub fn head_revision(&self) -> i64 {
        self.last_revision
            .max(self.compact_revision)
            .max(self.scheduled_compact_revision)
    }
}

impl<'a> Keyspace<'a> {
    /// `expected_keys` sizes the index up front (rehashing a large map is costly).
    pub fn with_capacity(expected_keys: usize) -> Self {
        let mut ks = Self::new();
        ks.live.reserve(expected_keys);
        ks
    }

    /// An empty keyspace.
    pub fn new() -> Self {
        Keyspace {
            live: HashMap::default(),
            last_revision: 0,
            compact_revision: 0,
            scheduled_compact_revision: 0,
            revisions: 0,
        }
    }

    /// Takes one entry of the `meta` bucket (compaction markers).
    pub fn add_meta(&mut self, k: &[u8], v: &[u8]) {
        let rev = parse_revision(v).map(|r| r.main).unwrap_or(0);
        match k {
            b"finishedCompactRev" => self.compact_revision = rev,
            b"scheduledCompactRev" => self.scheduled_compact_revision = rev,
            _ => {}
        }
    }

    /// Takes the next entry of the `key` bucket; entries must come in bucket (revision) order.
    pub fn add_revision(&mut self, k: &'a [u8], v: &'a [u8]) -> Result<(), MvccError> {
        let index = self.revisions;
        self.revisions += 1;
        let rev = parse_revision(k).ok_or(MvccError::BadRevision {
            index,
            len: k.len(),
        })?;
        self.last_revision = rev.main;
        if v.is_empty() {
            // written by `etcdutl snapshot restore --bump-revision`: not a key
            return Ok(());
        }
        let kv = decode_kv(v).map_err(|reason| MvccError::BadKeyValue {
            main: rev.main,
            reason,
        })?;
        if rev.tombstone {
            self.live.remove(kv.key);
        } else {
            self.live.insert(
                kv.key,
                Live {
                    raw: v,
                    value_len: kv.value.len() as u32,
                },
            );
        }
        Ok(())
    }
}

impl<'a> Keyspace<'a> {
    /// The live keys, decoded (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = KeyValue<'a>> + '_ {
        self.live.values().filter_map(|l| decode_kv(l.raw).ok())
    }
}

impl Default for Keyspace<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads the `meta` and `key` buckets into the live keyspace.
pub fn keyspace<'a>(db: &Db<'a>) -> Result<Keyspace<'a>, MvccError> {
    let mut ks = Keyspace::new();
    if let Some(meta) = db.bucket(b"meta")? {
        db.for_each(meta, |k, v, _| {
            ks.add_meta(k, v);
            Ok(())
        })?;
    }
    let key = db.bucket(b"key")?.ok_or(MvccError::NoKeyBucket)?;
    let mut failure: Option<MvccError> = None;
    db.for_each(key, |k, v, _| {
        ks.add_revision(k, v).map_err(|e| {
            failure = Some(e);
            DbError::BadBucket("key".into())
        })
    })
    .map_err(|e| failure.take().unwrap_or(MvccError::Db(e)))?;
    Ok(ks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_kv(key: &[u8], value: &[u8], rev: i64) -> Vec<u8> {
        let mut b = vec![0x0a, key.len() as u8];
        b.extend_from_slice(key);
        b.extend_from_slice(&[0x10, rev as u8, 0x18, rev as u8, 0x20, 1]);
        if !value.is_empty() {
            b.push(0x2a);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        }
        b
    }

    #[test]
    fn kv_decoding_and_revision_keys() {
        let encoded = encode_kv(b"/a", b"xyz", 5);
        let kv = decode_kv(&encoded).unwrap();
        assert_eq!(
            (kv.key, kv.value, kv.mod_revision, kv.version),
            (&b"/a"[..], &b"xyz"[..], 5, 1)
        );
        assert!(decode_kv(&[0x0a, 0x05, b'a']).is_err());
        let mut k = 7i64.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0i64.to_be_bytes());
        assert_eq!(
            parse_revision(&k),
            Some(Revision {
                main: 7,
                sub: 0,
                tombstone: false
            })
        );
        k.push(b't');
        assert!(parse_revision(&k).unwrap().tombstone);
        assert_eq!(parse_revision(b"short"), None);
    }

    proptest::proptest! {
        #[test]
        fn kv_decoder_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_kv(&data);
        }
    }
}
