//! The bundle format: an age-encrypted, gzip-compressed tar holding `etcd/snapshot.db`, the
//! static pod resources and, last, `cpbackup/manifest.json` with the SHA-256 of every entry.

pub mod manifest;
pub mod pargz;
pub mod reader;
pub mod writer;

pub use manifest::{Entry, EntryKind, MANIFEST_PATH, Manifest, SNAPSHOT_PATH};
pub use writer::BundleWriter;

/// gzip level used unless configured: fast enough to keep up with etcd's stream.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
