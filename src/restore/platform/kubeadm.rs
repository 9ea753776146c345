//! The kubeadm restore: the API server and etcd stopped by moving their manifests aside, the
//! data directory moved aside (its contents, when it is a mount point), pki and kubeconfigs
//! placed, the snapshot restored by the node's etcdutl/etcdctl with a revision bump, etcd and
//! the API server started again. Also any node that is not OpenShift.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Procedure;
use crate::error::usage;
use crate::host::{HostRoot, Platform, discover, etcd_manifest};
use crate::restore::fsops::is_mount_point;
use crate::restore::node::Watch;
use crate::restore::plan::{
    KUBEADM_MANIFESTS, PlanInput, apiserver_watch, etcd_watch, placement_target, snapshot_sha256,
    target,
};
use crate::restore::steps::{
    MoveAside, MoveContents, PlaceFiles, RemoveStaged, RestorePod, RestoreSnapshot, Selection,
    StagedSnapshot, StartPod, Step, StopPod, WaitServing,
};
use crate::restore::tools::RestoreArgs;

/// kubeadm (and any node without OpenShift's layout).
pub struct Kubeadm;

impl Procedure for Kubeadm {
    fn needs_tool(&self) -> bool {
        true
    }

    fn data_dir(&self, host: &HostRoot) -> anyhow::Result<String> {
        // The etcd manifest must be readable now (and names the data directory).
        Ok(kubeadm_etcd(host)?.data_dir_host)
    }

    fn restore(&self, p: &PlanInput) -> anyhow::Result<Vec<Step>> {
        restore(p)
    }

    fn disable_etcd(&self, host: &HostRoot, stopped: &Path) -> anyhow::Result<Vec<Step>> {
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

    fn next_steps(&self) -> Vec<String> {
        vec![
            "etcd runs as a single-member cluster with the backup's data; check it: `etcdctl endpoint status -w table`.".into(),
            "On every other control-plane node (where `cpbackup restore --disable-etcd` ran): `cpbackup restore --rejoin --etcd-endpoint https://<recovery-ip>:2379 --dry-run`, then the same without --dry-run. It adds that node back as a member and starts its etcd and API server; one node at a time.".into(),
            "Restart the kubelet on every node (`systemctl restart kubelet`) and check `kubectl get nodes`; controllers relist from the bumped revision.".into(),
        ]
    }
}

/// The etcd static pod of a kubeadm node, as its manifest says.
pub struct KubeadmEtcd {
    pub manifest: PathBuf,
    pub name: String,
    pub data_dir_host: String,
    pub peer_url: String,
    pub client_url: Option<String>,
    /// etcd's image.
    pub image: Option<String>,
    /// The tag of etcd's image (its version: `3.5.15-0`).
    pub image_tag: Option<String>,
}

/// Reads the etcd manifest of a kubeadm node.
pub fn kubeadm_etcd(host: &HostRoot) -> anyhow::Result<KubeadmEtcd> {
    kubeadm_etcd_at(host.path(format!("{KUBEADM_MANIFESTS}/etcd.yaml")))
}

/// Reads a kubeadm etcd manifest wherever it is (in place, or set aside by `--disable-etcd`).
pub fn kubeadm_etcd_at(manifest: PathBuf) -> anyhow::Result<KubeadmEtcd> {
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
        image: etcd_manifest::image(&text),
        image_tag: etcd_manifest::image_tag(&text),
        manifest,
    })
}

