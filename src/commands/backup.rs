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
use crate::cli::{BackupArgs, BackupSettings};
use crate::config::{self, Common, EtcdSettings, FileConfig};
use crate::etcd;
use crate::host::static_pods::StaticPodsMode;
use crate::host::{HostRoot, Platform, discover, static_pods};
use crate::keys::Recipients;
use crate::lock::NodeLock;
use crate::output::OutputFormat;
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
    /// The member's database size as etcd reports it (dbSize).
    pub etcd_db_size: i64,
    pub snapshot_size: u64,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    pub entries: usize,
    pub forced: bool,
    pub duration_seconds: f64,
    /// Streaming the snapshot through the bundle into every store.
    pub snapshot_seconds: f64,
    /// Publishing: records, Object Lock read-back, completing uploads.
    pub upload_seconds: f64,
    pub stores: Vec<StoreOutcome>,
}

impl BackupReport {
    pub fn failed_stores(&self) -> usize {
        self.stores.iter().filter(|s| !s.ok).count()
    }
}

/// Why a backup failed, for metrics and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Settings, keys or host layout are wrong: retrying will not help.
    Config,
    /// Another backup holds the node lock.
    Lock,
    /// etcd unreachable, refused us, or failed mid-stream.
    Etcd,
    /// No store took the backup, or some store failed.
    Store,
    /// SIGTERM/SIGINT.
    Cancelled,
    /// The one-per-cluster election could not be held.
    Election,
    /// OpenShift: a control-plane operator is rolling out, or the check could not run.
    Precheck,
}

impl FailureReason {
    pub const ALL: [FailureReason; 7] = [
        FailureReason::Config,
        FailureReason::Lock,
        FailureReason::Etcd,
        FailureReason::Store,
        FailureReason::Cancelled,
        FailureReason::Election,
        FailureReason::Precheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Config => "config",
            FailureReason::Lock => "lock",
            FailureReason::Etcd => "etcd",
            FailureReason::Store => "store",
            FailureReason::Cancelled => "cancelled",
            FailureReason::Election => "election",
            FailureReason::Precheck => "precheck",
        }
    }
}

/// A failed backup: the reason class and the error to show.
#[derive(Debug)]
pub struct Failure {
    pub reason: FailureReason,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(reason: FailureReason, error: anyhow::Error) -> Self {
        Failure { reason, error }
    }
}

trait Classify<T> {
    fn because(self, reason: FailureReason) -> Result<T, Failure>;
}

impl<T> Classify<T> for anyhow::Result<T> {
    fn because(self, reason: FailureReason) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(reason, e))
    }
}

/// One backup's settings, resolved and validated (every usage error surfaces here).
#[derive(Clone)]
pub struct BackupJob {
    pub host: HostRoot,
    pub etcd: EtcdSettings,
    pub recipients: Recipients,
    pub stores: Vec<crate::store::StoreSpec>,
    pub level: u32,
    pub mode: StaticPodsMode,
    pub extra: Vec<std::path::PathBuf>,
    pub state_dir: std::path::PathBuf,
    pub node: Option<String>,
    pub cluster: Option<String>,
    pub force: bool,
    /// Schedule slot this backup is for (daemon only), stored in the record.
    pub slot: Option<String>,
    /// The ed25519 key that signs the record, if configured (loaded for each backup).
    pub signing_key: Option<std::path::PathBuf>,
}

impl BackupJob {
    pub fn resolve(
        args: &BackupSettings,
        common: &Common,
        file: &FileConfig,
    ) -> anyhow::Result<Self> {
        let host = HostRoot::new(&common.host_root);
        let etcd = EtcdSettings::resolve(&args.etcd, &file.etcd)?;
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
        let stores = config::resolve_stores(&args.stores, file)?;
        let level = config::resolve_compression_level(args.compression_level, file)?;
        let mode = args
            .static_pods
            .or(file.static_pods)
            .unwrap_or(StaticPodsMode::Auto);
        let mut extra = file.extra_paths.clone();
        extra.extend(args.extra_paths.iter().cloned());
        let state_dir = config::resolve_state_dir(args.state_dir.as_deref(), file, &host);
        let node = args.node_name.clone().or_else(|| file.node_name.clone());
        let cluster = args
            .cluster_name
            .clone()
            .or_else(|| file.cluster_name.clone());
        let signing_key = args
            .signing_key
            .clone()
            .or_else(|| file.signing_key.clone());
        if let Some(k) = &signing_key {
            crate::signing::SigningKey::load(k)?;
        }
        // Names given by the user must be usable in object names: fail before any side effect.
        BundleName::new(
            cluster.as_deref().unwrap_or("x"),
            node.as_deref().unwrap_or("x"),
            OffsetDateTime::UNIX_EPOCH,
            0,
        )?;
        Ok(BackupJob {
            host,
            etcd,
            recipients,
            stores,
            level,
            mode,
            extra,
            state_dir,
            node,
            cluster,
            force: false,
            slot: None,
            signing_key,
        })
    }

