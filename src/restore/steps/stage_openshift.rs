//! `stage-openshift`: as cluster-restore.sh, snapshot.db and revision.json staged in
//! /var/lib/etcd-backup and the restore pod installed as etcd's manifest; etcd's own image
//! restores and starts etcd. Undo removes the pod and puts back what staging replaced.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Action, Ctx, copy_atomically, entries, recheck_staged, set_aside_once, unique};
use crate::restore::fsops::{create_private_dir, move_path, remove_tree};
use crate::restore::node::{self, Watch};

/// OpenShift: stage snapshot.db and revision.json in /var/lib/etcd-backup and install the
/// restore pod as etcd's manifest, as cluster-restore.sh does; etcd's own image restores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageOpenshift {
    /// The staged snapshot.
    pub snapshot: PathBuf,
    /// The snapshot's SHA-256 from the manifest, checked when not staged by this run.
    #[serde(default)]
    pub snapshot_sha256: Option<String>,
    /// /var/lib/etcd-backup on the host.
    pub backup_dir: PathBuf,
    /// The bundle's revision.json, if it has one.
    pub revision_json: Option<PathBuf>,
    /// The restore pod manifest (from the bundle's etcd-pod resources).
    pub restore_pod: PathBuf,
    /// etcd's manifest in the kubelet's directory.
    pub manifest: PathBuf,
    /// Where what staging replaces is kept.
    pub replaced: PathBuf,
    /// etcd's data directory.
    pub data_dir: PathBuf,
    /// How to tell the restore pod is gone (on undo).
    pub watch: Watch,
}

impl Action for StageOpenshift {
    fn describe(&self) -> String {
        format!(
            "stage snapshot.db (and revision.json) in {} and install the restore pod {} as {}: etcd's own image restores and starts etcd",
            self.backup_dir.display(),
            self.restore_pod.display(),
            self.manifest.display()
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (backup_dir, replaced) = (&self.backup_dir, &self.replaced);
        let sha = self.snapshot_sha256.as_deref();
        create_private_dir(backup_dir)?;
        create_private_dir(replaced)?;
        let staged_snap = backup_dir.join("snapshot.db");
        if self.snapshot.exists() {
            recheck_staged(&self.snapshot, sha, ctx)?;
            set_aside_once(&staged_snap, &replaced.join("snapshot.db"))?;
            if staged_snap.exists() {
                remove_tree(&staged_snap)?; // ours, cut short
            }
            move_path(&self.snapshot, &staged_snap)?;
        } else if staged_snap.exists() {
            // Moved by an earlier attempt, perhaps not yet on disk when it stopped.
            recheck_staged(&staged_snap, sha, ctx)?;
        }
        // The restore pod reads it later, on its own: it must survive a crash.
        if staged_snap.exists() {
            fs::File::open(&staged_snap)?.sync_all()?;
        }
        if let Some(rj) = &self.revision_json
            && rj.exists()
        {
            let dst = backup_dir.join("revision.json");
            set_aside_once(&dst, &replaced.join("revision.json"))?;
            copy_atomically(rj, &dst)?;
        }
        if !self.manifest.exists() {
            copy_atomically(&self.restore_pod, &self.manifest)?;
        }
        Ok(())
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let rb = &ctx.rolled_back;
        let manifest = &self.manifest;
        if manifest.exists() && fs::read(manifest).ok() == fs::read(&self.restore_pod).ok() {
            move_path(manifest, &unique(rb, manifest))?;
        }
        node::wait_gone(&self.watch, &ctx.host_root, ctx.wait_timeout)?;
        if self.data_dir.exists() {
            for e in entries(&self.data_dir)? {
                if !e.starts_with(".cpbackup-") {
                    let p = self.data_dir.join(&e);
                    move_path(&p, &unique(rb, &p))?;
                }
            }
        }
        for f in ["snapshot.db", "revision.json"] {
            let p = self.backup_dir.join(f);
            if p.exists() {
                move_path(&p, &unique(rb, &p))?;
            }
            if self.replaced.join(f).exists() {
                move_path(&self.replaced.join(f), &p)?;
            }
        }
        Ok(())
    }
}
