//! `cpbackup inspect`: what a snapshot holds, from a bare file or straight from a backup.

use std::fs::File;

use anyhow::Context;

use crate::bundle::reader;
use crate::cli::{GroupBy, InspectArgs};
use crate::commands::{BackupInput, SnapshotInput, map_file as map, snapshot_input};
use crate::output::{self, human_size};
use crate::settings::Settings;
use crate::snapshot::report::{self, Report};
use crate::snapshot::stats::Group;

#[derive(serde::Serialize)]
struct Output {
    source: String,
    #[serde(flatten)]
    report: Report,
}

/// Reads the snapshot and prints its summary.
pub fn run(args: &InspectArgs, s: &Settings) -> anyhow::Result<()> {
    let input = snapshot_input(&args.source, s, "inspect")?;
    let (name, mapped) = match input {
        SnapshotInput::Bare(path) => {
            let mapped = map(File::open(&path)?, &path)?;
            (path, mapped)
        }
        SnapshotInput::Backup(input) => {
            let BackupInput {
                chosen,
                ids,
                mut spool,
            } = *input;
            reader::extract_snapshot(
                chosen.reader,
                &ids,
                &reader::Expectation::from_record(chosen.listing.record.as_ref()),
                &mut spool,
                0,
                &|_, _| false,
            )
            .with_context(|| format!("reading the snapshot from {}", chosen.listing.name))?;
            let mapped = map(spool, &chosen.listing.name)?;
            (chosen.listing.name, mapped)
        }
    };
    let report = report::analyze(&mapped).with_context(|| {
        format!("{name} is not a readable etcd snapshot (corrupt, truncated, or not a bbolt file)")
    })?;
    let out = Output {
        source: name,
        report,
    };
    output::emit(s.output, "SnapshotReport", &out, |o| {
        text(o, args.by, args.top)
    })
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
