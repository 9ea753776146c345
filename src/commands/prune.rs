//! `cpbackup prune`: the retention policy from flags and config, one pass over every store
//! (`store::retention::apply`), and its report.

use crate::cli::PruneArgs;
use crate::output;
use crate::settings::{self, Settings};
use crate::store::retention::apply::{Action, Pruned, Scope, apply};

/// One prune pass over every store (or its plan, with `--dry-run`).
pub fn run(args: &PruneArgs, s: &Settings) -> anyhow::Result<()> {
    let policy = settings::backup::retention(&args.retention, s);
    if policy.is_empty() {
        tracing::warn!(
            "no retention rule configured (--keep-* or --max-age-days, or [retention]): nothing will be deleted"
        );
    }
    let stores = crate::store::open_all(&s.stores(&args.stores)?)?;
    let Pruned { rows, failures } = apply(&stores, &policy, args.dry_run, &Scope::default())?;
    let locked = rows.iter().filter(|r| r.action == Action::Locked).count();
    tracing::info!(
        deleted = rows.iter().filter(|r| r.action == Action::Deleted).count(),
        kept = rows.iter().filter(|r| r.action == Action::Keep).count(),
        locked,
        failed = failures,
        dry_run = args.dry_run,
        "prune finished"
    );
    output::emit_each(s.output, "PruneDecision", &rows, |rows| {
        if rows.is_empty() {
            return "no backups".into();
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.action.as_str().to_owned(),
                    r.backup.clone(),
                    r.store.clone(),
                    r.reason.clone(),
                ]
            })
            .collect();
        output::table(&["ACTION", "BACKUP", "STORE", "REASON"], &table)
    })?;
    if failures > 0 {
        anyhow::bail!("{failures} backup(s) could not be deleted");
    }
    Ok(())
}
