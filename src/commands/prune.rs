//! `cpbackup prune`: the retention policy from flags and config, one pass over every store
//! (`store::retention::apply`), and its report.

use crate::cli::PruneArgs;
use crate::commands::open_stores;
use crate::config::{self, FileConfig};
use crate::output;
use crate::output::OutputFormat;
use crate::store::retention::Policy;
use crate::store::retention::apply::{Action, Pruned, Scope, apply};

/// The retention policy: flags over the config file's `[retention]`.
pub fn policy(args: &PruneArgs, file: &FileConfig) -> Policy {
    let f = &file.retention;
    Policy {
        keep_last: args.keep_last.or(f.keep_last),
        keep_hourly: args.keep_hourly.or(f.keep_hourly),
        keep_daily: args.keep_daily.or(f.keep_daily),
        keep_weekly: args.keep_weekly.or(f.keep_weekly),
        keep_monthly: args.keep_monthly.or(f.keep_monthly),
        max_age_days: args.max_age_days.or(f.max_age_days),
    }
}

pub fn run(args: &PruneArgs, file: &FileConfig, format: OutputFormat) -> anyhow::Result<()> {
    let policy = policy(args, file);
    if policy.is_empty() {
        tracing::warn!(
            "no retention rule configured (--keep-* or --max-age-days, or [retention]): nothing will be deleted"
        );
    }
    let stores = open_stores(&config::resolve_stores(&args.stores, file)?)?;
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
    output::emit(format, &rows, |rows| {
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
