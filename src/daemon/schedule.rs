//! The daemon's schedule: cron expressions in a time zone, jitter, retries, and the slot a tick
//! belongs to.
//!
//! Expressions are checked here with `croner` using the same dialect `tokio-cron-scheduler`
//! fires with (seconds first; a 5-field expression gets second 0; day-of-month AND day-of-week
//! must both match when both are given). The slot of a tick is the scheduled time itself, not
//! the moment the tick fired, so every master names the same slot the same way.

use clap::ValueEnum;
use std::time::Duration;

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::error::usage;

/// How the masters of one cluster share the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleMode {
    /// Every node backs up its own etcd member in every slot.
    PerNode,
    /// One node per slot, elected through etcd; another takes over if it fails or dies.
    OnePerCluster,
}

impl ScheduleMode {
    /// The value as flags and the config file write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleMode::PerNode => "per-node",
            ScheduleMode::OnePerCluster => "one-per-cluster",
        }
    }
}

/// A tick is matched to a scheduled time at most this far before it.
const SLOT_TOLERANCE: chrono::Duration = chrono::Duration::seconds(30);

/// When the daemon backs up and how its slots run.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Six-field expressions, as the scheduler takes them.
    pub crons: Vec<String>,
    parsed: Vec<Cron>,
    /// The time zone the expressions are read in.
    pub tz: Tz,
    /// Random delay 0..jitter after each scheduled time.
    pub jitter: Duration,
    /// How the masters share the slots.
    pub mode: ScheduleMode,
    /// Extra attempts after a failed backup, within the slot.
    pub retries: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
    /// Lease of the one-per-cluster lock.
    pub election_ttl: Duration,
}

/// How a schedule's slots run: jitter, mode, retries, election lease.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Random delay 0..jitter after each scheduled time.
    pub jitter: Duration,
    /// How the masters share the slots.
    pub mode: ScheduleMode,
    /// Extra attempts after a failed backup within a slot.
    pub retries: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
    /// Lease of the one-per-cluster lock.
    pub election_ttl: Duration,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
}

/// `m h dom mon dow` → `0 m h dom mon dow`; six fields stay; cron's `@hourly`, `@daily`
/// (`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) are what cron means by them.
/// Anything else is an error.
pub fn six_fields(expr: &str) -> anyhow::Result<String> {
    let expr = match expr.trim() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        other => other,
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let six = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 => fields.join(" "),
        n => {
            return Err(usage(format!(
                "schedule {expr:?} has {n} fields: write 5 (minute hour day-of-month month day-of-week, e.g. \"0 */6 * * *\") or 6 with seconds first"
            )));
        }
    };
    parser().parse(&six).map_err(|e| {
        usage(format!(
            "schedule {expr:?} is not a valid cron expression ({e}); e.g. \"0 */6 * * *\" is every 6 hours"
        ))
    })?;
    Ok(six)
}

impl Schedule {
    /// A schedule of six-field expressions (checked by [`six_fields`]) in `tz`.
    pub fn new(crons: Vec<String>, tz: Tz, timing: Timing) -> anyhow::Result<Self> {
        let parsed = crons
            .iter()
            .map(|c| parser().parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage(format!("invalid cron expression: {e}")))?;
        if timing.election_ttl < Duration::from_secs(2) {
            return Err(usage(
                "schedule election_ttl_seconds must be at least 2: the lock's lease is renewed every third of it",
            ));
        }
        Ok(Schedule {
            crons,
            parsed,
            tz,
            jitter: timing.jitter,
            mode: timing.mode,
            retries: timing.retries,
            backoff: timing.backoff,
            election_ttl: timing.election_ttl,
        })
    }

