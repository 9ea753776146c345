//! `cpbackup backup`: one backup now (the engine is `crate::backup`), with SIGINT/SIGTERM
//! aborting it, the node_exporter textfile written after it, and its report.

use std::path::PathBuf;

use anyhow::Context;
use tokio::sync::watch;

use crate::backup::{BackupJob, describe_failures};
use crate::cli::BackupArgs;
use crate::output::{self, human_size};
use crate::settings::{self, Settings};

/// `cpbackup backup`.
pub fn run(args: &BackupArgs, s: &Settings) -> anyhow::Result<()> {
    if args.upload_pending {
        return super::upload_pending::run(&args.settings, s);
    }
    let mut job = settings::backup::job(&args.settings, s)?;
    job.force = args.force;
    let textfile = settings::daemon::metrics_textfile(args.metrics_textfile.as_deref(), s);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(backup(&job, textfile, s))
}

async fn backup(job: &BackupJob, textfile: Option<PathBuf>, s: &Settings) -> anyhow::Result<()> {
    // Signal handlers are in place before any upload starts, so SIGINT/SIGTERM always aborts.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut on_signal = Signals::install()?;
    let signals = tokio::spawn(async move {
        on_signal.wait().await;
        tracing::warn!("signal received: aborting the backup, nothing will be published");
        let _ = cancel_tx.send(true);
    });
    let result = crate::backup::execute(job, cancel_rx, s.progress()).await;
    signals.abort();
    if let Some(path) = &textfile {
        let mut state = crate::daemon::metrics::State::load(&job.state_dir);
        state.record_backup(&result);
        state.pending_uploads = crate::store::pending::upload::count_pending(&job.stores) as u64;
        if let Err(e) = state
            .save(&job.state_dir)
            .and_then(|()| crate::daemon::metrics::write_textfile(path, &state.render(None)))
        {
            tracing::error!(error = %format!("{e:#}"), file = %path.display(), "could not write the metrics textfile");
        }
    }
    let report = result.map_err(|f| f.error)?;
    output::emit(s.output, "BackupReport", &report, |r| {
        let mut s = format!(
            "{}  revision {}  snapshot {}  bundle {}  {:.1}s",
            r.name,
            r.etcd_revision,
            human_size(r.snapshot_size),
            human_size(r.bundle_size),
            r.duration_seconds
        );
        for o in &r.stores {
            s.push_str(&format!(
                "\n  {} {}{}",
                if o.ok { "ok    " } else { "FAILED" },
                o.store,
                o.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        s
    })?;
    // the two kinds of backup a restore cannot rely on, said where the operator looks
    if report.forced {
        eprintln!(
            "WARNING: {} was taken with --force (checks skipped): it may be dirty; `cpbackup list` marks it forced",
            report.name
        );
    }
    if report.platform == crate::host::Platform::Unknown {
        eprintln!(
            "WARNING: {} holds the etcd snapshot only (--static-pods none): enough for `extract`, not for a whole-cluster restore",
            report.name
        );
    }
    let failed = report.failed_stores();
    if failed > 0 {
        anyhow::bail!(
            "the backup reached {} of {} stores: {}",
            report.stores.len() - failed,
            report.stores.len(),
            describe_failures(&report.stores)
        );
    }
    Ok(())
}

/// SIGINT and SIGTERM, registered when created.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
