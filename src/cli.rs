//! The command-line contract (see PRODUCT.md): clap definitions only, no behaviour.
//!
//! Every setting is a flag, an environment variable (`CPBACKUP_…`) and a key in the config file;
//! flags win over the environment, which wins over the file. Values left unset here are `None`
//! so that `settings` can tell "not given" from "given as the default".
#![allow(missing_docs)] // clap turns doc comments into --help text: the flags carry theirs; flattened groups and the structs that hold them need none

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::restore::RestorePlatform;
use crate::settings::flags::{
    BackupSettings, EtcdArgs, GlobalFlags, IdentityArgs, RetentionFlags, ScheduleFlags, StoreArgs,
    TrustArgs,
};

/// `cpbackup --version`: the version, and the Kubernetes releases `extract` decodes whole.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nKubernetes schema: the union of releases ",
    env!("CPBACKUP_K8S_RELEASES"),
    " (extract decodes every field of each; newer fields are flagged as lossy)"
);

const AFTER_HELP: &str = "\
Configuration: /etc/cpbackup/config.toml (or --config FILE) holds the same settings as the
flags; environment variables CPBACKUP_<FLAG> (e.g. CPBACKUP_STORE) sit in between. A missing
default config file means defaults.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.

Typical first run:
  # on your workstation (the identity never goes on a node): prints the recipient age1...
  cpbackup keygen --out ~/cpbackup.key
  # on a control-plane node, with only the recipient
  cpbackup backup --recipient age1... --store /var/lib/cpbackup/backups
  cpbackup list --store /var/lib/cpbackup/backups
  # back on the workstation, with a copy of the store (or the same S3 bucket)
  cpbackup verify --store ./backups --identity ~/cpbackup.key --latest

Durations take seconds (300) or units (90s, 5m, 1h30m). Manual pages: cpbackup man;
completions: cpbackup completion bash|zsh|fish.";

