//! Whole-cluster restore on a control-plane node (and, for the other masters, `--disable-etcd`
//! before it and `--rejoin` after it).
//!
//! A restore is computed first (`plan`), printed, then run step by step (`steps`) with every
//! step recorded in a journal (`journal`) before and after it runs, so a restore killed at any
//! point can be continued (`--continue`) or undone (`--rollback`). The bundle is unpacked and
//! verified into a private work directory before the plan runs, so a wrong key or a corrupt
//! bundle stops before anything on the node is touched.

pub mod fsops;
pub mod journal;
pub mod newhost;
pub mod node;
pub mod plan;
pub mod platform;
pub mod post;
pub mod rejoin;
pub mod rejoin_new_host;
pub mod session;
pub mod steps;
pub mod tools;
pub mod whole;

use clap::ValueEnum;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;

use journal::{Journal, Outcome, StepState};
use steps::Ctx;

/// Which restore procedure to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestorePlatform {
    Auto,
    Openshift,
    Kubeadm,
}

/// Test hook: `CPBACKUP_RESTORE_FAILPOINT=<step>:<before|after>` ends the process (exit 137,
/// no clean-up, like a kill) at that point of that step (1-based).
fn failpoint(step: usize, when: &str) {
    if let Ok(v) = std::env::var("CPBACKUP_RESTORE_FAILPOINT")
        && v == format!("{step}:{when}")
    {
        eprintln!("cpbackup: failpoint {v}: exiting as if killed");
        std::process::exit(137);
    }
}

/// Runs every step not yet done, recording each in the journal.
pub fn run_steps(
    j: &mut Journal,
    restore_dir: &Path,
    ctx: &Ctx,
    quiet: bool,
) -> anyhow::Result<()> {
    let n = j.steps.len();
    for i in 0..n {
        if j.steps[i].state == StepState::Done {
            continue;
        }
        let what = j.steps[i].step.describe();
        let terminal = std::io::stderr().is_terminal();
        if terminal && !quiet {
            eprintln!("[{}/{n}] {what}", i + 1);
        } else {
            tracing::info!(step = i + 1, of = n, "{what}");
        }
        j.steps[i].state = StepState::Running;
        j.save(restore_dir)?;
        failpoint(i + 1, "before");
        let started = std::time::Instant::now();
        j.steps[i].step.run(ctx).with_context(|| {
            format!(
                "step {}/{n} failed ({what}). The journal {} records how far it got: \
                 fix the cause and run `{}`, or undo it with `{}`",
                i + 1,
                Journal::path(restore_dir).display(),
                ctx.continue_cmd,
                ctx.rollback_cmd
            )
        })?;
        let seconds = crate::logging::seconds(started.elapsed().as_secs_f64());
        // Said once: `[i/n] …` on a terminal, structured log lines elsewhere (journald, files),
        // where a step that hangs must show which one started.
        if terminal {
            tracing::debug!(step = i + 1, of = n, seconds, "step done");
        } else {
            tracing::info!(step = i + 1, of = n, seconds, "step done");
        }
        j.steps[i].state = StepState::Done;
        j.save(restore_dir)?;
        failpoint(i + 1, "after");
    }
    j.outcome = Some(Outcome::Completed);
    j.save(restore_dir)
}

/// Undoes every step that ran or started, newest first.
pub fn rollback(j: &mut Journal, restore_dir: &Path, ctx: &Ctx, quiet: bool) -> anyhow::Result<()> {
    let n = j.steps.len();
    for i in (0..n).rev() {
        if !matches!(j.steps[i].state, StepState::Running | StepState::Done) {
            continue;
        }
        if !quiet {
            eprintln!("[undo {}/{n}] {}", i + 1, j.steps[i].step.describe());
        }
        j.steps[i].step.undo(ctx).with_context(|| {
            format!(
                "undoing step {}/{n} failed; fix the cause and run `{}` again",
                i + 1,
                ctx.rollback_cmd
            )
        })?;
        j.steps[i].state = StepState::Undone;
        j.save(restore_dir)?;
    }
    fsops::remove_tree(&j.work_dir.join("staged"))?;
    j.outcome = Some(Outcome::RolledBack);
    j.save(restore_dir)
}
