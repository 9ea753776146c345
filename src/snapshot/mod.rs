//! Reading etcd snapshot files offline: the bbolt pages (`db`), etcd's MVCC revisions on top
//! (`mvcc`), the sha256 trailer that `etcdctl snapshot save` appends (`check`), and what the
//! keyspace holds per resource and namespace (`stats`).

pub mod bump;
pub mod check;
pub mod db;
pub mod meta;
pub mod mvcc;
pub mod report;
pub(crate) mod stats;

pub use check::{SnapshotCheck, SnapshotSummary, TrailerStatus};
