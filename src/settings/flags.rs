//! The flag groups several commands share, as clap parses them (the low layer of the settings:
//! `None` means "not given", so the file and the defaults can fill in). `cli` composes them into
//! the command tree; [`super`] resolves them with the config file.
#![allow(missing_docs)] // clap turns doc comments into --help text: the flags carry theirs; flattened groups and the structs that hold them need none

use std::path::PathBuf;

use clap::Args;

use crate::daemon::schedule::ScheduleMode;
use crate::host::static_pods::StaticPodsMode;
use crate::logging::LogFormat;
use crate::output::OutputFormat;

/// Flags every command takes (global: accepted before or after the command name).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalFlags {
    /// Config file (TOML). Default /etc/cpbackup/config.toml (under --host-root when given, so
    /// the node's own config applies from a debug pod); a missing default file means defaults.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CPBACKUP_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Read every host path (etcd certificates, static pod resources) under this directory, e.g.
    /// /host inside `oc debug node/…`. Paths given explicitly are used as written.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CPBACKUP_HOST_ROOT",
        value_name = "DIR"
    )]
    pub host_root: Option<PathBuf>,

    /// Report format on stdout (-o json, as kubectl).
    #[arg(
        short = 'o',
        long,
        global = true,
        help_heading = "Global options",
        env = "CPBACKUP_OUTPUT",
        value_enum
    )]
    pub output: Option<OutputFormat>,

    /// Log format on stderr (text on a terminal is coloured).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CPBACKUP_LOG_FORMAT",
        value_enum
    )]
    pub log_format: Option<LogFormat>,

    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors on stderr; no progress bar.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct EtcdArgs {
    /// etcd client URL of the local member (default: discovered from the host).
    #[arg(long, env = "CPBACKUP_ETCD_ENDPOINT", value_name = "URL")]
    pub etcd_endpoint: Option<String>,
    /// CA bundle that signed etcd's serving certificate.
    #[arg(long, env = "CPBACKUP_ETCD_CACERT", value_name = "FILE")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (mTLS).
    #[arg(long, env = "CPBACKUP_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key for etcd (mTLS).
    #[arg(long, env = "CPBACKUP_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// Seconds to wait for etcd to answer before giving up (default 10).
    #[arg(long, env = "CPBACKUP_ETCD_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = crate::settings::duration::parse_seconds)]
    pub etcd_connect_timeout: Option<u64>,
    /// Seconds without any snapshot data before the stream is declared stalled (default 60).
    #[arg(long, env = "CPBACKUP_ETCD_STALL_TIMEOUT", value_name = "DURATION", value_parser = crate::settings::duration::parse_seconds)]
    pub etcd_stall_timeout: Option<u64>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RecipientArgs {
    /// age recipient (age1…) to encrypt to; repeat for several (add an offline recovery key).
    #[arg(
        long = "recipient",
        env = "CPBACKUP_RECIPIENT",
        value_delimiter = ',',
        value_name = "AGE1…"
    )]
    pub recipients: Vec<String>,
    /// File with one recipient per line (`#` starts a comment).
    #[arg(long, env = "CPBACKUP_RECIPIENTS_FILE", value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Where backups go: a directory (local store) or s3://BUCKET/PREFIX. Repeat for several stores.
    #[arg(
        long = "store",
        env = "CPBACKUP_STORE",
        value_delimiter = ',',
        value_name = "PATH_OR_URL"
    )]
    pub stores: Vec<String>,
    /// S3 endpoint for S3-compatible servers (default: AWS). Credentials come only from the standard
    /// AWS chain: environment, shared profile, web identity (IRSA), instance metadata.
    #[arg(long, env = "CPBACKUP_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: from the AWS environment/profile, else us-east-1).
    #[arg(long, env = "CPBACKUP_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT.
    #[arg(long, env = "CPBACKUP_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Extra CA certificates (PEM) to trust for the S3 endpoint.
    #[arg(long, env = "CPBACKUP_S3_CA_BUNDLE", value_name = "FILE")]
    pub s3_ca_bundle: Option<PathBuf>,
    /// S3 requests in flight at once when listing reads records and lock state (1-256,
    /// default 32).
    #[arg(long, env = "CPBACKUP_S3_CONCURRENCY", value_name = "N")]
    pub s3_concurrency: Option<usize>,
    /// Where S3 records and COMPLIANCE locks already read are remembered, so that listing a
    /// fleet's store costs one listing (default: <state dir>/cache).
    #[arg(long, env = "CPBACKUP_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Ask the S3 store for every record and lock state; remember nothing (wins over
    /// --cache-dir).
    #[arg(long, env = "CPBACKUP_NO_CACHE")]
    pub no_cache: bool,
}

