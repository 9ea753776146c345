//! The restore steps: what each does, how it is undone, and why running it twice is safe.
//!
//! Every step is idempotent: `--continue` re-runs the first step not marked done, whatever
//! point it was killed at. Nothing of the node's is deleted: manifests, data and files that a
//! step replaces are moved aside (paths in the journal); only copies this restore made itself
//! (staged plaintext, half-done restores) are ever removed. `undo` puts things back for
//! `--rollback`; what a step had created goes to `<work dir>/rolled-back/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::restore::fsops::{create_private_dir, is_empty_dir, move_path, remove_tree};
use crate::restore::node::{self, Watch};

/// Which staged entries `PlaceFiles` puts on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Every entry (OpenShift: each `<component>-pod-N` directory).
    All,
    /// kubeadm: `pki` and the `*.conf` kubeconfigs.
    KubeadmPkiAndConfs,
}

impl Selection {
    fn wants(self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::KubeadmPkiAndConfs => name == "pki" || name.ends_with(".conf"),
        }
    }
}

/// How `WaitServing` reaches etcd.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdTarget {
    pub endpoint: String,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// Move a static pod manifest away so the kubelet stops the pod; wait until it is gone.
    StopPod {
        component: String,
        manifest: PathBuf,
        aside: PathBuf,
        watch: Watch,
    },
    /// Put a manifest moved away back, so the kubelet starts the pod.
    StartPod {
        component: String,
        manifest: PathBuf,
        aside: PathBuf,
        watch: Watch,
    },
    /// Rename a directory aside (the etcd data directory).
    MoveAside { from: PathBuf, to: PathBuf },
    /// Move every entry of a directory into another (a data directory that is a mount point,
    /// or OpenShift's, which its restore pod wants empty). Entries named `.cpbackup-*` stay.
    MoveContents { from: PathBuf, to: PathBuf },
    /// Put staged static pod resources on the host; whatever they replace goes to `replaced`.
    PlaceFiles {
        staged: PathBuf,
        target: PathBuf,
        replaced: PathBuf,
        select: Selection,
    },
    /// Run the node's etcdutl/etcdctl into `scratch`, then move its `member` into the data dir.
    RestoreSnapshot {
        program: PathBuf,
        args: Vec<String>,
        scratch: PathBuf,
        data_dir: PathBuf,
        /// The staged snapshot the arguments name, checked again when not staged by this run.
        #[serde(default)]
        staged: Option<StagedSnapshot>,
    },
    /// OpenShift: stage snapshot.db and revision.json in /var/lib/etcd-backup and install the
    /// restore pod as etcd's manifest, as cluster-restore.sh does; etcd's own image restores.
    StageOpenshift {
        snapshot: PathBuf,
        /// The snapshot's SHA-256 from the manifest, checked when not staged by this run.
        #[serde(default)]
        snapshot_sha256: Option<String>,
        backup_dir: PathBuf,
        revision_json: Option<PathBuf>,
        restore_pod: PathBuf,
        manifest: PathBuf,
        replaced: PathBuf,
        data_dir: PathBuf,
        watch: Watch,
    },
    /// Wait until etcd answers with at least `min_revision`.
    WaitServing {
        target: EtcdTarget,
        min_revision: i64,
    },
    /// Remove the staged (decrypted) bundle: plaintext keys must not linger.
    RemoveStaged { staged: PathBuf },
}

/// A decrypted snapshot waiting in the staging directory, and what it must hash to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedSnapshot {
    pub path: PathBuf,
    pub sha256: String,
}

/// What steps need besides themselves.
pub struct Ctx {
    pub host_root: PathBuf,
    /// This process unpacked and verified the staging directory. The staged snapshot is not
    /// synced to disk (etcdutl copies and syncs it at once), so a restore continued by another
    /// process, perhaps after a crash, hashes it again before using it.
    pub staging_verified: bool,
    pub wait_timeout: Duration,
    /// Where `undo` puts what the restore had created.
    pub rolled_back: PathBuf,
}

