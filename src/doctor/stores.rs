//! The stores' checks: each reachable and writable (a probe object), Object Lock and its
//! default retention, the node's clock against the store's; then the age of this cluster's
//! newest complete backup and of the newest one checked against its record.

use std::time::Duration;

use super::node::age;
use super::{Check, Options, Status, rfc3339};
use crate::backup::BackupJob;
use crate::store::{BackupState, BundleName};

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
    let mut newest: Option<(String, i64)> = None;
    for spec in &job.stores {
        let name = format!("store {}", spec.url);
        let store = match crate::store::open(spec) {
            Ok(s) => s,
            Err(e) => {
                checks.push(Check::bad(
                    Status::Fail,
                    name,
                    format!("{e:#}"),
                    "fix the store's URL and settings",
                ));
                continue;
            }
        };
        if opts.write_probe {
            checks.push(probe(
                &name,
                store.as_ref(),
                cluster.unwrap_or("doctor"),
                node,
                opts,
            ));
        }
        match store.scan() {
            Ok(listings) => {
                for l in listings {
                    let whole = matches!(
                        l.state,
                        BackupState::Unchecked | BackupState::Complete | BackupState::Tampered
                    );
                    let Some(n) = BundleName::parse(&l.name) else {
                        continue;
                    };
                    let Some(t) = n.time() else { continue };
                    if whole
                        && cluster.is_none_or(|c| c == n.cluster)
                        && newest.as_ref().is_none_or(|(_, old)| t.unix_timestamp() > *old)
                    {
                        newest = Some((l.name.clone(), t.unix_timestamp()));
                    }
                }
            }
            Err(e) => checks.push(Check::bad(
                Status::Fail,
                format!("{name} listing"),
                format!("{e:#}"),
                "backups there cannot be found by `list` or `--latest`: fix access (s3:ListBucketVersions)",
            )),
        }
    }
    checks.push(newest_backup(job, cluster, newest, opts.max_backup_age));
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

fn newest_backup(
    job: &BackupJob,
    cluster: Option<&str>,
    newest: Option<(String, i64)>,
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
    let Some((backup, t)) = newest else {
        return Check::bad(
            Status::Warn,
            name,
            format!(
                "no complete backup of cluster {} in the stores",
                cluster.unwrap_or("?")
            ),
            "take one now: `cpbackup backup`",
        );
    };
    let old = Duration::from_secs((now - t).max(0) as u64);
    let detail = format!("{backup}, {} ago; {verified}", age(old));
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
