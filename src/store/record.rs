//! The `.cpb.json` record beside each bundle: what `list` and `prune` need without a key
//! (time, node, revision, sizes, SHA-256 of the ciphertext, recipients' fingerprints, version).
//! It is written after the bundle, so a bundle without a record is an unfinished backup.

use serde::{Deserialize, Serialize};

/// The unencrypted `.cpb.json` beside each bundle: what `list` shows and readers check against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Format of the record (and of the bundle).
    pub format_version: u32,
    /// `cluster/node/file.cpb`.
    pub name: String,
    /// When the backup was taken (RFC 3339, UTC).
    pub created: String,
    /// The cluster's name.
    pub cluster: String,
    /// The node that took it.
    pub node: String,
    /// The snapshot's revision.
    pub etcd_revision: i64,
    /// etcd's version.
    pub etcd_version: String,
    /// The member the snapshot came from.
    pub etcd_member_id: String,
    /// The etcd cluster id.
    pub etcd_cluster_id: String,
    /// Bytes of the snapshot file inside the bundle.
    pub snapshot_size: u64,
    /// Bytes of the encrypted bundle object.
    pub bundle_size: u64,
    /// SHA-256 of the encrypted bundle object.
    pub bundle_sha256: String,
    /// Fingerprints of the age recipients.
    pub recipients: Vec<String>,
    /// The bundle's codec (`zstd`, `gzip`); absent in records written before it was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Taken with `--force` (possibly dirty).
    pub forced: bool,
    /// Taken with `--static-pods none`: the etcd snapshot without the static pod resources,
    /// not enough for a whole-cluster restore. Absent (false) in older records.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub etcd_only: bool,
    /// cpbackup's version.
    pub tool_version: String,
    /// Object Lock retention, for stores that have it.
    #[serde(default)]
    pub lock_mode: Option<String>,
    /// When the lock ends (RFC 3339).
    #[serde(default)]
    pub retain_until: Option<String>,
    /// The S3 VersionId of the bundle as written: reads are pinned to it, and any other
    /// version of the key is tampering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_version_id: Option<String>,
    /// The signing node's ed25519 signature over what identifies the backup (`signing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::store::signing::Signature>,
    /// The schedule slot (RFC 3339) a daemon took this backup for; absent for manual backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

/// Records larger than this are not ours.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

impl Record {
    /// Parses a record; the error says what is wrong.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// A record read from a store: `Ok(None)` when there is none, `Err(why)` when it cannot be
    /// used (too large, not JSON, not a record).
    pub fn parse_limited(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 >= MAX_RECORD_BYTES {
            return Err(format!("larger than {MAX_RECORD_BYTES} bytes"));
        }
        Self::parse(bytes).map_err(|e| format!("not a valid record: {e}"))
    }
}

#[cfg(test)]
impl Record {
    /// A plausible record for unit tests: `name` of `bundle_size` bytes, cluster `c`, node `n`.
    pub(crate) fn sample(name: &str, bundle_size: u64) -> Record {
        Record {
            format_version: 1,
            name: name.into(),
            created: "2026-11-22T22:10:05Z".into(),
            cluster: "c".into(),
            node: "n".into(),
            etcd_revision: 7,
            etcd_version: "3.5.1".into(),
            etcd_member_id: "1".into(),
            etcd_cluster_id: "2".into(),
            snapshot_size: 1,
            bundle_size,
            bundle_sha256: "00".into(),
            recipients: vec![],
            compression: None,
            forced: false,
            etcd_only: false,
            tool_version: "0".into(),
            lock_mode: None,
            retain_until: None,
            signature: None,
            slot: None,
            bundle_version_id: None,
        }
    }
}
