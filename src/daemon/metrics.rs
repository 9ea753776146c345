//! Prometheus metrics: the state behind them, its text exposition, and its persistence.
//!
//! The state is a plain serde struct saved in `<state_dir>/metrics.json` after every backup, so
//! counters and "last success" survive daemon restarts and carry over between the one-shot runs
//! of the systemd timer, whose metrics go to a node_exporter textfile (written atomically).
//! Every failure reason and stage is always exported (at 0), so `rate()` and alerts work before
//! the first failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::backup::{BackupReport, Failure, FailureReason};

/// Upper bounds (seconds) of the duration histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Stages with a duration histogram.
pub const STAGES: [&str; 3] = ["snapshot", "upload", "prune"];

/// What happened to a schedule slot.
pub const SLOT_OUTCOMES: [&str; 4] = ["backed_up", "failed", "taken_by_other_node", "missed"];

const STATE_FILE: &str = "metrics.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    /// Non-cumulative counts per bucket of `BUCKETS`, plus one for +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        if self.counts.len() != BUCKETS.len() + 1 {
            self.counts = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Unix seconds of this node's last backup that reached every store.
    pub last_success: Option<f64>,
    /// Unix seconds of the last successful backup of the cluster by any node (one-per-cluster).
    pub last_cluster_success: Option<f64>,
    pub last_attempt: Option<f64>,
    pub last_attempt_ok: Option<bool>,
    pub backups_ok: u64,
    pub failures: BTreeMap<String, u64>,
    pub durations: BTreeMap<String, Histogram>,
    pub bundle_bytes: Option<u64>,
    pub snapshot_bytes: Option<u64>,
    pub etcd_db_bytes: Option<i64>,
    pub etcd_revision: Option<i64>,
    pub pruned_total: u64,
    pub prune_kept: Option<u64>,
    pub prune_locked: Option<u64>,
    pub prune_failures_total: u64,
    pub pending_uploads: u64,
    pub slots: BTreeMap<String, u64>,
    /// Creation time (Unix seconds) of the newest backup whose stored bytes checked out
    /// against their record and lock, without the key.
    pub last_verified: Option<f64>,
    pub verify_failures_total: u64,
    /// Backups of this cluster listed `tampered` at the last check.
    pub tampered_backups: Option<u64>,
}

/// Values only a running daemon has.
pub struct Live {
    pub schedule_interval_seconds: f64,
    pub healthy: bool,
    pub leader_mode: bool,
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl State {
    /// Loads the saved state; a missing or unreadable file starts from zero (with a warning).
    pub fn load(state_dir: &Path) -> State {
        let path = state_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "metrics state unreadable; starting from zero");
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    /// Saves atomically (temp file + rename), mode 0600.
    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        crate::fsutil::write_atomically(
            &state_dir.join(STATE_FILE),
            &serde_json::to_vec_pretty(self)?,
            0o600,
        )
    }

    /// Records one backup attempt.
    pub fn record_backup(&mut self, result: &Result<BackupReport, Failure>) {
        let now = now_unix();
        self.last_attempt = Some(now);
        match result {
            Ok(r) => {
                self.observe("snapshot", r.snapshot_seconds);
                self.observe("upload", r.upload_seconds);
                self.bundle_bytes = Some(r.bundle_size);
                self.snapshot_bytes = Some(r.snapshot_size);
                self.etcd_db_bytes = Some(r.etcd_db_size);
                self.etcd_revision = Some(r.etcd_revision);
                if r.failed_stores() == 0 {
                    self.last_success = Some(now);
                    self.last_cluster_success = Some(now);
                    self.last_attempt_ok = Some(true);
                    self.backups_ok += 1;
                } else {
                    self.last_attempt_ok = Some(false);
                    self.fail(FailureReason::Store);
                }
            }
            Err(f) => {
                self.last_attempt_ok = Some(false);
                self.fail(f.reason);
            }
        }
    }

    pub fn fail(&mut self, reason: FailureReason) {
        *self.failures.entry(reason.as_str().into()).or_default() += 1;
    }

    pub fn observe(&mut self, stage: &str, seconds: f64) {
        self.durations
            .entry(stage.into())
            .or_default()
            .observe(seconds);
    }

    pub fn slot(&mut self, outcome: &str) {
        *self.slots.entry(outcome.into()).or_default() += 1;
    }

