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
    /// `--new-host`: the bundle's files adapted to this host (kubeadm only).
    pub new_host: Option<&'a crate::restore::newhost::Prepared>,
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

/// The backup against the node's versions: a backup of a newer etcd minor than the node runs
/// is refused (etcd cannot read it); a different Kubernetes minor is a warning (returned).
pub fn check_versions(
    host: &HostRoot,
    platform: Platform,
    manifest: &Manifest,
) -> anyhow::Result<Vec<String>> {
    use crate::host::etcd_manifest::minor_of;
    let mut warnings = Vec::new();
    if manifest.platform == Platform::Unknown {
        warnings.push(
            "WARNING: this backup holds the etcd snapshot only (taken with --static-pods none): the node's \
             certificates, manifests and kubeconfigs stay as they are, only etcd's data is restored"
                .to_owned(),
        );
    }
    if platform == Platform::Openshift {
        return Ok(warnings); // etcd's image is named by digest; the release pins the versions
    }
    let node_etcd = crate::restore::platform::kubeadm::kubeadm_etcd(host)
        .ok()
        .and_then(|e| e.image_tag);
    let backup_etcd = &manifest.etcd.status.version;
    match (minor_of(backup_etcd), node_etcd.as_deref().and_then(minor_of)) {
        (Some(b), Some(n)) if b > n => {
            return Err(crate::error::usage(format!(
                "the backup was taken from etcd {backup_etcd}; this node runs etcd {} (its manifest's image), which cannot read a newer minor's data. \
                 Upgrade the node's etcd to {}.{} first; nothing was changed",
                node_etcd.unwrap_or_default(),
                b.0,
                b.1
            )));
        }
        (Some(_), Some(_)) => {}
        _ => warnings.push(format!(
            "cannot compare etcd versions (backup {backup_etcd:?}, node image {node_etcd:?}): make sure the node's etcd is not older than the backup's"
        )),
    }
    let node_k8s = discover::kubernetes_version(host);
    if let (Some(b), Some(n)) = (&manifest.kubernetes_version, &node_k8s)
        && minor_of(b) != minor_of(n)
    {
        warnings.push(format!(
            "WARNING: the backup is of Kubernetes {b}, this node's API server is {n}: restore onto the version the backup was taken with (the same minor), or expect API objects the running version does not know"
        ));
    }
    Ok(warnings)
}

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
