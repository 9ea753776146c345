//! Computing the steps of a restore (or of `--disable-etcd`) for this node, before anything
//! is touched. Every check that can fail without side effects fails here.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::bundle::manifest::Manifest;
use crate::error::usage;
use crate::etcd::EtcdSettings;
use crate::host::{HostRoot, Platform, discover, etcd_manifest};
use crate::restore::fsops::is_mount_point;
use crate::restore::node::Watch;
use crate::restore::steps::{
    EtcdTarget, MoveAside, MoveContents, PlaceFiles, RemoveStaged, RestoreSnapshot, Selection,
    StageOpenshift, StagedSnapshot, StartPod, Step, StopPod, WaitServing,
};
use crate::restore::tools::{RestoreArgs, RestoreTool};

pub const KUBEADM_MANIFESTS: &str = "/etc/kubernetes/manifests";
pub const OPENSHIFT_DATA_DIR: &str = "/var/lib/etcd";
pub const OPENSHIFT_BACKUP_DIR: &str = "/var/lib/etcd-backup";
pub const OPENSHIFT_RESTORE_POD: &str =
    "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/restore-etcd-pod/pod.yaml";

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
}

/// The etcd static pod of a kubeadm node, as its manifest says.
pub struct KubeadmEtcd {
    pub manifest: PathBuf,
    pub name: String,
    pub data_dir_host: String,
    pub peer_url: String,
    pub client_url: Option<String>,
}

pub fn kubeadm_etcd(host: &HostRoot) -> anyhow::Result<KubeadmEtcd> {
    let manifest = host.path(format!("{KUBEADM_MANIFESTS}/etcd.yaml"));
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        usage(format!(
            "cannot read the etcd static pod manifest {}: {e}. Is this a control-plane node (use --host-root when running in a container)? \
             If etcd is already stopped, put its manifest back first",
            manifest.display()
        ))
    })?;
    let f = etcd_manifest::command_flags(&text);
    let need = |k: &str| {
        f.get(k).cloned().ok_or_else(|| {
            usage(format!(
                "{} has no --{k}=…: cannot tell how to restore this member",
                manifest.display()
            ))
        })
    };
    Ok(KubeadmEtcd {
        name: need("name")?,
        data_dir_host: f
            .get("data-dir")
            .cloned()
            .unwrap_or_else(|| "/var/lib/etcd".into()),
        peer_url: need("initial-advertise-peer-urls")?
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned(),
        client_url: f
            .get("advertise-client-urls")
            .and_then(|u| u.split(',').next().map(str::to_owned)),
        manifest,
    })
}

