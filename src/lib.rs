//! cpbackup: encrypted, immutable backups of etcd and the control-plane static pod resources
//! of Kubernetes and OpenShift masters.
//!
//! `main` resolves the [`settings`] once and runs one of the [`commands`] (thin: flags in, a
//! report out); the engines below them (`backup`, `restore`, [`daemon`], the `store` passes)
//! drive the modules that each own one stage of the data flow:
//!
//! ```text
//! backup:  etcd (snapshot stream) ─┐
//!          host (static pods) ─────┴─> bundle::writer (tar → codec → age) ─> store(s)
//! verify:  store::select ─> bundle::reader (age → codec → tar → check) ─> hashes + snapshot checks
//! daemon:  daemon::schedule ─> daemon::slot (election ─> backup ─> retention ─> integrity) ─> metrics
//! restore: store::select ─> bundle::unpack ─> restore::whole (platform plan ─> steps + journal)
//! extract: snapshot (bbolt + mvcc) ─> extract::select ─> k8s::decode (decrypt, protobuf → JSON)
//!          ─> extract::reapply + deps ─> extract::write | kubeapi::apply
//! ```

pub(crate) mod backup;
pub(crate) mod beneath;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod doctor;
pub mod error;
pub(crate) mod etcd;
pub mod extract;
pub(crate) mod fsutil;
pub mod help;
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
