//! Computing the steps of a restore (or of `--disable-etcd`) for this node, before anything
//! is touched. Every check that can fail without side effects fails here. What differs per
//! platform is in `platform/`; the pieces both use (watches, the revision bump, the etcd
//! target, the placement check) are here.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::bundle::manifest::Manifest;
use crate::host::EtcdSettings;
use crate::host::{HostRoot, Platform, discover};
use crate::restore::node::Watch;
use crate::restore::steps::{EtcdTarget, Step};
use crate::restore::tools::RestoreTool;

/// Where the kubelet reads static pod manifests.
pub const KUBEADM_MANIFESTS: &str = "/etc/kubernetes/manifests";

/// Everything the plan depends on.
pub struct PlanInput<'a> {
    pub host: &'a HostRoot,
    pub platform: Platform,
    pub id: &'a str,
    pub work_dir: &'a Path,
    /// Where the bundle is (or will be) unpacked.
    pub staged: &'a Path,
    pub manifest: &'a Manifest,
    pub etcd: &'a EtcdSettings,
    /// kubeadm/generic only.
    pub tool: Option<&'a RestoreTool>,
    pub token: &'a str,
    /// How far to raise the restored revision.
    pub bump: u64,
}

pub(crate) fn etcd_watch(data_dir_host: &str, data_dir: &Path, openshift: bool) -> Watch {
    let containers = if openshift {
        ["etcd", "etcdctl", "etcd-metrics", "etcd-readyz", "etcd-rev"]
            .map(String::from)
            .to_vec()
    } else {
        vec!["etcd".into()]
    };
    Watch {
        containers,
        process: "etcd".into(),
        args_containing: vec![
            format!("--data-dir={data_dir_host}"),
            format!("--data-dir={}", data_dir.display()),
        ],
    }
}

pub(crate) fn apiserver_watch() -> Watch {
    Watch {
        containers: vec!["kube-apiserver".into()],
        process: "kube-apiserver".into(),
        args_containing: Vec::new(),
    }
}

/// The revision bump unless `--bump-revision` says otherwise: Kubernetes' docs' value, far above
/// any revision a client may have seen after the backup.
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

pub(crate) fn target(access: discover::EtcdAccess) -> EtcdTarget {
    EtcdTarget {
        endpoint: access.endpoint,
        cacert: access.cacert,
        cert: access.cert,
        key: access.key,
    }
}

/// The snapshot's SHA-256 as the manifest records it.
pub(crate) fn snapshot_sha256(m: &Manifest) -> Option<String> {
    m.entries
        .iter()
        .find(|e| e.path == crate::bundle::manifest::SNAPSHOT_PATH)
        .and_then(|e| e.sha256.clone())
}

/// The steps of a whole-cluster restore on this node.
pub fn restore(p: &PlanInput) -> anyhow::Result<Vec<Step>> {
    super::platform::of(p.platform).restore(p)
}

/// `--disable-etcd`: what the other masters do first (stop etcd, and on kubeadm the API server).
pub fn disable_etcd(
    host: &HostRoot,
    platform: Platform,
    work_dir: &Path,
) -> anyhow::Result<Vec<Step>> {
    super::platform::of(platform).disable_etcd(host, &work_dir.join("manifests-stopped"))
}

/// The directory the backup's files are placed into must be reached without a symlink: a
/// restore never writes through one (checked now, before anything changes, and again by the step).
pub(crate) fn placement_target(host: &HostRoot, host_path: &str) -> anyhow::Result<PathBuf> {
    let target = host.path(host_path);
    crate::beneath::real_dir_below(host.root(), &target).with_context(|| {
        format!(
            "{host_path} under {} must be a real directory (no symlink on the way): a restore never writes through a link. Fix it by hand; nothing was changed",
            host.root().display()
        )
    })?;
    Ok(target)
}

#[cfg(test)]
mod tests {}
