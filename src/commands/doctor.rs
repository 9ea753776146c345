//! `cpbackup doctor`: the node's checks (the engine is `crate::doctor`), as a table for people
//! or JSON for machines; exit 1 when one failed.

use std::time::Duration;

use crate::cli::DoctorArgs;
use crate::doctor::{self, Options, Report, Status};
use crate::keys::Recipients;
use crate::output;
use crate::settings::{self, Settings};

/// A newest backup older than this warns when no schedule is configured (a daily timer, plus
/// a day of slack).
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2 * 86_400);

/// `cpbackup doctor`.
pub fn run(args: &DoctorArgs, s: &Settings) -> anyhow::Result<()> {
    let recipients = settings::backup::recipients(&args.settings, s);
    let job = settings::backup::job_with(&args.settings, s, Recipients { keys: Vec::new() })?;
    let max_backup_age = settings::daemon::schedule(&Default::default(), &s.file.schedule)
        .map(|sched| 2 * sched.interval(chrono::Utc::now()))
        .unwrap_or(DEFAULT_MAX_AGE);
    let opts = Options {
        recipients,
        warn_days: args.warn_days,
        write_probe: !args.no_write_probe,
        max_skew_seconds: args.max_clock_skew as i64,
        max_backup_age,
    };
    let report = doctor::run(&job, &opts);
    output::emit(s.output, "DoctorReport", &report, text).map_err(output::stdout_error)?;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("{} check(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

fn text(r: &Report) -> String {
    let width = r.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in &r.checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.status.label(),
            c.name,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let count = |st: Status| r.checks.iter().filter(|c| c.status == st).count();
    out.push_str(&format!(
        "\n{} OK, {} WARN, {} FAIL\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}
