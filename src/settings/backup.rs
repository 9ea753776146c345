//! What one backup takes and where it goes ([`BackupJob`]), from the flags `backup` and `daemon`
//! share over the config file; also the retention policy both apply.

use time::OffsetDateTime;

use super::Settings;
use super::flags::{BackupSettings, RetentionFlags};
use crate::backup::BackupJob;
use crate::bundle::codec::{self, Codec};
use crate::error::usage;
use crate::host::static_pods::StaticPodsMode;
use crate::keys::Recipients;
use crate::store::BundleName;
use crate::store::retention::Policy;

/// Resolves and checks a backup's settings; every usage error surfaces here, before any side
/// effect (the signing key is loaded once to prove it is usable).
pub fn job(args: &BackupSettings, s: &Settings) -> anyhow::Result<BackupJob> {
    job_with(args, s, recipients(args, s)?)
}

/// The recipients: flags over the file; at least one.
pub fn recipients(args: &BackupSettings, s: &Settings) -> anyhow::Result<Recipients> {
    let file = &s.file;
    Recipients::load(
        &if args.recipients.recipients.is_empty() {
            file.recipients.clone()
        } else {
            args.recipients.recipients.clone()
        },
        args.recipients
            .recipients_file
            .as_deref()
            .or(file.recipients_file.as_deref()),
    )
}

/// As [`job`], with the recipients already resolved (`doctor` reports a recipient problem as
/// one of its checks instead of stopping at it).
pub fn job_with(
    args: &BackupSettings,
    s: &Settings,
    recipients: Recipients,
) -> anyhow::Result<BackupJob> {
    let file = &s.file;
    let codec = codec(args, s);
    let mut extra = file.extra_paths.clone();
    extra.extend(args.extra_paths.iter().cloned());
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
        crate::store::signing::SigningKey::load(k)?;
    }
    // Names given by the user must be usable in object names.
    BundleName::new(
        cluster.as_deref().unwrap_or("x"),
        node.as_deref().unwrap_or("x"),
        OffsetDateTime::UNIX_EPOCH,
        0,
    )?;
    Ok(BackupJob {
        host: s.host(),
        etcd: super::etcd::resolve(&args.etcd, &file.etcd)?,
        recipients,
        stores: s.write_stores(&args.stores, args.state_dir.as_deref())?,
        codec,
        level: compression_level(codec, args.compression_level, s)?,
        mode: args
            .static_pods
            .or(file.static_pods)
            .unwrap_or(StaticPodsMode::Auto),
        extra,
        state_dir: s.state_dir(args.state_dir.as_deref()),
        node,
        cluster,
        force: false,
        slot: None,
        signing_key,
    })
}

/// The compressor of new bundles: flag, file, else zstd.
pub fn codec(args: &BackupSettings, s: &Settings) -> Codec {
    args.compression
        .or(s.file.compression)
        .unwrap_or(codec::DEFAULT_CODEC)
}

/// The codec's level: flag, file, else the codec's default; in the codec's range.
pub fn compression_level(codec: Codec, flag: Option<u32>, s: &Settings) -> anyhow::Result<u32> {
    let level = flag
        .or(s.file.compression_level)
        .unwrap_or(codec.default_level());
    let levels = codec.levels();
    if !levels.contains(&level) {
        return Err(usage(format!(
            "compression_level = {level} is out of range for {}: use {} (fastest) to {} (smallest)",
            codec.name(),
            levels.start(),
            levels.end()
        )));
    }
    Ok(level)
}

/// The retention policy: flags over the config file's `[retention]`.
pub fn retention(args: &RetentionFlags, s: &Settings) -> Policy {
    let f = &s.file.retention;
    Policy {
        keep_last: args.keep_last.or(f.keep_last),
        keep_hourly: args.keep_hourly.or(f.keep_hourly),
        keep_daily: args.keep_daily.or(f.keep_daily),
        keep_weekly: args.keep_weekly.or(f.keep_weekly),
        keep_monthly: args.keep_monthly.or(f.keep_monthly),
        max_age_days: args.max_age_days.or(f.max_age_days),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_level_range() {
        let s = Settings::with_file(&Default::default(), Default::default());
        assert!(compression_level(Codec::Gzip, Some(0), &s).is_err());
        assert_eq!(compression_level(Codec::Gzip, Some(9), &s).unwrap(), 9);
        let e = compression_level(Codec::Gzip, Some(19), &s).unwrap_err();
        assert!(e.to_string().contains("for gzip"), "{e}");
        assert_eq!(compression_level(Codec::Zstd, Some(19), &s).unwrap(), 19);
        assert_eq!(compression_level(Codec::Zstd, None, &s).unwrap(), 3);
        assert!(compression_level(Codec::Zstd, Some(23), &s).is_err());
    }
}
