//! etcd access: an mTLS client to the local member, its status, the snapshot stream, and the
//! one-per-cluster backup election.

pub mod client;
pub mod election;
pub mod snapshot;

pub use client::{EtcdStatus, connect};

use std::path::PathBuf;
use std::time::Duration;

/// Explicit etcd connection settings; anything `None` is discovered from the host.
#[derive(Debug, Clone, Default)]
pub struct EtcdSettings {
    /// The local member's client URL.
    pub endpoint: Option<String>,
    /// CA bundle of etcd's serving certificate.
    pub cacert: Option<PathBuf>,
    /// Client certificate (mTLS).
    pub cert: Option<PathBuf>,
    /// Client key (mTLS).
    pub key: Option<PathBuf>,
    /// How long to wait for etcd to answer.
    pub connect_timeout: Duration,
    /// How long the snapshot stream may send nothing.
    pub stall_timeout: Duration,
}