    /// Connects to the local etcd member as a backup would; returns the client, its status and
    /// the cluster name backups are filed under.
    pub async fn connect_etcd(
        &self,
    ) -> anyhow::Result<(etcd_client::Client, etcd::EtcdStatus, String)> {
        let platform = Platform::detect(&self.host);
        let access = discover::etcd_access(&self.host, platform, &self.etcd, self.node.as_deref())?;
        let (client, status) = etcd::connect(&access, self.etcd.connect_timeout).await?;
        let cluster = self
            .cluster
            .clone()
            .unwrap_or_else(|| format!("etcd-{}", status.cluster_id));
        Ok((client, status, cluster))
    }
}

/// `cpbackup backup`.
pub async fn run(
    args: &BackupArgs,
    common: &Common,
    file: &FileConfig,
    quiet: bool,
) -> anyhow::Result<()> {
    if args.upload_pending {
        return super::upload_pending::run(&args.settings, common, file);
    }
    let mut job = BackupJob::resolve(&args.settings, common, file)?;
    job.force = args.force;
    let textfile = args
        .metrics_textfile
        .clone()
        .or_else(|| file.metrics.textfile.clone());
    // Signal handlers are in place before any upload starts, so SIGINT/SIGTERM always aborts.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut on_signal = Signals::install()?;
    let signals = tokio::spawn(async move {
        on_signal.wait().await;
        tracing::warn!("signal received: aborting the backup, nothing will be published");
        let _ = cancel_tx.send(true);
    });
    let progress = !quiet && common.output == OutputFormat::Text;
    let result = execute(&job, cancel_rx, progress).await;
    signals.abort();
    if let Some(path) = &textfile {
        let mut state = crate::metrics::State::load(&job.state_dir);
        state.record_backup(&result);
        state.pending_uploads = crate::store::pending::upload::count_pending(&job.stores) as u64;
        if let Err(e) = state
            .save(&job.state_dir)
            .and_then(|()| crate::metrics::write_textfile(path, &state.render(None)))
        {
            tracing::error!(error = %format!("{e:#}"), file = %path.display(), "could not write the metrics textfile");
        }
    }
    let report = result.map_err(|f| f.error)?;
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

/// Takes one backup. `Ok` means at least one store holds it; the report says which did not.
/// Setting `cancel` to true aborts every upload; nothing is published then.
pub async fn execute(
    job: &BackupJob,
    cancel: watch::Receiver<bool>,
    progress: bool,
) -> Result<BackupReport, Failure> {
    use FailureReason as R;
    let started = Instant::now();
    let created = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    let host = &job.host;
    let stores = super::open_stores(&job.stores).because(R::Config)?;
    // A store that is wrongly set up stops everything (exit 2); one that is unreachable only
    // fails itself, so the other stores (a local spool) still get the backup.
    let mut unusable: Vec<StoreOutcome> = Vec::new();
    for s in &stores {
        if let Err(e) = s.preflight_write() {
            if crate::error::exit_code(&e) == crate::error::EXIT_USAGE {
                return Err(e.context(format!("store {}", s.location()))).because(R::Config);
            }
            tracing::error!(store = %s.location(), error = %format!("{e:#}"), "store unreachable; continuing with the others");
            unusable.push(StoreOutcome {
                store: s.location(),
                ok: false,
                error: Some(format!("{e:#}")),
            });
        }
    }

    let _lock = NodeLock::acquire(&job.state_dir, "backup").because(R::Lock)?;
    let platform = Platform::detect(host);
    if platform == Platform::Openshift && !job.force {
        openshift_precheck(host).await.because(R::Precheck)?;
    }
    let plan = static_pods::plan(host, job.mode, platform, &job.extra).because(R::Config)?;
    let access =
        discover::etcd_access(host, platform, &job.etcd, job.node.as_deref()).because(R::Config)?;
    tracing::info!(endpoint = %access.endpoint, platform = ?plan.layout, sources = plan.sources.len(), "starting backup");

    let (client, status) = etcd::connect(&access, job.etcd.connect_timeout)
        .await
        .because(R::Etcd)?;
    let cluster = job
        .cluster
        .clone()
        .unwrap_or_else(|| format!("etcd-{}", status.cluster_id));
    let node = job
        .node
        .clone()
        .or(access.node_name.clone())
        .or_else(discover::hostname)
        .context("cannot tell this node's name: pass --node-name")
        .because(R::Config)?;
    let name = BundleName::new(&cluster, &node, created, status.revision).because(R::Config)?;

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
        return Err(Failure::new(
            R::Store,
            anyhow::anyhow!(
                "no store could take the backup: {}",
                describe_failures(&outcomes)
            ),
        ));
    }

    let stream_started = Instant::now();
    let stream = etcd::snapshot::start(&client, job.etcd.stall_timeout, cancel.clone())
        .await
        .because(R::Etcd)?;
    let bar = progress::bytes_bar(stream.total, progress, "snapshot");
    let threads = default_threads();
    let forced = job.force;
    let created_text = created
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats");
    let manifest_base = Manifest {
        format_version: FORMAT_VERSION,
        tool_version: crate::TOOL_VERSION.into(),
        created: created_text.clone(),
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
    let recipients = job.recipients.clone();
    let recipients_fp = recipients.fingerprints();
    let level = job.level;
    let cancel_rx = cancel.clone();
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
    let result = pipeline
        .await
        .context("backup pipeline crashed")
        .because(R::Store)?;
    bar.finish_and_clear();
    let (fan, entries) = match result {
        Ok(v) => v,
        Err(e) => {
            let reason = if *cancel.borrow() {
                R::Cancelled
            } else if format!("{e:#}").contains("etcd") {
                R::Etcd
            } else {
                R::Store
            };
            return Err(Failure::new(
                reason,
                e.context("backup failed; nothing was published"),
            ));
        }
    };
    if *cancel.borrow() {
        return Err(Failure::new(
            R::Cancelled,
            anyhow::anyhow!("backup interrupted by signal; nothing was published"),
        ));
    }
    let snapshot_seconds = stream_started.elapsed().as_secs_f64();
    let upload_started = Instant::now();

    let record = Record {
        format_version: FORMAT_VERSION,
        name: name.key(),
        created: created_text,
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
        slot: job.slot.clone(),
        bundle_version_id: None,
        signature: None,
    };
    let mut record = record;
    if let Some(k) = &job.signing_key {
        match crate::signing::SigningKey::load(k) {
            Ok(key) => key.sign(&mut record),
            Err(e) => {
                return Err(Failure::new(
                    R::Config,
                    e.context("cannot sign the record; nothing was published"),
                ));
            }
        }
    }
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
    mark_pending(&job.stores, &stores, &outcomes, &name.key());
    let report = BackupReport {
        name: name.key(),
        platform: plan.layout,
        etcd_endpoint: status.endpoint.clone(),
        etcd_revision: status.revision,
        etcd_db_size: status.db_size,
        snapshot_size: record.snapshot_size,
        bundle_size,
        bundle_sha256: bundle_sha,
        entries,
        forced,
        duration_seconds: started.elapsed().as_secs_f64(),
        snapshot_seconds,
        upload_seconds: upload_started.elapsed().as_secs_f64(),
        stores: outcomes,
    };
    let failed = report.failed_stores();
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
    if failed == report.stores.len() {
        return Err(Failure::new(
            R::Store,
            anyhow::anyhow!(
                "no store kept the backup: {}",
                describe_failures(&report.stores)
            ),
        ));
    }
    Ok(report)
}

/// As cluster-backup.sh: no backup while kube-apiserver, kube-controller-manager,
/// kube-scheduler or etcd is rolling out, read through the node's localhost.kubeconfig.
async fn openshift_precheck(host: &HostRoot) -> anyhow::Result<()> {
    use crate::kubeapi::openshift::{LOCALHOST_KUBECONFIG, rollouts_in_progress};
    let kubeconfig = host.path(LOCALHOST_KUBECONFIG);
    let check = async {
        let client = crate::kubeapi::client_from_kubeconfig(&kubeconfig).await?;
        rollouts_in_progress(&client).await
    };
    let busy = match tokio::time::timeout(std::time::Duration::from_secs(30), check).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => anyhow::bail!(
            "cannot check the control-plane operators through {} ({e:#}); is the API server running? \
             Pass --force to back up anyway (the backup is then marked possibly dirty)",
            kubeconfig.display()
        ),
        Err(_) => anyhow::bail!(
            "the API server did not answer within 30 s; pass --force to back up anyway (marked possibly dirty)"
        ),
    };
    if !busy.is_empty() {
        let list: Vec<String> = busy
            .iter()
            .map(|(n, s)| format!("{n} (Progressing={s})"))
            .collect();
        anyhow::bail!(
            "a reliable backup requires that no rollout is in progress: {}. Wait until it finishes, \
             or pass --force (the backup is then marked possibly dirty)",
            list.join(", ")
        );
    }
    tracing::debug!("no control-plane rollout in progress");
    Ok(())
}

/// Marks the local copies that succeeded with the stores that failed, for `--upload-pending`.
fn mark_pending(
    specs: &[crate::store::StoreSpec],
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