fn etcd_watch(data_dir_host: &str, data_dir: &Path, openshift: bool) -> Watch {
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

fn apiserver_watch() -> Watch {
    Watch {
        containers: vec!["kube-apiserver".into()],
        process: "kube-apiserver".into(),
        args_containing: Vec::new(),
    }
}

/// Revision bump: 20 % over the backup's revision (1,000,000,000 when it is unknown).
pub fn bump_amount(revision: i64) -> u64 {
    if revision > 0 {
        ((revision as u64) / 5).max(1)
    } else {
        1_000_000_000
    }
}

fn target(access: discover::EtcdAccess) -> EtcdTarget {
    EtcdTarget {
        endpoint: access.endpoint,
        cacert: access.cacert,
        cert: access.cert,
        key: access.key,
    }
}

/// The snapshot's SHA-256 as the manifest records it.
fn snapshot_sha256(m: &Manifest) -> Option<String> {
    m.entries
        .iter()
        .find(|e| e.path == crate::bundle::manifest::SNAPSHOT_PATH)
        .and_then(|e| e.sha256.clone())
}

/// The steps of a whole-cluster restore on this node.
pub fn restore(p: &PlanInput) -> anyhow::Result<Vec<Step>> {
    match p.platform {
        Platform::Openshift => openshift(p),
        Platform::Kubeadm | Platform::Unknown => kubeadm(p),
    }
}

/// The directory the backup's files are placed into must be reached without a symlink: a
/// restore never writes through one (checked now, before anything changes, and again by the step).
fn placement_target(host: &HostRoot, host_path: &str) -> anyhow::Result<PathBuf> {
    let target = host.path(host_path);
    crate::beneath::real_dir_below(host.root(), &target).with_context(|| {
        format!(
            "{host_path} under {} must be a real directory (no symlink on the way): a restore never writes through a link. Fix it by hand; nothing was changed",
            host.root().display()
        )
    })?;
    Ok(target)
}

fn kubeadm(p: &PlanInput) -> anyhow::Result<Vec<Step>> {
    let host = p.host;
    let place_into = placement_target(host, "/etc/kubernetes")?;
    let etcd = kubeadm_etcd(host)?;
    let tool = p.tool.context("no restore tool")?;
    let data_dir = host.path(&etcd.data_dir_host);
    let stopped = p.work_dir.join("manifests-stopped");
    let apiserver = host.path(format!("{KUBEADM_MANIFESTS}/kube-apiserver.yaml"));
    let mut steps = Vec::new();
    let api_step = apiserver.exists().then(|| {
        (
            apiserver.clone(),
            stopped.join("kube-apiserver.yaml"),
            apiserver_watch(),
        )
    });
    if let Some((m, a, w)) = &api_step {
        steps.push(Step::StopPod(StopPod {
            component: "kube-apiserver".into(),
            manifest: m.clone(),
            aside: a.clone(),
            watch: w.clone(),
        }));
    }
    let watch = etcd_watch(&etcd.data_dir_host, &data_dir, false);
    let etcd_aside = stopped.join("etcd.yaml");
    steps.push(Step::StopPod(StopPod {
        component: "etcd".into(),
        manifest: etcd.manifest.clone(),
        aside: etcd_aside.clone(),
        watch: watch.clone(),
    }));
    let mount = is_mount_point(&data_dir);
    let dir_name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "etcd".into());
    let parent = data_dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    let scratch = if mount {
        data_dir.join(format!(".cpbackup-restore-{}", p.id))
    } else {
        parent.join(format!(".{dir_name}.cpbackup-restore-{}", p.id))
    };
    if data_dir.exists() {
        if mount {
            steps.push(Step::MoveContents(MoveContents {
                from: data_dir.clone(),
                to: data_dir.join(format!(".cpbackup-before-restore-{}", p.id)),
            }));
        } else {
            steps.push(Step::MoveAside(MoveAside {
                from: data_dir.clone(),
                to: parent.join(format!("{dir_name}.before-restore-{}", p.id)),
            }));
        }
    }
    steps.push(Step::PlaceFiles(PlaceFiles {
        staged: p.staged.to_path_buf(),
        target: place_into,
        replaced: p.work_dir.join("replaced"),
        select: Selection::KubeadmPkiAndConfs,
    }));
    let snapshot = p.staged.join(crate::bundle::manifest::SNAPSHOT_PATH);
    let revision = p.manifest.etcd.status.revision;
    let args = tool.args(&RestoreArgs {
        snapshot: &snapshot,
        data_dir: &scratch,
        name: &etcd.name,
        peer_url: &etcd.peer_url,
        token: p.token,
        bump: Some(bump_amount(revision)),
    });
    steps.push(Step::RestoreSnapshot(RestoreSnapshot {
        program: tool.path.clone(),
        args,
        scratch,
        data_dir: data_dir.clone(),
        staged: snapshot_sha256(p.manifest).map(|sha256| StagedSnapshot {
            path: snapshot.clone(),
            sha256,
        }),
    }));
    steps.push(Step::StartPod(StartPod {
        component: "etcd".into(),
        manifest: etcd.manifest.clone(),
        aside: etcd_aside,
        watch,
    }));
    let mut access = discover::etcd_access(host, Platform::Kubeadm, p.etcd, None).unwrap_or(
        discover::EtcdAccess {
            endpoint: String::new(),
            cacert: None,
            cert: None,
            key: None,
            node_name: None,
        },
    );
    if p.etcd.endpoint.is_none()
        && let Some(u) = &etcd.client_url
    {
        access.endpoint = u.clone();
    }
    if access.endpoint.is_empty() {
        return Err(usage(
            "cannot tell etcd's client URL from its manifest: pass --etcd-endpoint",
        ));
    }
    let bumped = if tool.bump_revision {
        bump_amount(revision) as i64
    } else {
        0
    };
    // While etcd starts: nothing needs the plaintext copy any more.
    steps.push(Step::RemoveStaged(RemoveStaged {
        staged: p.staged.to_path_buf(),
    }));
    steps.push(Step::WaitServing(WaitServing {
        target: target(access),
        min_revision: revision + bumped,
    }));
    if let Some((m, a, w)) = api_step {
        steps.push(Step::StartPod(StartPod {
            component: "kube-apiserver".into(),
            manifest: m,
            aside: a,
            watch: w,
        }));
    }
    Ok(steps)
}

fn openshift(p: &PlanInput) -> anyhow::Result<Vec<Step>> {
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

/// `--disable-etcd`: what the other masters do first (stop etcd, and on kubeadm the API server).
pub fn disable_etcd(
    host: &HostRoot,
    platform: Platform,
    work_dir: &Path,
) -> anyhow::Result<Vec<Step>> {
    let stopped = work_dir.join("manifests-stopped");
    match platform {
        Platform::Openshift => {
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
        Platform::Kubeadm | Platform::Unknown => {
            let etcd = kubeadm_etcd(host)?;
            let mut steps = Vec::new();
            let api = host.path(format!("{KUBEADM_MANIFESTS}/kube-apiserver.yaml"));
            if api.exists() {
                steps.push(Step::StopPod(StopPod {
                    component: "kube-apiserver".into(),
                    manifest: api,
                    aside: stopped.join("kube-apiserver.yaml"),
                    watch: apiserver_watch(),
                }));
            }
            steps.push(Step::StopPod(StopPod {
                component: "etcd".into(),
                watch: etcd_watch(&etcd.data_dir_host, &host.path(&etcd.data_dir_host), false),
                manifest: etcd.manifest,
                aside: stopped.join("etcd.yaml"),
            }));
            Ok(steps)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bump_is_a_fifth_of_the_revision_or_a_billion() {
        assert_eq!(super::bump_amount(1000), 200);
        assert_eq!(super::bump_amount(3), 1);
        assert_eq!(super::bump_amount(0), 1_000_000_000);
    }
}
