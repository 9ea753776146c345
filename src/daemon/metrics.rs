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

/// A stage with a duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Streaming the snapshot from etcd into the stores.
    Snapshot,
    /// Publishing: records, lock read-back, completing uploads.
    Upload,
    /// A retention pass.
    Prune,
}

impl Stage {
    /// Every stage, in the order they are exported.
    pub const ALL: [Stage; 3] = [Stage::Snapshot, Stage::Upload, Stage::Prune];

    /// The `stage` label value (and the key in the saved state).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Snapshot => "snapshot",
            Stage::Upload => "upload",
            Stage::Prune => "prune",
        }
    }
}

/// What happened to a schedule slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// This node backed up, to every store.
    BackedUp,
    /// The backup failed (or reached only some stores).
    Failed,
    /// Another node won the slot's election.
    TakenByOtherNode,
    /// The previous backup was still running.
    Missed,
}

impl SlotOutcome {
    /// Every outcome, in the order they are exported.
    pub const ALL: [SlotOutcome; 4] = [
        SlotOutcome::BackedUp,
        SlotOutcome::Failed,
        SlotOutcome::TakenByOtherNode,
        SlotOutcome::Missed,
    ];

    /// The `outcome` label value (and the key in the saved state).
    pub fn as_str(self) -> &'static str {
        match self {
            SlotOutcome::BackedUp => "backed_up",
            SlotOutcome::Failed => "failed",
            SlotOutcome::TakenByOtherNode => "taken_by_other_node",
            SlotOutcome::Missed => "missed",
        }
    }
}

const STATE_FILE: &str = "metrics.json";

/// A duration histogram as saved: counts per bucket of [`BUCKETS`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    /// Non-cumulative counts per bucket of `BUCKETS`, plus one for +Inf.
    pub counts: Vec<u64>,
    /// Sum of every value observed.
    pub sum: f64,
}

impl Histogram {
    /// Counts one value.
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

/// What the metrics say, saved in `<state_dir>/metrics.json` between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Unix seconds of this node's last backup that reached every store.
    pub last_success: Option<f64>,
    /// Unix seconds of the last successful backup of the cluster by any node (one-per-cluster).
    pub last_cluster_success: Option<f64>,
    /// Unix seconds of this node's last backup attempt.
    pub last_attempt: Option<f64>,
    /// Whether that attempt reached every store.
    pub last_attempt_ok: Option<bool>,
    /// Backups that reached every store.
    pub backups_ok: u64,
    /// Failed attempts by [`FailureReason`] label.
    pub failures: BTreeMap<String, u64>,
    /// Duration histograms by [`Stage`] label.
    pub durations: BTreeMap<String, Histogram>,
    /// Size of the last encrypted bundle.
    pub bundle_bytes: Option<u64>,
    /// Size of the last snapshot.
    pub snapshot_bytes: Option<u64>,
    /// etcd's dbSize at the last backup.
    pub etcd_db_bytes: Option<i64>,
    /// Revision of the last backup.
    pub etcd_revision: Option<i64>,
    /// Backups deleted by retention.
    pub pruned_total: u64,
    /// Backups kept by the last retention run.
    pub prune_kept: Option<u64>,
    /// Backups due for deletion but still locked at the last retention run.
    pub prune_locked: Option<u64>,
    /// Backups retention could not delete.
    pub prune_failures_total: u64,
    /// Local copies still owed to a store.
    pub pending_uploads: u64,
    /// Slots by [`SlotOutcome`] label.
    pub slots: BTreeMap<String, u64>,
    /// Creation time (Unix seconds) of the newest backup whose stored bytes checked out
    /// against their record and lock, without the key.
    pub last_verified: Option<f64>,
    /// Backups whose stored bytes or lock failed the check after a slot.
    pub verify_failures_total: u64,
    /// Backups of this cluster listed `tampered` at the last check.
    pub tampered_backups: Option<u64>,
    /// notAfter (Unix seconds) of each certificate file the last backup held, by host path
    /// (the soonest when a file holds several).
    pub certificate_expiry: BTreeMap<String, i64>,
}

/// Values only a running daemon has.
pub struct Live {
    /// Shortest interval between two scheduled backups.
    pub schedule_interval_seconds: f64,
    /// Whether the last success is younger than twice that interval.
    pub healthy: bool,
    /// Whether the nodes elect one of them per slot.
    pub leader_mode: bool,
}

