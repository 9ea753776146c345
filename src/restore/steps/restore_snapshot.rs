//! `restore-snapshot`: the node's etcdutl (or etcdctl) restores the staged snapshot into a
//! scratch directory — or, on a host without either, the one of etcd's own image, run by the
//! kubelet as a static pod — cpbackup bumps the revision where the tool could not, and the
//! `member/` then moves into etcd's data directory in one rename.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Action, Ctx, StagedSnapshot, publish_new_file, recheck_staged, unique};
use crate::restore::fsops::{create_private_dir, move_path, remove_tree};
use crate::restore::node::{self, Watch};
use crate::snapshot::bump::{bump_revision, delete_keys};

/// Run the node's etcdutl/etcdctl into `scratch`, then move its `member` into the data dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreSnapshot {
    /// etcdutl or etcdctl.
    pub program: PathBuf,
    /// Its arguments (`snapshot restore …`).
    pub args: Vec<String>,
    /// Where it restores to.
    pub scratch: PathBuf,
    /// etcd's data directory.
    pub data_dir: PathBuf,
    /// The staged snapshot the arguments name, checked again when not staged by this run.
    #[serde(default)]
    pub staged: Option<StagedSnapshot>,
    /// Bump the restored revision by this much (and mark older ones compacted) after the
    /// tool ran, because it cannot (etcd 3.4, 3.5.0–3.5.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bump_offline: Option<u64>,
    /// Run by the kubelet as this static pod instead of on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<RestorePod>,
    /// `--new-host`: keys of the old masters deleted from the restored database before etcd
    /// starts (saved with their values beforehand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<RemoveKeys>,
}

/// Keys deleted offline from the restored database (tombstones at the next revision).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveKeys {
    /// The keys, base64 (exact bytes).
    pub keys_base64: Vec<String>,
    /// Where they were saved with their values.
    pub saved_in: PathBuf,
}

/// The restore as a static pod of etcd's image, for a host without etcdutl/etcdctl.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestorePod {
    /// The image.
    pub image: String,
    /// Where the kubelet reads the pod.
    pub manifest: PathBuf,
    /// The pod (`restartPolicy: Never`).
    pub yaml: String,
    /// How to tell its container still runs.
    pub watch: Watch,
}

impl RestorePod {
    /// Has the kubelet run it; waits until it finished (its WAL written, its container gone),
    /// then removes its manifest.
    fn run(&self, scratch: &Path, ctx: &Ctx) -> anyhow::Result<()> {
        if self.manifest.exists() {
            fs::remove_file(&self.manifest)?; // from a run that was cut short
        }
        publish_new_file(ctx, &self.manifest, self.yaml.as_bytes())?;
        let deadline = Instant::now() + ctx.wait_timeout;
        let wal = scratch.join("member/wal");
        let finished = loop {
            if wal.is_dir() && !node::running(&self.watch, &ctx.host_root)? {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100)); // the kubelet's pace, bounded
        };
        fs::remove_file(&self.manifest)?;
        if !finished {
            anyhow::bail!(
                "the restore pod ({}, image {}) did not finish within {}s: check `crictl ps -a --name etcd-restore` and its logs, then `{}`",
                self.manifest.display(),
                self.image,
                ctx.wait_timeout.as_secs(),
                ctx.continue_cmd
            );
        }
        Ok(())
    }
}

impl Action for RestoreSnapshot {
    fn describe(&self) -> String {
        let bump = self
            .bump_offline
            .map(|n| format!("; cpbackup raises its revision by {n} and marks the older ones compacted (this tool has no --bump-revision)"))
            .unwrap_or_default();
        let how = self
            .pod
            .as_ref()
            .map(|p| {
                format!(
                    " in a static pod of etcd's image {} ({}; no etcdutl or etcdctl on this host)",
                    p.image,
                    p.manifest.display()
                )
            })
            .unwrap_or_default();
        let remove = self
            .remove
            .as_ref()
            .map(|r| {
                format!(
                    "; delete the {} key(s) of the old masters (saved in {})",
                    r.keys_base64.len(),
                    r.saved_in.display()
                )
            })
            .unwrap_or_default();
        format!(
            "restore the snapshot{how}: {} {}{bump}{remove}; then its member/ into {}",
            self.program.display(),
            self.args.join(" "),
            self.data_dir.display()
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (program, scratch) = (&self.program, &self.scratch);
        let member = self.data_dir.join("member");
        if member.exists() {
            if scratch.exists() {
                remove_tree(scratch)?;
            }
            return self.remove_pod_dir();
        }
        if let Some(s) = &self.staged {
            recheck_staged(&s.path, Some(&s.sha256), ctx)?;
        }
        remove_tree(scratch)?;
        if let Some(p) = scratch.parent() {
            create_private_dir(p)?;
        }
        let started = Instant::now();
        if let Some(pod) = &self.pod {
            pod.run(scratch, ctx)?;
        } else {
            let out = Command::new(program)
                .args(&self.args)
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
        }
        tracing::info!(
            seconds = crate::logging::seconds(started.elapsed().as_secs_f64()),
            "snapshot restored"
        );
        if let Some(n) = self.bump_offline {
            let db = scratch.join("member/snap/db");
            let b = bump_revision(&db, n)
                .with_context(|| format!("raising the revision of {}", db.display()))?;
            tracing::info!(
                from = b.latest,
                to = b.bumped,
                "revision bumped and older revisions marked compacted"
            );
        }
        if let Some(r) = &self.remove {
            use base64::Engine;
            let db = scratch.join("member/snap/db");
            let keys = r
                .keys_base64
                .iter()
                .map(|k| base64::engine::general_purpose::STANDARD.decode(k))
                .collect::<Result<Vec<_>, _>>()
                .context("the journal's keys to delete are not base64")?;
            let at = delete_keys(&db, &keys)
                .with_context(|| format!("deleting the old masters' keys in {}", db.display()))?;
            tracing::info!(
                keys = keys.len(),
                revision = at.unwrap_or_default(),
                saved_in = %r.saved_in.display(),
                "old masters' keys deleted"
            );
        }
        create_private_dir(&self.data_dir)?;
        move_path(&scratch.join("member"), &member)?;
        remove_tree(scratch)?;
        self.remove_pod_dir()
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if let Some(p) = self.pod.as_ref().filter(|p| p.manifest.exists()) {
            fs::remove_file(&p.manifest)?;
        }
        let member = self.data_dir.join("member");
        if member.exists() {
            move_path(&member, &unique(&ctx.rolled_back, &member))?;
        }
        remove_tree(&self.scratch)?;
        self.remove_pod_dir()
    }
}

impl RestoreSnapshot {
    /// With a pod, the scratch directory sits in a private one of its own: removed once empty.
    fn remove_pod_dir(&self) -> anyhow::Result<()> {
        if let Some(parent) = self.pod.as_ref().and_then(|_| self.scratch.parent())
            && crate::restore::fsops::is_empty_dir(parent)
        {
            fs::remove_dir(parent)?;
        }
        Ok(())
    }
}
