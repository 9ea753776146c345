//! `cpbackup backup`: one backup now, streamed from etcd into every store.
//!
//! Order matters for "nothing partial ever looks complete": settings, keys, the node lock and
//! the static pod plan are all checked before etcd is contacted; the bundle becomes visible in a
//! store only after the whole stream, manifest included, was written and fsynced; the record
//! follows. Any error or SIGINT/SIGTERM before that discards the uploads.

use std::time::Instant;

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::bundle::BundleWriter;
use crate::bundle::manifest::{EtcdInfo, FORMAT_VERSION, Manifest};
use crate::bundle::pargz::default_threads;
use crate::cli::{BackupArgs, OutputFormat, StaticPodsMode};
use crate::config::{self, Common, EtcdSettings, FileConfig};
use crate::etcd;
use crate::host::{HostRoot, Platform, discover, static_pods};
use crate::keys::Recipients;
use crate::lock::NodeLock;
use crate::output::{self, human_size};
use crate::progress;
use crate::store::fanout::FanOut;
use crate::store::{BundleName, Record};

#[derive(Debug, serde::Serialize)]
pub struct StoreOutcome {
    pub store: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct BackupReport {
    pub name: String,
    pub platform: Platform,
    pub etcd_endpoint: String,
    pub etcd_revision: i64,
    pub snapshot_size: u64,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    pub entries: usize,
    pub forced: bool,
    pub duration_seconds: f64,
    pub stores: Vec<StoreOutcome>,
}

pub async fn run(
    args: &BackupArgs,
    common: &Common,
    file: &FileConfig,
    quiet: bool,
) -> anyhow::Result<()> {
    if args.upload_pending {
        return super::upload_pending::run(args, common, file);
    }
    let started = Instant::now();
    let created = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let host = HostRoot::new(&common.host_root);

    // Everything that can be wrong with settings fails here, before any side effect.
    let etcd_settings = EtcdSettings::resolve(&args.etcd, &file.etcd)?;
    let recipients = Recipients::load(
        &if args.recipients.recipients.is_empty() {
            file.recipients.clone()
        } else {
            args.recipients.recipients.clone()
        },
        args.recipients
            .recipients_file
            .as_deref()
            .or(file.recipients_file.as_deref()),
    )?;
    let store_locations = config::resolve_stores(&args.stores, file)?;
    let level = config::resolve_compression_level(args.compression_level, file)?;
    let mode = args
        .static_pods
        .or(file.static_pods)
        .unwrap_or(StaticPodsMode::Auto);
    let mut extra = file.extra_paths.clone();
    extra.extend(args.extra_paths.iter().cloned());
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| file.state_dir.clone())
        .unwrap_or_else(|| host.path("/var/lib/cpbackup"));
    let stores = super::open_stores(&store_locations)?;
    // A store that is wrongly set up stops everything (exit 2); one that is unreachable only
    // fails itself, so the other stores (a local spool) still get the backup.
    let mut unusable: Vec<StoreOutcome> = Vec::new();
    for s in &stores {
        if let Err(e) = s.preflight_write() {
            if crate::error::exit_code(&e) == crate::error::EXIT_USAGE {
                return Err(e.context(format!("store {}", s.location())));
            }
            tracing::error!(store = %s.location(), error = %format!("{e:#}"), "store unreachable; continuing with the others");
            unusable.push(StoreOutcome {
                store: s.location(),
                ok: false,
                error: Some(format!("{e:#}")),
            });
        }
    }
    let node_arg = args.node_name.clone().or_else(|| file.node_name.clone());
    let cluster_arg = args
        .cluster_name
        .clone()
        .or_else(|| file.cluster_name.clone());
    // Names given by the user must be usable in object names: fail before any side effect.
    BundleName::new(
        cluster_arg.as_deref().unwrap_or("x"),
        node_arg.as_deref().unwrap_or("x"),
        created,
        0,
    )?;

    let _lock = NodeLock::acquire(&state_dir)?;
    let platform = Platform::detect(&host);
    let plan = static_pods::plan(&host, mode, platform, &extra)?;
    let access = discover::etcd_access(&host, platform, &etcd_settings, node_arg.as_deref())?;
    tracing::info!(endpoint = %access.endpoint, platform = ?plan.layout, sources = plan.sources.len(), "starting backup");

    let (client, status) = etcd::connect(&access, etcd_settings.connect_timeout).await?;
    let cluster = cluster_arg.unwrap_or_else(|| format!("etcd-{}", status.cluster_id));
    let node = node_arg
        .or(access.node_name.clone())
        .or_else(discover::hostname)
        .context("cannot tell this node's name: pass --node-name")?;
    let name = BundleName::new(&cluster, &node, created, status.revision)?;

