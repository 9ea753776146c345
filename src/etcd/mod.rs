//! etcd access: an mTLS client to the local member, its status, the members' consistency
//! (`HashKV`) before a snapshot, the snapshot stream, and the
//! one-per-cluster backup election, and the membership changes of a member rejoining.

pub mod client;
pub mod consistency;
pub mod election;
pub mod membership;
pub mod snapshot;

pub use client::{EtcdStatus, connect};