impl Step {
    /// One line for the plan.
    pub fn describe(&self) -> String {
        match self {
            Step::StopPod {
                component,
                manifest,
                aside,
                ..
            } => format!(
                "stop {component}: move {} to {} and wait until it is gone",
                manifest.display(),
                aside.display()
            ),
            Step::StartPod {
                component,
                manifest,
                aside,
                ..
            } => format!(
                "start {component}: move {} back to {}",
                aside.display(),
                manifest.display()
            ),
            Step::MoveAside { from, to } => format!(
                "move the etcd data directory {} aside to {} (kept, never deleted)",
                from.display(),
                to.display()
            ),
            Step::MoveContents { from, to } => format!(
                "move everything in {} to {} (kept, never deleted)",
                from.display(),
                to.display()
            ),
            Step::PlaceFiles {
                target, replaced, ..
            } => format!(
                "put the backup's static pod resources into {} (what they replace goes to {})",
                target.display(),
                replaced.display()
            ),
            Step::RestoreSnapshot {
                program,
                args,
                data_dir,
                ..
            } => format!(
                "restore the snapshot: {} {} ; then its member/ into {}",
                program.display(),
                args.join(" "),
                data_dir.display()
            ),
            Step::StageOpenshift {
                backup_dir,
                restore_pod,
                manifest,
                ..
            } => format!(
                "stage snapshot.db (and revision.json) in {} and install the restore pod {} as {}: etcd's own image restores and starts etcd",
                backup_dir.display(),
                restore_pod.display(),
                manifest.display()
            ),
            Step::WaitServing {
                target,
                min_revision,
            } => format!(
                "wait until etcd at {} serves revision {min_revision} or later",
                target.endpoint
            ),
            Step::RemoveStaged { staged } => {
                format!("remove the decrypted staging copy {}", staged.display())
            }
        }
    }

    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            Step::StopPod {
                manifest,
                aside,
                watch,
                ..
            } => {
                let (m, a) = (manifest.exists(), aside.exists());
                match (m, a) {
                    (true, false) => move_path(manifest, aside)?,
                    (false, true) => {}
                    (true, true) => anyhow::bail!(
                        "both {} and {} exist: someone put the manifest back; remove one of them, then --continue",
                        manifest.display(),
                        aside.display()
                    ),
                    (false, false) => {}
                }
                node::wait_gone(watch, &ctx.host_root, ctx.wait_timeout)
            }
            Step::StartPod {
                manifest, aside, ..
            } => {
                if aside.exists() && !manifest.exists() {
                    move_path(aside, manifest)?;
                } else if !manifest.exists() {
                    anyhow::bail!(
                        "neither {} nor {} exists: put the manifest back by hand",
                        manifest.display(),
                        aside.display()
                    );
                }
                Ok(())
            }
            Step::MoveAside { from, to } => {
                match (from.exists(), to.exists()) {
                    (true, false) => move_path(from, to)?,
                    (false, true) | (false, false) => {}
                    (true, true) => anyhow::bail!(
                        "both {} and {} exist; move one of them away by hand, then --continue",
                        from.display(),
                        to.display()
                    ),
                }
                Ok(())
            }
            Step::MoveContents { from, to } => {
                create_private_dir(to)?;
                for e in entries(from)? {
                    if e.starts_with(".cpbackup-") || from.join(&e) == *to {
                        continue;
                    }
                    move_path(&from.join(&e), &to.join(&e))?;
                }
                Ok(())
            }
            Step::PlaceFiles {
                staged,
                target,
                replaced,
                select,
            } => {
                // Again at run time (a --continue may come much later): never through a link.
                crate::beneath::real_dir_below(&ctx.host_root, target).with_context(|| {
                    format!(
                        "{} must be a real directory (no symlink on the way); fix it, then --continue or --rollback",
                        target.display()
                    )
                })?;
                create_private_dir(replaced)?;
                for e in entries(staged)? {
                    if !select.wants(&e) {
                        continue;
                    }
                    let (src, dst) = (staged.join(&e), target.join(&e));
                    let (orig, absent) = (replaced.join(&e), replaced.join(format!("{e}.absent")));
                    if !orig.exists() && !absent.exists() {
                        if dst.symlink_metadata().is_ok() {
                            move_path(&dst, &orig)?;
                        } else {
                            fs::write(&absent, b"")?;
                        }
                    } else if dst.symlink_metadata().is_ok() {
                        // Ours, from an attempt that was cut short.
                        remove_tree(&dst)?;
                    }
                    move_path(&src, &dst)?;
                }
                Ok(())
            }
            Step::RestoreSnapshot {
                program,
                args,
                scratch,
                data_dir,
                staged,
            } => {
                let member = data_dir.join("member");
                if member.exists() {
                    if scratch.exists() {
                        remove_tree(scratch)?;
                    }
                    return Ok(());
                }
                if let Some(s) = staged {
                    recheck_staged(&s.path, Some(&s.sha256), ctx)?;
                }
                remove_tree(scratch)?;
                if let Some(p) = scratch.parent() {
                    create_private_dir(p)?;
                }
                let started = Instant::now();
                let out = Command::new(program)
                    .args(args)
                    .env("ETCDCTL_API", "3")
                    .output()
                    .with_context(|| format!("running {}", program.display()))?;
                if !out.status.success() {
                    anyhow::bail!(
                        "{} snapshot restore failed: {}",
                        program.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                tracing::info!(
                    seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                    "snapshot restored"
                );
                create_private_dir(data_dir)?;
                move_path(&scratch.join("member"), &member)?;
                remove_tree(scratch)?;
                Ok(())
            }
            Step::StageOpenshift {
                snapshot,
                snapshot_sha256,
                backup_dir,
                revision_json,
                restore_pod,
                manifest,
                replaced,
                ..
            } => {
                create_private_dir(backup_dir)?;
                create_private_dir(replaced)?;
                let staged_snap = backup_dir.join("snapshot.db");
                if snapshot.exists() {
                    recheck_staged(snapshot, snapshot_sha256.as_deref(), ctx)?;
                    set_aside_once(&staged_snap, &replaced.join("snapshot.db"))?;
                    if staged_snap.exists() {
                        remove_tree(&staged_snap)?; // ours, cut short
                    }
                    move_path(snapshot, &staged_snap)?;
                } else if staged_snap.exists() {
                    // Moved by an earlier attempt, perhaps not yet on disk when it stopped.
                    recheck_staged(&staged_snap, snapshot_sha256.as_deref(), ctx)?;
                }
                // The restore pod reads it later, on its own: it must survive a crash.
                if staged_snap.exists() {
                    fs::File::open(&staged_snap)?.sync_all()?;
                }
                if let Some(rj) = revision_json
                    && rj.exists()
                {
                    let dst = backup_dir.join("revision.json");
                    set_aside_once(&dst, &replaced.join("revision.json"))?;
                    copy_atomically(rj, &dst)?;
                }
                if !manifest.exists() {
                    copy_atomically(restore_pod, manifest)?;
                }
                Ok(())
            }
            Step::WaitServing {
                target,
                min_revision,
            } => wait_serving(target, *min_revision, ctx.wait_timeout),
            Step::RemoveStaged { staged } => remove_tree(staged),
        }
    }

