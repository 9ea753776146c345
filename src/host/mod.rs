//! The control-plane host: where its files are (`--host-root`), which platform it is, how to
//! reach its etcd member, and which static pod resources a restore needs.

pub mod discover;
pub mod etcd_manifest;
pub mod paths;
pub mod static_pods;

pub use discover::{EtcdAccess, Platform};
pub use paths::HostRoot;
