//! Settings from the config file, the environment and flags, merged and validated up front.
//!
//! Precedence: flags > environment (both via clap) > config file > built-in defaults. Every
//! error names the key and says how to fix it, and maps to exit code 2.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli;
use crate::error::usage;
use crate::host::static_pods::StaticPodsMode;
use crate::logging::LogFormat;
use crate::output::OutputFormat;

/// Where the config file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cpbackup/config.toml";

/// The config file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host_root: Option<PathBuf>,
    pub output: Option<OutputFormat>,
    pub log_format: Option<LogFormat>,
    pub cluster_name: Option<String>,
    pub node_name: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub static_pods: Option<StaticPodsMode>,
    #[serde(default)]
    pub extra_paths: Vec<PathBuf>,
    #[serde(default)]
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    pub compression_level: Option<u32>,
    /// ed25519 key that signs each record (`backup --signing-key`).
    pub signing_key: Option<PathBuf>,
    /// Public keys whose signatures readers accept (`--trust-signer`).
    #[serde(default)]
    pub trusted_signers: Vec<String>,
    pub spool_dir: Option<PathBuf>,
    #[serde(default)]
    pub retention: crate::store::retention::Policy,
    #[serde(default)]
    pub etcd: FileEtcd,
    #[serde(default, rename = "store")]
    pub stores: Vec<FileStore>,
    #[serde(default)]
    pub schedule: FileSchedule,
    #[serde(default)]
    pub metrics: FileMetrics,
}

/// `[schedule]` table: how `cpbackup daemon` runs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSchedule {
    /// One cron expression or a list of them.
    #[serde(default)]
    pub cron: OneOrMany,
    pub timezone: Option<String>,
    pub jitter_seconds: Option<u64>,
    pub mode: Option<crate::schedule::ScheduleMode>,
    /// Extra attempts after a failed backup, within the slot (default 3).
    pub retries: Option<u32>,
    /// First retry delay; doubles each time (default 30).
    pub retry_backoff_seconds: Option<u64>,
    /// Lease of the one-per-cluster lock: how soon another node takes over a dead one's slot
    /// (default 30).
    pub election_ttl_seconds: Option<u64>,
}

/// A string or a list of strings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[metrics]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetrics {
    /// `ADDR:PORT` for /metrics and /healthz of the daemon, or "off".
    pub address: Option<String>,
    /// node_exporter textfile-collector file, rewritten atomically after each backup.
    pub textfile: Option<PathBuf>,
}

/// `[etcd]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEtcd {
    pub endpoint: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub connect_timeout: Option<u64>,
    pub stall_timeout: Option<u64>,
}

/// One `[[store]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    /// A directory (local store) or `s3://bucket/prefix`.
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub ca_bundle: Option<PathBuf>,
    pub lock_mode: Option<crate::store::s3::LockMode>,
    pub retain_days: Option<u32>,
    pub allow_mutable: Option<bool>,
}

impl FileConfig {
    /// Reads the config file. A missing file is fine only when it is the default path.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(usage(format!(
                    "cannot read config file {}: {e}; fix the path given to --config (or CPBACKUP_CONFIG)",
                    path.display()
                )));
            }
        };
        Self::parse(&text).map_err(|e| usage(format!("config file {}: {e}", path.display())))
    }

    /// Parses config text; the error names the offending key and line.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            format!(
                "{}see docs/configuration.md for every key",
                e.to_string().trim_end().to_owned() + "\n"
            )
        })
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub host_root: PathBuf,
    pub output: OutputFormat,
}

impl Common {
    pub fn resolve(cli: &cli::Cli, file: &FileConfig) -> Self {
        Common {
            host_root: cli
                .host_root
                .clone()
                .or_else(|| file.host_root.clone())
                .unwrap_or_else(|| PathBuf::from("/")),
            output: cli.output.or(file.output).unwrap_or(OutputFormat::Text),
        }
    }
}

/// Explicit etcd connection settings; anything `None` is discovered from the host.
#[derive(Debug, Clone, Default)]
pub struct EtcdSettings {
    pub endpoint: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
}

