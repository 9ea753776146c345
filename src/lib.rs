//! cpbackup: encrypted, immutable backups of etcd and the control-plane static pod resources
//! of Kubernetes and OpenShift masters.
//!
//! The library is usable without the binary: `commands` wires the modules below together, one
//! file per CLI command, and every other module owns one stage of the data flow:
//!
//! ```text
//! backup:  etcd (snapshot stream) ─┐
//!          host (static pods) ─────┴─> bundle::writer (tar → parallel gzip → age) ─> store(s)
//! verify:  store ─> bundle::reader (age → gunzip → tar) ─> hashes + snapshot::meta checks
//! daemon:  schedule (cron slots) ─> etcd::election ─> backup ─> prune ─> metrics (+ http)
//! extract: snapshot (bbolt + mvcc) ─> extract::select ─> k8s::decode (decrypt, protobuf → JSON)
//!          ─> extract::reapply + deps ─> extract::write | kubeapi::apply
//! ```

pub(crate) mod backup;
pub(crate) mod beneath;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod error;
pub(crate) mod etcd;
pub mod extract;
pub(crate) mod fsutil;
pub(crate) mod host;
pub mod k8s;
pub(crate) mod keys;
pub mod kubeapi;
pub(crate) mod lock;
pub mod logging;
pub(crate) mod output;
pub(crate) mod progress;
pub(crate) mod restore;
pub mod settings;
pub mod snapshot;
pub mod store;

/// The version written into every bundle and record.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
