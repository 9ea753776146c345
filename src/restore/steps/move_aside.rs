//! `move-aside` and `move-contents`: etcd's data directory (or everything in it) kept aside,
//! never deleted, and put back on undo.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Action, Ctx, entries, unique};
use crate::restore::fsops::{create_private_dir, is_empty_dir, move_path};

/// Rename a directory aside (the etcd data directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveAside {
    /// The directory.
    pub from: PathBuf,
    /// Where it is kept.
    pub to: PathBuf,
}

impl Action for MoveAside {
    fn describe(&self) -> String {
        format!(
            "move the etcd data directory {} aside to {} (kept, never deleted)",
            self.from.display(),
            self.to.display()
        )
    }

    fn run(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        match (self.from.exists(), self.to.exists()) {
            (true, false) => move_path(&self.from, &self.to)?,
            (false, _) => {}
            (true, true) => anyhow::bail!(
                "both {} and {} exist; move one of them away by hand, then --continue",
                self.from.display(),
                self.to.display()
            ),
        }
        Ok(())
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (from, to) = (&self.from, &self.to);
        if to.exists() {
            if from.exists() {
                if is_empty_dir(from) {
                    fs::remove_dir(from)?;
                } else {
                    move_path(from, &unique(&ctx.rolled_back, from))?;
                }
            }
            move_path(to, from)?;
        }
        Ok(())
    }
}

/// Move every entry of a directory into another (a data directory that is a mount point, or
/// OpenShift's, which its restore pod wants empty). Entries named `.cpbackup-*` stay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveContents {
    /// The directory emptied.
    pub from: PathBuf,
    /// Where its entries are kept.
    pub to: PathBuf,
}

impl Action for MoveContents {
    fn describe(&self) -> String {
        format!(
            "move everything in {} to {} (kept, never deleted)",
            self.from.display(),
            self.to.display()
        )
    }

    fn run(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        create_private_dir(&self.to)?;
        for e in entries(&self.from)? {
            if e.starts_with(".cpbackup-") || self.from.join(&e) == self.to {
                continue;
            }
            move_path(&self.from.join(&e), &self.to.join(&e))?;
        }
        Ok(())
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (from, to) = (&self.from, &self.to);
        if to.exists() {
            for e in entries(to)? {
                if from.join(&e).symlink_metadata().is_ok() {
                    move_path(&from.join(&e), &unique(&ctx.rolled_back, &from.join(&e)))?;
                }
                move_path(&to.join(&e), &from.join(&e))?;
            }
            fs::remove_dir(to)?;
        }
        Ok(())
    }
}
