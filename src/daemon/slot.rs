//! One schedule slot, start to end: pending uploads, jitter, the one-per-cluster election, the
//! backup with retries and backoff (never past the next slot), retention, metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::watch;

use super::metrics::{SlotOutcome, Stage};
use super::schedule::{Schedule, ScheduleMode, slot_name};
use crate::backup::{self, BackupJob, BackupReport, Failure, FailureReason};
use crate::daemon::http::Status;
use crate::etcd::election::{Claim, Election, SlotMarker};
use crate::lock::NodeLock;
use crate::store::pending::upload as upload_pending;
use crate::store::retention::Policy;
use crate::store::retention::apply::Action;

/// Everything a slot needs, resolved from flags and the config file (replaced on SIGHUP).
#[derive(Clone)]
pub struct SlotConfig {
    pub job: BackupJob,
    pub schedule: Schedule,
    pub retention: Policy,
    pub textfile: Option<PathBuf>,
}

/// Runs the slot scheduled at `slot`. Returns when done or cancelled.
pub async fn run(
    cfg: Arc<SlotConfig>,
    slot: DateTime<Utc>,
    status: Arc<Status>,
    cancel: watch::Receiver<bool>,
) {
    let name = slot_name(slot);
    let next = cfg
        .schedule
        .next_after(slot)
        .unwrap_or(slot + chrono::Duration::days(1));
    let deadline = Instant::now() + (next - Utc::now()).to_std().unwrap_or_default();
    tracing::info!(slot = %name, mode = cfg.schedule.mode.as_str(), "slot started");

    upload_pending_copies(&cfg).await;

    if !cfg.schedule.jitter.is_zero() {
        let ms = rand::rng().random_range(0..=cfg.schedule.jitter.as_millis() as u64);
        if !pause(Duration::from_millis(ms), &cancel).await {
            return;
        }
    }

    let mut election = None;
    if cfg.schedule.mode == ScheduleMode::OnePerCluster {
        match elect(&cfg, &name, deadline, &status).await {
            Some(e) => election = Some(e),
            None => {
                finish_slot(&cfg, &status);
                return;
            }
        }
    }

    let mut job = cfg.job.clone();
    job.slot = Some(name.clone());
    let result = backup_with_retries(&cfg, &job, deadline, &status, &cancel).await;

    if let Some((el, held)) = election {
        record_slot(&cfg, slot, el, held, &result).await;
    }
    let outcome = match &result {
        Ok(r) if r.failed_stores() == 0 => SlotOutcome::BackedUp,
        _ => SlotOutcome::Failed,
    };
    update(&status, |s| s.slot(outcome));
    if let Ok(r) = &result
        && !*cancel.borrow()
    {
        after_backup(&cfg, &status, r).await;
    }
    finish_slot(&cfg, &status);
}

/// One-per-cluster: marks the slot done in etcd (with the backup, when it reached every store),
/// so no other node backs it up again.
async fn record_slot(
    cfg: &SlotConfig,
    slot: DateTime<Utc>,
    mut el: Election,
    held: crate::etcd::election::Leadership,
    result: &Result<BackupReport, Failure>,
) {
    let name = slot_name(slot);
    let marker = match result {
        Ok(r) if r.failed_stores() == 0 => Some(SlotMarker {
            node: r.name.node.clone(),
            backup: r.name.key(),
            finished: slot_name(Utc::now()),
        }),
        _ => None,
    };
    let keep = (cfg.schedule.interval(slot) * 3).max(Duration::from_secs(3600));
    if let Err(e) = el.finish(held, &name, marker.as_ref(), keep).await {
        tracing::error!(slot = %name, error = %format!("{e:#}"), "could not record the slot in etcd; another node may back it up again");
    }
}

/// After a backup: retention over this cluster's backups (per node in per-node mode, the
/// cluster as a whole when one node per slot takes them), then the newest one checked.
async fn after_backup(cfg: &SlotConfig, status: &Status, r: &BackupReport) {
    let name = &r.name;
    if !cfg.retention.is_empty() {
        let one = cfg.schedule.mode == ScheduleMode::OnePerCluster;
        let scope = crate::store::retention::apply::Scope {
            cluster: Some(name.cluster.clone()),
            node: (!one).then(|| name.node.clone()),
            by_cluster: one,
        };
        run_retention(cfg, status, scope).await;
    }
    check_newest(cfg, status, name.cluster.clone()).await;
}

