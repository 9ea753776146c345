//! `cpbackup doctor`: what a backup and a restore of this node will need, checked before the day
//! they are needed. Each check says OK, or what is wrong and how to fix it; the checks run
//! independently (a dead etcd does not hide an expiring certificate).

pub mod certs;
mod node;
mod stores;

use serde::Serialize;

use crate::backup::BackupJob;
use crate::keys::Recipients;

/// How one check came out, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works today; act before it does not.
    Warn,
    /// A backup or a restore would fail.
    Fail,
}

impl Status {
    /// The word the text report prints.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`etcd`, `store s3://…`).
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when it is not OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        status: Status,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order they ran, and the certificates found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The worst status of all checks.
    pub status: Status,
    /// The checks.
    pub checks: Vec<Check>,
    /// Every certificate in the backup's scope, soonest expiry first.
    pub certificates: Vec<certs::CertInfo>,
}

/// What the checks need besides the backup job.
pub struct Options {
    /// The recipients as configured (an error is a failed check, not an abort).
    pub recipients: anyhow::Result<Recipients>,
    /// Warn about certificates expiring within this many days.
    pub warn_days: i64,
    /// Write (and remove) a probe object in each store.
    pub write_probe: bool,
    /// Largest tolerated difference between this node's clock and a store's.
    pub max_skew_seconds: i64,
    /// A newest backup older than this warns (twice the configured schedule's interval).
    pub max_backup_age: std::time::Duration,
}

/// Runs every check.
pub fn run(job: &BackupJob, opts: &Options) -> Report {
    let mut checks = Vec::new();
    let platform = node::platform(job, &mut checks);
    let sources = node::static_pods(job, platform, &mut checks);
    let etcd = node::etcd(job, platform, &mut checks);
    let certificates = certs::scan(&sources);
    checks.push(node::certificates(&certificates, opts.warn_days));
    checks.push(recipients(&opts.recipients));
    let cluster = job
        .cluster
        .clone()
        .or_else(|| etcd.as_ref().map(|e| format!("etcd-{}", e.cluster_id)));
    stores::check(job, cluster.as_deref(), opts, &mut checks);
    checks.push(node::free_space(
        &job.state_dir,
        etcd.as_ref().map(|e| e.db_size),
    ));
    checks.push(node::restore_tool(job, platform));
    checks.push(node::schedule(job));
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Report {
        status,
        checks,
        certificates,
    }
}

fn recipients(r: &anyhow::Result<Recipients>) -> Check {
    match r {
        Ok(r) => Check::ok(
            "recipients",
            format!("{} age recipient(s) parse", r.keys.len()),
        ),
        Err(e) => Check::bad(
            Status::Fail,
            "recipients",
            format!("{e:#}"),
            "make a key with `cpbackup keygen --out FILE` on a machine that is not a node, and set its age1… line as `recipients` in the config",
        ),
    }
}

/// Days from now to `unix` (negative: in the past), rounded down.
fn days_until(unix: i64) -> i64 {
    (unix - time::OffsetDateTime::now_utc().unix_timestamp()).div_euclid(86_400)
}

/// A Unix time as RFC 3339 (UTC), for people.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
