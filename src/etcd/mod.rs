//! etcd access: an mTLS client to the local member, its status, and the snapshot stream.

pub mod client;
pub mod snapshot;

pub use client::{EtcdStatus, connect};
pub use snapshot::SnapshotStream;