/// Encrypted, immutable backups of etcd and the control-plane static pod resources.
#[derive(Debug, Parser)]
#[command(name = "cpbackup", version, long_version = LONG_VERSION, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take one backup now: etcd snapshot + static pod resources, encrypted, to every store.
    ///
    /// The snapshot streams from the local etcd member through tar, gzip (all cores) and age
    /// straight into the stores: no plaintext copy touches the disk. The etcd endpoint and its
    /// client certificates are discovered from the host (OpenShift etcd.env, or kubeadm's
    /// /etc/kubernetes/pki) unless given.
    #[command(after_long_help = crate::help::BACKUP)]
    Backup(Box<BackupArgs>),
    /// List the backups in the stores: time, node, revision, size, lock, state, notes.
    ///
    /// Needs no key: it reads the unencrypted .cpb.json record beside each bundle. A bundle
    /// without its record is shown as `incomplete` (the backup did not finish); NOTES says
    /// `pending: STORE` (not uploaded there yet), `forced` and `etcd-only`. Filters (--cluster,
    /// --node, --since, --until, --limit) are applied to the names first, so only what is shown
    /// is read; --fast reads no record, --summary gives one line per cluster. A store that does
    /// not answer is named, the others are still listed (exit 1).
    #[command(after_long_help = crate::help::LIST)]
    List(ListArgs),
    /// Decrypt a backup and check every hash, the snapshot's sha256 trailer and its bbolt meta pages.
    ///
    /// Streams the bundle; nothing is written to disk. Exit code 1 names what is wrong: wrong
    /// key, corrupted or tampered bytes, truncation, or a hash mismatch.
    #[command(after_long_help = crate::help::VERIFY)]
    Verify(VerifyArgs),
    /// Apply the retention policy: delete old backups, never one still under Object Lock.
    ///
    /// Per cluster and node, a backup stays when a keep rule selects it; older than
    /// --max-age-days it goes; the newest complete backup always stays; with no rule nothing is
    /// deleted. Locked S3 object versions are kept and reported. Unfinished uploads older than a
    /// day are aborted. --dry-run prints the plan only.
    #[command(after_long_help = crate::help::PRUNE)]
    Prune(PruneArgs),
    /// What is in a snapshot: revision, keys, size, and which resources and namespaces hold them.
    ///
    /// Reads a bare snapshot (`etcdctl snapshot save` output or a copied member/snap/db) directly,
    /// or the snapshot inside a backup (decrypted as it streams into an unlinked, 0600 spool file
    /// that vanishes when cpbackup exits). Needs no etcd.
    #[command(after_long_help = crate::help::INSPECT)]
    Inspect(InspectArgs),
    /// Write a backup as OpenShift's cluster-backup.sh would: snapshot_<ts>.db and
    /// static_kuberesources_<ts>.tar.gz, for the stock cluster-restore.sh.
    ///
    /// Both files are plaintext (0600) and hold every control-plane key: write them only where the
    /// restore needs them (e.g. /home/core/assets/backup on the recovery master).
    #[command(name = "export-openshift", after_long_help = crate::help::EXPORT)]
    ExportOpenshift(ExportArgs),
    /// One namespace (or a key prefix) from a backup or a bare snapshot, offline, as YAML/JSON
    /// that re-applies cleanly, or applied to a live cluster.
    ///
    /// Reads the snapshot directly (no etcd, no API server) and decodes every object: protobuf
    /// with the union of the Kubernetes 1.30 … 1.35 schemas (every field of every release; more
    /// types with --proto-path; a field none of them knows marks the object lossy, see --strict),
    /// JSON custom resources as they are, values encrypted at rest with the cluster's own
    /// EncryptionConfiguration (taken from the backup, or --encryption-config). By default the
    /// output re-applies: server-set metadata and status stripped, controller-owned and
    /// auto-created objects left out, per-kind fix-ups, apply order; the cluster-scoped objects
    /// the namespace needs are reported (--with-cluster-deps writes them too). A value that
    /// cannot be decoded is reported and kept raw, never dropped.
    #[command(after_long_help = crate::help::EXTRACT)]
    Extract(Box<ExtractArgs>),
    /// Make a new age identity (private key) file, mode 0600, and print its recipient.
    ///
    /// Give the printed recipient (age1…) to `backup --recipient`; keep the identity file off the
    /// control-plane nodes (it is needed only to read backups).
    #[command(after_long_help = crate::help::KEYGEN)]
    Keygen(KeygenArgs),
    /// Whole-cluster restore of this control-plane node from a backup (prints a plan first).
    ///
    /// Order on a cluster with several masters: `restore --disable-etcd` on every other master,
    /// then on the recovery master `restore --dry-run` (prints every step, changes nothing),
    /// then `restore` (asks for confirmation; --yes skips it). The bundle is unpacked and
    /// verified before anything is touched; every step is journaled, so a restore cut short is
    /// finished with --continue or undone with --rollback. Nothing is deleted: etcd's data
    /// directory and every replaced file are moved aside.
    #[command(after_long_help = crate::help::RESTORE)]
    Restore(Box<RestoreArgs>),
    /// Check this node for what a backup and a restore will need; says OK or the fix for each.
    ///
    /// Platform and static pod resources; the etcd member (reachable with the discovered
    /// certificates, no alarm, database against its quota); every certificate a backup carries,
    /// with its expiry (WARN within --warn-days, FAIL when expired: a restore puts them back as
    /// they are); the recipients; every store (a probe object written and removed, Object Lock
    /// and default retention, this node's clock against the store's); free space for a restore;
    /// the restore tool; the timer or daemon, and the age of the newest backup. Exit 0 when
    /// nothing failed (warnings allowed), 1 when a check failed, 2 for a usage error.
    #[command(after_long_help = crate::help::DOCTOR)]
    Doctor(Box<DoctorArgs>),
    /// Run forever: back up on a cron schedule, prune, upload pending copies, serve metrics.
    ///
    /// Never two backups at once (an overlapping slot is skipped and counted); a failed backup is
    /// retried with backoff until the next slot; retention runs after each backup. SIGHUP reloads
    /// the config file; SIGTERM aborts an upload in flight (nothing half-written stays) and exits.
    /// /metrics serves Prometheus text, /healthz turns 503 when the last success is older than
    /// twice the schedule interval.
    #[command(after_long_help = crate::help::DAEMON)]
    Daemon(Box<DaemonArgs>),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    ///
    /// bash: `cpbackup completion bash > /etc/bash_completion.d/cpbackup`; zsh: into a directory
    /// of your $fpath as `_cpbackup`; fish: `~/.config/fish/completions/cpbackup.fish`.
    /// scripts/install.sh installs the bash and zsh ones.
    #[command(after_long_help = crate::help::COMPLETION)]
    Completion(CompletionArgs),
    /// Print the manual page (roff) for cpbackup, or write one per command into a directory.
    ///
    /// `cpbackup man | man -l -`; `cpbackup man --out /usr/local/share/man/man1` writes
    /// cpbackup.1 and cpbackup-<command>.1 (scripts/install.sh does).
    #[command(after_long_help = crate::help::MAN)]
    Man(ManArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub settings: BackupSettings,
    /// Warn about certificates that expire within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: i64,
    /// Do not write a probe object to the stores (only list them).
    #[arg(long)]
    pub no_write_probe: bool,
    /// Largest tolerated difference between this node's clock and a store's.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = crate::settings::duration::parse_seconds)]
    pub max_clock_skew: u64,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write cpbackup.1 and one page per command here instead of printing cpbackup.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub settings: BackupSettings,
    /// Take the backup even if checks fail (OpenShift: a control-plane rollout; everywhere:
    /// etcd members whose HashKV differ); the bundle is marked "possibly dirty".
    #[arg(long)]
    pub force: bool,
    /// Take no snapshot: copy local backups marked pending (a remote store failed when they
    /// were taken) to the stores they missed, then clear the mark.
    #[arg(long)]
    pub upload_pending: bool,
    /// After the backup (success or not), write the metrics to this file for node_exporter's
    /// textfile collector (written atomically; counters carry over between runs).
    #[arg(long, env = "CPBACKUP_METRICS_TEXTFILE", value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
}