/// The newest backup of the cluster in every store, checked without the key (bytes against
/// the record, lock in force): what `cpbackup_last_verified_timestamp_seconds` reports.
async fn check_newest(cfg: &SlotConfig, status: &Status, cluster: String) {
    let specs = cfg.job.stores.clone();
    let swept = tokio::task::spawn_blocking(move || {
        let stores = crate::store::open_all(&specs)?;
        anyhow::Ok(crate::store::integrity::sweep(&stores, &cluster))
    })
    .await;
    let sweep = match swept {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "checking the newest backups failed");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "checking the newest backups crashed");
            return;
        }
    };
    for f in &sweep.failed {
        tracing::error!(backup = %f.name, store = %f.store, problems = %f.problems.join("; "), "a stored backup does not match its record");
    }
    for e in &sweep.errors {
        tracing::warn!(error = %e, "could not check the newest backup");
    }
    if sweep.tampered > 0 {
        tracing::error!(
            count = sweep.tampered,
            "backups of this cluster were written over in the store; run `cpbackup list` and find out who can write to it"
        );
    }
    update(status, |s| {
        s.last_verified = crate::store::integrity::later(s.last_verified, sweep.newest_verified);
        s.verify_failures_total += sweep.failed.len() as u64;
        s.tampered_backups = Some(sweep.tampered as u64);
    });
}

/// Waits for the cluster lock; `None` when this node does not take the slot.
async fn elect(
    cfg: &SlotConfig,
    slot: &str,
    deadline: Instant,
    status: &Status,
) -> Option<(Election, crate::etcd::election::Leadership)> {
    let (client, _, cluster) = match cfg.job.connect_etcd().await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(slot, error = %format!("{e:#}"), "cannot reach etcd for the backup election");
            update(status, |s| {
                s.fail(FailureReason::Etcd);
                s.slot(SlotOutcome::Failed);
            });
            return None;
        }
    };
    let mut el = Election::new(client, &cluster, cfg.schedule.election_ttl);
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    match el.claim(slot, wait).await {
        Ok(Claim::Won(held)) => {
            tracing::info!(slot, "elected to take this slot's backup");
            Some((el, held))
        }
        Ok(Claim::Done(m)) => {
            tracing::info!(slot, node = %m.node, backup = %m.backup, "slot already backed up by another node");
            let finished = DateTime::parse_from_rfc3339(&m.finished)
                .map(|t| t.timestamp() as f64)
                .ok();
            update(status, |s| {
                s.slot(SlotOutcome::TakenByOtherNode);
                if let Some(t) = finished {
                    s.last_cluster_success = Some(s.last_cluster_success.map_or(t, |c| c.max(t)));
                }
            });
            None
        }
        Ok(Claim::TimedOut) => {
            tracing::error!(
                slot,
                "the backup election lock stayed taken until the next slot"
            );
            update(status, |s| {
                s.fail(FailureReason::Election);
                s.slot(SlotOutcome::Failed);
            });
            None
        }
        Err(e) => {
            tracing::error!(slot, error = %format!("{e:#}"), "backup election failed");
            update(status, |s| {
                s.fail(FailureReason::Election);
                s.slot(SlotOutcome::Failed);
            });
            None
        }
    }
}

