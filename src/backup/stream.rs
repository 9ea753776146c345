//! Phases 2 and 3 of a backup: open an upload in every usable store (after cleaning up what an
//! interrupted backup of this node left), then stream the snapshot and the static pod
//! resources through the bundle writer (tar → parallel gzip → age) into all of them at once.
//! Nothing is visible in any store when this phase ends; publishing makes it so.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::watch;

use super::BackupJob;
use super::outcome::{Classify, Failure, FailureReason as R, StoreOutcome, describe_failures};
use super::preflight::{Source, Stores};
use crate::bundle::BundleWriter;
use crate::bundle::codec::default_threads;
use crate::bundle::manifest::{EtcdInfo, FORMAT_VERSION, Manifest};
use crate::store::Upload;
use crate::store::fanout::FanOut;

/// The uploads in flight, by store location, and the stores that could not open one.
pub(crate) struct Uploads {
    pub open: Vec<(String, Box<dyn Upload>)>,
    pub outcomes: Vec<StoreOutcome>,
}

/// Opens an upload of `source.name` in every store not already failed.
pub(crate) fn open_uploads(stores: &Stores, source: &Source) -> Result<Uploads, Failure> {
    let name = &source.name;
    let mut outcomes: Vec<StoreOutcome> = stores
        .unusable
        .iter()
        .map(|o| StoreOutcome {
            store: o.store.clone(),
            ok: false,
            error: o.error.clone(),
        })
        .collect();
    let usable: Vec<&dyn crate::store::Store> = stores.usable(&stores.unusable).collect();
    for s in &usable {
        match s.abort_unfinished(&name.cluster, &name.node) {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(store = %s.location(), "aborted {n} unfinished upload(s) left by an interrupted backup")
            }
            Err(e) => {
                tracing::warn!(store = %s.location(), error = %format!("{e:#}"), "could not clean up after interrupted backups")
            }
        }
    }
    let mut open = Vec::new();
    for s in &usable {
        match s.create(name) {
            Ok(u) => open.push((s.location(), u)),
            Err(e) => {
                tracing::error!(store = %s.location(), error = %format!("{e:#}"), "store unusable");
                outcomes.push(StoreOutcome::failed(s.location(), &e));
            }
        }
    }
    if open.is_empty() {
        return Err(Failure::new(
            R::Store,
            anyhow::anyhow!(
                "no store could take the backup: {}",
                describe_failures(&outcomes)
            ),
        ));
    }
    Ok(Uploads { open, outcomes })
}

/// The bundle, written to every upload but not yet published.
pub(crate) struct Streamed {
    pub fan: FanOut,
    pub entries: usize,
    /// The certificates in the bundled host files.
    pub certificates: Vec<crate::doctor::certs::CertInfo>,
    pub snapshot_size: u64,
    pub seconds: f64,
}

/// Streams the bundle into `uploads`. Setting `cancel` aborts it.
pub(crate) async fn bundle(
    job: &BackupJob,
    source: &Source,
    uploads: Vec<(String, Box<dyn Upload>)>,
    created: &str,
    cancel: watch::Receiver<bool>,
    progress: bool,
) -> Result<Streamed, Failure> {
    let started = Instant::now();
    let stream =
        crate::etcd::snapshot::start(&source.client, job.etcd.stall_timeout, cancel.clone())
            .await
            .because(R::Etcd)?;
    let snapshot_size = stream.total;
    let bar = crate::progress::bytes_bar(snapshot_size, progress, "snapshot");
    let manifest = manifest(job, source, created, snapshot_size);
    let sources = source.plan.sources.clone();
    let (recipients, codec, level) = (job.recipients.clone(), job.codec, job.level);
    let etcd_failed = Arc::new(AtomicBool::new(false));
    let snapshot = Watched {
        inner: stream,
        failed: etcd_failed.clone(),
    };
    let (pbar, cancel_rx) = (bar.clone(), cancel.clone());
    type Written = (FanOut, usize, Vec<crate::doctor::certs::CertInfo>);
    let pipeline = tokio::task::spawn_blocking(move || -> anyhow::Result<Written> {
        let threads = default_threads();
        let mut w = BundleWriter::new(FanOut::new(uploads), &recipients, codec, level, threads)?;
        let snap = w.append_snapshot(snapshot_size, snapshot, |n| pbar.inc(n))?;
        pbar.finish_and_clear();
        for s in &sources {
            if *cancel_rx.borrow() {
                anyhow::bail!("backup interrupted by signal");
            }
            w.append_source(s)?;
        }
        let mut manifest = manifest;
        manifest.etcd.image_sha256 = snap.image_sha256.clone();
        if let Some(m) = snap.meta {
            manifest.etcd.bbolt_txid = m.txid;
            manifest.etcd.bbolt_page_size = m.page_size;
        }
        let entries = w.entry_count() + 1;
        let certificates = w.certificates().to_vec();
        Ok((w.finish(manifest)?, entries, certificates))
    });
    let result = pipeline
        .await
        .context("backup pipeline crashed")
        .because(R::Store)?;
    bar.finish_and_clear();
    let cancelled = *cancel.borrow();
    let (fan, entries, certificates) = result.map_err(|e| {
        let reason = if cancelled {
            R::Cancelled
        } else if etcd_failed.load(Ordering::Relaxed) {
            R::Etcd
        } else {
            R::Store
        };
        Failure::new(reason, e.context("backup failed; nothing was published"))
    })?;
    if cancelled {
        return Err(Failure::new(
            R::Cancelled,
            anyhow::anyhow!("backup interrupted by signal; nothing was published"),
        ));
    }
    Ok(Streamed {
        fan,
        entries,
        certificates,
        snapshot_size,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The manifest as known before the stream (the snapshot's hash and bbolt meta come after).
fn manifest(job: &BackupJob, source: &Source, created: &str, snapshot_size: u64) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        tool_version: crate::TOOL_VERSION.into(),
        created: created.to_owned(),
        cluster: source.cluster.clone(),
        node: source.node.clone(),
        platform: source.plan.layout,
        forced: job.force,
        etcd: EtcdInfo {
            status: source.status.clone(),
            image_sha256: String::new(),
            snapshot_size,
            bbolt_txid: 0,
            bbolt_page_size: 0,
        },
        static_pod_revisions: source.plan.revisions.iter().cloned().collect(),
        kubernetes_version: source.kubernetes_version.clone(),
        consistency: source.consistency.clone(),
        compression: job.codec.name().into(),
        entries: Vec::new(),
    }
}

/// A reader that remembers whether it failed, so a failed pipeline can tell an etcd failure
/// (the source) from a store failure (the sinks) without reading the error's text.
struct Watched<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| {
            self.failed.store(true, Ordering::Relaxed);
        })
    }
}