/// Scheduled operation (the long-running `daemon`).
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub settings: BackupSettings,
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    /// Address for /metrics and /healthz (default 127.0.0.1:9790; `off` disables). Keep it on
    /// localhost unless a firewall guards it: the metrics name your cluster and nodes.
    #[arg(long, env = "CPBACKUP_METRICS_ADDRESS", value_name = "ADDR:PORT")]
    pub metrics_address: Option<String>,
    /// Also write the metrics to this node_exporter textfile after every slot.
    #[arg(long, env = "CPBACKUP_METRICS_TEXTFILE", value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup to restore: a name from `list`, a path to a .cpb file, or --latest.
    #[arg(
        value_name = "BACKUP",
        conflicts_with_all = ["latest", "continue_", "rollback", "disable_etcd"]
    )]
    pub backup: Option<String>,
    /// With --latest: only this cluster's backups (needed when the stores hold several).
    #[arg(long, value_name = "NAME", requires = "latest")]
    pub cluster: Option<String>,
    /// With --latest: only backups taken on this node.
    #[arg(long = "from-node", value_name = "NODE", requires = "latest")]
    pub from_node: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Restore this cluster's newest trustworthy backup (ranked by its record's time; says
    /// which it chose and why).
    #[arg(long, conflicts_with_all = ["continue_", "rollback", "disable_etcd"])]
    pub latest: bool,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Print every step and change nothing (the bundle is still fully verified).
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Finish a restore (or --disable-etcd) that was interrupted, from its journal.
    #[arg(long = "continue", id = "continue_", conflicts_with_all = ["rollback", "disable_etcd"])]
    pub continue_: bool,
    /// Undo the steps of the last restore (or --disable-etcd), newest first, from its journal.
    #[arg(long, conflicts_with = "disable_etcd")]
    pub rollback: bool,
    /// On every master except the recovery one, before the restore: stop etcd (kubeadm: and the
    /// API server) by moving its manifest aside, and wait until it is gone.
    #[arg(long, conflicts_with = "rejoin")]
    pub disable_etcd: bool,
    /// kubeadm, on every master except the recovery one, after the restore: join the restored
    /// cluster through the member at --etcd-endpoint (https://<recovery node>:2379). This
    /// node's etcd data directory is moved aside (kept), the node added as a member (a learner
    /// first, promoted once it has caught up), etcd started with the cluster's
    /// --initial-cluster and --initial-cluster-state=existing, then the API server. Takes over
    /// from a --disable-etcd; --dry-run shows the plan, --rollback removes the member again.
    #[arg(long, conflicts_with_all = ["continue_", "rollback"])]
    pub rejoin: bool,
    /// kubeadm: restore onto a new machine with another name and address (the old masters are
    /// gone). From the backup's own CAs (kept, so existing tokens and kubeconfigs stay valid)
    /// the etcd server and peer and the API server certificates are re-issued for
    /// --node-name and --node-ip, the kubelet gets a client certificate for its new name, the
    /// manifests and kubeconfigs are rewritten, and the old masters' leases, Nodes and the
    /// `kubernetes` endpoints are deleted from the restored database before etcd starts (saved
    /// to a file first). --dry-run shows every change as a diff. Not for OpenShift. With
    /// --rejoin, a further new machine joins the restored cluster as a master, its files taken
    /// from the backup and adapted the same way (the database is the cluster's).
    #[arg(long, requires_all = ["node_name", "node_ip"], conflicts_with_all = ["continue_", "rollback", "disable_etcd"])]
    pub new_host: bool,
    /// With --new-host: this host's node name (also its etcd member name).
    #[arg(long, value_name = "NAME", requires = "new_host")]
    pub node_name: Option<String>,
    /// With --new-host: the address etcd and the API server advertise on this host.
    #[arg(long, value_name = "IP", requires = "new_host")]
    pub node_ip: Option<std::net::IpAddr>,
    /// With --new-host: keep the old masters' Nodes, node leases, API server leases and the
    /// `kubernetes` endpoints in the restored database.
    #[arg(long, requires = "new_host")]
    pub keep_old_nodes: bool,
    /// This node's kind (auto: detected from the host).
    #[arg(long, value_enum, default_value = "auto")]
    pub platform: RestorePlatform,
    /// The snapshot restore tool (default: etcdutl, else etcdctl 3.4/3.5, on PATH or in the
    /// host's /usr/local/bin and /usr/bin). Not used on OpenShift, where etcd's image restores.
    #[arg(long, env = "CPBACKUP_ETCDUTL", value_name = "FILE")]
    pub etcdutl: Option<PathBuf>,
    /// Raise the restored revision by N and mark every older one compacted, so that clients
    /// that saw later revisions than the backup's relist instead of keeping stale caches
    /// (default 1,000,000,000, the value Kubernetes' docs use). kubeadm: done by etcdutl where
    /// it has --bump-revision (etcd 3.5.10+), else by cpbackup on the restored database.
    /// OpenShift's restore pod bumps by its own rule (1.2 × the raft index in revision.json).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub bump_revision: Option<u64>,
    /// How long to wait for a pod to stop or for etcd to serve before failing.
    #[arg(long, default_value_t = 300, value_name = "DURATION", value_parser = crate::settings::duration::parse_seconds)]
    pub wait_timeout: u64,
    /// State directory (journal and work files under restore/; default /var/lib/cpbackup).
    #[arg(long, env = "CPBACKUP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// After the restore (or alone, once it completed): run the platform's follow-up steps
    /// through the API. OpenShift 4.18+: quorum guard off, wait for a stable cluster, guard on;
    /// earlier: forceRedeploymentReason on etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler, each rolled out to every node.
    #[arg(long, requires = "kubeconfig")]
    pub post_restore: bool,
    /// kubeconfig for --post-restore (a certificate-based one, e.g. the node's
    /// localhost-recovery.kubeconfig).
    #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// --post-restore: how long to wait for the cluster to settle.
    #[arg(long, default_value_t = 1800, value_name = "DURATION", value_parser = crate::settings::duration::parse_seconds)]
    pub settle_timeout: u64,
    /// --post-restore: how long every cluster operator must stay settled (as
    /// `oc adm wait-for-stable-cluster`).
    #[arg(long, default_value_t = 300, value_name = "DURATION", value_parser = crate::settings::duration::parse_seconds)]
    pub stable_period: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Only this cluster's backups.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Only backups taken on this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only backups taken at or after this time: RFC 3339 (2026-11-30T00:00:00Z) or an age
    /// (90m, 36h, 7d).
    #[arg(long, value_name = "TIME|AGE", value_parser = crate::store::query::parse_when)]
    pub since: Option<time::OffsetDateTime>,
    /// Only backups taken before this time (RFC 3339 or an age, as --since).
    #[arg(long, value_name = "TIME|AGE", value_parser = crate::store::query::parse_when)]
    pub until: Option<time::OffsetDateTime>,
    /// At most this many backups: the newest N (with --reverse, the N shown first).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Newest first.
    #[arg(long)]
    pub reverse: bool,
    /// Names, sizes and what the listing shows only: no record or lock state is read (one
    /// request per 1,000 keys on S3). Backups with both files show as `unchecked`.
    #[arg(long)]
    pub fast: bool,
    /// One line per cluster: newest backup and its age, newest verified, count, bytes under
    /// lock, tampered count. Reads only the listing.
    #[arg(long, conflicts_with_all = ["fast", "limit", "reverse"])]
    pub summary: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackupRef {
    /// A backup as `list` names it (cluster/node/file.cpb) or a path to a .cpb file
    /// (`inspect` and `extract` also take a bare snapshot file).
    #[arg(
        value_name = "BACKUP",
        required_unless_present = "latest",
        conflicts_with = "latest"
    )]
    pub backup: Option<String>,
    /// Pick this cluster's newest trustworthy backup: ranked by its record's time, which must
    /// agree with the name; names dated in the future are ignored. Says which it chose and why.
    #[arg(long)]
    pub latest: bool,
    /// With --latest: only this cluster's backups (needed when the stores hold several).
    #[arg(long, value_name = "NAME", requires = "latest")]
    pub cluster: Option<String>,
    /// With --latest: only backups taken on this node.
    #[arg(long, value_name = "NODE", requires = "latest")]
    pub node: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub which: BackupRef,
    /// Without the key: check the stored bytes against the record (size, SHA-256), the
    /// version read (S3: the original) and that its Object Lock is still in force. A monitoring
    /// job can run it anywhere; only a full verify (with --identity) proves what is inside.
    #[arg(long)]
    pub ciphertext_only: bool,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
}

