//! Reading etcd snapshot files: the bbolt meta pages and the sha256 trailer that
//! `etcdctl snapshot save` appends. (The full page walker comes with `inspect`.)

pub mod check;
pub mod meta;

pub use check::{SnapshotCheck, SnapshotSummary, TrailerStatus};
