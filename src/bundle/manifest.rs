//! `cpbackup/manifest.json`: the last entry of every bundle. It lists every entry with its size
//! and SHA-256 (so `verify` can prove nothing was lost or changed), and says where the snapshot
//! came from (revision, member, cluster, etcd and Kubernetes versions, the members' hashes and
//! highest raft index) and whether the backup was forced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::etcd::EtcdStatus;
use crate::host::Platform;

pub const MANIFEST_PATH: &str = "cpbackup/manifest.json";
pub const SNAPSHOT_PATH: &str = "etcd/snapshot.db";
pub const FORMAT_VERSION: u32 = 1;
/// A manifest larger than this is not ours (guards `verify` against huge allocations).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// The snapshot's provenance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdInfo {
    #[serde(flatten)]
    pub status: EtcdStatus,
    /// SHA-256 of the bbolt image (what etcd's trailer says).
    pub image_sha256: String,
    pub snapshot_size: u64,
    pub bbolt_txid: u64,
    pub bbolt_page_size: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tool_version: String,
    pub created: String,
    pub cluster: String,
    pub node: String,
    pub platform: Platform,
    /// Taken with `--force`: checks were skipped, the backup is possibly dirty.
    pub forced: bool,
    pub etcd: EtcdInfo,
    #[serde(default)]
    pub static_pod_revisions: BTreeMap<String, u64>,
    /// The Kubernetes version the node's API server ran (kubeadm: its image tag), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Every member's key-value hash at the snapshot's revision, checked before it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<crate::etcd::consistency::Consistency>,
    /// The codec the tar is compressed with (`zstd`, `gzip`); bundles written before the
    /// field existed are gzip.
    #[serde(default = "gzip")]
    pub compression: String,
    pub entries: Vec<Entry>,
}

fn gzip() -> String {
    "gzip".into()
}
