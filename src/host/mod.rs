//! The control-plane host: where its files are (`--host-root`), which platform it is, how to
//! reach its etcd member, and which static pod resources a restore needs.

pub mod discover;
pub mod etcd_manifest;
pub mod paths;
pub mod static_pods;

pub use discover::{EtcdAccess, Platform};
pub use paths::HostRoot;

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