/// The stores of the commands that write backups (`backup`, `daemon`, `doctor`): where, plus
/// how new objects are locked. Read-only commands take [`StoreArgs`] alone.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreWriteArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Object Lock mode for new backups (default compliance).
    #[arg(long, env = "CPBACKUP_LOCK_MODE", value_enum)]
    pub lock_mode: Option<crate::store::s3::LockMode>,
    /// Days each backup stays locked (default 30).
    #[arg(long, env = "CPBACKUP_RETAIN_DAYS", value_name = "DAYS")]
    pub retain_days: Option<u32>,
    /// Accept a bucket without Object Lock (backups there can be deleted or overwritten).
    #[arg(long, env = "CPBACKUP_ALLOW_MUTABLE")]
    pub allow_mutable: bool,
    /// Multipart part size in bytes (tests and tuning; at least 5 MiB).
    #[arg(long, env = "CPBACKUP_S3_PART_SIZE", hide = true)]
    pub s3_part_size: Option<usize>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct IdentityArgs {
    /// age identity file able to decrypt the bundle; repeatable.
    #[arg(
        long = "identity",
        env = "CPBACKUP_IDENTITY",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub identities: Vec<PathBuf>,
}

/// Everything that decides what one backup takes and where it goes (shared by `backup` and
/// `daemon`).
#[derive(Debug, Clone, Default, Args)]
pub struct BackupSettings {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub stores: StoreWriteArgs,
    /// Which static pod resources to include.
    #[arg(long, env = "CPBACKUP_STATIC_PODS", value_enum)]
    pub static_pods: Option<StaticPodsMode>,
    /// Also include this host path (file or directory tree); repeatable.
    #[arg(
        long = "extra-path",
        env = "CPBACKUP_EXTRA_PATH",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub extra_paths: Vec<PathBuf>,
    /// Cluster name used in the object path (default: etcd cluster id).
    #[arg(long, env = "CPBACKUP_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// This node's name (default: from the etcd certificate name, else the hostname).
    #[arg(long, env = "CPBACKUP_NODE_NAME")]
    pub node_name: Option<String>,
    /// Directory for the node lock and the metrics state (default /var/lib/cpbackup under the
    /// host root).
    #[arg(long, env = "CPBACKUP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The compressor of new bundles: zstd (default; a fifth of gzip -1's size, a quarter of
    /// gzip -6's, on etcd snapshots of Kubernetes objects) or gzip.
    /// Bundles of either kind are always readable.
    #[arg(long, env = "CPBACKUP_COMPRESSION", value_enum)]
    pub compression: Option<crate::bundle::codec::Codec>,
    /// Compression level: zstd 1 (fastest) to 19 (smallest), default 3; gzip 1 to 9, default 1.
    #[arg(long, env = "CPBACKUP_COMPRESSION_LEVEL", value_name = "LEVEL")]
    pub compression_level: Option<u32>,
    /// Sign each backup's record with this ed25519 key (`cpbackup keygen --signing`), so
    /// readers with --trust-signer accept only backups this node made.
    #[arg(long, env = "CPBACKUP_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

/// Which node signing keys a command that reads a backup accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct TrustArgs {
    /// Accept only backups whose record is signed by this key (`cpbsig1:…` from
    /// `cpbackup keygen --signing`); repeatable. --latest passes over the others.
    #[arg(
        long = "trust-signer",
        env = "CPBACKUP_TRUST_SIGNER",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    pub trust_signers: Vec<String>,
}

/// When and how the daemon backs up.
#[derive(Debug, Clone, Default, Args)]
pub struct ScheduleFlags {
    /// When to back up: a cron expression, 5 fields (`0 */6 * * *`) or 6 with seconds first;
    /// repeatable. Default from [schedule] cron in the config.
    #[arg(long = "schedule", env = "CPBACKUP_SCHEDULE", value_name = "CRON")]
    pub schedules: Vec<String>,
    /// Time zone of the cron expressions (IANA name, e.g. Europe/Berlin; default UTC).
    #[arg(long, env = "CPBACKUP_TIMEZONE", value_name = "TZ")]
    pub timezone: Option<String>,
    /// Wait a random 0..N seconds after each scheduled time before starting (default 0).
    #[arg(long, env = "CPBACKUP_JITTER", value_name = "DURATION", value_parser = crate::settings::duration::parse_seconds)]
    pub jitter: Option<u64>,
    /// per-node: every master backs up its own member each slot; one-per-cluster: the masters
    /// elect one node per slot through etcd (a lease-backed lock), another takes over if it dies.
    #[arg(long, env = "CPBACKUP_SCHEDULE_MODE", value_enum)]
    pub mode: Option<ScheduleMode>,
}

/// The retention rules `prune` applies (the daemon takes them from the file's `[retention]`).
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionFlags {
    /// Keep the N newest backups.
    #[arg(long, env = "CPBACKUP_KEEP_LAST", value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours.
    #[arg(long, env = "CPBACKUP_KEEP_HOURLY", value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days.
    #[arg(long, env = "CPBACKUP_KEEP_DAILY", value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[arg(long, env = "CPBACKUP_KEEP_WEEKLY", value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months.
    #[arg(long, env = "CPBACKUP_KEEP_MONTHLY", value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Delete backups older than this many days (the newest complete one always stays).
    #[arg(long, env = "CPBACKUP_MAX_AGE_DAYS", value_name = "DAYS")]
    pub max_age_days: Option<u32>,
}