#[derive(Debug, Clone, Default, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Print what would be deleted and why; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub retention: RetentionFlags,
}

/// How `inspect` groups the live keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    Resource,
    Namespace,
}

/// Where `inspect` and `extract` read a snapshot: a bare snapshot file, or a backup (by path,
/// name or `--latest`) decrypted into a spool file.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub which: BackupRef,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Where a snapshot from a bundle is spooled (an unlinked 0600 file; default $TMPDIR).
    #[arg(long, env = "CPBACKUP_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: SnapshotArgs,
    /// Group the live keys by Kubernetes resource or by namespace.
    #[arg(long, value_enum, default_value = "resource")]
    pub by: GroupBy,
    /// Show this many groups (JSON output always has all of them).
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub which: BackupRef,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Directory for the two files (created 0700 if missing; existing files are never replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `extract --dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// The API server validates, admits and answers, but stores nothing.
    Server,
    /// Apply for real.
    None,
}

#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub source: SnapshotArgs,
    /// The namespace to extract (its objects, its Namespace object, its dependency report).
    #[arg(long, short = 'n', value_name = "NS", conflicts_with = "prefix")]
    pub namespace: Option<String>,
    /// Every key under this etcd prefix instead (e.g. /registry/configmaps/), decoded, as stored.
    #[arg(long, value_name = "KEYPREFIX")]
    pub prefix: Option<String>,
    /// Write one file per object into this new directory (0700; Secrets 0600), named in apply
    /// order. Without it the objects go to stdout and the report to stderr.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// yaml: a multi-document stream; json: one `{"kind":"List","items":[…]}`.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: crate::extract::write::Format,
    /// The objects exactly as stored: no stripping, no skipping, no fix-ups.
    #[arg(long)]
    pub raw: bool,
    /// Keep `status` (for forensics; the API server ignores it on apply).
    #[arg(long)]
    pub keep_status: bool,
    /// Keep objects whose controller is in the namespace too (ReplicaSets, Pods, Jobs, …).
    #[arg(long)]
    pub keep_owned: bool,
    /// Also write the cluster-scoped objects the namespace depends on (always reported).
    #[arg(long)]
    pub with_cluster_deps: bool,
    /// The cluster's EncryptionConfiguration, to decrypt values encrypted at rest (default: the
    /// one inside the backup, when it has one).
    #[arg(long, env = "CPBACKUP_ENCRYPTION_CONFIG", value_name = "FILE")]
    pub encryption_config: Option<PathBuf>,
    /// A directory of extra .proto files (e.g. OpenShift's route.openshift.io); repeatable. They
    /// import Kubernetes types by their upstream path (k8s.io/api/core/v1/generated.proto).
    #[arg(long, value_name = "DIR")]
    pub proto_path: Vec<PathBuf>,
    /// Apply the objects to a live cluster with server-side apply (field manager cpbackup).
    #[arg(long, requires = "namespace")]
    pub apply: bool,
    /// kubeconfig for --apply (default $KUBECONFIG, else ~/.kube/config, as kubectl).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Rewrite the namespace, and every reference to it, to this one.
    #[arg(long, value_name = "NS", requires = "namespace")]
    pub to_namespace: Option<String>,
    /// With --apply: `server` sends every object as a server-side dry run.
    #[arg(long, value_enum, value_name = "server|none", requires = "apply", num_args = 0..=1, default_missing_value = "server")]
    pub dry_run: Option<DryRun>,
    /// Exit 1 when any object is lossy (stored with protobuf fields the schema does not know,
    /// so they are missing from the output). The objects are written anyway.
    #[arg(long)]
    pub strict: bool,
    /// With --apply: apply lossy objects too (they are re-created without the fields the schema
    /// does not know). Without it, --apply refuses when any object is lossy.
    #[arg(long, requires = "apply")]
    pub allow_lossy: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Where to write the identity (created with mode 0600; an existing file is never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Make an ed25519 signing key for the nodes instead (`backup --signing-key`); prints its
    /// public key for readers' --trust-signer.
    #[arg(long)]
    pub signing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