    /// Undoes the step (for `--rollback`); safe on a step that only partly ran.
    pub fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let rb = &ctx.rolled_back;
        match self {
            Step::StopPod {
                manifest, aside, ..
            } => {
                if aside.exists() && !manifest.exists() {
                    move_path(aside, manifest)?;
                }
                Ok(())
            }
            Step::StartPod {
                manifest,
                aside,
                watch,
                ..
            } => {
                if manifest.exists() && !aside.exists() {
                    move_path(manifest, aside)?;
                }
                node::wait_gone(watch, &ctx.host_root, ctx.wait_timeout)
            }
            Step::MoveAside { from, to } => {
                if to.exists() {
                    if from.exists() {
                        if is_empty_dir(from) {
                            fs::remove_dir(from)?;
                        } else {
                            move_path(from, &unique(rb, from))?;
                        }
                    }
                    move_path(to, from)?;
                }
                Ok(())
            }
            Step::MoveContents { from, to } => {
                if to.exists() {
                    for e in entries(to)? {
                        if from.join(&e).symlink_metadata().is_ok() {
                            move_path(&from.join(&e), &unique(rb, &from.join(&e)))?;
                        }
                        move_path(&to.join(&e), &from.join(&e))?;
                    }
                    fs::remove_dir(to)?;
                }
                Ok(())
            }
            Step::PlaceFiles {
                target, replaced, ..
            } => {
                if !replaced.exists() {
                    return Ok(());
                }
                for e in entries(replaced)? {
                    let (name, absent) = match e.strip_suffix(".absent") {
                        Some(n) => (n.to_owned(), true),
                        None => (e.clone(), false),
                    };
                    let dst = target.join(&name);
                    if dst.symlink_metadata().is_ok() {
                        move_path(&dst, &unique(rb, &dst))?;
                    }
                    if absent {
                        fs::remove_file(replaced.join(&e))?;
                    } else {
                        move_path(&replaced.join(&e), &dst)?;
                    }
                }
                Ok(())
            }
            Step::RestoreSnapshot {
                scratch, data_dir, ..
            } => {
                let member = data_dir.join("member");
                if member.exists() {
                    move_path(&member, &unique(rb, &member))?;
                }
                remove_tree(scratch)
            }
            Step::StageOpenshift {
                backup_dir,
                restore_pod,
                manifest,
                replaced,
                data_dir,
                watch,
                ..
            } => {
                if manifest.exists() && fs::read(manifest).ok() == fs::read(restore_pod).ok() {
                    move_path(manifest, &unique(rb, manifest))?;
                }
                node::wait_gone(watch, &ctx.host_root, ctx.wait_timeout)?;
                if data_dir.exists() {
                    for e in entries(data_dir)? {
                        if !e.starts_with(".cpbackup-") {
                            move_path(&data_dir.join(&e), &unique(rb, &data_dir.join(&e)))?;
                        }
                    }
                }
                for f in ["snapshot.db", "revision.json"] {
                    let p = backup_dir.join(f);
                    if p.exists() {
                        move_path(&p, &unique(rb, &p))?;
                    }
                    if replaced.join(f).exists() {
                        move_path(&replaced.join(f), &p)?;
                    }
                }
                Ok(())
            }
            Step::WaitServing { .. } | Step::RemoveStaged { .. } => Ok(()),
        }
    }
}

