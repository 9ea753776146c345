//! Phase 4 of a backup: the record is built (and signed), every upload is committed — the
//! bundle becomes visible, then its record beside it — and the local copies are marked with
//! the stores that missed the backup, for `--upload-pending`.

use std::time::Instant;

use super::BackupJob;
use super::outcome::{BackupReport, Failure, FailureReason as R, StoreOutcome, describe_failures};
use super::preflight::{Source, Stores};
use super::stream::Streamed;
use crate::bundle::manifest::FORMAT_VERSION;
use crate::store::{Record, StoreSpec};

/// When the backup began, for the report's timings.
pub(crate) struct Started {
    pub at: Instant,
    pub created: String,
}

/// Publishes the streamed bundle in every store that took it.
pub(crate) fn publish(
    job: &BackupJob,
    stores: &Stores,
    source: &Source,
    streamed: Streamed,
    mut outcomes: Vec<StoreOutcome>,
    started: &Started,
) -> Result<BackupReport, Failure> {
    let upload_started = Instant::now();
    let record = record(job, source, &streamed, &started.created)?;
    let Streamed {
        fan,
        entries,
        certificates,
        seconds: snapshot_seconds,
        ..
    } = streamed;
    for (store, err) in &fan.failures {
        outcomes.push(StoreOutcome {
            store: store.clone(),
            ok: false,
            error: Some(err.clone()),
        });
    }
    let (bundle_size, bundle_sha256) = (fan.bytes, fan.sha256());
    for (store, upload) in fan.targets {
        let Some(upload) = upload else { continue };
        outcomes.push(match upload.commit(&record) {
            Ok(()) => StoreOutcome {
                store,
                ok: true,
                error: None,
            },
            Err(e) => StoreOutcome::failed(store, &e),
        });
    }
    mark_pending(&job.stores, stores, &outcomes, &record.name);
    let status = &source.status;
    let report = BackupReport {
        name: source.name.clone(),
        platform: source.plan.layout,
        etcd_endpoint: status.endpoint.clone(),
        etcd_revision: status.revision,
        etcd_db_size: status.db_size,
        snapshot_size: record.snapshot_size,
        bundle_size,
        bundle_sha256,
        entries,
        forced: job.force,
        duration_seconds: started.at.elapsed().as_secs_f64(),
        snapshot_seconds,
        upload_seconds: upload_started.elapsed().as_secs_f64(),
        stores: outcomes,
        // found as the files passed into the bundle, named by the host's own paths
        certificates: certificates
            .into_iter()
            .map(|mut c| {
                c.path = job.host.host_path_of(&c.path).unwrap_or(c.path);
                c
            })
            .collect(),
    };
    let failed = report.failed_stores();
    tracing::info!(
        backup = %report.name,
        bundle_bytes = report.bundle_size,
        snapshot_bytes = report.snapshot_size,
        revision = report.etcd_revision,
        seconds = crate::logging::seconds(report.duration_seconds),
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

/// The record written beside the bundle, signed when a signing key is configured.
fn record(
    job: &BackupJob,
    source: &Source,
    streamed: &Streamed,
    created: &str,
) -> Result<Record, Failure> {
    let status = &source.status;
    let mut record = Record {
        format_version: FORMAT_VERSION,
        name: source.name.key(),
        created: created.to_owned(),
        cluster: source.cluster.clone(),
        node: source.node.clone(),
        etcd_revision: status.revision,
        etcd_version: status.version.clone(),
        etcd_member_id: status.member_id.clone(),
        etcd_cluster_id: status.cluster_id.clone(),
        snapshot_size: streamed.snapshot_size,
        bundle_size: streamed.fan.bytes,
        bundle_sha256: streamed.fan.sha256(),
        recipients: job.recipients.fingerprints(),
        compression: Some(job.codec.name().into()),
        forced: job.force,
        etcd_only: source.plan.layout == crate::host::Platform::Unknown,
        tool_version: crate::TOOL_VERSION.into(),
        lock_mode: None,
        retain_until: None,
        slot: job.slot.clone(),
        bundle_version_id: None,
        signature: None,
    };
    if let Some(k) = &job.signing_key {
        let key = crate::store::signing::SigningKey::load(k).map_err(|e| {
            Failure::new(
                R::Config,
                e.context("cannot sign the record; nothing was published"),
            )
        })?;
        key.sign(&mut record);
    }
    Ok(record)
}

/// Marks the local copies that succeeded with the stores that failed, for `--upload-pending`.
fn mark_pending(specs: &[StoreSpec], stores: &Stores, outcomes: &[StoreOutcome], key: &str) {
    let spec_of = |location: &str| {
        stores
            .all
            .iter()
            .zip(specs)
            .find(|(s, _)| s.location() == location)
            .map(|(_, spec)| spec)
    };
    let missed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .filter_map(|o| spec_of(&o.store).map(|s| s.url.clone()))
        .collect();
    if missed.is_empty() {
        return;
    }
    for o in outcomes.iter().filter(|o| o.ok) {
        let Some(spec) = spec_of(&o.store).filter(|s| s.is_local()) else {
            continue;
        };
        let marked = crate::store::LocalStore::new(&spec.url)
            .bundle_path(key)
            .and_then(|p| crate::store::pending::write(&p, &missed));
        match marked {
            Ok(()) => {
                tracing::warn!(store = %spec.url, missed = ?missed, "local copy marked pending; run `cpbackup backup --upload-pending` once the stores are back")
            }
            Err(e) => {
                tracing::error!(store = %spec.url, error = %format!("{e:#}"), "could not mark the local copy pending")
            }
        }
    }
}
