//! `cpbackup prune`: apply the retention policy to every store; locked objects stay.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::PruneArgs;
use crate::commands::open_stores;
use crate::config::{self, FileConfig};
use crate::output;
use crate::output::OutputFormat;
use crate::store::retention::{self, Candidate, Policy};
use crate::store::{BackupState, Deleted};

/// Unfinished uploads older than this are aborted.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(86_400);

#[derive(serde::Serialize)]
pub struct Row {
    pub store: String,
    pub backup: String,
    /// keep | delete | deleted | locked | failed
    pub action: String,
    pub reason: String,
}

/// The retention policy: flags over the config file's `[retention]`.
pub fn policy(args: &PruneArgs, file: &FileConfig) -> Policy {
    let f = &file.retention;
    Policy {
        keep_last: args.keep_last.or(f.keep_last),
        keep_hourly: args.keep_hourly.or(f.keep_hourly),
        keep_daily: args.keep_daily.or(f.keep_daily),
        keep_weekly: args.keep_weekly.or(f.keep_weekly),
        keep_monthly: args.keep_monthly.or(f.keep_monthly),
        max_age_days: args.max_age_days.or(f.max_age_days),
    }
}

/// What one prune pass did.
pub struct Pruned {
    pub rows: Vec<Row>,
    pub failures: usize,
}

impl Pruned {
    pub fn count(&self, action: &str) -> usize {
        self.rows.iter().filter(|r| r.action == action).count()
    }
}

/// Which backups a prune pass looks at and how it groups them for the keep rules.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only backups under `<cluster>/` (and `<cluster>/<node>/` when `node` is set).
    pub cluster: Option<String>,
    pub node: Option<String>,
    /// Apply the rules per cluster instead of per cluster and node (one-per-cluster daemons,
    /// whose backups of one cluster are spread over the nodes).
    pub by_cluster: bool,
}

impl Scope {
    fn includes(&self, name: &str) -> bool {
        let mut parts = name.split('/');
        let (c, n) = (parts.next(), parts.next());
        self.cluster.as_deref().is_none_or(|want| c == Some(want))
            && self.node.as_deref().is_none_or(|want| n == Some(want))
    }

    fn group(&self, name: &str) -> String {
        if self.by_cluster {
            name.split('/').next().unwrap_or_default().to_owned()
        } else {
            name.rsplit_once('/')
                .map(|(g, _)| g.to_owned())
                .unwrap_or_default()
        }
    }
}

/// Applies `policy` to every store (or only plans it with `dry_run`). A store that cannot be
/// listed is an error; a backup that cannot be deleted is counted in `failures`.
pub fn apply(
    stores: &[Box<dyn crate::store::Store>],
    policy: &Policy,
    dry_run: bool,
    scope: &Scope,
) -> anyhow::Result<Pruned> {
    let now = OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    let mut failures = 0;
    for store in stores {
        let listings = store.list()?;
        let candidates: Vec<Candidate> = listings
            .iter()
            .filter(|l| l.size.is_some() && scope.includes(&l.name))
            .map(|l| Candidate {
                name: l.name.clone(),
                group: scope.group(&l.name),
                time: l
                    .record
                    .as_ref()
                    .and_then(|r| OffsetDateTime::parse(&r.created, &Rfc3339).ok())
                    .or_else(|| time_from_name(&l.name))
                    .unwrap_or(now),
                complete: l.state == BackupState::Complete,
            })
            .collect();
        for d in retention::plan(&candidates, policy, now) {
            let (action, reason) = if d.keep {
                ("keep".to_owned(), d.reason)
            } else if dry_run {
                ("delete".to_owned(), d.reason)
            } else {
                match store.delete(&d.name) {
                    Ok(Deleted::Gone) => ("deleted".to_owned(), d.reason),
                    Ok(Deleted::Locked { until }) => (
                        "locked".to_owned(),
                        format!("{}; Object Lock keeps it until {until}", d.reason),
                    ),
                    Err(e) => {
                        failures += 1;
                        ("failed".to_owned(), format!("{e:#}"))
                    }
                }
            };
            rows.push(Row {
                store: store.location(),
                backup: d.name,
                action,
                reason,
            });
        }
        if !dry_run {
            match store.abort_stale(STALE_UPLOAD) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(store = %store.location(), "aborted {n} unfinished upload(s) older than a day")
                }
                Err(e) => {
                    tracing::warn!(store = %store.location(), error = %format!("{e:#}"), "could not abort stale uploads")
                }
            }
        }
    }
    Ok(Pruned { rows, failures })
}

pub fn run(args: &PruneArgs, file: &FileConfig, format: OutputFormat) -> anyhow::Result<()> {
    let policy = policy(args, file);
    if policy.is_empty() {
        tracing::warn!(
            "no retention rule configured (--keep-* or --max-age-days, or [retention]): nothing will be deleted"
        );
    }
    let stores = open_stores(&config::resolve_stores(&args.stores, file)?)?;
    let Pruned { rows, failures } = apply(&stores, &policy, args.dry_run, &Scope::default())?;
    let locked = rows.iter().filter(|r| r.action == "locked").count();
    tracing::info!(
        deleted = rows.iter().filter(|r| r.action == "deleted").count(),
        kept = rows.iter().filter(|r| r.action == "keep").count(),
        locked,
        failed = failures,
        dry_run = args.dry_run,
        "prune finished"
    );
    output::emit(format, &rows, |rows| {
        if rows.is_empty() {
            return "no backups".into();
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.action.clone(),
                    r.backup.clone(),
                    r.store.clone(),
                    r.reason.clone(),
                ]
            })
            .collect();
        output::table(&["ACTION", "BACKUP", "STORE", "REASON"], &table)
    })?;
    if failures > 0 {
        anyhow::bail!("{failures} backup(s) could not be deleted");
    }
    Ok(())
}

/// `…/20261122T221005Z-rev7.cpb` → its time.
fn time_from_name(name: &str) -> Option<OffsetDateTime> {
    let file = name.rsplit('/').next()?;
    let ts = file.split('-').next()?;
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(ts, &fmt)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    #[test]
    fn scope_filters_and_groups() {
        let s = super::Scope {
            cluster: Some("prod".into()),
            node: None,
            by_cluster: true,
        };
        assert!(s.includes("prod/m1/x.cpb"));
        assert!(!s.includes("staging/m1/x.cpb"));
        assert_eq!(s.group("prod/m1/x.cpb"), "prod");
        let n = super::Scope {
            cluster: Some("prod".into()),
            node: Some("m1".into()),
            by_cluster: false,
        };
        assert!(!n.includes("prod/m2/x.cpb"));
        assert_eq!(n.group("prod/m1/x.cpb"), "prod/m1");
        assert!(super::Scope::default().includes("any/thing/x.cpb"));
    }

    #[test]
    fn name_times() {
        let t = super::time_from_name("c/n/20261122T221005Z-rev7.cpb").unwrap();
        assert_eq!((t.hour(), t.minute(), t.second()), (22, 10, 5));
        assert!(super::time_from_name("c/n/x.cpb").is_none());
    }
}