    // Signal handlers are in place before any upload starts, so SIGINT/SIGTERM always aborts.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut on_signal = Signals::install()?;
    let signals = tokio::spawn(async move {
        on_signal.wait().await;
        tracing::warn!("signal received: aborting the backup, nothing will be published");
        let _ = cancel_tx.send(true);
    });
    let mut uploads = Vec::new();
    let mut outcomes = unusable;
    let usable: Vec<&dyn crate::store::Store> = stores
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| !outcomes.iter().any(|o| o.store == s.location()))
        .collect();
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
    for s in &usable {
        match s.create(&name) {
            Ok(u) => uploads.push((s.location(), u)),
            Err(e) => {
                tracing::error!(store = %s.location(), error = %format!("{e:#}"), "store unusable");
                outcomes.push(StoreOutcome {
                    store: s.location(),
                    ok: false,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    if uploads.is_empty() {
        anyhow::bail!(
            "no store could take the backup: {}",
            describe_failures(&outcomes)
        );
    }

    let stream =
        etcd::snapshot::start(&client, etcd_settings.stall_timeout, cancel_rx.clone()).await?;
    let bar = progress::bytes_bar(
        stream.total,
        !quiet && common.output == OutputFormat::Text,
        "snapshot",
    );
    let threads = default_threads();
    let forced = args.force;
    let manifest_base = Manifest {
        format_version: FORMAT_VERSION,
        tool_version: crate::TOOL_VERSION.into(),
        created: created.format(&time::format_description::well_known::Rfc3339)?,
        cluster: cluster.clone(),
        node: node.clone(),
        platform: plan.layout,
        forced,
        etcd: EtcdInfo {
            status: status.clone(),
            image_sha256: String::new(),
            snapshot_size: stream.total,
            bbolt_txid: 0,
            bbolt_page_size: 0,
        },
        static_pod_revisions: plan.revisions.iter().cloned().collect(),
        entries: Vec::new(),
    };
    let sources = plan.sources.clone();
    let snapshot_size = stream.total;
    let pbar = bar.clone();
    let recipients_fp = recipients.fingerprints();
    let pipeline = tokio::task::spawn_blocking(move || -> anyhow::Result<(FanOut, usize)> {
        let mut w = BundleWriter::new(FanOut::new(uploads), &recipients, level, threads)?;
        let total = stream.total;
        let snap = w.append_snapshot(total, stream, |n| pbar.inc(n))?;
        pbar.finish_and_clear();
        for s in &sources {
            if *cancel_rx.borrow() {
                anyhow::bail!("backup interrupted by signal");
            }
            w.append_source(s)?;
        }
        let mut manifest = manifest_base;
        manifest.etcd.image_sha256 = snap.image_sha256.clone();
        if let Some(m) = snap.meta {
            manifest.etcd.bbolt_txid = m.txid;
            manifest.etcd.bbolt_page_size = m.page_size;
        }
        let w_entries = w.entry_count() + 1;
        let fan = w.finish(manifest)?;
        Ok((fan, w_entries))
    });
    let result = pipeline.await.context("backup pipeline crashed")?;
    signals.abort();
    bar.finish_and_clear();
    let (fan, entries) = result.context("backup failed; nothing was published")?;

    let record = Record {
        format_version: FORMAT_VERSION,
        name: name.key(),
        created: created.format(&time::format_description::well_known::Rfc3339)?,
        cluster,
        node,
        etcd_revision: status.revision,
        etcd_version: status.version.clone(),
        etcd_member_id: status.member_id.clone(),
        etcd_cluster_id: status.cluster_id.clone(),
        snapshot_size,
        bundle_size: fan.bytes,
        bundle_sha256: fan.sha256(),
        recipients: recipients_fp,
        forced,
        tool_version: crate::TOOL_VERSION.into(),
        lock_mode: None,
        retain_until: None,
    };
    for (store, err) in &fan.failures {
        outcomes.push(StoreOutcome {
            store: store.clone(),
            ok: false,
            error: Some(err.clone()),
        });
    }
    let bundle_size = fan.bytes;
    let bundle_sha = fan.sha256();
    for (store, upload) in fan.targets {
        let Some(upload) = upload else { continue };
        match upload.commit(&record) {
            Ok(()) => outcomes.push(StoreOutcome {
                store,
                ok: true,
                error: None,
            }),
            Err(e) => outcomes.push(StoreOutcome {
                store,
                ok: false,
                error: Some(format!("{e:#}")),
            }),
        }
    }
    mark_pending(&store_locations, &stores, &outcomes, &name.key());
    let report = BackupReport {
        name: name.key(),
        platform: plan.layout,
        etcd_endpoint: status.endpoint.clone(),
        etcd_revision: status.revision,
        snapshot_size: record.snapshot_size,
        bundle_size,
        bundle_sha256: bundle_sha,
        entries,
        forced,
        duration_seconds: started.elapsed().as_secs_f64(),
        stores: outcomes,
    };
    let failed = report.stores.iter().filter(|s| !s.ok).count();
    tracing::info!(
        backup = %report.name,
        bundle_bytes = report.bundle_size,
        snapshot_bytes = report.snapshot_size,
        revision = report.etcd_revision,
        seconds = format!("{:.2}", report.duration_seconds),
        stores_ok = report.stores.len() - failed,
        stores_failed = failed,
        "backup finished"
    );
    output::emit(common.output, &report, |r| {
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

/// Marks the local copies that succeeded with the stores that failed, for `--upload-pending`.
fn mark_pending(
    specs: &[config::StoreSpec],
    stores: &[Box<dyn crate::store::Store>],
    outcomes: &[StoreOutcome],
    key: &str,
) {
    let url_of = |location: &str| {
        stores
            .iter()
            .zip(specs)
            .find(|(s, _)| s.location() == location)
            .map(|(_, spec)| spec.url.clone())
    };
    let missed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .filter_map(|o| url_of(&o.store))
        .collect();
    if missed.is_empty() {
        return;
    }
    for o in outcomes.iter().filter(|o| o.ok) {
        let Some(url) = url_of(&o.store).filter(|u| !u.contains("://")) else {
            continue;
        };
        let marked = crate::store::LocalStore::new(&url)
            .bundle_path(key)
            .and_then(|p| crate::store::pending::write(&p, &missed));
        match marked {
            Ok(()) => {
                tracing::warn!(store = %url, missed = ?missed, "local copy marked pending; run `cpbackup backup --upload-pending` once the stores are back")
            }
            Err(e) => {
                tracing::error!(store = %url, error = %format!("{e:#}"), "could not mark the local copy pending")
            }
        }
    }
}

fn describe_failures(outcomes: &[StoreOutcome]) -> String {
    outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.store, o.error.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join("; ")
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
