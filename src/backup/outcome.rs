//! What one backup produced: the report of a success, or a failure with its class (for the
//! daemon's retries and the `cpbackup_backup_failures_total{reason}` metric).

use crate::host::Platform;
use crate::store::BundleName;

/// One store's part in a backup.
#[derive(Debug, serde::Serialize)]
pub struct StoreOutcome {
    /// The store's location.
    pub store: String,
    /// Whether it holds the backup, record included.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StoreOutcome {
    pub(crate) fn failed(store: String, error: &anyhow::Error) -> Self {
        StoreOutcome {
            store,
            ok: false,
            error: Some(format!("{error:#}")),
        }
    }
}

/// A backup that reached at least one store.
#[derive(Debug, serde::Serialize)]
pub struct BackupReport {
    /// `cluster/node/file.cpb`.
    pub name: BundleName,
    /// Which static pod layout was bundled.
    pub platform: Platform,
    /// The etcd member the snapshot came from.
    pub etcd_endpoint: String,
    /// The snapshot's revision.
    pub etcd_revision: i64,
    /// The member's database size as etcd reports it (dbSize).
    pub etcd_db_size: i64,
    /// Bytes of the snapshot.
    pub snapshot_size: u64,
    /// Bytes of the encrypted bundle.
    pub bundle_size: u64,
    /// SHA-256 of the encrypted bundle.
    pub bundle_sha256: String,
    /// Tar entries, the manifest included.
    pub entries: usize,
    /// Taken with `--force` (marked possibly dirty).
    pub forced: bool,
    /// Wall time of the whole backup.
    pub duration_seconds: f64,
    /// Streaming the snapshot through the bundle into every store.
    pub snapshot_seconds: f64,
    /// Publishing: records, Object Lock read-back, completing uploads.
    pub upload_seconds: f64,
    /// Every store's outcome.
    pub stores: Vec<StoreOutcome>,
    /// The certificates the bundle holds, with their expiry (for the metrics).
    #[serde(skip)]
    pub certificates: Vec<crate::doctor::certs::CertInfo>,
}

impl BackupReport {
    /// How many stores do not hold the backup.
    pub fn failed_stores(&self) -> usize {
        self.stores.iter().filter(|s| !s.ok).count()
    }
}

/// Why a backup failed, for metrics and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Settings, keys or host layout are wrong: retrying will not help.
    Config,
    /// Another backup holds the node lock.
    Lock,
    /// etcd unreachable, refused us, or failed mid-stream.
    Etcd,
    /// No store took the backup, or some store failed.
    Store,
    /// SIGTERM/SIGINT.
    Cancelled,
    /// The one-per-cluster election could not be held.
    Election,
    /// OpenShift: a control-plane operator is rolling out, or the check could not run.
    Precheck,
    /// The members' key-value hashes differ at one revision: the data is not the cluster's.
    Inconsistent,
}

impl FailureReason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [FailureReason; 8] = [
        FailureReason::Config,
        FailureReason::Lock,
        FailureReason::Etcd,
        FailureReason::Store,
        FailureReason::Cancelled,
        FailureReason::Election,
        FailureReason::Precheck,
        FailureReason::Inconsistent,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Config => "config",
            FailureReason::Lock => "lock",
            FailureReason::Etcd => "etcd",
            FailureReason::Store => "store",
            FailureReason::Cancelled => "cancelled",
            FailureReason::Election => "election",
            FailureReason::Precheck => "precheck",
            FailureReason::Inconsistent => "inconsistent",
        }
    }
}

/// A failed backup: the reason class and the error to show.
#[derive(Debug)]
pub struct Failure {
    /// The class.
    pub reason: FailureReason,
    /// What went wrong, for the user.
    pub error: anyhow::Error,
}

impl Failure {
    /// A failure of class `reason`.
    pub fn new(reason: FailureReason, error: anyhow::Error) -> Self {
        Failure { reason, error }
    }
}

/// Tags an error with the phase's failure class.
pub(crate) trait Classify<T> {
    fn because(self, reason: FailureReason) -> Result<T, Failure>;
}

impl<T> Classify<T> for anyhow::Result<T> {
    fn because(self, reason: FailureReason) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(reason, e))
    }
}

/// `store: error; store: error` for the stores that failed.
pub fn describe_failures(outcomes: &[StoreOutcome]) -> String {
    outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.store, o.error.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join("; ")
}
