//! `restore --rejoin --new-host`: a fresh machine joins the restored cluster as a further
//! kubeadm master. It has nothing of the cluster, so its CAs, keys, kubeconfigs and manifests
//! come from the backup, adapted to its own name and address as for `--new-host`
//! (`newhost::prepare`; the database is not touched: it comes from the cluster); then it joins
//! as every `--rejoin` does: added through the recovery member (a learner first), etcd started
//! with the cluster's members and `--initial-cluster-state=existing`, then the other pods.

use std::path::Path;

use super::newhost::Prepared;
use super::plan::{KUBEADM_MANIFESTS, placement_target};
use super::platform::kubeadm::{kubeadm_etcd_at, set_data_dir_aside};
use super::platform::kubeadm_new_host::{kubelet_config, pod_watch, stop_running};
use super::steps::{
    EtcdTarget, JoinManifest, MemberAdd, PlaceFiles, RemoveStaged, Selection, StartPod, Step,
    WaitJoined,
};
use crate::host::{EtcdAccess, EtcdSettings, HostRoot};

/// Where kubeadm keeps the client certificate the API server (and cpbackup) reach etcd with.
const CLIENT: [&str; 3] = [
    "pki/etcd/ca.crt",
    "pki/apiserver-etcd-client.crt",
    "pki/apiserver-etcd-client.key",
];

/// How to reach the recovery member before anything is placed: the `--etcd-*` flags, else
/// the backup's own client certificate in the staging directory.
pub fn access_from_staging(via: &str, etcd: &EtcdSettings, staged: &Path) -> EtcdAccess {
    EtcdAccess {
        endpoint: via.to_owned(),
        cacert: etcd.cacert.clone().or(Some(staged.join(CLIENT[0]))),
        cert: etcd.cert.clone().or(Some(staged.join(CLIENT[1]))),
        key: etcd.key.clone().or(Some(staged.join(CLIENT[2]))),
        node_name: None,
    }
}

/// The same certificates once placed on the host (what the steps use).
fn on_host(host: &HostRoot, endpoint: &str, etcd: &EtcdSettings) -> EtcdTarget {
    let placed = |i: usize| host.path(format!("/etc/kubernetes/{}", CLIENT[i]));
    EtcdTarget {
        endpoint: endpoint.to_owned(),
        cacert: etcd.cacert.clone().or(Some(placed(0))),
        cert: etcd.cert.clone().or(Some(placed(1))),
        key: etcd.key.clone().or(Some(placed(2))),
    }
}

/// Everything the steps depend on.
pub struct Input<'a> {
    pub host: &'a HostRoot,
    pub id: &'a str,
    pub work_dir: &'a Path,
    pub staged: &'a Path,
    pub prepared: &'a Prepared,
    /// The recovery member's client URL.
    pub via: &'a str,
    pub etcd: &'a EtcdSettings,
    /// Join as a learner (the cluster has them).
    pub learner: bool,
}

/// The steps of the join.
pub fn steps(i: &Input) -> anyhow::Result<Vec<Step>> {
    let host = i.host;
    let manifests = placement_target(host, KUBEADM_MANIFESTS)?;
    let place_into = placement_target(host, "/etc/kubernetes")?;
    let etcd = kubeadm_etcd_at(i.prepared.manifests.join("etcd.yaml"))?;
    let data_dir = host.path(&etcd.data_dir_host);
    let watch_of = |c: &str| pod_watch(c, &etcd, &data_dir);
    let stopped = i.work_dir.join("manifests-stopped");
    let mut steps = stop_running(&manifests, &i.prepared.components, &stopped, watch_of);
    let _ = set_data_dir_aside(i.id, &data_dir, &mut steps);
    steps.push(Step::PlaceFiles(PlaceFiles {
        staged: i.staged.to_path_buf(),
        target: place_into,
        replaced: i.work_dir.join("replaced"),
        select: Selection::KubeadmPkiAndConfs,
    }));
    steps.extend(kubelet_config(host, i.prepared, i.work_dir));
    steps.push(Step::RemoveStaged(RemoveStaged {
        staged: i.staged.to_path_buf(),
    }));
    let via = on_host(host, i.via, i.etcd);
    let local_url = etcd
        .client_url
        .clone()
        .unwrap_or_else(|| "https://127.0.0.1:2379".into());
    steps.push(Step::MemberAdd(MemberAdd {
        via: via.clone(),
        name: etcd.name.clone(),
        peer_url: etcd.peer_url.clone(),
        learner: i.learner,
    }));
    steps.push(Step::JoinManifest(JoinManifest {
        via: via.clone(),
        original: i.prepared.manifests.join("etcd.yaml"),
        manifest: manifests.join("etcd.yaml"),
        name: etcd.name.clone(),
        peer_url: etcd.peer_url.clone(),
        watch: watch_of("etcd"),
    }));
    steps.push(Step::WaitJoined(WaitJoined {
        local: on_host(host, &local_url, &EtcdSettings::default()),
        via,
        peer_url: etcd.peer_url.clone(),
    }));
    for c in i.prepared.components.iter().filter(|c| *c != "etcd") {
        steps.push(Step::StartPod(StartPod {
            component: c.clone(),
            manifest: manifests.join(format!("{c}.yaml")),
            aside: i.prepared.manifests.join(format!("{c}.yaml")),
            watch: watch_of(c),
        }));
    }
    Ok(steps)
}
