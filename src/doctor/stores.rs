//! The stores' checks: each reachable and writable (a probe object), Object Lock and its
//! default retention, the node's clock against the store's; then the age of this cluster's
//! newest backup as `--latest` picks it and of the newest one checked against its record.

use std::time::Duration;

use super::node::age;
use super::{Check, Options, Status, rfc3339};
use crate::backup::BackupJob;

pub(super) fn check(
    job: &BackupJob,
    cluster: Option<&str>,
    opts: &Options,
    checks: &mut Vec<Check>,
) {
    if job.stores.is_empty() {
        checks.push(Check::bad(
            Status::Fail,
            "stores",
            "no store configured",
            "add a [[store]] url = \"s3://bucket/prefix\" to the config, or pass --store",
        ));
        return;
    }
    let node = job.node.clone().or_else(crate::host::discover::hostname);
    let node = node.as_deref().unwrap_or("node");
    let mut opened = Vec::new();
    for spec in &job.stores {
        let name = format!("store {}", spec.url);
        match crate::store::open(spec) {
            Ok(store) => {
                if opts.write_probe {
                    checks.push(probe(
                        &name,
                        store.as_ref(),
                        cluster.unwrap_or("doctor"),
                        node,
                        opts,
                    ));
                }
                opened.push(store);
            }
            Err(e) => checks.push(Check::bad(
                Status::Fail,
                name,
                format!("{e:#}"),
                "fix the store's URL and settings",
            )),
        }
    }
    checks.push(newest_backup(job, cluster, &opened, opts.max_backup_age));
}

fn probe(
    name: &str,
    store: &dyn crate::store::Store,
    cluster: &str,
    node: &str,
    opts: &Options,
) -> Check {
    let p = match store.probe(cluster, node) {
        Ok(p) => p,
        Err(e) => {
            return Check::bad(
                Status::Fail,
                name,
                format!("{e:#}"),
                "backups cannot be written there: check credentials, permissions and the URL",
            );
        }
    };
    let mut detail = vec!["writable".to_owned()];
    match (p.object_lock, &p.default_retention) {
        (None, _) => detail.push(
            "a directory (no Object Lock: anyone with write access can delete backups)".into(),
        ),
        (Some(true), Some(r)) => detail.push(format!("Object Lock on, default retention {r}")),
        (Some(true), None) => {
            detail.push("Object Lock on, no default retention (cpbackup sets each bundle's)".into())
        }
        (Some(false), _) => {
            return Check::bad(
                if p.allow_mutable {
                    Status::Warn
                } else {
                    Status::Fail
                },
                name,
                "the bucket has no Object Lock: backups there could be deleted or overwritten",
                "create a bucket with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket …) and move the backups there",
            );
        }
    }
    if let Some(server) = p.server_time {
        let skew = time::OffsetDateTime::now_utc().unix_timestamp() - server;
        if skew.abs() > opts.max_skew_seconds {
            return Check::bad(
                Status::Fail,
                name,
                format!(
                    "{}; this node's clock is {}s {} the store's ({})",
                    detail.join(", "),
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" },
                    rfc3339(server)
                ),
                "fix the node's time (chrony/timesyncd): signed requests fail beyond 15 minutes and retention dates follow this clock",
            );
        }
        detail.push(format!("clock within {}s of the store's", skew.abs()));
    }
    Check::ok(name, detail.join(", "))
}

/// The newest backup as `--latest` would pick it (record read and checked, names dated in the
/// future ignored), and the newest one checked against its record on this node.
fn newest_backup(
    job: &BackupJob,
    cluster: Option<&str>,
    stores: &[Box<dyn crate::store::Store>],
    max_age: Duration,
) -> Check {
    let name = "newest backup";
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = crate::daemon::metrics::State::load(&job.state_dir);
    let verified = match state.last_verified {
        Some(t) => format!(
            "newest checked against its record: {} ago",
            age(Duration::from_secs((now - t as i64).max(0) as u64))
        ),
        None => {
            "none checked against its record on this node yet (`cpbackup verify --latest`)".into()
        }
    };
    let sel = crate::store::select::Selector {
        latest: true,
        cluster: cluster.map(str::to_owned),
        ..Default::default()
    };
    let newest = match crate::store::select::newest(&sel, &[], stores) {
        Ok(Some(n)) => n,
        Ok(None) => {
            return Check::bad(
                Status::Warn,
                name,
                format!(
                    "no complete backup of cluster {} in the stores",
                    cluster.unwrap_or("?")
                ),
                "take one now: `cpbackup backup`",
            );
        }
        Err(e) => {
            return Check::bad(
                Status::Fail,
                name,
                format!("{e:#}"),
                "backups there cannot be found by `list` or `--latest`: fix access (s3:ListBucketVersions)",
            );
        }
    };
    let old = Duration::from_secs((now - newest.at.unix_timestamp()).max(0) as u64);
    let detail = format!("{}, {} ago; {verified}", newest.listing.name, age(old));
    if old > max_age {
        Check::bad(
            Status::Warn,
            name,
            detail,
            format!(
                "the newest is older than {}: check the timer or daemon (`journalctl -u cpbackup-backup`)",
                age(max_age)
            ),
        )
    } else {
        Check::ok(name, detail)
    }
}
