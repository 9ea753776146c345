//! The `.cpb.json` record beside each bundle: what `list` and `prune` need without a key
//! (time, node, revision, sizes, SHA-256 of the ciphertext, recipients' fingerprints, version).
//! It is written after the bundle, so a bundle without a record is an unfinished backup.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub format_version: u32,
    pub name: String,
    pub created: String,
    pub cluster: String,
    pub node: String,
    pub etcd_revision: i64,
    pub etcd_version: String,
    pub etcd_member_id: String,
    pub etcd_cluster_id: String,
    /// Bytes of the snapshot file inside the bundle.
    pub snapshot_size: u64,
    /// Bytes of the encrypted bundle object.
    pub bundle_size: u64,
    /// SHA-256 of the encrypted bundle object.
    pub bundle_sha256: String,
    pub recipients: Vec<String>,
    pub forced: bool,
    pub tool_version: String,
    /// Object Lock retention, for stores that have it.
    #[serde(default)]
    pub lock_mode: Option<String>,
    #[serde(default)]
    pub retain_until: Option<String>,
    /// The S3 VersionId of the bundle as written: reads are pinned to it, and any other
    /// version of the key is tampering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_version_id: Option<String>,
    /// The signing node's ed25519 signature over what identifies the backup (`signing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signing::Signature>,
    /// The schedule slot (RFC 3339) a daemon took this backup for; absent for manual backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

/// Records larger than this are not ours.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

impl Record {
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
            forced: false,
            tool_version: "0".into(),
            lock_mode: None,
            retain_until: None,
            signature: None,
            slot: None,
            bundle_version_id: None,
        }
    }
}
