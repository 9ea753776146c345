//! `restore-snapshot`: the node's etcdutl (or etcdctl) restores the staged snapshot into a
//! scratch directory; its `member/` then moves into etcd's data directory in one rename.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Action, Ctx, StagedSnapshot, recheck_staged, unique};
use crate::restore::fsops::{create_private_dir, move_path, remove_tree};
use crate::snapshot::bump::bump_revision;

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
}

impl Action for RestoreSnapshot {
    fn describe(&self) -> String {
        let bump = self
            .bump_offline
            .map(|n| format!("; cpbackup raises its revision by {n} and marks the older ones compacted (this tool has no --bump-revision)"))
            .unwrap_or_default();
        format!(
            "restore the snapshot: {} {}{bump}; then its member/ into {}",
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
            return Ok(());
        }
        if let Some(s) = &self.staged {
            recheck_staged(&s.path, Some(&s.sha256), ctx)?;
        }
        remove_tree(scratch)?;
        if let Some(p) = scratch.parent() {
            create_private_dir(p)?;
        }
        let started = Instant::now();
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
        tracing::info!(
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
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
        create_private_dir(&self.data_dir)?;
        move_path(&scratch.join("member"), &member)?;
        remove_tree(scratch)
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let member = self.data_dir.join("member");
        if member.exists() {
            move_path(&member, &unique(&ctx.rolled_back, &member))?;
        }
        remove_tree(&self.scratch)
    }
}
