//! After the restore: what the operator does next on each platform, and `--post-restore`, the
//! OpenShift follow-up steps done through the API.

use std::path::Path;

use anyhow::Context;

use crate::host::Platform;
use crate::kubeapi::openshift::Settle;

/// `--post-restore`: the platform's follow-up steps through the API (`say` reports progress).
/// On a kubeadm node there is nothing to do through the API.
pub fn run(
    platform: Platform,
    kubeconfig: Option<&Path>,
    settle: Settle,
    say: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<()> {
    if platform != Platform::Openshift {
        say(&format!(
            "--post-restore: nothing to do through the API on a {platform:?} node; follow the next steps above"
        ));
        return Ok(());
    }
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

/// What the operator does after the restore, per platform.
pub fn next_steps(platform: Platform) -> Vec<String> {
    match platform {
        Platform::Openshift => vec![
            "Wait for the API: `oc get nodes` (use the recovery kubeconfig /etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig if needed).".into(),
            "OpenShift 4.18 and later: `oc patch etcd/cluster --type=merge -p '{\"spec\": {\"unsupportedConfigOverrides\": {\"useUnsupportedUnsafeNonHANonProductionUnstableEtcd\": true}}}'`, then `oc adm wait-for-stable-cluster`, then `oc patch etcd/cluster --type=merge -p '{\"spec\": {\"unsupportedConfigOverrides\": null}}'`.".into(),
            "Before 4.18: for each of etcd, kubeapiserver, kubecontrollermanager, kubescheduler: `oc patch <resource> cluster --type=merge -p '{\"spec\": {\"forceRedeploymentReason\": \"recovery-'\"$(date --rfc-3339=ns)\"'\"}}'` and wait until NodeInstallerProgressing shows AllNodesAtLatestRevision.".into(),
            "If nodes stay NotReady: approve pending CSRs (`oc get csr`, `oc adm certificate approve …`) and restart the kubelet on every node.".into(),
            "Or let cpbackup do the API steps: `cpbackup restore --post-restore --kubeconfig …`.".into(),
        ],
        _ => vec![
            "etcd runs as a single-member cluster with the backup's data; check it: `etcdctl endpoint status -w table`.".into(),
            "On every other control-plane node (after `cpbackup restore --disable-etcd` there): move its /var/lib/etcd aside, add it back with `etcdctl member add <name> --peer-urls=https://<ip>:2380` from here, then start it with --initial-cluster-state=existing.".into(),
            "Restart the kubelet on every node (`systemctl restart kubelet`) and check `kubectl get nodes`; controllers relist from the restored revision.".into(),
        ],
    }
}
