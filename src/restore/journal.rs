//! The restore journal: the plan and the state of every step, written (atomically, fsynced)
//! before and after each step, so a restore killed at any point can be continued or undone.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::restore::steps::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    /// Started and not known to have finished: it may be half done.
    Running,
    Done,
    /// Undone by --rollback.
    Undone,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalStep {
    #[serde(flatten)]
    pub step: Step,
    pub state: StepState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Restore,
    DisableEtcd,
    Rejoin,
}

impl Operation {
    /// How messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Restore => "restore",
            Operation::DisableEtcd => "disable-etcd",
            Operation::Rejoin => "rejoin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Completed,
    RolledBack,
}

/// How the operation was started, so every hint prints the command to copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// `--host-root`, when not `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_root: Option<PathBuf>,
    /// `--state-dir`, when not the default under the host root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

impl Invocation {
    /// `cpbackup [--host-root R] restore [--state-dir D] <what>`.
    pub fn command(&self, what: &str) -> String {
        let mut c = String::from("cpbackup");
        if let Some(r) = &self.host_root {
            c.push_str(&format!(" --host-root {}", r.display()));
        }
        c.push_str(" restore");
        if let Some(d) = &self.state_dir {
            c.push_str(&format!(" --state-dir {}", d.display()));
        }
        format!("{c} {what}")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub id: String,
    pub operation: Operation,
    pub created: String,
    /// The backup restored (name or path).
    pub backup: Option<String>,
    pub platform: crate::host::Platform,
    /// Private directory of this restore: staged bundle, manifests and files moved aside.
    pub work_dir: PathBuf,
    pub steps: Vec<JournalStep>,
    pub outcome: Option<Outcome>,
    /// How it was started (journals written before this field have none).
    #[serde(default)]
    pub invocation: Invocation,
    /// What the restore changes besides its steps (`--new-host`: certificates re-issued, lines
    /// of manifests and kubeconfigs rewritten, keys deleted), for the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

pub const JOURNAL_FILE: &str = "journal.json";

impl Journal {
    pub fn path(restore_dir: &Path) -> PathBuf {
        restore_dir.join(JOURNAL_FILE)
    }

    pub fn load(restore_dir: &Path) -> anyhow::Result<Option<Journal>> {
        let p = Self::path(restore_dir);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("the restore journal {} is unreadable", p.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Writes the journal atomically (temp file, fsync, rename, directory fsync), mode 0600.
    pub fn save(&self, restore_dir: &Path) -> anyhow::Result<()> {
        crate::restore::fsops::create_private_dir(restore_dir)?;
        crate::fsutil::write_atomically(
            &Self::path(restore_dir),
            &serde_json::to_vec_pretty(self)?,
            0o600,
        )
        .context("writing the restore journal")
    }

    pub fn in_progress(&self) -> bool {
        self.outcome.is_none()
    }
}
