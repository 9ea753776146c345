//! The long-running daemon: schedule, slots, metrics and their HTTP endpoint.
//!
//! `tokio-cron-scheduler` fires a tick at every scheduled time ([`schedule`]); the tick is
//! mapped to its slot (the scheduled time) and handed to a single worker ([`slot`]: election,
//! backup with retries, retention, pending copies, the newest backup checked). A tick that finds
//! the worker busy is a missed slot (counted, never queued). SIGHUP rebuilds the configuration
//! (a bad one is reported and the old settings stay); SIGTERM/SIGINT cancel the slot in flight,
//! which aborts its uploads, then the daemon exits 0. [`metrics`] keeps the state that survives
//! restarts; [`http`] serves it.

pub(crate) mod http;
pub mod metrics;
pub mod schedule;
pub(crate) mod slot;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::error::usage;
use http::Status;
use metrics::State;
use schedule::{Schedule, ScheduleMode, slot_name};
use slot::SlotConfig;

/// Runs the daemon until SIGTERM or SIGINT: `cfg` is its first configuration, `listen` where
/// /metrics and /healthz are served (`off`: nowhere); `reload` builds a new configuration on
/// SIGHUP (an error keeps the old one).
pub async fn run(
    cfg: SlotConfig,
    listen: String,
    reload: impl Fn() -> anyhow::Result<SlotConfig>,
) -> anyhow::Result<()> {
    let mut cfg = Arc::new(cfg);
    let status = Arc::new(Status::new(
        State::load(&cfg.job.state_dir),
        cfg.schedule.interval(Utc::now()),
        cfg.schedule.mode == ScheduleMode::OnePerCluster,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = serve_metrics(&listen, &status, &stop_rx).await?;

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tick_tx, mut tick_rx) = mpsc::unbounded_channel();
    let mut scheduler = start_scheduler(&cfg.schedule, &tick_tx).await?;
    let mut offset = cfg.schedule.utc_offset_seconds(Utc::now());
    let mut zone_check = tokio::time::interval(Duration::from_secs(60));
    let mut worker: Option<JoinHandle<()>> = None;
    announce(&cfg);
    slot::persist(&cfg, &status);

    loop {
        tokio::select! {
            Some(tick) = tick_rx.recv() => {
                let Some(at) = cfg.schedule.slot_at(tick) else {
                    tracing::warn!(tick = %slot_name(tick), "a tick matched no scheduled time; re-creating the jobs");
                    scheduler = restart_scheduler(scheduler, &cfg.schedule, &tick_tx).await?;
                    continue;
                };
                if worker.as_ref().is_some_and(|w| !w.is_finished()) {
                    tracing::warn!(slot = %slot_name(at), "previous backup still running: slot missed");
                    status.state.lock().expect("status lock").slot(metrics::SlotOutcome::Missed);
                    slot::persist(&cfg, &status);
                    continue;
                }
                worker = Some(tokio::spawn(slot::run(cfg.clone(), at, status.clone(), stop_rx.clone())));
            }
            _ = hup.recv() => {
                if let Some(new) = reloaded(&reload, &status) {
                    scheduler = restart_scheduler(scheduler, &new.schedule, &tick_tx).await?;
                    offset = new.schedule.utc_offset_seconds(Utc::now());
                    cfg = Arc::new(new);
                    announce(&cfg);
                }
            }
            _ = zone_check.tick() => {
                let now_offset = cfg.schedule.utc_offset_seconds(Utc::now());
                if now_offset != offset {
                    tracing::info!(from = offset, to = now_offset, "time zone offset changed; re-creating the jobs");
                    offset = now_offset;
                    scheduler = restart_scheduler(scheduler, &cfg.schedule, &tick_tx).await?;
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping: aborting any backup in flight");
    let _ = stop_tx.send(true);
    let _ = scheduler.shutdown().await;
    if let Some(w) = worker {
        let _ = w.await;
    }
    slot::persist(&cfg, &status);
    if let Some(s) = server {
        let _ = s.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Binds the metrics address and serves /metrics and /healthz until `stop`; `off`: nothing.
async fn serve_metrics(
    listen: &str,
    status: &Arc<Status>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<anyhow::Result<()>>>> {
    if listen == "off" {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        usage(format!(
            "cannot listen on {listen} for metrics: {e}; pick another address with --metrics-address (or \"off\")"
        ))
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    Ok(Some(tokio::spawn(http::serve(
        listener,
        status.clone(),
        stop.clone(),
    ))))
}

/// SIGHUP: the new configuration, with the health settings updated; `None` keeps the old one.
fn reloaded(
    reload: &impl Fn() -> anyhow::Result<SlotConfig>,
    status: &Status,
) -> Option<SlotConfig> {
    match reload() {
        Ok(new) => {
            *status.interval.lock().expect("status lock") = new.schedule.interval(Utc::now());
            *status.one_per_cluster.lock().expect("status lock") =
                new.schedule.mode == ScheduleMode::OnePerCluster;
            tracing::info!("configuration reloaded");
            Some(new)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "SIGHUP: the new configuration is invalid; keeping the old one");
            None
        }
    }
}

fn announce(cfg: &SlotConfig) {
    let next = cfg.schedule.next_after(Utc::now()).map(slot_name);
    tracing::info!(
        schedule = ?cfg.schedule.crons,
        timezone = %cfg.schedule.tz,
        mode = cfg.schedule.mode.as_str(),
        jitter_seconds = cfg.schedule.jitter.as_secs(),
        next = next.as_deref().unwrap_or("never"),
        "daemon scheduled"
    );
}

async fn start_scheduler(
    schedule: &Schedule,
    ticks: &mpsc::UnboundedSender<chrono::DateTime<Utc>>,
) -> anyhow::Result<JobScheduler> {
    let sched = JobScheduler::new()
        .await
        .context("starting the job scheduler")?;
    for expr in &schedule.crons {
        let tx = ticks.clone();
        let job = Job::new_tz(expr.as_str(), schedule.tz, move |_, _| {
            let _ = tx.send(Utc::now());
        })
        .with_context(|| format!("scheduling {expr:?}"))?;
        sched.add(job).await.context("adding a scheduled job")?;
    }
    sched.start().await.context("starting the job scheduler")?;
    Ok(sched)
}

async fn restart_scheduler(
    mut old: JobScheduler,
    schedule: &Schedule,
    ticks: &mpsc::UnboundedSender<chrono::DateTime<Utc>>,
) -> anyhow::Result<JobScheduler> {
    let _ = old.shutdown().await;
    start_scheduler(schedule, ticks).await
}
