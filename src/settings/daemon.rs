//! The daemon's settings: the schedule (flags over `[schedule]`), where metrics go, and the
//! backup and retention it runs each slot.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

use super::Settings;
use super::file::FileSchedule;
use super::flags::{BackupSettings, ScheduleFlags};
use crate::daemon::schedule::{Schedule, ScheduleMode, Timing, six_fields};
use crate::daemon::slot::SlotConfig;
use crate::error::usage;

/// Where /metrics and /healthz listen unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9790";

/// Resolves and checks the schedule.
pub fn schedule(args: &ScheduleFlags, file: &FileSchedule) -> anyhow::Result<Schedule> {
    let exprs = if args.schedules.is_empty() {
        file.cron.to_vec()
    } else {
        args.schedules.clone()
    };
    if exprs.is_empty() {
        return Err(usage(
            "no schedule: pass --schedule \"0 */6 * * *\" (repeatable) or set cron = \"0 */6 * * *\" in [schedule]",
        ));
    }
    let crons = exprs
        .iter()
        .map(|e| six_fields(e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tz_name = args
        .timezone
        .clone()
        .or_else(|| file.timezone.clone())
        .unwrap_or_else(|| "UTC".into());
    let tz: Tz = tz_name.parse().map_err(|_| {
        usage(format!(
            "timezone {tz_name:?} is unknown: give an IANA name such as UTC or Europe/Berlin"
        ))
    })?;
    let secs = |v: Option<u64>, name: &str, default: u64, max: u64| {
        let v = v.unwrap_or(default);
        if v > max {
            Err(usage(format!(
                "schedule {name} = {v} is out of range: give 0 to {max} seconds"
            )))
        } else {
            Ok(Duration::from_secs(v))
        }
    };
    let timing = Timing {
        jitter: secs(
            args.jitter.or(file.jitter_seconds),
            "jitter_seconds",
            0,
            86_400,
        )?,
        mode: args.mode.or(file.mode).unwrap_or(ScheduleMode::PerNode),
        retries: file.retries.unwrap_or(3).min(100),
        backoff: secs(
            file.retry_backoff_seconds,
            "retry_backoff_seconds",
            30,
            86_400,
        )?,
        election_ttl: secs(file.election_ttl_seconds, "election_ttl_seconds", 30, 3600)?,
    };
    Schedule::new(crons, tz, timing)
}

/// Everything one slot needs: the backup, the schedule, the retention policy (the file's
/// `[retention]`), the textfile.
pub fn slot_config(
    backup: &BackupSettings,
    sched: &ScheduleFlags,
    textfile: Option<&std::path::Path>,
    s: &Settings,
) -> anyhow::Result<SlotConfig> {
    Ok(SlotConfig {
        job: super::backup::job(backup, s)?,
        schedule: schedule(sched, &s.file.schedule)?,
        retention: s.file.retention.clone(),
        textfile: metrics_textfile(textfile, s),
    })
}

/// The node_exporter textfile: flag, else the file's `[metrics] textfile`.
pub fn metrics_textfile(flag: Option<&std::path::Path>, s: &Settings) -> Option<PathBuf> {
    flag.map(|p| p.to_path_buf())
        .or_else(|| s.file.metrics.textfile.clone())
}

/// Where /metrics and /healthz listen: flag, file, else [`DEFAULT_LISTEN`]; `off` disables.
pub fn metrics_address(flag: Option<&str>, s: &Settings) -> String {
    flag.map(str::to_owned)
        .or_else(|| s.file.metrics.address.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_usage_errors() {
        let mut args = ScheduleFlags::default();
        let e = schedule(&args, &FileSchedule::default()).unwrap_err();
        assert!(e.to_string().contains("--schedule"), "{e}");
        args.schedules = vec!["0 * * * *".into()];
        args.timezone = Some("Mars/Olympus".into());
        let e = schedule(&args, &FileSchedule::default()).unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        args.timezone = None;
        let file = FileSchedule {
            election_ttl_seconds: Some(1),
            ..Default::default()
        };
        let e = schedule(&args, &file).unwrap_err();
        assert!(e.to_string().contains("election_ttl_seconds"), "{e}");
    }
}