/// Now, in Unix seconds.
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
                self.observe(Stage::Snapshot, r.snapshot_seconds);
                self.observe(Stage::Upload, r.upload_seconds);
                self.bundle_bytes = Some(r.bundle_size);
                self.snapshot_bytes = Some(r.snapshot_size);
                self.etcd_db_bytes = Some(r.etcd_db_size);
                self.etcd_revision = Some(r.etcd_revision);
                self.certificate_expiry.clear();
                for c in &r.certificates {
                    let t = self
                        .certificate_expiry
                        .entry(c.path.display().to_string())
                        .or_insert(c.not_after);
                    *t = (*t).min(c.not_after);
                }
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

    /// Counts a failed attempt.
    pub fn fail(&mut self, reason: FailureReason) {
        *self.failures.entry(reason.as_str().into()).or_default() += 1;
    }

    /// Counts a failed attempt.
    /// Records how long a stage took.
    pub fn observe(&mut self, stage: Stage, seconds: f64) {
        self.durations
            .entry(stage.as_str().into())
            .or_default()
            .observe(seconds);
    }

    /// Counts a slot's outcome.
    pub fn slot(&mut self, outcome: SlotOutcome) {
        *self.slots.entry(outcome.as_str().into()).or_default() += 1;
    }

    /// The time health is judged by: this node's last success or, in one-per-cluster mode, the
    /// cluster's.
    pub fn freshest_success(&self) -> Option<f64> {
        match (self.last_success, self.last_cluster_success) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Prometheus text exposition format 0.0.4 (what node_exporter's textfile collector
    /// parses; `live` adds what only a running daemon knows).
    pub fn render(&self, live: Option<&Live>) -> String {
        let mut o = Exposition::default();
        o.family(
            "cpbackup_info",
            GAUGE,
            "Version of the running cpbackup.",
            vec![(
                format!("{{version=\"{}\"}}", escape(crate::TOOL_VERSION)),
                1.0,
            )],
        );
        for (name, kind, help, value) in self.singles() {
            o.one(name, kind, help, value);
        }
        o.family(
            "cpbackup_certificate_expiry_timestamp_seconds",
            GAUGE,
            "notAfter of each certificate file the last backup held (a restore puts them back as they are).",
            self.certificate_expiry
                .iter()
                .map(|(path, t)| (format!("{{path=\"{}\"}}", escape(path)), *t as f64))
                .collect(),
        );
        o.labelled(
            "cpbackup_backup_failures_total",
            "Failed backup attempts by reason (config, lock, etcd, store, cancelled, election, precheck).",
            "reason",
            FailureReason::ALL.map(|r| r.as_str()),
            &self.failures,
        );
        o.labelled(
            "cpbackup_schedule_slots_total",
            "Schedule slots by outcome (missed: the previous backup was still running).",
            "outcome",
            SlotOutcome::ALL.map(|s| s.as_str()),
            &self.slots,
        );
        o.histograms(
            "cpbackup_stage_duration_seconds",
            "Duration of each stage: snapshot (streamed from etcd into the stores), upload (publishing), prune.",
            &self.durations,
        );
        if let Some(l) = live {
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            o.one(
                "cpbackup_schedule_interval_seconds",
                GAUGE,
                "Shortest interval between two scheduled backups.",
                Some(l.schedule_interval_seconds),
            );
            o.one(
                "cpbackup_healthy",
                GAUGE,
                "1 while the last success is younger than twice the schedule interval.",
                Some(flag(l.healthy)),
            );
            o.one(
                "cpbackup_one_per_cluster",
                GAUGE,
                "1 when the nodes elect one of them per slot, 0 when every node backs up.",
                Some(flag(l.leader_mode)),
            );
        }
        o.text
    }

    /// Every family of one unlabelled sample.
    fn singles(&self) -> Vec<Single> {
        let mut all = self.backup_singles();
        all.extend(self.store_singles());
        all
    }

    /// Unlabelled families of the last backup: success, attempt, sizes, revision.
    fn backup_singles(&self) -> Vec<Single> {
        let num = |v: Option<u64>| v.map(|v| v as f64);
        let flag = |b: Option<bool>| b.map(|b| if b { 1.0 } else { 0.0 });
        vec![
            (
                "cpbackup_last_success_timestamp_seconds",
                GAUGE,
                "Unix time of this node's last backup that reached every store.",
                self.last_success,
            ),
            (
                "cpbackup_cluster_last_success_timestamp_seconds",
                GAUGE,
                "Unix time of the cluster's last successful backup by any node (one-per-cluster mode).",
                self.freshest_success(),
            ),
            (
                "cpbackup_last_attempt_timestamp_seconds",
                GAUGE,
                "Unix time of this node's last backup attempt.",
                self.last_attempt,
            ),
            (
                "cpbackup_last_attempt_success",
                GAUGE,
                "1 if this node's last backup attempt succeeded, 0 if it failed.",
                flag(self.last_attempt_ok),
            ),
            (
                "cpbackup_backups_succeeded_total",
                COUNTER,
                "Backups that reached every store.",
                Some(self.backups_ok as f64),
            ),
            (
                "cpbackup_bundle_size_bytes",
                GAUGE,
                "Size of the last encrypted bundle.",
                num(self.bundle_bytes),
            ),
            (
                "cpbackup_snapshot_size_bytes",
                GAUGE,
                "Size of the last etcd snapshot.",
                num(self.snapshot_bytes),
            ),
            (
                "cpbackup_etcd_db_size_bytes",
                GAUGE,
                "etcd's database size (dbSize) at the last backup; compare with the backend quota.",
                self.etcd_db_bytes.map(|v| v as f64),
            ),
            (
                "cpbackup_etcd_revision",
                GAUGE,
                "etcd revision of the last backup.",
                self.etcd_revision.map(|v| v as f64),
            ),
        ]
    }

    /// Unlabelled families of retention, the ciphertext check and pending copies.
    fn store_singles(&self) -> Vec<Single> {
        let num = |v: Option<u64>| v.map(|v| v as f64);
        vec![
            (
                "cpbackup_pruned_backups_total",
                COUNTER,
                "Backups deleted by retention.",
                Some(self.pruned_total as f64),
            ),
            (
                "cpbackup_prune_failures_total",
                COUNTER,
                "Backups retention wanted to delete but could not.",
                Some(self.prune_failures_total as f64),
            ),
            (
                "cpbackup_kept_backups",
                GAUGE,
                "Backups kept by the last retention run (all stores).",
                num(self.prune_kept),
            ),
            (
                "cpbackup_locked_backups",
                GAUGE,
                "Backups due for deletion but still under Object Lock at the last retention run.",
                num(self.prune_locked),
            ),
            (
                "cpbackup_last_verified_timestamp_seconds",
                GAUGE,
                "Creation time of the newest backup whose stored bytes match its record and whose lock holds (checked without the key after each slot).",
                self.last_verified,
            ),
            (
                "cpbackup_verify_failures_total",
                COUNTER,
                "Backups whose stored bytes did not match their record, or whose lock ran out, at the check after a slot.",
                Some(self.verify_failures_total as f64),
            ),
            (
                "cpbackup_tampered_backups",
                GAUGE,
                "Backups of this cluster whose keys were written again after the backup (the original is still what is read).",
                num(self.tampered_backups),
            ),
            (
                "cpbackup_pending_uploads",
                GAUGE,
                "Local copies still waiting to reach a store that failed.",
                Some(self.pending_uploads as f64),
            ),
        ]
    }
}

/// One unlabelled family: name, type, help, value (none while unknown).
type Single = (&'static str, &'static str, &'static str, Option<f64>);

const GAUGE: &str = "gauge";
const COUNTER: &str = "counter";

/// The text being written: one family at a time, HELP and TYPE first.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(self.text, "{name}{labels} {}", fmt_value(v));
        }
    }

    /// A family of one unlabelled sample (none while the value is unknown).
    fn one(&mut self, name: &str, kind: &str, help: &str, value: Option<f64>) {
        self.family(
            name,
            kind,
            help,
            value.map(|v| (String::new(), v)).into_iter().collect(),
        );
    }

    /// A counter with one sample per label value, 0 for those never counted.
    fn labelled<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: [&str; N],
        counts: &BTreeMap<String, u64>,
    ) {
        let samples = values
            .iter()
            .map(|v| {
                (
                    format!("{{{label}=\"{v}\"}}"),
                    *counts.get(*v).unwrap_or(&0) as f64,
                )
            })
            .collect();
        self.family(name, COUNTER, help, samples);
    }

    /// One histogram per stage, every stage present.
    fn histograms(&mut self, name: &str, help: &str, by_stage: &BTreeMap<String, Histogram>) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} histogram");
        let empty = Histogram::default();
        for stage in Stage::ALL.map(Stage::as_str) {
            let h = by_stage.get(stage).unwrap_or(&empty);
            let mut cumulative = 0;
            let bounds = BUCKETS
                .iter()
                .map(|b| fmt_value(*b))
                .chain(["+Inf".to_owned()]);
            for (i, le) in bounds.enumerate() {
                cumulative += h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    self.text,
                    "{name}_bucket{{stage=\"{stage}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                self.text,
                "{name}_sum{{stage=\"{stage}\"}} {}",
                fmt_value(h.sum)
            );
            let _ = writeln!(self.text, "{name}_count{{stage=\"{stage}\"}} {}", h.count());
        }
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
        s.observe(Stage::Snapshot, 0.2);
        s.observe(Stage::Snapshot, 7.0);
        s.observe(Stage::Snapshot, 99999.0);
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
        s.slot(SlotOutcome::Missed);
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
