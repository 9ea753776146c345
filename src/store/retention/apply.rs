//! A prune pass: lists each store, asks the policy ([`super::plan`]) what to keep, deletes the
//! rest (never what Object Lock still holds) and aborts uploads abandoned for a day. Run by
//! `cpbackup prune` and by the daemon after each slot.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use super::{Candidate, Policy};
use crate::store::{BackupState, BundleName, Deleted, Listing, Store};

/// Unfinished uploads older than this are aborted.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(86_400);

/// What a prune pass did (or, with `dry_run`, would do) to one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A keep rule (or the newest-complete rule) keeps it.
    Keep,
    /// `dry_run`: it would be deleted.
    Delete,
    /// It was deleted.
    Deleted,
    /// Due for deletion, but Object Lock keeps it.
    Locked,
    /// Deleting it failed.
    Failed,
}

impl Action {
    /// The word in the report's ACTION column (as in the JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Delete => "delete",
            Action::Deleted => "deleted",
            Action::Locked => "locked",
            Action::Failed => "failed",
        }
    }
}

/// One backup's line in the prune report.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    /// The store's location.
    pub store: String,
    /// The backup's name.
    pub backup: String,
    /// What happened to it.
    pub action: Action,
    /// Which rule decided, or what went wrong.
    pub reason: String,
}

/// What one prune pass did.
pub struct Pruned {
    pub rows: Vec<Row>,
    pub failures: usize,
}

impl Pruned {
    /// How many backups got `action`.
    pub fn count(&self, action: Action) -> usize {
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
    fn includes(&self, name: &BundleName) -> bool {
        self.cluster
            .as_deref()
            .is_none_or(|want| name.cluster == want)
            && self.node.as_deref().is_none_or(|want| name.node == want)
    }
}

/// Applies `policy` to every store (or only plans it with `dry_run`). A store that cannot be
/// listed is an error; a backup that cannot be deleted is counted in `failures`.
pub fn apply(
    stores: &[Box<dyn Store>],
    policy: &Policy,
    dry_run: bool,
    scope: &Scope,
) -> anyhow::Result<Pruned> {
    let now = OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    let mut failures = 0;
    for store in stores {
        // planned from the listing pass alone: names carry the time, and a backup with its
        // bundle and its record (one version each) counts as complete
        let listings: Vec<Listing> = store
            .scan()?
            .into_iter()
            .filter(|l| l.size.is_some())
            .filter(|l| BundleName::parse(&l.name).is_some_and(|n| scope.includes(&n)))
            .collect();
        let candidates: Vec<Candidate> = listings
            .iter()
            .filter_map(|l| Some((l, BundleName::parse(&l.name)?)))
            .map(|(l, name)| Candidate {
                name: l.name.clone(),
                group: name.group(scope.by_cluster),
                time: name.time().unwrap_or(now),
                complete: matches!(l.state, BackupState::Complete | BackupState::Unchecked),
            })
            .collect();
        let decisions = super::plan(&candidates, policy, now);
        // the lock state of what is due, read before anything is deleted, so that the dry run
        // shows the plan the real run carries out and the real run spends no request on a
        // backup Object Lock still holds (a COMPLIANCE lock seen before is remembered)
        let due: HashSet<&str> = decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.name.as_str())
            .collect();
        let doomed: Vec<&Listing> = listings
            .iter()
            .filter(|l| due.contains(l.name.as_str()))
            .collect();
        let locks: HashMap<String, String> = doomed
            .iter()
            .zip(store.locked_until(&doomed)?)
            .filter_map(|(l, until)| Some((l.name.clone(), until?)))
            .collect();
        for d in decisions {
            let locked_until = locks.get(&d.name);
            let (action, reason) = if d.keep {
                (Action::Keep, d.reason)
            } else if let Some(until) = locked_until {
                (
                    Action::Locked,
                    format!("{}; Object Lock keeps it until {until}", d.reason),
                )
            } else if dry_run {
                (Action::Delete, d.reason)
            } else {
                match store.delete(&d.name) {
                    Ok(Deleted::Gone) => (Action::Deleted, d.reason),
                    Ok(Deleted::Locked { until }) => (
                        Action::Locked,
                        format!("{}; Object Lock keeps it until {until}", d.reason),
                    ),
                    Err(e) => {
                        failures += 1;
                        (Action::Failed, format!("{e:#}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &str) -> BundleName {
        BundleName::parse(key).unwrap()
    }

    #[test]
    fn scope_filters() {
        let s = Scope {
            cluster: Some("prod".into()),
            node: None,
            by_cluster: true,
        };
        assert!(s.includes(&name("prod/m1/x.cpb")));
        assert!(!s.includes(&name("staging/m1/x.cpb")));
        let n = Scope {
            cluster: Some("prod".into()),
            node: Some("m1".into()),
            by_cluster: false,
        };
        assert!(!n.includes(&name("prod/m2/x.cpb")));
        assert!(Scope::default().includes(&name("any/thing/x.cpb")));
    }
}