/// Hashes a staged snapshot again unless this process staged it: it was not synced, so after
/// a crash it may not hold what was verified.
fn recheck_staged(path: &Path, sha256: Option<&str>, ctx: &Ctx) -> anyhow::Result<()> {
    let Some(want) = sha256.filter(|_| !ctx.staging_verified) else {
        return Ok(());
    };
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = fs::File::open(path)
        .with_context(|| format!("opening the staged snapshot {}", path.display()))?;
    std::io::copy(&mut f, &mut h)
        .with_context(|| format!("reading the staged snapshot {}", path.display()))?;
    let got = hex::encode(h.finalize());
    if got != want {
        anyhow::bail!(
            "the staged snapshot {} no longer matches the backup (SHA-256 {got}, expected {want}); \
             it was probably not on disk yet when the machine went down. Run `cpbackup restore --rollback`, \
             then restore again",
            path.display()
        );
    }
    Ok(())
}

/// Names in a directory, sorted.
fn entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    v.sort();
    Ok(v)
}

/// A fresh path under `dir` named after `p`.
fn unique(dir: &Path, p: &Path) -> PathBuf {
    let base = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "entry".into());
    (0..)
        .map(|i| {
            if i == 0 {
                dir.join(&base)
            } else {
                dir.join(format!("{base}.{i}"))
            }
        })
        .find(|c| c.symlink_metadata().is_err())
        .expect("some name is free")
}

/// Moves `p` to `keep` the first time only (later runs find `keep` there and leave `p`,
/// which is then ours).
fn set_aside_once(p: &Path, keep: &Path) -> anyhow::Result<()> {
    if p.exists() && !keep.exists() {
        move_path(p, keep)?;
    }
    Ok(())
}

fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("cpbackup-tmp");
    fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, to)?;
    Ok(())
}

fn wait_serving(t: &EtcdTarget, min_revision: i64, timeout: Duration) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let access = crate::host::EtcdAccess {
        endpoint: t.endpoint.clone(),
        cacert: t.cacert.clone(),
        cert: t.cert.clone(),
        key: t.key.clone(),
        node_name: None,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let last = match rt.block_on(crate::etcd::connect(&access, Duration::from_secs(5))) {
            Ok((_, s)) if s.revision >= min_revision => {
                tracing::info!(endpoint = %t.endpoint, revision = s.revision, member = %s.member_id, "etcd serves the restored data");
                return Ok(());
            }
            Ok((_, s)) => format!(
                "it serves revision {}, below the backup's {min_revision}: is it the old data?",
                s.revision
            ),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "etcd at {} did not serve within {}s ({last}); check its logs (crictl logs, journalctl -u kubelet), then `cpbackup restore --continue` waits again",
                t.endpoint,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50)); // readiness poll, bounded above
    }
}
