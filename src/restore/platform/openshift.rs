//! The OpenShift restore, as cluster-restore.sh does it: etcd stopped, its data moved aside,
//! the static pod resources placed, the snapshot staged in /var/lib/etcd-backup and the restore
//! pod installed as etcd's manifest (etcd's own image restores); `--post-restore` does the
//! follow-up steps through the API.

use std::path::Path;

use anyhow::Context;

use super::Procedure;
use crate::error::usage;
use crate::host::{HostRoot, Platform, discover};
use crate::kubeapi::openshift::Settle;
use crate::restore::plan::{
    KUBEADM_MANIFESTS, PlanInput, etcd_watch, placement_target, snapshot_sha256, target,
};
use crate::restore::steps::{
    MoveContents, PlaceFiles, RemoveStaged, Selection, StageOpenshift, Step, StopPod, WaitServing,
};

/// etcd's data directory on an OpenShift master.
pub const OPENSHIFT_DATA_DIR: &str = "/var/lib/etcd";
/// Where cluster-restore.sh stages the snapshot.
pub const OPENSHIFT_BACKUP_DIR: &str = "/var/lib/etcd-backup";
/// The restore pod OpenShift 4.12+ ship.
pub const OPENSHIFT_RESTORE_POD: &str =
    "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/restore-etcd-pod/pod.yaml";

/// OpenShift 4.
pub struct Openshift;

impl Procedure for Openshift {
    fn needs_tool(&self) -> bool {
        false
    }

    fn data_dir(&self, _host: &HostRoot) -> anyhow::Result<String> {
        Ok(OPENSHIFT_DATA_DIR.to_owned())
    }

    fn restore(&self, p: &PlanInput) -> anyhow::Result<Vec<Step>> {
        restore(p)
    }

    fn disable_etcd(&self, host: &HostRoot, stopped: &Path) -> anyhow::Result<Vec<Step>> {
        let manifest = host.path(format!("{KUBEADM_MANIFESTS}/etcd-pod.yaml"));
        if !manifest.is_file() {
            return Err(usage(format!(
                "{} is missing: etcd is already disabled on this node",
                manifest.display()
            )));
        }
        Ok(vec![Step::StopPod(StopPod {
            component: "etcd".into(),
            manifest,
            aside: stopped.join("etcd-pod.yaml"),
            watch: etcd_watch(OPENSHIFT_DATA_DIR, &host.path(OPENSHIFT_DATA_DIR), true),
        })])
    }

    fn next_steps(&self) -> Vec<String> {
        vec![
        "Wait for the API: `oc get nodes` (use the recovery kubeconfig /etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig if needed).".into(),
        "OpenShift 4.18 and later: `oc patch etcd/cluster --type=merge -p '{\"spec\": {\"unsupportedConfigOverrides\": {\"useUnsupportedUnsafeNonHANonProductionUnstableEtcd\": true}}}'`, then `oc adm wait-for-stable-cluster`, then `oc patch etcd/cluster --type=merge -p '{\"spec\": {\"unsupportedConfigOverrides\": null}}'`.".into(),
        "Before 4.18: for each of etcd, kubeapiserver, kubecontrollermanager, kubescheduler: `oc patch <resource> cluster --type=merge -p '{\"spec\": {\"forceRedeploymentReason\": \"recovery-'\"$(date --rfc-3339=ns)\"'\"}}'` and wait until NodeInstallerProgressing shows AllNodesAtLatestRevision.".into(),
        "If nodes stay NotReady: approve pending CSRs (`oc get csr`, `oc adm certificate approve …`) and restart the kubelet on every node.".into(),
        "Or let cpbackup do the API steps: `cpbackup restore --post-restore --kubeconfig …`.".into(),
    ]
    }

    fn post_restore(
        &self,
        kubeconfig: Option<&Path>,
        settle: Settle,
        say: &mut (dyn FnMut(&str) + Send),
    ) -> anyhow::Result<()> {
        let kubeconfig = kubeconfig.context("--post-restore needs --kubeconfig")?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let client = crate::kubeapi::client_from_kubeconfig(kubeconfig).await?;
                crate::kubeapi::openshift::post_restore(&client, settle, &mut |s| {
                    say(&format!("post-restore: {s}"))
                })
                .await
            })
            .context("the post-restore steps failed; fix the cause and run `cpbackup restore --post-restore --kubeconfig …` again")
    }
}

fn restore(p: &PlanInput) -> anyhow::Result<Vec<Step>> {
    let host = p.host;
    let manifest = host.path(format!("{KUBEADM_MANIFESTS}/etcd-pod.yaml"));
    if !manifest.is_file() {
        return Err(usage(format!(
            "{} is missing: is etcd already stopped on this node? Put the manifest back (or run `cpbackup restore --rollback` if an earlier restore moved it) first",
            manifest.display()
        )));
    }
    let restore_pod = host.path(OPENSHIFT_RESTORE_POD);
    if !restore_pod.is_file() {
        return Err(usage(format!(
            "{} is missing: this OpenShift version has no restore pod (4.12+ ship one); use `cpbackup export-openshift` and the stock cluster-restore.sh",
            restore_pod.display()
        )));
    }
    if !p
        .manifest
        .entries
        .iter()
        .any(|e| e.path.starts_with("static-pod-resources/"))
    {
        return Err(usage(
            "this backup holds no OpenShift static pod resources: it was not taken on an OpenShift master",
        ));
    }
    let data_dir = host.path(OPENSHIFT_DATA_DIR);
    let backup_dir = host.path(OPENSHIFT_BACKUP_DIR);
    let watch = etcd_watch(OPENSHIFT_DATA_DIR, &data_dir, true);
    let aside_data = backup_dir.join(format!("cpbackup-before-restore-{}", p.id));
    let mut steps = vec![
        Step::StopPod(StopPod {
            component: "etcd".into(),
            manifest: manifest.clone(),
            aside: p.work_dir.join("manifests-stopped/etcd-pod.yaml"),
            watch: watch.clone(),
        }),
        Step::MoveContents(MoveContents {
            from: data_dir.clone(),
            to: aside_data.clone(),
        }),
        Step::PlaceFiles(PlaceFiles {
            staged: p.staged.join("static-pod-resources"),
            target: placement_target(host, "/etc/kubernetes/static-pod-resources")?,
            replaced: p.work_dir.join("replaced"),
            select: Selection::All,
        }),
        Step::StageOpenshift(StageOpenshift {
            snapshot: p.staged.join(crate::bundle::manifest::SNAPSHOT_PATH),
            snapshot_sha256: snapshot_sha256(p.manifest),
            backup_dir,
            revision_json: Some(aside_data.join("revision.json")),
            restore_pod,
            manifest,
            replaced: p.work_dir.join("replaced-etcd-backup"),
            data_dir,
            watch,
        }),
    ];
    let access = discover::etcd_access(host, Platform::Openshift, p.etcd, None)
        .context("finding how to reach etcd once it is restored")?;
    // While the restore pod works: nothing needs the plaintext copy any more.
    steps.push(Step::RemoveStaged(RemoveStaged {
        staged: p.staged.to_path_buf(),
    }));
    steps.push(Step::WaitServing(WaitServing {
        target: target(access),
        min_revision: p.manifest.etcd.status.revision,
    }));
    Ok(steps)
}
