//! `cpbackup inspect`: what a snapshot holds, from a bare file or straight from a backup.

use std::fs::File;
use std::path::Path;

use anyhow::Context;

use crate::bundle::reader;
use crate::cli::{GroupBy, InspectArgs, OutputFormat};
use crate::commands::{choose, map_file as map, open_stores, starts_with_age};
use crate::config::{self, FileConfig};
use crate::keys::Identities;
use crate::output::{self, human_size};
use crate::snapshot::report::{self, Report};
use crate::snapshot::stats::Group;

#[derive(serde::Serialize)]
struct Output {
    source: String,
    #[serde(flatten)]
    report: Report,
}

pub fn run(args: &InspectArgs, file: &FileConfig, format: OutputFormat) -> anyhow::Result<()> {
    let source = args.which.backup.clone();
    let (name, mapped) = match source.as_deref().filter(|s| Path::new(s).is_file()) {
        Some(path) if !starts_with_age(Path::new(path))? => {
            (path.to_owned(), map(File::open(path)?, path)?)
        }
        _ => {
            let ids = Identities::load(&config::resolve_identities(&args.identities, file)?)?;
            let stores = if source.as_deref().is_some_and(|s| Path::new(s).is_file()) {
                Vec::new()
            } else {
                open_stores(&config::resolve_stores(&args.stores, file)?)?
            };
            let chosen = choose(&args.which, &stores)?;
            let spool_dir = args
                .spool_dir
                .clone()
                .or_else(|| file.spool_dir.clone())
                .unwrap_or_else(std::env::temp_dir);
            let mut spool = tempfile::tempfile_in(&spool_dir).with_context(|| {
                format!(
                    "cannot create a spool file in {}; pass --spool-dir DIR",
                    spool_dir.display()
                )
            })?;
            reader::extract_snapshot(chosen.reader, &ids, &mut spool)
                .with_context(|| format!("reading the snapshot from {}", chosen.name))?;
            (chosen.name.clone(), map(spool, &chosen.name)?)
        }
    };
    let report = report::analyze(&mapped).with_context(|| {
        format!("{name} is not a readable etcd snapshot (corrupt, truncated, or not a bbolt file)")
    })?;
    let out = Output {
        source: name,
        report,
    };
    output::emit(format, &out, |o| text(o, args.by, args.top))
}

fn text(o: &Output, by: GroupBy, top: usize) -> String {
    let r = &o.report;
    let mut s = format!(
        "{}: {}, sha256 trailer {}\n\
         revision {} (head {}, compacted at {}), {} keys in {} buckets, {} live, {} stored revisions\n\
         total size {} (page size {}, txid {}), hash {}\n",
        o.source,
        human_size(r.file_size),
        r.hash_trailer.as_str(),
        r.revision,
        r.head_revision,
        r.compact_revision,
        r.total_keys,
        r.buckets.len(),
        r.live_keys,
        r.key_revisions,
        human_size(r.total_size),
        r.page_size,
        r.txid,
        r.hash,
    );
    let (title, groups): (&str, &[Group]) = match by {
        GroupBy::Resource => ("RESOURCE", &r.breakdown.by_resource),
        GroupBy::Namespace => ("NAMESPACE", &r.breakdown.by_namespace),
    };
    let total: u64 = groups.iter().map(|g| g.bytes).sum::<u64>().max(1);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .take(top)
        .map(|g| {
            vec![
                g.name.clone(),
                g.keys.to_string(),
                human_size(g.bytes),
                format!("{:.1}%", 100.0 * g.bytes as f64 / total as f64),
            ]
        })
        .collect();
    s.push('\n');
    s.push_str(&output::table(&[title, "KEYS", "SIZE", "SHARE"], &rows));
    if groups.len() > top {
        s.push_str(&format!(
            "\n… {} more (--top N, or --output json for all)",
            groups.len() - top
        ));
    }
    s
}
