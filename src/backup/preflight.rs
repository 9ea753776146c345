//! Phase 1 of a backup: everything checked before etcd sends a byte. The stores are opened and
//! asked whether they can take a backup; on OpenShift no control-plane rollout may be running;
//! the static pod plan and the etcd access are resolved from the host; then etcd is connected
//! and the backup gets its name.

use anyhow::Context;
use time::OffsetDateTime;

use super::BackupJob;
use super::outcome::{Classify, Failure, FailureReason as R, StoreOutcome};
use crate::etcd;
use crate::etcd::consistency::Consistency;
use crate::host::{HostRoot, Platform, discover, static_pods};
use crate::store::{BundleName, Store};

/// The stores of a backup: all of them, and the outcomes of those already known unusable.
pub(crate) struct Stores {
    pub all: Vec<Box<dyn Store>>,
    pub unusable: Vec<StoreOutcome>,
}

impl Stores {
    /// The stores not (yet) known to have failed.
    pub fn usable<'a>(&'a self, failed: &'a [StoreOutcome]) -> impl Iterator<Item = &'a dyn Store> {
        self.all
            .iter()
            .map(|s| s.as_ref())
            .filter(move |s| !failed.iter().any(|o| o.store == s.location()))
    }
}

/// Opens every store and asks it whether it can take a backup. A store that is wrongly set up
/// stops everything (exit 2); one that is unreachable only fails itself, so the other stores
/// (a local spool) still get the backup.
pub(crate) fn stores(job: &BackupJob) -> Result<Stores, Failure> {
    let all = crate::store::open_all(&job.stores).because(R::Config)?;
    let mut unusable = Vec::new();
    for s in &all {
        if let Err(e) = s.preflight_write() {
            if crate::error::exit_code(&e) == crate::error::EXIT_USAGE {
                return Err(e.context(format!("store {}", s.location()))).because(R::Config);
            }
            if all.len() > 1 {
                tracing::error!(store = %s.location(), error = %format!("{e:#}"), "store unreachable; continuing with the others");
            } else {
                tracing::error!(store = %s.location(), error = %format!("{e:#}"), "store unreachable");
            }
            unusable.push(StoreOutcome::failed(s.location(), &e));
        }
    }
    Ok(Stores { all, unusable })
}

/// Where the backup's bytes come from: the connected member, what it said of itself, the static
/// pod plan, and the name the backup is filed under.
pub(crate) struct Source {
    pub client: etcd_client::Client,
    pub status: etcd::EtcdStatus,
    /// Every member's hash at the snapshot's revision (None when it could not be checked).
    pub consistency: Option<Consistency>,
    /// The Kubernetes version the node's API server runs (kubeadm: its image tag).
    pub kubernetes_version: Option<String>,
    pub plan: static_pods::Plan,
    pub cluster: String,
    pub node: String,
    pub name: BundleName,
}

/// Checks the host and connects to the local etcd member (the node lock is held).
pub(crate) async fn source(job: &BackupJob, created: OffsetDateTime) -> Result<Source, Failure> {
    let host = &job.host;
    let platform = Platform::detect(host);
    if platform == Platform::Openshift && !job.force {
        openshift_precheck(host).await.because(R::Precheck)?;
    }
    let plan = static_pods::plan(host, job.mode, platform, &job.extra).because(R::Config)?;
    let access =
        discover::etcd_access(host, platform, &job.etcd, job.node.as_deref()).because(R::Config)?;
    tracing::info!(endpoint = %access.endpoint, platform = plan.layout.as_str(), sources = plan.sources.len(), "starting backup");
    let (client, status) = etcd::connect(&access, job.etcd.connect_timeout)
        .await
        .because(R::Etcd)?;
    let cluster = job
        .cluster
        .clone()
        .unwrap_or_else(|| format!("etcd-{}", status.cluster_id));
    let node = job
        .node
        .clone()
        .or(access.node_name.clone())
        .or_else(discover::hostname)
        .context("cannot tell this node's name: pass --node-name")
        .because(R::Config)?;
    let name = BundleName::new(&cluster, &node, created, status.revision).because(R::Config)?;
    let consistency = consistency(job, &client, &access, status.revision).await?;
    Ok(Source {
        client,
        status,
        consistency,
        kubernetes_version: discover::kubernetes_version(host),
        plan,
        cluster,
        node,
        name,
    })
}

/// Every member's `HashKV` at the revision about to be snapshotted: a mismatch refuses the
/// backup unless `--force` (the bundle then records it); a check that cannot run is a warning.
async fn consistency(
    job: &BackupJob,
    client: &etcd_client::Client,
    access: &discover::EtcdAccess,
    revision: i64,
) -> Result<Option<Consistency>, Failure> {
    let c = match etcd::consistency::check(client, access, revision, job.etcd.connect_timeout).await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot compare the members' hashes; backing up without that check");
            return Ok(None);
        }
    };
    for u in &c.unreachable {
        tracing::warn!(member = %u, "member not hashed before the backup");
    }
    if c.consistent {
        tracing::info!(
            revision,
            members = c.members.len(),
            "the members agree on the data"
        );
        return Ok(Some(c));
    }
    let what = format!("the etcd members' data differ {}", c.describe());
    if job.force {
        tracing::warn!("{what}; backing up anyway (--force), the bundle records it");
        return Ok(Some(c));
    }
    Err(Failure::new(
        R::Inconsistent,
        anyhow::anyhow!(
            "{what}. A snapshot of this member may not hold what the cluster holds. Find the member that differs \
             (`etcdctl endpoint hashkv --cluster`), replace or restore it, then back up; --force backs up anyway and marks the bundle"
        ),
    ))
}

/// As cluster-backup.sh: no backup while kube-apiserver, kube-controller-manager,
/// kube-scheduler or etcd is rolling out, read through the node's localhost.kubeconfig.
async fn openshift_precheck(host: &HostRoot) -> anyhow::Result<()> {
    use crate::kubeapi::openshift::{LOCALHOST_KUBECONFIG, rollouts_in_progress};
    let kubeconfig = host.path(LOCALHOST_KUBECONFIG);
    let check = async {
        let client = crate::kubeapi::client_from_kubeconfig(&kubeconfig).await?;
        rollouts_in_progress(&client).await
    };
    let busy = match tokio::time::timeout(std::time::Duration::from_secs(30), check).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => anyhow::bail!(
            "cannot check the control-plane operators through {} ({e:#}); is the API server running? \
             Pass --force to back up anyway (the backup is then marked possibly dirty)",
            kubeconfig.display()
        ),
        Err(_) => anyhow::bail!(
            "the API server did not answer within 30 s; pass --force to back up anyway (marked possibly dirty)"
        ),
    };
    if !busy.is_empty() {
        let list: Vec<String> = busy
            .iter()
            .map(|(n, s)| format!("{n} (Progressing={s})"))
            .collect();
        anyhow::bail!(
            "a reliable backup requires that no rollout is in progress: {}. Wait until it finishes, \
             or pass --force (the backup is then marked possibly dirty)",
            list.join(", ")
        );
    }
    tracing::debug!("no control-plane rollout in progress");
    Ok(())
}
