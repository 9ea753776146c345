//! `cpbackup list`: every backup in the stores with its state; needs no key.

use crate::cli::ListArgs;
use crate::output::{self, OutputFormat, human_size};
use crate::settings::Settings;
use crate::store::query::{self, Query};
use crate::store::{BundleName, Listing};

/// Lists every store, oldest first per store (newest first with `--reverse`). The names are
/// filtered before any record is read; `--fast` and `--summary` read no record at all.
pub fn run(args: &ListArgs, s: &Settings) -> anyhow::Result<()> {
    let stores = s.stores(&args.stores)?;
    let format = s.output;
    let query = Query {
        cluster: args.cluster.clone(),
        node: args.node.clone(),
        since: args.since,
        until: args.until,
    };
    let mut all: Vec<Listing> = Vec::new();
    // a store that does not answer is named; the others are still listed
    let mut dead: Vec<String> = Vec::new();
    for store in crate::store::open_all(&stores)? {
        let read = || -> anyhow::Result<Vec<Listing>> {
            let mut found: Vec<Listing> = store
                .scan()?
                .into_iter()
                .filter(|l| query.matches(&l.name))
                .collect();
            if let Some(n) = args.limit {
                // the newest N of this store (its listing is oldest first)
                found.drain(..found.len().saturating_sub(n));
            }
            if !args.fast && !args.summary {
                store.read_records(&mut found)?;
            }
            Ok(found)
        };
        match read() {
            Ok(found) => all.extend(found),
            Err(e) if stores.len() > 1 => {
                eprintln!(
                    "WARNING: store {} did not answer: {e:#}; listing the others",
                    store.location()
                );
                dead.push(store.location());
            }
            Err(e) => return Err(e),
        }
    }
    if dead.len() == stores.len() {
        anyhow::bail!(
            "no store answered ({}); see the warnings above",
            dead.join(", ")
        );
    }
    let result = show(args, format, all, stores.len() > 1);
    if !dead.is_empty() && result.is_ok() {
        anyhow::bail!(
            "{} of {} stores did not answer ({}): the backups above are those of the others",
            dead.len(),
            stores.len(),
            dead.join(", ")
        );
    }
    result
}

/// Prints the listings (or the summary) as asked.
fn show(
    args: &ListArgs,
    format: OutputFormat,
    mut all: Vec<Listing>,
    many: bool,
) -> anyhow::Result<()> {
    if args.summary {
        return summary(&all, format);
    }
    if let Some(n) = args.limit {
        crate::store::sort_listings(&mut all);
        all.drain(..all.len().saturating_sub(n));
    }
    if args.reverse {
        all.reverse();
    }
    if args.fast && format == OutputFormat::Text {
        eprintln!(
            "--fast: records and lock state not read; backups with both files show as `unchecked`"
        );
    }
    output::emit_each(format, "Backup", &all, |all| {
        if all.is_empty() {
            return "no backups".into();
        }
        let mut header = vec![
            "TIME",
            "NODE",
            "REVISION",
            "SIZE",
            "LOCK",
            "RETAIN-UNTIL",
            "STATE",
            "NOTES",
            "NAME",
        ];
        if many {
            header.push("STORE");
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|l| {
                let r = l.record.as_ref();
                let mut row = vec![
                    r.map(|r| r.created.clone())
                        .unwrap_or_else(|| time_from_name(&l.name)),
                    r.map(|r| r.node.clone())
                        .or_else(|| BundleName::parse(&l.name).map(|n| n.node))
                        .unwrap_or_default(),
                    r.map(|r| r.etcd_revision.to_string())
                        .unwrap_or_else(|| "-".into()),
                    l.size.map(human_size).unwrap_or_else(|| "-".into()),
                    r.and_then(|r| r.lock_mode.clone())
                        .unwrap_or_else(|| "none".into()),
                    r.and_then(|r| r.retain_until.clone())
                        .unwrap_or_else(|| "-".into()),
                    l.state.as_str().to_owned(),
                    notes(l),
                    l.name.clone(),
                ];
                if many {
                    row.push(l.store.clone());
                }
                row
            })
            .collect();
        let mut text = output::table(&header, &rows);
        for l in all {
            for t in &l.tampered {
                text.push_str(&format!("\n{}: tampered: {t}", l.name));
            }
            if let Some(e) = &l.record_error {
                text.push_str(&format!("\n{}: its record is unusable: {e}", l.name));
            }
        }
        text
    })
}

/// What else a reader must know of a backup: still to upload somewhere, taken with `--force`,
/// etcd only.
fn notes(l: &Listing) -> String {
    let mut n = Vec::new();
    if !l.pending.is_empty() {
        n.push(format!("pending: {}", l.pending.join(",")));
    }
    if let Some(r) = &l.record {
        if r.forced {
            n.push("forced".to_owned());
        }
        if r.etcd_only {
            n.push("etcd-only".to_owned());
        }
    }
    if n.is_empty() {
        "-".into()
    } else {
        n.join(" ")
    }
}

/// `list --summary`: a line per cluster.
fn summary(all: &[Listing], format: OutputFormat) -> anyhow::Result<()> {
    let lines = query::summarize(all, time::OffsetDateTime::now_utc());
    output::emit_each(format, "ClusterSummary", &lines, |lines| {
        if lines.is_empty() {
            return "no backups".into();
        }
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|c| {
                vec![
                    c.cluster.clone(),
                    c.backups.to_string(),
                    c.nodes.to_string(),
                    c.newest.clone().unwrap_or_else(|| "-".into()),
                    c.newest_age_seconds.map(age).unwrap_or_else(|| "-".into()),
                    human_size(c.bytes),
                    c.tampered.to_string(),
                ]
            })
            .collect();
        output::table(
            &[
                "CLUSTER", "BACKUPS", "NODES", "NEWEST", "AGE", "SIZE", "TAMPERED",
            ],
            &rows,
        )
    })
}

/// `90s`, `42m`, `5h`, `3d`.
fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `c/n/20261122T221005Z-rev7.cpb` → `2026-11-22T22:10:05Z` (for backups without a record).
fn time_from_name(name: &str) -> String {
    BundleName::parse(name)
        .and_then(|n| n.time())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_from_file_name() {
        assert_eq!(
            super::time_from_name("c/n/20261122T221005Z-rev7.cpb"),
            "2026-11-22T22:10:05Z"
        );
        assert_eq!(super::time_from_name("c/n/odd.cpb"), "-");
    }
}