impl EtcdSettings {
    pub fn resolve(args: &cli::EtcdArgs, file: &FileEtcd) -> anyhow::Result<Self> {
        let secs = |flag: Option<u64>, key: Option<u64>, name: &str, default: u64| {
            let v = flag.or(key).unwrap_or(default);
            if v == 0 || v > 3600 {
                Err(usage(format!(
                    "etcd.{name} = {v} is out of range: give seconds between 1 and 3600"
                )))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        let s = EtcdSettings {
            endpoint: args.etcd_endpoint.clone().or_else(|| file.endpoint.clone()),
            cacert: args.etcd_cacert.clone().or_else(|| file.cacert.clone()),
            cert: args.etcd_cert.clone().or_else(|| file.cert.clone()),
            key: args.etcd_key.clone().or_else(|| file.key.clone()),
            connect_timeout: secs(
                args.etcd_connect_timeout,
                file.connect_timeout,
                "connect_timeout",
                10,
            )?,
            stall_timeout: secs(
                args.etcd_stall_timeout,
                file.stall_timeout,
                "stall_timeout",
                60,
            )?,
        };
        if let Some(ep) = &s.endpoint {
            if ep.contains(',') {
                return Err(usage(format!(
                    "etcd.endpoint = {ep:?} names several endpoints: a snapshot is the state of one member, give only the local member's URL"
                )));
            }
            if !(ep.starts_with("https://") || ep.starts_with("http://")) {
                return Err(usage(format!(
                    "etcd.endpoint = {ep:?} is not a URL: write it as https://HOST:2379"
                )));
            }
        }
        if s.cert.is_some() != s.key.is_some() {
            return Err(usage(
                "etcd.cert and etcd.key go together: give both (--etcd-cert and --etcd-key) or neither",
            ));
        }
        Ok(s)
    }
}

/// Stores: `--store` flags replace the file's list; S3 flags apply over every store's settings.
pub fn resolve_stores(
    args: &cli::StoreArgs,
    file: &FileConfig,
) -> anyhow::Result<Vec<crate::store::StoreSpec>> {
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
        let retain_days = args.retain_days.or(fs.retain_days).unwrap_or(d.retain_days);
        if retain_days == 0 || retain_days > 36500 {
            return Err(usage(format!(
                "store {url}: retain_days = {retain_days} is out of range: give 1 to 36500 days"
            )));
        }
        out.push(crate::store::StoreSpec {
            s3: crate::store::s3::S3Settings {
                endpoint: args.s3_endpoint.clone().or_else(|| fs.endpoint.clone()),
                region: args.s3_region.clone().or_else(|| fs.region.clone()),
                path_style: args.s3_path_style || fs.path_style.unwrap_or(false),
                ca_bundle: args.s3_ca_bundle.clone().or_else(|| fs.ca_bundle.clone()),
                lock_mode: args.lock_mode.or(fs.lock_mode).unwrap_or(d.lock_mode),
                retain_days,
                allow_mutable: args.allow_mutable || fs.allow_mutable.unwrap_or(false),
                part_size: args.s3_part_size.unwrap_or(d.part_size),
            },
            url,
        });
    }
    Ok(out)
}

/// Identity files, flags replacing the file's list.
/// `trusted_signers` from the file, for a command that reads a backup and was given no
/// `--trust-signer` (nor `CPBACKUP_TRUST_SIGNER`).
pub fn default_trusted_signers(command: &mut cli::Command, file: &FileConfig) {
    let given = match command {
        cli::Command::Verify(a) => &mut a.which.trust.trust_signers,
        cli::Command::Inspect(a) => &mut a.which.trust.trust_signers,
        cli::Command::ExportOpenshift(a) => &mut a.which.trust.trust_signers,
        cli::Command::Extract(a) => &mut a.which.trust.trust_signers,
        cli::Command::Restore(a) => &mut a.trust.trust_signers,
        _ => return,
    };
    if given.is_empty() {
        given.clone_from(&file.trusted_signers);
    }
}

pub fn resolve_identities(
    args: &cli::IdentityArgs,
    file: &FileConfig,
) -> anyhow::Result<Vec<PathBuf>> {
    let ids = if args.identities.is_empty() {
        file.identities.clone()
    } else {
        args.identities.clone()
    };
    if ids.is_empty() {
        return Err(usage(
            "no identity given: pass --identity FILE (the age key made by `cpbackup keygen`) to read a backup",
        ));
    }
    Ok(ids)
}

/// The state directory (node lock, metrics state): flag, file, else /var/lib/cpbackup on the host.
pub fn resolve_state_dir(
    flag: Option<&Path>,
    file: &FileConfig,
    host: &crate::host::HostRoot,
) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| file.state_dir.clone())
        .unwrap_or_else(|| host.path("/var/lib/cpbackup"))
}

