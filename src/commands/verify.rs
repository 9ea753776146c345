//! `cpbackup verify`: stream a backup, decrypt it and check every hash, the snapshot trailer
//! and its bbolt meta pages.

use anyhow::Context;

use crate::bundle::reader::{self, Expectation};
use crate::cli::VerifyArgs;
use crate::commands::{choose, stores_for};
use crate::keys::Identities;
use crate::output::OutputFormat;
use crate::output::{self, human_size};
use crate::progress;
use crate::settings::Settings;
use crate::store::Store;

#[derive(serde::Serialize)]
struct Report {
    name: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<reader::VerifyReport>,
    /// The store saw this backup written over; what was verified is the original.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tampered: Vec<String>,
}

/// A full verify (with the key), or `--ciphertext-only`.
pub fn run(args: &VerifyArgs, s: &Settings) -> anyhow::Result<()> {
    crate::commands::check_backup_arg(&args.which, "verify")?;
    let stores = crate::store::open_all(&stores_for(&args.which, &args.stores, s)?)?;
    if args.ciphertext_only {
        return ciphertext_only(&args.which, &stores, s.output);
    }
    full(&args.which, &s.identities(&args.identities)?, &stores, s)
}

fn full(
    which: &crate::cli::BackupRef,
    identity_files: &[std::path::PathBuf],
    stores: &[Box<dyn Store>],
    s: &Settings,
) -> anyhow::Result<()> {
    let format = s.output;
    let ids = Identities::load(identity_files)?;
    let chosen = choose(which, stores)?;
    let recorded_size = chosen.listing.record.as_ref().map(|r| r.bundle_size);
    let expect = Expectation::from_record(chosen.listing.record.as_ref());
    if chosen.listing.record.is_none() {
        tracing::warn!(backup = %chosen.listing.name, "no record beside this bundle: the backup may be incomplete; checking its content anyway");
    }
    if let (Some(have), Some(want)) = (chosen.listing.size, recorded_size)
        && have != want
    {
        let what = if have < want {
            "truncated"
        } else {
            "longer than recorded"
        };
        let err = format!(
            "bundle is {what}: {have} bytes in the store, {want} recorded. This copy is damaged: use another copy or another backup"
        );
        emit_failure(format, &chosen.listing.name, &chosen.listing.tampered, &err)?;
        anyhow::bail!(err);
    }
    let bar = progress::bytes_bar(chosen.listing.size.unwrap_or(0), s.progress(), "verify");
    let b = bar.clone();
    let result = reader::verify(chosen.reader, &ids, &expect, Box::new(move |n| b.inc(n)));
    bar.finish_and_clear();
    match result {
        Ok(rep) => {
            tracing::info!(backup = %chosen.listing.name, entries = rep.entries, "backup verified");
            let report = Report {
                name: chosen.listing.name.clone(),
                ok: true,
                error: None,
                details: Some(rep),
                tampered: chosen.listing.tampered.clone(),
            };
            output::emit(format, "VerifyReport", &report, |r| {
                let d = r.details.as_ref().expect("ok report has details");
                let meta = d.snapshot.meta.as_ref();
                format!(
                    "OK {}\n  entries: {} ({} files), {} plaintext, {} encrypted\n  snapshot: {} (etcd {} revision {}), sha256 trailer {}, bbolt txid {} page size {}\n  ciphertext sha256: {}{}",
                    r.name,
                    d.entries,
                    d.files,
                    human_size(d.plaintext_bytes),
                    human_size(d.ciphertext_bytes),
                    human_size(d.snapshot.size),
                    d.manifest.etcd.status.version,
                    d.manifest.etcd.status.revision,
                    d.snapshot.trailer.as_str(),
                    meta.map(|m| m.txid).unwrap_or(0),
                    meta.map(|m| m.page_size).unwrap_or(0),
                    d.ciphertext_sha256,
                    if expect.record.is_some() {
                        " (matches record)"
                    } else {
                        " (no record to compare)"
                    },
                )
            })
        }
        Err(e) => {
            emit_failure(
                format,
                &chosen.listing.name,
                &chosen.listing.tampered,
                &e.to_string(),
            )?;
            Err(anyhow::Error::new(e).context(format!("verifying {}", chosen.listing.name)))
        }
    }
}

fn emit_failure(
    format: OutputFormat,
    name: &str,
    tampered: &[String],
    err: &str,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        let r = Report {
            name: name.into(),
            ok: false,
            error: Some(err.into()),
            details: None,
            tampered: tampered.to_vec(),
        };
        output::emit(format, "VerifyReport", &r, |_| String::new())?;
    }
    Ok(())
}

/// `verify --ciphertext-only`: the stored bytes against the record and the lock, no key.
fn ciphertext_only(
    which: &crate::cli::BackupRef,
    stores: &[Box<dyn Store>],
    format: OutputFormat,
) -> anyhow::Result<()> {
    let chosen = choose(which, stores)?;
    let report = crate::store::integrity::check(&chosen.listing, chosen.reader)
        .with_context(|| format!("reading {}", chosen.listing.name))?;
    output::emit(format, "CiphertextReport", &report, |r| {
        let mut s = format!(
            "{} {} (ciphertext only: no key was used)\n  {} bytes, sha256 {}",
            if r.ok { "OK" } else { "FAILED" },
            r.name,
            r.bytes,
            r.sha256
        );
        if let Some(v) = &r.version_id {
            s.push_str(&format!("\n  version {v}"));
        }
        s.push_str(&format!(
            "\n  lock: {} until {}",
            r.lock_mode.as_deref().unwrap_or("none"),
            r.retain_until.as_deref().unwrap_or("-")
        ));
        for p in &r.problems {
            s.push_str(&format!("\n  problem: {p}"));
        }
        s
    })?;
    if !report.ok {
        anyhow::bail!(
            "{} does not match its record: {}. Do not rely on this copy: use another copy or another backup",
            report.name,
            report.problems.join("; ")
        );
    }
    Ok(())
}
