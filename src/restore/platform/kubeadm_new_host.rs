//! The kubeadm restore onto a new machine (`--new-host`): the same steps as on the old one,
//! but every static pod manifest comes from the bundle, rewritten for this host (nothing of
//! the kind need be on it), and the old masters' keys are deleted from the restored database
//! before etcd first starts. A host that does run control-plane pods has them stopped first.

use crate::error::usage;
use crate::restore::newhost::Prepared;
use crate::restore::node::Watch;
use crate::restore::plan::{
    KUBEADM_MANIFESTS, PlanInput, apiserver_watch, etcd_watch, placement_target,
};
use crate::restore::steps::{
    EtcdTarget, PlaceFiles, RemoveKeys, RemoveStaged, Selection, StartPod, Step, StopPod,
    WaitServing,
};

use super::kubeadm::{KubeadmEtcd, kubeadm_etcd_at, restore_snapshot, set_data_dir_aside};
use std::path::Path;

/// How to tell a control-plane pod runs (etcd's by its data directory).
pub(crate) fn pod_watch(c: &str, etcd: &KubeadmEtcd, data_dir: &Path) -> Watch {
    match c {
        "etcd" => etcd_watch(&etcd.data_dir_host, data_dir, false),
        "kube-apiserver" => apiserver_watch(),
        other => Watch {
            containers: vec![other.to_owned()],
            process: other.to_owned(),
            args_containing: Vec::new(),
        },
    }
}

/// Stops what of `components` runs on this host now (the API server before etcd), their
/// manifests set aside in `stopped`; a fresh host gets no step.
pub(crate) fn stop_running(
    manifests: &Path,
    components: &[String],
    stopped: &Path,
    watch: impl Fn(&str) -> Watch,
) -> Vec<Step> {
    components
        .iter()
        .rev()
        .filter(|c| manifests.join(format!("{c}.yaml")).exists())
        .map(|c| {
            Step::StopPod(StopPod {
                component: c.clone(),
                manifest: manifests.join(format!("{c}.yaml")),
                aside: stopped.join(format!("{c}.yaml")),
                watch: watch(c),
            })
        })
        .collect()
}

/// The cluster's kubelet configuration put in place where the host's kubelet has none (a
/// fresh kubeadm host: the kubelet waits for it before it runs any static pod).
pub(crate) fn kubelet_config(
    host: &crate::host::HostRoot,
    nh: &Prepared,
    work_dir: &Path,
) -> Option<Step> {
    let staged = nh.kubelet_config.clone()?;
    let dir = host.path(crate::restore::newhost::KUBELET_DIR);
    if dir.join("config.yaml").exists() {
        return None;
    }
    match placement_target(host, crate::restore::newhost::KUBELET_DIR) {
        Ok(target) => Some(Step::PlaceFiles(PlaceFiles {
            staged,
            target,
            replaced: work_dir.join("replaced-kubelet"),
            select: Selection::All,
        })),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the kubelet's configuration is not placed: install the kubelet package first");
            None
        }
    }
}

pub(super) fn restore(p: &PlanInput, nh: &Prepared) -> anyhow::Result<Vec<Step>> {
    let host = p.host;
    let manifests = placement_target(host, KUBEADM_MANIFESTS).map_err(|e| {
        usage(format!(
            "{e:#}. The kubelet's static pod directory must exist on the new host (kubeadm's kubelet package creates it: `mkdir -p {KUBEADM_MANIFESTS}`)"
        ))
    })?;
    let place_into = placement_target(host, "/etc/kubernetes")?;
    let etcd = kubeadm_etcd_at(nh.manifests.join("etcd.yaml"))?;
    let data_dir = host.path(&etcd.data_dir_host);
    let stopped = p.work_dir.join("manifests-stopped");
    let watch_of = |c: &str| pod_watch(c, &etcd, &data_dir);
    let mut steps = stop_running(&manifests, &nh.components, &stopped, watch_of);
    let scratch = set_data_dir_aside(p.id, &data_dir, &mut steps);
    let scratch = match p.tool.is_some_and(|t| t.image.is_some()) {
        true => scratch.join("data"),
        false => scratch,
    };
    steps.push(Step::PlaceFiles(PlaceFiles {
        staged: p.staged.to_path_buf(),
        target: place_into,
        replaced: p.work_dir.join("replaced"),
        select: Selection::KubeadmPkiAndConfs,
    }));
    steps.extend(kubelet_config(host, nh, p.work_dir));
    let mut restore = restore_snapshot(p, &etcd, &scratch, &data_dir)?;
    if let Step::RestoreSnapshot(r) = &mut restore
        && !nh.removals.is_empty()
    {
        r.remove = Some(RemoveKeys {
            keys_base64: nh.removals.iter().map(|r| r.key_base64.clone()).collect(),
            saved_in: nh.removed_file.clone(),
        });
    }
    steps.push(restore);
    let start = |c: &str| {
        Step::StartPod(StartPod {
            component: c.to_owned(),
            manifest: manifests.join(format!("{c}.yaml")),
            aside: nh.manifests.join(format!("{c}.yaml")),
            watch: watch_of(c),
        })
    };
    steps.push(start("etcd"));
    steps.push(Step::RemoveStaged(RemoveStaged {
        staged: p.staged.to_path_buf(),
    }));
    let pki = "/etc/kubernetes/pki";
    let endpoint = match (&p.etcd.endpoint, &etcd.client_url) {
        (Some(e), _) => e.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => {
            return Err(usage(
                "the backup's etcd manifest names no --advertise-client-urls: pass --etcd-endpoint",
            ));
        }
    };
    steps.push(Step::WaitServing(WaitServing {
        target: EtcdTarget {
            endpoint,
            cacert: Some(
                p.etcd
                    .cacert
                    .clone()
                    .unwrap_or_else(|| host.path(format!("{pki}/etcd/ca.crt"))),
            ),
            cert: Some(
                p.etcd
                    .cert
                    .clone()
                    .unwrap_or_else(|| host.path(format!("{pki}/apiserver-etcd-client.crt"))),
            ),
            key: Some(
                p.etcd
                    .key
                    .clone()
                    .unwrap_or_else(|| host.path(format!("{pki}/apiserver-etcd-client.key"))),
            ),
        },
        min_revision: p
            .manifest
            .etcd
            .status
            .revision
            .saturating_add(i64::try_from(p.bump).unwrap_or(i64::MAX)),
    }));
    steps.extend(
        nh.components
            .iter()
            .filter(|c| *c != "etcd")
            .map(|c| start(c)),
    );
    Ok(steps)
}
