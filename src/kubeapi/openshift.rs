//! OpenShift's post-restore steps, as the documented procedure runs them with `oc`:
//!
//! - 4.18 and later: turn the etcd quorum guard off
//!   (`unsupportedConfigOverrides.useUnsupportedUnsafeNonHANonProductionUnstableEtcd`), wait
//!   until every ClusterOperator is Available, not Progressing and not Degraded for a stable
//!   period (`oc adm wait-for-stable-cluster`), turn it back on;
//! - earlier: set `forceRedeploymentReason` on etcd, kubeapiserver, kubecontrollermanager and
//!   kubescheduler in turn, each time waiting for a new revision to reach every node
//!   (`NodeInstallerProgressing` = `AllNodesAtLatestRevision`).

use std::time::{Duration, Instant};

use anyhow::Context;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

/// How long to wait, and for how long the cluster must stay settled.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// How long to wait for the cluster to settle.
    pub timeout: Duration,
    /// How long every cluster operator must stay settled.
    pub stable_for: Duration,
    /// How often to look.
    pub poll: Duration,
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

fn cluster_operators(c: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        c.clone(),
        &resource("config.openshift.io", "ClusterOperator", "clusteroperators"),
    )
}

/// The operator resources redeployed before 4.18, in the documented order.
pub const REDEPLOY: [(&str, &str); 4] = [
    ("Etcd", "etcds"),
    ("KubeAPIServer", "kubeapiservers"),
    ("KubeControllerManager", "kubecontrollermanagers"),
    ("KubeScheduler", "kubeschedulers"),
];

/// The cluster's version (major, minor) from ClusterVersion `version`.
pub async fn version(c: &kube::Client) -> anyhow::Result<(u32, u32)> {
    let api: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &resource("config.openshift.io", "ClusterVersion", "clusterversions"),
    );
    let cv = api
        .get("version")
        .await
        .context("reading ClusterVersion version")?;
    let v = cv.data["status"]["desired"]["version"]
        .as_str()
        .context("ClusterVersion has no status.desired.version")?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => anyhow::bail!("unreadable OpenShift version {v:?}"),
    }
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Whether every ClusterOperator is Available, not Progressing, not Degraded; else who is not.
pub async fn operators_settled(c: &kube::Client) -> anyhow::Result<(bool, Vec<String>)> {
    let list = cluster_operators(c)
        .list(&Default::default())
        .await
        .context("listing ClusterOperators")?;
    let mut unsettled = Vec::new();
    for co in &list.items {
        let v = serde_json::to_value(co)?;
        let is = |t: &str, want: &str| condition(&v, t).is_some_and(|c| c["status"] == want);
        if !(is("Available", "True") && is("Progressing", "False") && is("Degraded", "False")) {
            unsettled.push(co.metadata.name.clone().unwrap_or_default());
        }
    }
    Ok((unsettled.is_empty(), unsettled))
}

/// `oc adm wait-for-stable-cluster`: settled continuously for `stable_for`.
pub async fn wait_for_stable_cluster(
    c: &kube::Client,
    s: Settle,
    say: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + s.timeout;
    let mut since: Option<Instant> = None;
    loop {
        let (ok, who) = operators_settled(c).await?;
        if ok {
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() >= s.stable_for {
                say("every cluster operator is available and settled".into());
                return Ok(());
            }
        } else {
            since = None;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the cluster did not settle within {}s (still moving: {}); check `oc get co`, then run `cpbackup restore --post-restore` again",
                s.timeout.as_secs(),
                who.join(", ")
            );
        }
        tokio::time::sleep(s.poll).await;
    }
}

async fn merge_patch(
    api: &Api<DynamicObject>,
    name: &str,
    body: Value,
) -> anyhow::Result<DynamicObject> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .with_context(|| format!("patching {name}"))
}

/// Runs the post-restore steps for this cluster's version.
pub async fn post_restore(
    c: &kube::Client,
    s: Settle,
    say: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<()> {
    let (major, minor) = version(c).await?;
    say(format!("OpenShift {major}.{minor}"));
    let etcd: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &resource("operator.openshift.io", "Etcd", "etcds"),
    );
    if (major, minor) >= (4, 18) {
        say("turning the etcd quorum guard off".into());
        merge_patch(
            &etcd,
            "cluster",
            json!({"spec": {"unsupportedConfigOverrides": {"useUnsupportedUnsafeNonHANonProductionUnstableEtcd": true}}}),
        )
        .await?;
        let waited = wait_for_stable_cluster(c, s, say).await;
        // The guard goes back on even when waiting failed: leaving it off is worse.
        say("turning the etcd quorum guard back on".into());
        merge_patch(
            &etcd,
            "cluster",
            json!({"spec": {"unsupportedConfigOverrides": null}}),
        )
        .await?;
        return waited;
    }
    let reason = format!(
        "recovery-{}",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    for (kind, plural) in REDEPLOY {
        let api: Api<DynamicObject> =
            Api::all_with(c.clone(), &resource("operator.openshift.io", kind, plural));
        let before = api
            .get("cluster")
            .await
            .with_context(|| format!("reading {plural}/cluster"))?;
        let from = before.data["status"]["latestAvailableRevision"]
            .as_i64()
            .unwrap_or(0);
        say(format!(
            "redeploying {plural}/cluster (forceRedeploymentReason {reason})"
        ));
        merge_patch(
            &api,
            "cluster",
            json!({"spec": {"forceRedeploymentReason": reason}}),
        )
        .await?;
        let deadline = Instant::now() + s.timeout;
        loop {
            let now = serde_json::to_value(api.get("cluster").await?)?;
            let rev = now["status"]["latestAvailableRevision"]
                .as_i64()
                .unwrap_or(0);
            let done = condition(&now, "NodeInstallerProgressing")
                .is_some_and(|c| c["reason"] == "AllNodesAtLatestRevision");
            if rev > from && done {
                say(format!("{plural}/cluster: revision {rev} on every node"));
                break;
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{plural}/cluster did not roll out a new revision within {}s; check `oc get {plural} cluster -o yaml`",
                    s.timeout.as_secs()
                );
            }
            tokio::time::sleep(s.poll).await;
        }
    }
    Ok(())
}

/// The four control-plane operators `cluster-backup.sh` checks before a backup.
pub const CONTROL_PLANE_OPERATORS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
];

/// Where OpenShift keeps the node's localhost kubeconfig (cluster-backup.sh uses it too).
pub const LOCALHOST_KUBECONFIG: &str = "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig";

/// The control-plane operators whose `Progressing` condition is not `False` (a rollout is in
/// progress, or the condition is missing), with its status.
pub async fn rollouts_in_progress(c: &kube::Client) -> anyhow::Result<Vec<(String, String)>> {
    let api = cluster_operators(c);
    let mut busy = Vec::new();
    for name in CONTROL_PLANE_OPERATORS {
        let co = api
            .get(name)
            .await
            .with_context(|| format!("reading ClusterOperator {name}"))?;
        let v = serde_json::to_value(&co)?;
        let status = condition(&v, "Progressing")
            .and_then(|c| c["status"].as_str())
            .unwrap_or("Unknown")
            .to_owned();
        if status != "False" {
            busy.push((name.to_owned(), status));
        }
    }
    Ok(busy)
}