fn restore(p: &PlanInput) -> anyhow::Result<Vec<Step>> {
    if let Some(prepared) = p.new_host {
        return super::kubeadm_new_host::restore(p, prepared);
    }
    let host = p.host;
    let place_into = placement_target(host, "/etc/kubernetes")?;
    let etcd = kubeadm_etcd(host)?;
    let data_dir = host.path(&etcd.data_dir_host);
    let stopped = p.work_dir.join("manifests-stopped");
    let apiserver = host.path(format!("{KUBEADM_MANIFESTS}/kube-apiserver.yaml"));
    let api = apiserver.exists().then(|| StopPod {
        component: "kube-apiserver".into(),
        manifest: apiserver.clone(),
        aside: stopped.join("kube-apiserver.yaml"),
        watch: apiserver_watch(),
    });
    let stop_etcd = StopPod {
        component: "etcd".into(),
        manifest: etcd.manifest.clone(),
        aside: stopped.join("etcd.yaml"),
        watch: etcd_watch(&etcd.data_dir_host, &data_dir, false),
    };
    let mut steps: Vec<Step> = api.iter().cloned().map(Step::StopPod).collect();
    steps.push(Step::StopPod(stop_etcd.clone()));
    let scratch = set_data_dir_aside(p.id, &data_dir, &mut steps);
    // In etcd's image, only a private directory of ours is mounted: the tool restores into a
    // directory inside it (etcdctl 3.4 refuses one that exists).
    let scratch = match p.tool.is_some_and(|t| t.image.is_some()) {
        true => scratch.join("data"),
        false => scratch,
    };
    // an etcd-only backup has no files to place: the plan says so instead of listing a step
    // that would put nothing
    if p.manifest.platform != Platform::Unknown {
        steps.push(Step::PlaceFiles(PlaceFiles {
            staged: p.staged.to_path_buf(),
            target: place_into,
            replaced: p.work_dir.join("replaced"),
            select: Selection::KubeadmPkiAndConfs,
        }));
    }
    let revision = p.manifest.etcd.status.revision;
    steps.push(restore_snapshot(p, &etcd, &scratch, &data_dir)?);
    steps.push(Step::StartPod(start(stop_etcd)));
    let access = etcd_access(p, &etcd)?;
    // While etcd starts: nothing needs the plaintext copy any more.
    steps.push(Step::RemoveStaged(RemoveStaged {
        staged: p.staged.to_path_buf(),
    }));
    steps.push(Step::WaitServing(WaitServing {
        target: target(access),
        min_revision: revision.saturating_add(i64::try_from(p.bump).unwrap_or(i64::MAX)),
    }));
    steps.extend(api.map(|a| Step::StartPod(start(a))));
    Ok(steps)
}

/// The step that starts again what `stop` stopped.
pub(crate) fn start(stop: StopPod) -> StartPod {
    StartPod {
        component: stop.component,
        manifest: stop.manifest,
        aside: stop.aside,
        watch: stop.watch,
    }
}

/// Moves etcd's data directory aside (its contents, when it is a mount point); returns the
/// scratch directory the snapshot is restored into, on the same file system.
pub(crate) fn set_data_dir_aside(id: &str, data_dir: &Path, steps: &mut Vec<Step>) -> PathBuf {
    let mount = is_mount_point(data_dir);
    let dir_name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "etcd".into());
    let parent = data_dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    if data_dir.exists() {
        steps.push(if mount {
            Step::MoveContents(MoveContents {
                from: data_dir.to_path_buf(),
                to: data_dir.join(format!(".cpbackup-before-restore-{id}")),
            })
        } else {
            Step::MoveAside(MoveAside {
                from: data_dir.to_path_buf(),
                to: parent.join(format!("{dir_name}.before-restore-{id}")),
            })
        });
    }
    if mount {
        data_dir.join(format!(".cpbackup-restore-{id}"))
    } else {
        parent.join(format!(".{dir_name}.cpbackup-restore-{id}"))
    }
}