async fn backup_with_retries(
    cfg: &SlotConfig,
    job: &BackupJob,
    deadline: Instant,
    status: &Status,
    cancel: &watch::Receiver<bool>,
) -> Result<BackupReport, Failure> {
    let mut delay = cfg.schedule.backoff;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let started = Instant::now();
        let result = backup::execute(job, cancel.clone(), false).await;
        update(status, |s| s.record_backup(&result));
        let failure = match &result {
            Ok(r) if r.failed_stores() > 0 => {
                // The backup exists in some store and is marked pending for the others:
                // taking another one would not help.
                tracing::error!(backup = %r.name, attempt, stores_failed = r.failed_stores(), "backup incomplete: some stores failed; the local copy is pending upload");
                return result;
            }
            Ok(_) => return result,
            Err(f) => f,
        };
        tracing::error!(
            attempt,
            reason = failure.reason.as_str(),
            seconds = crate::logging::seconds(started.elapsed().as_secs_f64()),
            error = %format!("{:#}", failure.error),
            "backup failed"
        );
        let hopeless = matches!(
            failure.reason,
            FailureReason::Config | FailureReason::Cancelled
        );
        if hopeless || attempt > cfg.schedule.retries || Instant::now() + delay >= deadline {
            return result;
        }
        tracing::warn!(
            attempt,
            retry_in_seconds = delay.as_secs(),
            "retrying the backup"
        );
        if !pause(delay, cancel).await {
            return result;
        }
        delay = (delay * 2).min(Duration::from_secs(3600));
    }
}

async fn run_retention(
    cfg: &SlotConfig,
    status: &Status,
    scope: crate::store::retention::apply::Scope,
) {
    let specs = cfg.job.stores.clone();
    let policy = cfg.retention.clone();
    let started = Instant::now();
    let pruned = tokio::task::spawn_blocking(move || {
        let stores = crate::store::open_all(&specs)?;
        crate::store::retention::apply::apply(&stores, &policy, false, &scope)
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    match pruned {
        Ok(Ok(p)) => {
            let (deleted, kept, locked) = (
                p.count(Action::Deleted),
                p.count(Action::Keep),
                p.count(Action::Locked),
            );
            tracing::info!(
                deleted,
                kept,
                locked,
                failed = p.failures,
                "retention applied"
            );
            update(status, |s| {
                s.observe(Stage::Prune, seconds);
                s.pruned_total += deleted as u64;
                s.prune_kept = Some(kept as u64);
                s.prune_locked = Some(locked as u64);
                s.prune_failures_total += p.failures as u64;
            });
        }
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "retention failed");
            update(status, |s| {
                s.observe(Stage::Prune, seconds);
                s.prune_failures_total += 1;
            });
        }
        Err(e) => tracing::error!(error = %e, "retention crashed"),
    }
}

async fn upload_pending_copies(cfg: &SlotConfig) {
    let specs = cfg.job.stores.clone();
    let state_dir = cfg.job.state_dir.clone();
    if upload_pending::count_pending(&specs) == 0 {
        return;
    }
    let done = tokio::task::spawn_blocking(move || {
        let _lock = NodeLock::acquire(&state_dir, "backup")?;
        upload_pending::upload_all(&specs)
    })
    .await;
    match done {
        Ok(Ok(copies)) => {
            let failed = copies.iter().filter(|c| !c.ok).count();
            tracing::info!(
                uploaded = copies.len() - failed,
                failed,
                "pending copies uploaded"
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "pending uploads not done; they stay pending")
        }
        Err(e) => tracing::error!(error = %e, "pending uploads crashed"),
    }
}

/// Refreshes the pending count, saves the state and writes the textfile.
fn finish_slot(cfg: &SlotConfig, status: &Status) {
    let pending = upload_pending::count_pending(&cfg.job.stores) as u64;
    update(status, |s| s.pending_uploads = pending);
    persist(cfg, status);
}

/// Saves the metrics state and rewrites the textfile, if configured.
pub fn persist(cfg: &SlotConfig, status: &Status) {
    let state = status.state.lock().expect("status lock").clone();
    if let Err(e) = state.save(&cfg.job.state_dir) {
        tracing::warn!(error = %format!("{e:#}"), "could not save the metrics state");
    }
    if let Some(path) = &cfg.textfile
        && let Err(e) = crate::daemon::metrics::write_textfile(path, &status.render())
    {
        tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "could not write the metrics textfile");
    }
}

fn update(status: &Status, f: impl FnOnce(&mut crate::daemon::metrics::State)) {
    f(&mut status.state.lock().expect("status lock"));
}

/// Sleeps; false when cancelled first.
async fn pause(d: Duration, cancel: &watch::Receiver<bool>) -> bool {
    let mut c = cancel.clone();
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = c.wait_for(|v| *v) => false,
    }
}
