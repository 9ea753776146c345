//! `place-files`: the backup's static pod resources put on the host, what they replace kept
//! in `replaced` (or marked `.absent`), and put back on undo.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Action, Ctx, entries, unique};
use crate::restore::fsops::{create_private_dir, move_path, remove_tree};

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

/// Put staged static pod resources on the host; whatever they replace goes to `replaced`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceFiles {
    /// The staged entries.
    pub staged: PathBuf,
    /// The host directory they go to.
    pub target: PathBuf,
    /// Where what they replace is kept.
    pub replaced: PathBuf,
    /// Which entries.
    pub select: Selection,
}

impl Action for PlaceFiles {
    fn describe(&self) -> String {
        format!(
            "put the backup's static pod resources into {} (what they replace goes to {})",
            self.target.display(),
            self.replaced.display()
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (target, replaced) = (&self.target, &self.replaced);
        // Again at run time (a --continue may come much later): never through a link.
        crate::beneath::real_dir_below(&ctx.host_root, target).with_context(|| {
            format!(
                "{} must be a real directory (no symlink on the way); fix it, then --continue or --rollback",
                target.display()
            )
        })?;
        create_private_dir(replaced)?;
        for e in entries(&self.staged)? {
            if !self.select.wants(&e) {
                continue;
            }
            let (src, dst) = (self.staged.join(&e), target.join(&e));
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

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if !self.replaced.exists() {
            return Ok(());
        }
        for e in entries(&self.replaced)? {
            let (name, absent) = match e.strip_suffix(".absent") {
                Some(n) => (n.to_owned(), true),
                None => (e.clone(), false),
            };
            let dst = self.target.join(&name);
            if dst.symlink_metadata().is_ok() {
                move_path(&dst, &unique(&ctx.rolled_back, &dst))?;
            }
            if absent {
                fs::remove_file(self.replaced.join(&e))?;
            } else {
                move_path(&self.replaced.join(&e), &dst)?;
            }
        }
        Ok(())
    }
}
