//! Store settings: `--store` flags replace the file's `[[store]]` list; the S3 flags apply over
//! every store's own keys.

use super::file::{FileConfig, FileStore};
use super::flags::{StoreArgs, StoreWriteArgs};
use crate::error::usage;
use crate::store::StoreSpec;

/// Stores: `--store` flags replace the file's list; S3 flags apply over every store's settings
/// (`write`: the lock flags of the commands that write backups).
pub fn resolve(
    args: &StoreArgs,
    write: &StoreWriteArgs,
    file: &FileConfig,
) -> anyhow::Result<Vec<StoreSpec>> {
    let from_file: Vec<&FileStore> = file.stores.iter().collect();
    let default = FileStore::default();
    let entries: Vec<(String, &FileStore)> = if args.stores.is_empty() {
        from_file.iter().map(|s| (s.url.clone(), *s)).collect()
    } else {
        args.stores.iter().map(|u| (u.clone(), &default)).collect()
    };
    if entries.is_empty() {
        return Err(usage(
            "no store configured: pass --store DIR|s3://BUCKET/PREFIX (repeatable) or add a [[store]] table with url = \"/var/lib/cpbackup/backups\" to the config file",
        ));
    }
    let mut out = Vec::new();
    for (url, fs) in entries {
        if url.trim().is_empty() {
            return Err(usage(
                "store: an empty location was given; remove it or write a directory path",
            ));
        }
        let d = crate::store::s3::S3Settings::default();
        let retain_days = write
            .retain_days
            .or(fs.retain_days)
            .unwrap_or(d.retain_days);
        if retain_days == 0 || retain_days > 36500 {
            return Err(usage(format!(
                "store {url}: retain_days = {retain_days} is out of range: give 1 to 36500 days"
            )));
        }
        let list_concurrency = args
            .s3_concurrency
            .or(fs.concurrency)
            .unwrap_or(d.list_concurrency);
        if !(1..=256).contains(&list_concurrency) {
            return Err(usage(format!(
                "store {url}: concurrency = {list_concurrency} is out of range: give 1 to 256 requests"
            )));
        }
        out.push(StoreSpec {
            s3: crate::store::s3::S3Settings {
                endpoint: args.s3_endpoint.clone().or_else(|| fs.endpoint.clone()),
                region: args.s3_region.clone().or_else(|| fs.region.clone()),
                path_style: args.s3_path_style || fs.path_style.unwrap_or(false),
                ca_bundle: args.s3_ca_bundle.clone().or_else(|| fs.ca_bundle.clone()),
                lock_mode: write.lock_mode.or(fs.lock_mode).unwrap_or(d.lock_mode),
                retain_days,
                allow_mutable: write.allow_mutable || fs.allow_mutable.unwrap_or(false),
                part_size: write.s3_part_size.unwrap_or(d.part_size),
                list_concurrency,
                cache_dir: None,
            },
            url,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file() {
        let file = FileConfig::parse("[[store]]\nurl = \"/a\"\n").unwrap();
        let args = StoreArgs {
            stores: vec!["/b".into()],
            ..Default::default()
        };
        let w = StoreWriteArgs::default();
        assert_eq!(resolve(&args, &w, &file).unwrap()[0].url, "/b");
        let none = StoreArgs::default();
        assert_eq!(resolve(&none, &w, &file).unwrap()[0].url, "/a");
        let e = resolve(&none, &w, &FileConfig::default()).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
    }

    #[test]
    fn s3_store_settings_merge() {
        let file = FileConfig::parse(
            "[[store]]\nurl = \"s3://b/p\"\nlock_mode = \"governance\"\nretain_days = 7\nendpoint = \"http://x\"\n",
        )
        .unwrap();
        let none = StoreArgs::default();
        let s = &resolve(&none, &StoreWriteArgs::default(), &file).unwrap()[0];
        assert_eq!(s.s3.retain_days, 7);
        assert_eq!(s.s3.lock_mode, crate::store::s3::LockMode::Governance);
        let flags = StoreWriteArgs {
            retain_days: Some(90),
            ..Default::default()
        };
        assert_eq!(resolve(&none, &flags, &file).unwrap()[0].s3.retain_days, 90);
        let zero = StoreWriteArgs {
            retain_days: Some(0),
            ..Default::default()
        };
        assert_eq!(
            crate::error::exit_code(&resolve(&none, &zero, &file).unwrap_err()),
            2
        );
    }
}
