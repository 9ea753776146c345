//! The backup engine: one backup of the local etcd member and the static pod resources,
//! streamed into every store. `cpbackup backup` and each daemon slot call [`execute`].
//!
//! It runs in phases, so that nothing partial ever looks complete:
//! 1. `preflight`: stores opened and checked, the node lock taken, the host and its etcd
//!    access resolved, etcd connected, the backup named;
//! 2. `stream::open_uploads`: an upload opened in every usable store;
//! 3. `stream::bundle`: snapshot and resources through tar → gzip → age into all of them;
//! 4. `publish`: record built and signed, each upload committed (bundle, then record), local
//!    copies marked with the stores that missed it.
//!
//! Any error or cancel before phase 4 discards every upload.

mod outcome;
mod preflight;
mod publish;
mod stream;

use std::path::PathBuf;
use std::time::Instant;

use time::OffsetDateTime;
use tokio::sync::watch;

pub use outcome::{BackupReport, Failure, FailureReason, describe_failures};

use crate::etcd;
use crate::host::EtcdSettings;
use crate::host::static_pods::StaticPodsMode;
use crate::host::{HostRoot, Platform, discover};
use crate::keys::Recipients;
use crate::lock::NodeLock;
use crate::store::StoreSpec;
use outcome::Classify;

/// One backup's settings, resolved and validated (by `settings::backup::job`).
#[derive(Clone)]
pub struct BackupJob {
    /// Where host paths are read.
    pub host: HostRoot,
    /// How to reach etcd (what is unset is discovered).
    pub etcd: EtcdSettings,
    /// Who can decrypt the bundle.
    pub recipients: Recipients,
    /// Every store the backup goes to.
    pub stores: Vec<StoreSpec>,
    /// The compressor.
    pub codec: crate::bundle::codec::Codec,
    /// Its level.
    pub level: u32,
    /// Which static pod resources to bundle.
    pub mode: StaticPodsMode,
    /// Extra host paths to bundle.
    pub extra: Vec<PathBuf>,
    /// Node lock and metrics state.
    pub state_dir: PathBuf,
    /// This node's name, if given.
    pub node: Option<String>,
    /// The cluster's name, if given (else `etcd-<cluster id>`).
    pub cluster: Option<String>,
    /// Back up even when the checks fail (marked possibly dirty).
    pub force: bool,
    /// Schedule slot this backup is for (daemon only), stored in the record.
    pub slot: Option<String>,
    /// The ed25519 key that signs the record, if configured (loaded for each backup).
    pub signing_key: Option<PathBuf>,
}

impl BackupJob {
    /// Connects to the local etcd member as a backup would; returns the client, its status and
    /// the cluster name backups are filed under.
    pub async fn connect_etcd(
        &self,
    ) -> anyhow::Result<(etcd_client::Client, etcd::EtcdStatus, String)> {
        let platform = Platform::detect(&self.host);
        let access = discover::etcd_access(&self.host, platform, &self.etcd, self.node.as_deref())?;
        let (client, status) = etcd::connect(&access, self.etcd.connect_timeout).await?;
        let cluster = self
            .cluster
            .clone()
            .unwrap_or_else(|| format!("etcd-{}", status.cluster_id));
        Ok((client, status, cluster))
    }
}

/// Takes one backup. `Ok` means at least one store holds it; the report says which did not.
/// Setting `cancel` to true aborts every upload; nothing is published then.
pub async fn execute(
    job: &BackupJob,
    cancel: watch::Receiver<bool>,
    progress: bool,
) -> Result<BackupReport, Failure> {
    let at = Instant::now();
    let stores = preflight::stores(job)?;
    let _lock = NodeLock::acquire(&job.state_dir, "backup").because(FailureReason::Lock)?;
    // named after the lock is held, and the lock held past that second: two backups of one node
    // never share a name (one key written twice would be a second S3 version: "tampered")
    let created = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    let result = async {
        let created_text = created
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a UTC time formats");
        let source = preflight::source(job, created).await?;
        let uploads = stream::open_uploads(&stores, &source)?;
        let streamed =
            stream::bundle(job, &source, uploads.open, &created_text, cancel, progress).await?;
        let started = publish::Started {
            at,
            created: created_text,
        };
        publish::publish(job, &stores, &source, streamed, uploads.outcomes, &started)
    }
    .await;
    let rest = created + time::Duration::seconds(1) - OffsetDateTime::now_utc();
    if rest.is_positive() {
        tokio::time::sleep(rest.unsigned_abs()).await;
    }
    result
}
