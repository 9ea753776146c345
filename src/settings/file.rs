//! The config file (`/etc/cpbackup/config.toml`, or `--config`): its tables and keys as
//! written, every key optional, unknown keys refused with their name.

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// `host_root`: where host paths are read (`--host-root`).
    pub host_root: Option<PathBuf>,
    /// `output`: text or json.
    pub output: Option<OutputFormat>,
    /// `log_format`: text or json.
    pub log_format: Option<LogFormat>,
    /// `cluster_name`: the cluster's name in backup names (default `etcd-<cluster id>`).
    pub cluster_name: Option<String>,
    /// `node_name`: this node's name (default from the etcd certificate, else the hostname).
    pub node_name: Option<String>,
    /// `state_dir`: node lock, metrics state, restore journal, S3 cache.
    pub state_dir: Option<PathBuf>,
    /// `static_pods`: auto, openshift, kubeadm or none.
    pub static_pods: Option<StaticPodsMode>,
    /// `extra_paths`: more host paths to bundle.
    #[serde(default)]
    pub extra_paths: Vec<PathBuf>,
    /// `recipients`: age recipients (`age1…`) to encrypt to.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// `recipients_file`: a file of recipients, one per line.
    pub recipients_file: Option<PathBuf>,
    /// `identities`: age identity files that decrypt backups.
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    /// `compression`: zstd (default) or gzip.
    pub compression: Option<crate::bundle::codec::Codec>,
    /// `compression_level`: zstd 1–19 (default 3), gzip 1–9 (default 1).
    pub compression_level: Option<u32>,
    /// ed25519 key that signs each record (`backup --signing-key`).
    pub signing_key: Option<PathBuf>,
    /// Public keys whose signatures readers accept (`--trust-signer`).
    #[serde(default)]
    pub trusted_signers: Vec<String>,
    /// `spool_dir`: where `inspect` and `extract` spool a backup's snapshot.
    pub spool_dir: Option<PathBuf>,
    /// `[retention]`: the keep rules `prune` and the daemon apply.
    #[serde(default)]
    pub retention: crate::store::retention::Policy,
    /// `[etcd]`: how to reach the local member.
    #[serde(default)]
    pub etcd: FileEtcd,
    /// `[[store]]`: where backups go, each with its own settings.
    #[serde(default, rename = "store")]
    pub stores: Vec<FileStore>,
    /// `[schedule]`: when the daemon backs up.
    #[serde(default)]
    pub schedule: FileSchedule,
    /// `[metrics]`: where the daemon's metrics go.
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
    /// IANA time zone of the expressions (default UTC).
    pub timezone: Option<String>,
    /// Random delay 0..N seconds after each scheduled time.
    pub jitter_seconds: Option<u64>,
    /// per-node or one-per-cluster.
    pub mode: Option<crate::daemon::schedule::ScheduleMode>,
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
    /// Not given.
    #[default]
    None,
    /// One value.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, as a list.
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
    /// The local member's client URL.
    pub endpoint: Option<String>,
    /// CA of etcd's serving certificate.
    pub cacert: Option<PathBuf>,
    /// Client certificate (mTLS).
    pub cert: Option<PathBuf>,
    /// Client key (mTLS).
    pub key: Option<PathBuf>,
    /// Seconds to wait for etcd to answer.
    pub connect_timeout: Option<u64>,
    /// Seconds the snapshot stream may send nothing.
    pub stall_timeout: Option<u64>,
}

/// One `[[store]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    /// A directory (local store) or `s3://bucket/prefix`.
    pub url: String,
    /// S3 endpoint for S3-compatible servers.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET.
    pub path_style: Option<bool>,
    /// Extra CA certificates (PEM) for the endpoint.
    pub ca_bundle: Option<PathBuf>,
    /// Object Lock mode for new backups.
    pub lock_mode: Option<crate::store::s3::LockMode>,
    /// Days each backup stays locked.
    pub retain_days: Option<u32>,
    /// Accept a bucket without Object Lock.
    pub allow_mutable: Option<bool>,
    /// S3 requests in flight at once when listing.
    pub concurrency: Option<usize>,
}

impl FileConfig {
    /// Reads the config file. A missing file is fine only when it is the default path.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(explicit, Path::new(DEFAULT_CONFIG_PATH))
    }

    /// As [`FileConfig::load`], with `default` read when no file is named (a missing default
    /// means defaults): `<host-root>/etc/cpbackup/config.toml` under `--host-root`, so the
    /// node's own config applies from a debug pod too.
    pub fn load_from(explicit: Option<&Path>, default: &Path) -> anyhow::Result<Self> {
        let path = explicit.unwrap_or(default);
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
            include_str!("../../docs/configuration.md"),
            include_str!("../../docs/scheduling.md"),
            include_str!("../../README.md"),
        ] {
            let mut rest = doc;
            while let Some(start) = rest.find("```toml\n") {
                let block = &rest[start + 8..];
                let end = block.find("```").expect("closed code block");
                let example = &block[..end];
                let c = FileConfig::parse(example).unwrap_or_else(|e| panic!("{e}\n{example}"));
                for expr in c.schedule.cron.to_vec() {
                    crate::daemon::schedule::six_fields(&expr).unwrap();
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
}
