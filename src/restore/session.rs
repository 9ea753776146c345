//! One restore invocation on this node: the node lock, the journal of the last operation, and
//! the operations on it — continue, roll back, stop etcd (`--disable-etcd`), or start a new
//! journal. The whole-cluster restore from a backup is [`super::whole`].
//!
//! What the operator sees and answers (the plan, the confirmation) goes through [`Ui`], so the
//! engine never reads a terminal itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::journal::{Invocation, Journal, JournalStep, Operation, Outcome, StepState};
use super::steps::{Ctx, Step};
use super::{fsops, plan, rollback, run_steps};
use crate::error::usage;
use crate::host::EtcdSettings;
use crate::host::{HostRoot, Platform};
use crate::lock::NodeLock;

/// How a restore talks to the operator.
pub trait Ui {
    /// Shows a plan before it runs (`dry_run`: it will not).
    fn plan(&self, journal: &Journal, dry_run: bool) -> anyhow::Result<()>;
    /// Asks before a change; an error means "no".
    fn confirm(&self, what: &str) -> anyhow::Result<()>;
    /// A line of progress or advice.
    fn say(&self, line: &str);
    /// Whether step progress is shown.
    fn quiet(&self) -> bool;
}

/// The node lock held, the last journal loaded, decrypted leftovers removed.
pub struct Session {
    /// The host being restored.
    pub host: HostRoot,
    /// `<state dir>/restore`: the journal and each operation's work directory.
    pub restore_dir: PathBuf,
    /// The last operation's journal, if any.
    pub existing: Option<Journal>,
    wait_timeout: Duration,
    /// How this command was started (host root, state dir), for the hints.
    pub invocation: Invocation,
    _lock: NodeLock,
}

impl Session {
    /// Takes the node lock and loads the journal.
    pub fn open(host: HostRoot, state_dir: &Path, wait_timeout: Duration) -> anyhow::Result<Self> {
        let restore_dir = state_dir.join("restore");
        let lock = NodeLock::acquire(state_dir, "restore")?;
        let existing = Journal::load(&restore_dir)?;
        remove_stale_staging(&restore_dir, existing.as_ref().filter(|j| j.in_progress()));
        let invocation = Invocation {
            host_root: (host.root() != Path::new("/")).then(|| host.root().to_path_buf()),
            state_dir: (state_dir != host.path("/var/lib/cpbackup"))
                .then(|| state_dir.to_path_buf()),
        };
        Ok(Session {
            host,
            restore_dir,
            existing,
            wait_timeout,
            invocation,
            _lock: lock,
        })
    }

    /// What the steps of `j` need; `staging_verified` when this process unpacked the bundle.
    pub fn ctx(&self, j: &Journal, staging_verified: bool) -> Ctx {
        Ctx {
            host_root: self.host.root().to_path_buf(),
            staging_verified,
            wait_timeout: self.wait_timeout,
            rolled_back: j.work_dir.join("rolled-back"),
            continue_cmd: self.invocation.command("--continue"),
            rollback_cmd: self.invocation.command("--rollback"),
        }
    }

    /// Runs the steps of `j` not yet done.
    pub fn run(&self, j: &mut Journal, staging_verified: bool, ui: &dyn Ui) -> anyhow::Result<()> {
        if j.invocation == Invocation::default() {
            j.invocation = self.invocation.clone(); // remember how it was started
        }
        let ctx = self.ctx(j, staging_verified);
        run_steps(j, &self.restore_dir, &ctx, ui.quiet())
    }

    /// `--continue`: finishes the unfinished operation; returns its journal.
    pub fn resume(mut self, ui: &dyn Ui, etcd: &EtcdSettings) -> anyhow::Result<Journal> {
        let journal = Journal::path(&self.restore_dir);
        let mut j = self.existing.take().filter(Journal::in_progress).ok_or_else(|| {
            usage(format!(
                "no restore is in progress here: {} {}. If it ran with --host-root or --state-dir, pass the same ones",
                journal.display(),
                if journal.exists() { "records no unfinished operation" } else { "does not exist" }
            ))
        })?;
        let left = j
            .steps
            .iter()
            .filter(|s| s.state != StepState::Done)
            .count();
        ui.say(&format!(
            "continuing {} {}: {left} step(s) left",
            j.operation.as_str(),
            j.id
        ));
        for s in j.steps.iter_mut().filter(|s| s.state != StepState::Done) {
            s.step.retarget(etcd);
        }
        self.run(&mut j, false, ui)?;
        Ok(j)
    }