/// etcdutl/etcdctl restoring the staged snapshot as this member, with a revision bump (by the
/// tool where it can, else by cpbackup on what it restored); in a static pod of etcd's image
/// when the host has no tool, the paths then as the host names them.
pub(super) fn restore_snapshot(
    p: &PlanInput,
    etcd: &KubeadmEtcd,
    scratch: &Path,
    data_dir: &Path,
) -> anyhow::Result<Step> {
    let tool = p.tool.context("no restore tool")?;
    let snapshot = p.staged.join(crate::bundle::manifest::SNAPSHOT_PATH);
    let on_host = |ours: &Path| {
        p.host.host_path_of(ours).ok_or_else(|| {
            usage(format!(
                "{} is not under the host root {}, so etcd's image cannot see it: pass --state-dir under the host root",
                ours.display(),
                p.host.root().display()
            ))
        })
    };
    let (snapshot_arg, scratch_arg) = match tool.image {
        Some(_) => (on_host(&snapshot)?, on_host(scratch)?),
        None => (snapshot.clone(), scratch.to_path_buf()),
    };
    let args = tool.args(&RestoreArgs {
        snapshot: &snapshot_arg,
        data_dir: &scratch_arg,
        name: &etcd.name,
        peer_url: &etcd.peer_url,
        token: p.token,
        bump: Some(p.bump),
    });
    let pod = match &tool.image {
        Some(image) => Some(restore_pod(
            p,
            tool,
            image,
            &args,
            &snapshot_arg,
            &scratch_arg,
            scratch,
        )?),
        None => None,
    };
    Ok(Step::RestoreSnapshot(RestoreSnapshot {
        program: tool.path.clone(),
        args,
        scratch: scratch.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        staged: snapshot_sha256(p.manifest).map(|sha256| StagedSnapshot {
            path: snapshot.clone(),
            sha256,
        }),
        bump_offline: (!tool.bump_revision).then_some(p.bump),
        pod,
        remove: None,
    }))
}

/// The static pod that runs the image's tool (no network needed): the staged snapshot's
/// directory mounted read-only and the scratch directory's private parent read-write, at the
/// paths the host names them.
fn restore_pod(
    p: &PlanInput,
    tool: &crate::restore::tools::RestoreTool,
    image: &str,
    args: &[String],
    snapshot: &Path,
    scratch_host: &Path,
    scratch: &Path,
) -> anyhow::Result<RestorePod> {
    let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let dir_of = |x: &Path| x.parent().unwrap_or(Path::new("/")).display().to_string();
    let (staged_dir, target_dir) = (dir_of(snapshot), dir_of(scratch_host));
    let command: String = std::iter::once(tool.path.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("    - {}\n", q(&a)))
        .collect();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: cpbackup-etcd-restore\n  namespace: kube-system\n  labels:\n    app.kubernetes.io/name: cpbackup-etcd-restore\nspec:\n  restartPolicy: Never\n  priorityClassName: system-node-critical\n  containers:\n  - name: etcd-restore\n    image: {}\n    env:\n    - name: ETCDCTL_API\n      value: \"3\"\n    command:\n{command}    volumeMounts:\n    - name: staged\n      mountPath: {}\n      readOnly: true\n    - name: target\n      mountPath: {}\n  volumes:\n  - name: staged\n    hostPath:\n      path: {}\n      type: Directory\n  - name: target\n    hostPath:\n      path: {}\n      type: Directory\n",
        q(image),
        q(&staged_dir),
        q(&target_dir),
        q(&staged_dir),
        q(&target_dir),
    );
    let process = tool
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(RestorePod {
        image: image.to_owned(),
        manifest: p
            .host
            .path(format!("{KUBEADM_MANIFESTS}/cpbackup-etcd-restore.yaml")),
        yaml,
        watch: Watch {
            containers: vec!["etcd-restore".into()],
            process,
            args_containing: vec![
                format!("--data-dir={}", scratch_host.display()),
                format!("--data-dir={}", scratch.display()),
            ],
        },
    })
}

/// How to reach the restored member: the flags or discovery, else its manifest's client URL.
fn etcd_access(p: &PlanInput, etcd: &KubeadmEtcd) -> anyhow::Result<discover::EtcdAccess> {
    let mut access = discover::etcd_access(p.host, Platform::Kubeadm, p.etcd, None).unwrap_or(
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
    Ok(access)
}