    /// The time health is judged by: this node's last success or, in one-per-cluster mode, the
    /// cluster's.
    pub fn freshest_success(&self) -> Option<f64> {
        match (self.last_success, self.last_cluster_success) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, live: Option<&Live>) -> String {
        let mut o = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(o, "{name}{labels} {}", fmt_value(v));
            }
        };
        let opt = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
        family(
            "cpbackup_info",
            "gauge",
            "Version of the running cpbackup.",
            vec![(
                format!("{{version=\"{}\"}}", escape(crate::TOOL_VERSION)),
                1.0,
            )],
        );
        family(
            "cpbackup_last_success_timestamp_seconds",
            "gauge",
            "Unix time of this node's last backup that reached every store.",
            opt(self.last_success),
        );
        family(
            "cpbackup_cluster_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the cluster's last successful backup by any node (one-per-cluster mode).",
            opt(self.freshest_success()),
        );
        family(
            "cpbackup_last_attempt_timestamp_seconds",
            "gauge",
            "Unix time of this node's last backup attempt.",
            opt(self.last_attempt),
        );
        family(
            "cpbackup_last_attempt_success",
            "gauge",
            "1 if this node's last backup attempt succeeded, 0 if it failed.",
            opt(self.last_attempt_ok.map(|b| if b { 1.0 } else { 0.0 })),
        );
        family(
            "cpbackup_backups_succeeded_total",
            "counter",
            "Backups that reached every store.",
            vec![(String::new(), self.backups_ok as f64)],
        );
        family(
            "cpbackup_backup_failures_total",
            "counter",
            "Failed backup attempts by reason (config, lock, etcd, store, cancelled, election, precheck).",
            FailureReason::ALL
                .iter()
                .map(|r| {
                    (
                        format!("{{reason=\"{}\"}}", r.as_str()),
                        *self.failures.get(r.as_str()).unwrap_or(&0) as f64,
                    )
                })
                .collect(),
        );
        let _ = writeln!(
            o,
            "# HELP cpbackup_stage_duration_seconds Duration of each stage: snapshot (streamed from etcd into the stores), upload (publishing), prune."
        );
        let _ = writeln!(o, "# TYPE cpbackup_stage_duration_seconds histogram");
        let empty = Histogram::default();
        for stage in STAGES {
            let h = self.durations.get(stage).unwrap_or(&empty);
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    o,
                    "cpbackup_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"{}\"}} {cumulative}",
                    fmt_value(*b)
                );
            }
            let _ = writeln!(
                o,
                "cpbackup_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}",
                h.count()
            );
            let _ = writeln!(
                o,
                "cpbackup_stage_duration_seconds_sum{{stage=\"{stage}\"}} {}",
                fmt_value(h.sum)
            );
            let _ = writeln!(
                o,
                "cpbackup_stage_duration_seconds_count{{stage=\"{stage}\"}} {}",
                h.count()
            );
        }
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(o, "{name}{labels} {}", fmt_value(v));
            }
        };
        family(
            "cpbackup_bundle_size_bytes",
            "gauge",
            "Size of the last encrypted bundle.",
            opt(self.bundle_bytes.map(|v| v as f64)),
        );
        family(
            "cpbackup_snapshot_size_bytes",
            "gauge",
            "Size of the last etcd snapshot.",
            opt(self.snapshot_bytes.map(|v| v as f64)),
        );
        family(
            "cpbackup_etcd_db_size_bytes",
            "gauge",
            "etcd's database size (dbSize) at the last backup; compare with the backend quota.",
            opt(self.etcd_db_bytes.map(|v| v as f64)),
        );
        family(
            "cpbackup_etcd_revision",
            "gauge",
            "etcd revision of the last backup.",
            opt(self.etcd_revision.map(|v| v as f64)),
        );
        family(
            "cpbackup_pruned_backups_total",
            "counter",
            "Backups deleted by retention.",
            vec![(String::new(), self.pruned_total as f64)],
        );
        family(
            "cpbackup_prune_failures_total",
            "counter",
            "Backups retention wanted to delete but could not.",
            vec![(String::new(), self.prune_failures_total as f64)],
        );
        family(
            "cpbackup_kept_backups",
            "gauge",
            "Backups kept by the last retention run (all stores).",
            opt(self.prune_kept.map(|v| v as f64)),
        );
        family(
            "cpbackup_locked_backups",
            "gauge",
            "Backups due for deletion but still under Object Lock at the last retention run.",
            opt(self.prune_locked.map(|v| v as f64)),
        );
        family(
            "cpbackup_last_verified_timestamp_seconds",
            "gauge",
            "Creation time of the newest backup whose stored bytes match its record and whose lock holds (checked without the key after each slot).",
            opt(self.last_verified),
        );
        family(
            "cpbackup_verify_failures_total",
            "counter",
            "Backups whose stored bytes did not match their record, or whose lock ran out, at the check after a slot.",
            vec![(String::new(), self.verify_failures_total as f64)],
        );
        family(
            "cpbackup_tampered_backups",
            "gauge",
            "Backups of this cluster whose keys were written again after the backup (the original is still what is read).",
            opt(self.tampered_backups.map(|n| n as f64)),
        );
        family(
            "cpbackup_pending_uploads",
            "gauge",
            "Local copies still waiting to reach a store that failed.",
            vec![(String::new(), self.pending_uploads as f64)],
        );
        family(
            "cpbackup_schedule_slots_total",
            "counter",
            "Schedule slots by outcome (missed: the previous backup was still running).",
            SLOT_OUTCOMES
                .iter()
                .map(|s| {
                    (
                        format!("{{outcome=\"{s}\"}}"),
                        *self.slots.get(*s).unwrap_or(&0) as f64,
                    )
                })
                .collect(),
        );
        if let Some(l) = live {
            family(
                "cpbackup_schedule_interval_seconds",
                "gauge",
                "Shortest interval between two scheduled backups.",
                vec![(String::new(), l.schedule_interval_seconds)],
            );
            family(
                "cpbackup_healthy",
                "gauge",
                "1 while the last success is younger than twice the schedule interval.",
                vec![(String::new(), if l.healthy { 1.0 } else { 0.0 })],
            );
            family(
                "cpbackup_one_per_cluster",
                "gauge",
                "1 when the nodes elect one of them per slot, 0 when every node backs up.",
                vec![(String::new(), if l.leader_mode { 1.0 } else { 0.0 })],
            );
        }
        o
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` to `path` for node_exporter: temp file in the same directory, then rename, so
/// the collector never reads half a file. Mode 0644 (node_exporter runs as another user).
pub fn write_textfile(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::fsutil::write_atomically(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_output() {
        let mut s = State::default();
        s.observe("snapshot", 0.2);
        s.observe("snapshot", 7.0);
        s.observe("snapshot", 99999.0);
        let text = s.render(None);
        assert!(
            text.contains(
                "cpbackup_stage_duration_seconds_bucket{stage=\"snapshot\",le=\"0.5\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "cpbackup_stage_duration_seconds_bucket{stage=\"snapshot\",le=\"10\"} 2\n"
            )
        );
        assert!(text.contains(
            "cpbackup_stage_duration_seconds_bucket{stage=\"snapshot\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("cpbackup_stage_duration_seconds_count{stage=\"prune\"} 0\n"));
    }

    #[test]
    fn output_parses_as_prometheus_text() {
        let mut s = State::default();
        s.fail(FailureReason::Etcd);
        s.last_success = Some(1_700_000_000.5);
        s.slot("missed");
        let text = s.render(Some(&Live {
            schedule_interval_seconds: 60.0,
            healthy: true,
            leader_mode: false,
        }));
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let get = |name: &str, label: Option<(&str, &str)>| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(
            get("cpbackup_backup_failures_total", Some(("reason", "etcd"))),
            Some(1.0)
        );
        assert_eq!(
            get("cpbackup_backup_failures_total", Some(("reason", "store"))),
            Some(0.0)
        );
        assert_eq!(
            get("cpbackup_last_success_timestamp_seconds", None),
            Some(1_700_000_000.5)
        );
        assert_eq!(
            get("cpbackup_schedule_slots_total", Some(("outcome", "missed"))),
            Some(1.0)
        );
        assert_eq!(get("cpbackup_healthy", None), Some(1.0));
    }

    #[test]
    fn state_survives_a_save_and_a_corrupt_file_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.fail(FailureReason::Lock);
        s.last_success = Some(5.0);
        s.save(dir.path()).unwrap();
        let back = State::load(dir.path());
        assert_eq!(back.last_success, Some(5.0));
        assert_eq!(back.failures.get("lock"), Some(&1));
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert_eq!(State::load(dir.path()).last_success, None);
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cpbackup.prom");
        write_textfile(&p, "a 1\n").unwrap();
        write_textfile(&p, "b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }
}