    /// `--rollback`: undoes the last operation's steps, newest first (`dry_run`: lists them).
    pub fn roll_back(mut self, dry_run: bool, ui: &dyn Ui) -> anyhow::Result<()> {
        let mut j = self
            .existing
            .take()
            .filter(|j| j.outcome != Some(Outcome::RolledBack))
            .ok_or_else(|| {
                let journal = Journal::path(&self.restore_dir);
                usage(format!(
                    "no restore to roll back here: {} {}. If it ran with --host-root or --state-dir, pass the same ones",
                    journal.display(),
                    if journal.exists() { "says it was rolled back already" } else { "does not exist" }
                ))
            })?;
        let undo: Vec<(usize, &Step)> = j
            .steps
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, s)| matches!(s.state, StepState::Running | StepState::Done))
            .map(|(i, s)| (i + 1, &s.step))
            .collect();
        ui.say(&format!(
            "rolling back {} {}: {} step(s) to undo",
            j.operation.as_str(),
            j.id,
            undo.len()
        ));
        let n = j.steps.len();
        for (i, s) in &undo {
            ui.say(&format!("  [undo {i}/{n}] {}", s.describe()));
        }
        if dry_run {
            return Ok(());
        }
        if j.outcome == Some(Outcome::Completed) {
            ui.say(match j.operation {
                Operation::Restore => "WARNING: this restore completed; rolling back discards every write made to the restored etcd since.",
                Operation::Rejoin => "this rejoin completed; rolling back removes this node's member from the restored cluster and puts back its old data and manifests.",
                Operation::DisableEtcd => "rolling back starts this node's etcd (and API server) again on its own data.",
            });
        }
        ui.confirm("roll back")?;
        let ctx = self.ctx(&j, false);
        rollback(&mut j, &self.restore_dir, &ctx, ui.quiet())?;
        remove_stale_staging(&self.restore_dir, None);
        ui.say("rolled back: the node's original manifests, files and etcd data are back in place");
        Ok(())
    }

    /// Refuses a new operation while the last one is unfinished.
    pub fn refuse_if_unfinished(&self) -> anyhow::Result<()> {
        match self.existing.as_ref().filter(|j| j.in_progress()) {
            None => Ok(()),
            Some(j) => Err(usage(format!(
                "a {} ({}) is unfinished on this node (journal {}): finish it with `{}` or undo it with `{}`",
                j.operation.as_str(),
                j.id,
                Journal::path(&self.restore_dir).display(),
                self.invocation.command("--continue"),
                self.invocation.command("--rollback")
            ))),
        }
    }

    /// A new operation's id (its UTC time) and work directory.
    pub fn new_id(&self) -> anyhow::Result<(String, PathBuf)> {
        let id = time::OffsetDateTime::now_utc().format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))?;
        let work_dir = self.restore_dir.join(&id);
        Ok((id, work_dir))
    }

    /// `--disable-etcd`: stops etcd (kubeadm: and the API server) on this master.
    pub fn disable_etcd(
        &self,
        platform: Platform,
        dry_run: bool,
        ui: &dyn Ui,
    ) -> anyhow::Result<()> {
        let (id, work_dir) = self.new_id()?;
        let steps = plan::disable_etcd(&self.host, platform, &work_dir)?;
        let mut j = new_journal(
            &id,
            Operation::DisableEtcd,
            None,
            platform,
            &work_dir,
            steps,
        );
        ui.plan(&j, dry_run)?;
        if dry_run {
            return Ok(());
        }
        ui.confirm("stop etcd on this node")?;
        self.run(&mut j, false, ui)?;
        ui.say(&format!(
            "etcd is stopped on this node (its manifest is in {}). Now restore on the recovery master; \
             `{}` here starts etcd again.",
            work_dir.join("manifests-stopped").display(),
            self.invocation.command("--rollback")
        ));
        Ok(())
    }
}

/// A journal of `steps`, none run yet.
pub fn new_journal(
    id: &str,
    operation: Operation,
    backup: Option<&str>,
    platform: Platform,
    work_dir: &Path,
    steps: Vec<Step>,
) -> Journal {
    Journal {
        version: 1,
        id: id.to_owned(),
        operation,
        created: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        backup: backup.map(str::to_owned),
        platform,
        work_dir: work_dir.to_path_buf(),
        steps: steps
            .into_iter()
            .map(|step| JournalStep {
                step,
                state: StepState::Pending,
            })
            .collect(),
        outcome: None,
        invocation: Invocation::default(),
        changes: Vec::new(),
    }
}

/// Removes decrypted staging directories (`<restore dir>/<id>/staged`) that no unfinished
/// journal needs: what a restore killed while unpacking, or one rolled back, left behind.
fn remove_stale_staging(restore_dir: &Path, keep: Option<&Journal>) {
    let Ok(dirs) = std::fs::read_dir(restore_dir) else {
        return;
    };
    for d in dirs.flatten() {
        let work = d.path();
        let staged = work.join("staged");
        if keep.is_some_and(|j| j.work_dir == work)
            || !staged.symlink_metadata().is_ok_and(|m| m.is_dir())
        {
            continue;
        }
        match fsops::remove_tree(&staged) {
            Ok(()) => {
                eprintln!(
                    "removed {}: decrypted backup content left by an interrupted or rolled-back restore",
                    staged.display()
                );
                if fsops::is_empty_dir(&work) {
                    let _ = std::fs::remove_dir(&work);
                }
            }
            Err(e) => eprintln!(
                "WARNING: cannot remove the decrypted staging directory {}: {e:#}; remove it by hand",
                staged.display()
            ),
        }
    }
}
