//! `cpbackup list`: every backup in the stores with its state; needs no key.

use crate::cli::ListArgs;
use crate::output::{self, human_size};
use crate::settings::Settings;
use crate::store::{BundleName, Listing};

/// Lists every store, oldest first per store.
pub fn run(args: &ListArgs, s: &Settings) -> anyhow::Result<()> {
    let stores = s.stores(&args.stores)?;
    let format = s.output;
    let mut all: Vec<Listing> = Vec::new();
    for store in crate::store::open_all(&stores)? {
        all.extend(store.list()?);
    }
    let many = stores.len() > 1;
    output::emit(format, &all, |all| {
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