    /// The scheduled time a tick fired at `now` belongs to: the latest occurrence not after
    /// `now` (plus a second of clock slack) and at most 30 s before it.
    pub fn slot_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = whole_seconds(now + chrono::Duration::seconds(1)).with_timezone(&self.tz);
        self.parsed
            .iter()
            .filter_map(|c| c.find_previous_occurrence(&at, true).ok())
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| now - *t <= SLOT_TOLERANCE)
            .max()
    }

    /// The next scheduled time after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = whole_seconds(t).with_timezone(&self.tz);
        self.parsed
            .iter()
            .filter_map(|c| c.find_next_occurrence(&at, false).ok())
            .map(|t| t.with_timezone(&Utc))
            .min()
    }

    /// The shortest gap between two scheduled times over the next 100 of them (health is judged
    /// against twice this).
    pub fn interval(&self, from: DateTime<Utc>) -> Duration {
        let mut t = from;
        let mut shortest: Option<chrono::Duration> = None;
        let mut prev = None;
        for _ in 0..100 {
            let Some(n) = self.next_after(t) else { break };
            if let Some(p) = prev {
                let gap = n - p;
                shortest = Some(shortest.map_or(gap, |s: chrono::Duration| s.min(gap)));
            }
            prev = Some(n);
            t = n;
        }
        shortest
            .and_then(|d| d.to_std().ok())
            .unwrap_or(Duration::from_secs(86_400))
    }

    /// The zone's current UTC offset; the scheduler fixes it when a job is created, so jobs
    /// are re-created when it changes (daylight saving).
    pub fn utc_offset_seconds(&self, now: DateTime<Utc>) -> i32 {
        self.tz
            .offset_from_utc_datetime(&now.naive_utc())
            .fix()
            .local_minus_utc()
    }
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

/// RFC 3339, seconds precision, UTC: how slots are named in etcd, records and logs.
pub fn slot_name(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(exprs: &[&str], tz: &str) -> Schedule {
        let flags = crate::settings::flags::ScheduleFlags {
            schedules: exprs.iter().map(|s| s.to_string()).collect(),
            timezone: Some(tz.into()),
            ..Default::default()
        };
        crate::settings::daemon::schedule(&flags, &Default::default()).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields() {
        assert_eq!(six_fields("0 */6 * * *").unwrap(), "0 0 */6 * * *");
        assert_eq!(six_fields("*/5 * * * * *").unwrap(), "*/5 * * * * *");
        assert_eq!(six_fields("@daily").unwrap(), "0 0 0 * * *");
        assert_eq!(six_fields("@hourly").unwrap(), "0 0 * * * *");
        assert_eq!(six_fields("@weekly").unwrap(), "0 0 0 * * 0");
        assert!(six_fields("@sometimes").is_err());
        for bad in ["* * *", "61 * * * *", "0 0 * * * * * *", "every day"] {
            let e = six_fields(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
        }
    }

    #[test]
    fn slot_is_the_scheduled_time_not_the_tick() {
        let s = sched(&["0 */6 * * *"], "UTC");
        assert_eq!(
            s.slot_at(at("2026-11-23T06:00:00.700Z")),
            Some(at("2026-11-23T06:00:00Z"))
        );
        // a tick a hair early (clock skew) still names the same slot
        assert_eq!(
            s.slot_at(at("2026-11-23T05:59:59.600Z")),
            Some(at("2026-11-23T06:00:00Z"))
        );
        // far from any scheduled time: no slot (a spurious tick)
        assert_eq!(s.slot_at(at("2026-11-23T07:00:00Z")), None);
    }

    #[test]
    fn interval_and_time_zone() {
        let s = sched(&["0 2 * * *"], "Europe/Berlin");
        // 02:00 in Berlin is 01:00 UTC in winter
        assert_eq!(
            s.next_after(at("2026-11-23T00:00:00Z")),
            Some(at("2026-11-23T01:00:00Z"))
        );
        assert_eq!(
            s.interval(at("2026-11-23T00:00:00Z")),
            Duration::from_secs(86_400)
        );
        let several = sched(&["0 0 * * *", "0 12 * * *", "*/10 * * * * *"], "UTC");
        assert_eq!(
            several.interval(at("2026-11-23T00:00:00Z")),
            Duration::from_secs(10)
        );
        assert_ne!(
            s.utc_offset_seconds(at("2026-07-01T00:00:00Z")),
            s.utc_offset_seconds(at("2026-11-23T00:00:00Z"))
        );
    }
}
