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