/// gzip level, 1..=9.
pub fn resolve_compression_level(flag: Option<u32>, file: &FileConfig) -> anyhow::Result<u32> {
    let level = flag
        .or(file.compression_level)
        .unwrap_or(crate::bundle::DEFAULT_GZIP_LEVEL);
    if !(1..=9).contains(&level) {
        return Err(usage(format!(
            "compression_level = {level} is out of range: use 1 (fastest) to 9 (smallest)"
        )));
    }
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c = FileConfig::parse(
            r#"
host_root = "/host"
cluster_name = "prod"
static_pods = "openshift"
recipients = ["age1xyz"]
compression_level = 3
[etcd]
endpoint = "https://10.0.0.1:2379"
connect_timeout = 5
[[store]]
url = "/var/lib/cpbackup/backups"
[[store]]
url = "/mnt/nfs/backups"
"#,
        )
        .unwrap();
        assert_eq!(c.stores.len(), 2);
        assert_eq!(c.static_pods, Some(StaticPodsMode::Openshift));
        assert_eq!(c.etcd.connect_timeout, Some(5));
    }

    #[test]
    fn the_documented_examples_parse() {
        let mut checked = 0;
        for doc in [
            include_str!("../docs/configuration.md"),
            include_str!("../docs/scheduling.md"),
            include_str!("../README.md"),
        ] {
            let mut rest = doc;
            while let Some(start) = rest.find("```toml\n") {
                let block = &rest[start + 8..];
                let end = block.find("```").expect("closed code block");
                let example = &block[..end];
                let c = FileConfig::parse(example).unwrap_or_else(|e| panic!("{e}\n{example}"));
                for expr in c.schedule.cron.to_vec() {
                    crate::schedule::six_fields(&expr).unwrap();
                }
                checked += 1;
                rest = &block[end..];
            }
        }
        assert!(
            checked >= 2,
            "the README and docs/configuration.md each show a config example"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = FileConfig::parse("compresion_level = 3\n").unwrap_err();
        assert!(e.contains("compresion_level"), "{e}");
        let e = FileConfig::parse("[etcd]\nendpont = \"x\"\n").unwrap_err();
        assert!(e.contains("endpont"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = FileConfig::parse("static_pods = \"everything\"\n").unwrap_err();
        assert!(e.contains("static_pods") || e.contains("everything"), "{e}");
    }

    #[test]
    fn flags_beat_file() {
        let file = FileConfig::parse("[[store]]\nurl = \"/a\"\n").unwrap();
        let args = cli::StoreArgs {
            stores: vec!["/b".into()],
            ..Default::default()
        };
        assert_eq!(resolve_stores(&args, &file).unwrap()[0].url, "/b");
        let none = cli::StoreArgs::default();
        assert_eq!(resolve_stores(&none, &file).unwrap()[0].url, "/a");
        let e = resolve_stores(&none, &FileConfig::default()).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
    }

    #[test]
    fn s3_store_settings_merge() {
        let file = FileConfig::parse(
            "[[store]]\nurl = \"s3://b/p\"\nlock_mode = \"governance\"\nretain_days = 7\nendpoint = \"http://x\"\n",
        )
        .unwrap();
        let s = &resolve_stores(&cli::StoreArgs::default(), &file).unwrap()[0];
        assert_eq!(s.s3.retain_days, 7);
        assert_eq!(s.s3.lock_mode, crate::store::s3::LockMode::Governance);
        let flags = cli::StoreArgs {
            retain_days: Some(90),
            ..Default::default()
        };
        assert_eq!(resolve_stores(&flags, &file).unwrap()[0].s3.retain_days, 90);
        let zero = cli::StoreArgs {
            retain_days: Some(0),
            ..Default::default()
        };
        assert_eq!(
            crate::error::exit_code(&resolve_stores(&zero, &file).unwrap_err()),
            2
        );
    }

    #[test]
    fn etcd_validation() {
        let mut a = cli::EtcdArgs {
            etcd_endpoint: Some("https://a:2379,https://b:2379".into()),
            ..Default::default()
        };
        assert!(EtcdSettings::resolve(&a, &FileEtcd::default()).is_err());
        a.etcd_endpoint = Some("https://a:2379".into());
        a.etcd_cert = Some("/c".into());
        let e = EtcdSettings::resolve(&a, &FileEtcd::default()).unwrap_err();
        assert!(e.to_string().contains("etcd.key"));
        a.etcd_key = Some("/k".into());
        let s = EtcdSettings::resolve(&a, &FileEtcd::default()).unwrap();
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn compression_level_range() {
        assert!(resolve_compression_level(Some(0), &FileConfig::default()).is_err());
        assert_eq!(
            resolve_compression_level(Some(9), &FileConfig::default()).unwrap(),
            9
        );
    }
}
