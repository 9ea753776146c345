//! Copies local backups marked pending to the stores they missed (the bytes as they are: same
//! ciphertext, same record), then clears the mark. Run by `backup --upload-pending` and by the
//! daemon after each slot, with the node lock held.

use std::io;

use anyhow::Context;

use crate::store::{self, BundleName, LocalStore, Store, StoreSpec, pending};

/// One pending copy tried: which backup, from which local store, to which store.
#[derive(serde::Serialize)]
pub struct Copied {
    pub backup: String,
    pub from: String,
    pub to: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Copies every pending local backup to the stores it missed. The caller holds the node lock.
pub fn upload_all(specs: &[StoreSpec]) -> anyhow::Result<Vec<Copied>> {
    let mut done: Vec<Copied> = Vec::new();
    for local_spec in specs.iter().filter(|s| s.is_local()) {
        let local = LocalStore::new(&local_spec.url);
        for l in local.list()?.into_iter().filter(|l| !l.pending.is_empty()) {
            let bundle = local.bundle_path(&l.name)?;
            let mut still = Vec::new();
            for target in &l.pending {
                let result = copy_one(&local, &l, target, specs);
                if result.is_err() {
                    still.push(target.clone());
                }
                done.push(Copied {
                    backup: l.name.clone(),
                    from: local_spec.url.clone(),
                    to: target.clone(),
                    ok: result.is_ok(),
                    error: result.err().map(|e| format!("{e:#}")),
                });
            }
            pending::write(&bundle, &still)?;
        }
    }
    Ok(done)
}

/// How many (backup, store) copies are still pending in the local stores.
pub fn count_pending(specs: &[StoreSpec]) -> usize {
    specs
        .iter()
        .filter(|s| s.is_local())
        .filter_map(|s| LocalStore::new(&s.url).list().ok())
        .flatten()
        .map(|l| l.pending.len())
        .sum()
}

fn copy_one(
    local: &LocalStore,
    l: &store::Listing,
    target: &str,
    specs: &[StoreSpec],
) -> anyhow::Result<()> {
    let spec = specs.iter().find(|s| s.url == target).with_context(|| {
        format!("{target} is not among the configured stores; pass it with --store (with its settings) to upload")
    })?;
    let record = l
        .record
        .clone()
        .context("the local copy has no record; it is incomplete and cannot be uploaded")?;
    let name = BundleName::parse(&l.name).context("bad backup name")?;
    let dest = store::open(spec)?;
    dest.preflight_write()?;
    if dest
        .list()?
        .iter()
        .any(|d| d.name == l.name && d.state == store::BackupState::Complete)
    {
        tracing::info!(backup = %l.name, store = %target, "already there; clearing the pending mark");
        return Ok(());
    }
    let mut up = dest.create(&name)?;
    let mut src = local.open(&l.name)?;
    let n =
        io::copy(&mut src, &mut up).with_context(|| format!("copying {} to {target}", l.name))?;
    if n != record.bundle_size {
        anyhow::bail!(
            "{} is {n} bytes, its record says {}; not uploading a damaged copy",
            l.name,
            record.bundle_size
        );
    }
    up.commit(&record)?;
    tracing::info!(backup = %l.name, store = %target, bytes = n, "pending backup uploaded");
    Ok(())
}
